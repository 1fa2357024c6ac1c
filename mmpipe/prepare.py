"""Everything a fit checks and decides before it reads data: the results location, the
dataset's contract, the options against the dataset, and the fold plan.

All input errors surface here, before anything is computed or written."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np

from mmpipe import tasks
from mmpipe.defaults import DEFAULT_COMPONENTS
from mmpipe.errors import ConfigError
from mmpipe.io.dataset import Dataset, check_folds, open_dataset
from mmpipe.io.locations import check_results_location
from mmpipe.io.results import check_writable
from mmpipe.io.storage import StorageOptions
from mmpipe.options import FitConfig, pair_of
from mmpipe.stats.folds import FoldPlan, given_plan, holdout_plan, kfold_plan


def parse_pairs(
    pairs: Iterable[str | Sequence[str]] | None, names: Sequence[str]
) -> tuple[tuple[str, str], ...]:
    """Normalize 'source:target' strings or 2-tuples; None means every ordered pair."""
    if pairs is None:
        return tuple(itertools.permutations(names, 2))
    out: list[tuple[str, str]] = []
    for item in pairs:
        parts = pair_of(item)
        if len(parts) != 2:
            raise ConfigError(f"Pair {item!r} must be written SOURCE:TARGET, e.g. image:text.")
        source, target = str(parts[0]).strip(), str(parts[1]).strip()
        for name in (source, target):
            if name not in names:
                raise ConfigError(
                    f"Pair {source}:{target} names modality {name!r}, which the dataset does "
                    f"not have (modalities: {', '.join(names)})."
                )
        if source == target:
            raise ConfigError(f"Pair {source}:{target} maps a modality onto itself.")
        if (source, target) not in out:
            out.append((source, target))
    if not out:
        raise ConfigError("No pairs given: name at least one SOURCE:TARGET or leave pairs unset.")
    return tuple(out)


def components_for(config: FitConfig, name: str, width: int) -> int | float | None:
    spec = config.components
    if isinstance(spec, Mapping):
        if name not in spec:
            return min(DEFAULT_COMPONENTS, width)
        spec = spec[name]
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec < 1:
            raise ConfigError(
                f"components for {name!r} must be a count >= 1, a variance fraction in (0, 1) "
                f"or 'all'; got {spec!r}."
            )
        return min(spec, width)
    return spec


def make_plan(ds: Dataset, config: FitConfig, labels: np.ndarray | None) -> FoldPlan:
    """The fold plan, stratified by ``labels`` when the dataset has them; with
    ``config.split`` the dataset's own split (its values checked here)."""
    # A class too small for the folds is an error when a task learns the labels; when they
    # only balance the folds, the plan records it (plan.rare_classes, in the results).
    learns = any(task.learns_labels(config) for task in tasks.TASKS)
    rare: Literal["raise", "note"] = "raise" if learns else "note"
    split = ds.read_split() if config.split else None
    if split is not None:
        plan = given_plan(split, labels=labels, seed=config.seed, rare=rare)
    elif config.holdout is not None:
        plan = holdout_plan(ds.n_rows, config.holdout, labels=labels, seed=config.seed, rare=rare)
    else:
        check_folds(ds, config.folds)
        plan = kfold_plan(ds.n_rows, config.folds, labels=labels, seed=config.seed, rare=rare)
    return plan


def check_plan(ds: Dataset, plan: FoldPlan) -> None:
    if plan.assignment.shape != (ds.n_rows,):
        raise ConfigError(
            f"The fold plan assigns {plan.assignment.shape[0]} rows but {ds.url!r} has "
            f"{ds.n_rows}: build it for this dataset."
        )


def check_config(ds: Dataset, config: FitConfig) -> tuple[tuple[str, str], ...]:
    """Check the options against the dataset before any data is read (the options' own
    bounds were checked when the :class:`FitConfig` was made)."""
    if isinstance(config.components, Mapping):
        unknown = set(config.components) - set(ds.names)
        if unknown:
            raise ConfigError(
                f"components names unknown modalities {sorted(unknown)} "
                f"(modalities: {', '.join(ds.names)})."
            )
    if config.split and ds.split_array is None:
        raise ConfigError(
            f"split: {ds.url!r} has no split array: write one (n,) int8 array 'split' at the "
            "dataset's root (0 train, 1 test, -1 unused), or fit without split."
        )
    for task in tasks.TASKS:  # each task's options against the dataset (e.g. needs labels)
        task.check(config, ds)
    return parse_pairs(config.pairs, ds.names)


def check_output(
    dataset: str | os.PathLike[str] | Dataset | object,
    out: str | os.PathLike[str],
    storage_options: StorageOptions | None = None,
    results_storage_options: StorageOptions | None = None,
) -> None:
    """Refuse, before anything is read or computed, a results location that is the input,
    lies inside it or contains it, or that cannot hold results (a dataset, a file...)."""
    source = dataset.url if isinstance(dataset, Dataset) else dataset
    if isinstance(source, str | os.PathLike):
        check_results_location(
            out,
            source,
            storage_options=storage_options,
            results_storage_options=results_storage_options,
        )
    check_writable(out, storage_options=results_storage_options)


@dataclass(frozen=True, eq=False)
class Prepared:
    """A validated dataset and config with its fold plan: everything known before the pass."""

    dataset: Dataset
    config: FitConfig
    pairs: tuple[tuple[str, str], ...]
    """The directed pairs to fit."""
    names: list[str]
    """Modalities that appear in a pair (the only columns the pass reads)."""
    labels: np.ndarray | None
    """The labels in memory (read once, for stratification and the one-hot columns)."""
    plan: FoldPlan
    started: str
    """UTC start time, ISO 8601."""


def prepare(
    dataset: str | os.PathLike[str] | Dataset,
    config: FitConfig,
    *,
    storage_options: StorageOptions | None = None,
    plan: FoldPlan | None = None,
    out: str | os.PathLike[str] | None = None,
    results_storage_options: StorageOptions | None = None,
) -> Prepared:
    """Check the results location, open and validate the dataset and config, make the plan.

    Everything that can be wrong with the input or the output location fails here, before
    anything is computed or written.
    """
    started = datetime.now(UTC).isoformat(timespec="seconds")
    if out is not None:  # first of all: the input is never harmed, whatever else is wrong
        check_output(dataset, out, storage_options, results_storage_options)
    ds = open_dataset(dataset, storage_options=storage_options, chunk_rows=config.chunk_rows)
    pair_list = check_config(ds, config)
    used = {n for p in pair_list for n in p}.union(
        *(t.modalities_of(config, ds.names) for t in tasks.TASKS)
    )
    names = [n for n in ds.names if n in used]
    # Before anything is computed or written: every chunk the fit reads is in the store (one
    # listing per array) and the ids are unique.
    ds.check_chunks(names)
    ds.check_ids()
    labels = ds.read_labels()
    if plan is None:
        plan = make_plan(ds, config, labels)
    check_plan(ds, plan)
    return Prepared(ds, config, pair_list, names, labels, plan, started)


def wide_modalities(prepared: Prepared) -> dict[str, int]:
    """Modalities to reduce before the statistics pass -> their sketch width q."""
    config, widths = prepared.config, prepared.dataset.widths
    if config.sketch_above is None:
        return {}
    out = {}
    for name in prepared.names:
        d = widths[name]
        if d <= config.sketch_above or name in prepared.dataset.arrays.reductions:
            continue
        k = components_for(config, name, d)
        k = k if isinstance(k, int) else DEFAULT_COMPONENTS
        out[name] = min(d, prepared.dataset.n_rows, config.sketch_columns or 4 * k + 64)
    return out
