"""The scoring pass: predictions of every task, split and α in one more blocked pass.

Everything that needs per-row predictions (classification accuracy, cross-modal transfer) is
an affine map of raw input columns to class decisions: standardize, project on the PCA basis,
maybe map through W, apply the classifier. The map is composed in memory once per split and α,
so each row block costs one matrix product per split. A block contributes a confusion matrix
per (scorer, split, α), and the confusion matrices are summed in a tree. Only counts leave the
workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dask.array as da
import numpy as np
from dask.delayed import Delayed, delayed

from mmpipe.io.dataset import Dataset
from mmpipe.stats.blocked import compute_on, tree_reduce
from mmpipe.stats.folds import FoldPlan


@dataclass(frozen=True, eq=False)
class LinearScorer:
    """Class decisions = x_inputs @ maps[s] + bias[s], for every α side by side."""

    name: str
    inputs: tuple[str, ...]
    """Modalities whose columns, side by side, are x_inputs."""
    require: tuple[str, ...]
    """Modalities that must be present in a row for it to count (a superset of inputs)."""
    maps: np.ndarray
    """(n_splits, d_inputs, n_alpha · n_classes)."""
    bias: np.ndarray
    """(n_splits, n_alpha · n_classes)."""
    n_alpha: int


def score_block(
    blocks: dict[str, np.ndarray],
    masks: dict[str, np.ndarray | None],
    label_codes: np.ndarray,
    fold_groups: np.ndarray,
    validation_groups: Sequence[np.ndarray],
    scorers: Sequence[LinearScorer],
    n_classes: int,
) -> dict[str, np.ndarray]:
    """Confusion matrices (n_splits, n_alpha, C, C) per scorer for one row block."""
    rows = fold_groups.shape[0]
    present = {
        name: np.ones(rows, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        for name, mask in masks.items()
    }
    out: dict[str, np.ndarray] = {}
    for scorer in scorers:
        confusion = np.zeros((len(validation_groups), scorer.n_alpha, n_classes, n_classes))
        usable = np.logical_and.reduce([present[n] for n in scorer.require])
        for s, groups in enumerate(validation_groups):
            take = usable & np.isin(fold_groups, groups)
            if not take.any():
                continue
            x = np.concatenate(
                [np.asarray(blocks[n][take], dtype=np.float64) for n in scorer.inputs], axis=1
            )
            decisions = (x @ scorer.maps[s] + scorer.bias[s]).reshape(-1, scorer.n_alpha, n_classes)
            predicted = decisions.argmax(axis=2)  # (rows, n_alpha)
            truth = label_codes[take]
            for a in range(scorer.n_alpha):
                cells = np.bincount(truth * n_classes + predicted[:, a], minlength=n_classes**2)
                confusion[s, a] += cells.reshape(n_classes, n_classes)
        out[scorer.name] = confusion
    return out


def _add(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    total = {k: v.copy() for k, v in parts[0].items()}
    for part in parts[1:]:
        for k, v in part.items():
            total[k] += v
    return total


def scoring_graph(
    ds: Dataset,
    plan: FoldPlan,
    label_codes: np.ndarray,
    n_classes: int,
    scorers: Sequence[LinearScorer],
    *,
    split_every: int = 8,
) -> Delayed:
    """One task per row block reading only the modalities some scorer needs, then a tree sum."""
    names = sorted({n for s in scorers for n in s.require})
    chunks = (ds.row_chunks,)
    mods = {n: ds.modalities[n].to_delayed().ravel() for n in names}
    masks = {n: ds.masks[n].to_delayed().ravel() if n in ds.masks else None for n in names}
    folds = da.from_array(plan.assignment, chunks=chunks).to_delayed().ravel()
    labels = da.from_array(label_codes, chunks=chunks).to_delayed().ravel()
    validation = [np.asarray(val) for _, val in plan.splits]
    # The composed maps are shipped once, as one key, not embedded in every task.
    shared = delayed(list(scorers), traverse=False)
    task = delayed(score_block, pure=True)
    parts: list[Delayed] = [
        task(
            {n: mods[n][i] for n in names},
            {n: None if masks[n] is None else masks[n][i] for n in names},  # type: ignore[index]
            labels[i],
            folds[i],
            validation,
            shared,
            n_classes,
        )
        for i in range(len(folds))
    ]
    return tree_reduce(parts, _add, split_every)


def compute_confusions(
    ds: Dataset,
    plan: FoldPlan,
    label_codes: np.ndarray,
    n_classes: int,
    scorers: Sequence[LinearScorer],
    *,
    client: object | None = None,
) -> dict[str, np.ndarray]:
    """Run the scoring pass; confusion matrices (n_splits, n_alpha, C, C) per scorer name."""
    if not scorers:
        return {}
    graph = scoring_graph(ds, plan, label_codes, n_classes, scorers)
    result: dict[str, np.ndarray] = compute_on(graph, client)
    return result
