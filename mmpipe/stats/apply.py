"""The apply pass: a fitted run's models over every row block of a dataset, written as it goes.

One task per row block reads the modalities the asked outputs need (and their masks), computes
every output with the run's NumPy methods (:class:`mmpipe.fitted.FittedRun`) and writes its
rows of each output array straight into the output store. Row blocks are whole chunks of the
output arrays, so no two tasks write the same chunk; a task returns only its counts of rows
left without a value. Every input chunk is read once and a worker holds a few blocks at most,
whatever the size of the dataset.

A row whose needed modality is masked out (``masks/<name>`` False) or holds a non-finite
value gets no value: NaN in float outputs, :attr:`ApplyPlan.missing_label` in predictions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import zarr
from dask.delayed import delayed

from mmpipe.cluster import compute_pass
from mmpipe.io.dataset import IDS, Dataset
from mmpipe.io.integrity import read_rows
from mmpipe.stats.rowblocks import RowBlock, map_row_blocks

if TYPE_CHECKING:
    from mmpipe.fitted import FittedRun

Kind = Literal[
    "pca", "mapped", "mapped_features", "cca", "predictions", "probabilities", "imputed",
    "multiview",
]


@dataclass(frozen=True)
class Output:
    """One output array (two for ``imputed``: the values and ``imputed_mask/<name>``)."""

    path: str
    """Its path in the output group, e.g. ``pca/image`` or ``cca/image--text/text``."""
    kind: Kind
    needs: tuple[str, ...]
    """Modalities a row must have (present and finite) to get a value (impute: its target)."""
    width: int | None
    """Columns; None for a vector (predictions)."""
    args: tuple[Any, ...] = ()
    """What the run's method is called with besides the rows: the modality, the pair (and
    side), the feature set, or the imputation's target and sources."""


@dataclass(frozen=True)
class ApplyPlan:
    """Everything one block needs to know: the outputs, the modalities to read, the label
    written where a prediction cannot be made."""

    outputs: tuple[Output, ...]
    names: tuple[str, ...]
    """Modalities read by the pass (all in the dataset)."""
    widths: dict[str, int] = field(default_factory=dict)
    """Columns of every modality the run knows (for modalities absent from the dataset)."""
    label_dtype: str = "int64"
    missing_label: int = -1
    """Written in predictions/<SET> for rows without a needed modality."""


def present_rows(block: RowBlock, name: str) -> np.ndarray:
    """Rows of ``block`` where ``name`` is present by its mask and entirely finite."""
    values = block.values[name]
    here = np.isfinite(values).all(axis=1)
    mask = block.masks[name]
    if mask is not None:
        here &= np.asarray(mask, dtype=bool)
    return np.asarray(here)


def _method(o: Output, run: FittedRun, x: Mapping[str, np.ndarray]) -> np.ndarray:
    """The run's method for output ``o`` on the rows ``x`` (every needed modality present)."""
    if o.kind == "pca":
        (name,) = o.args
        return np.asarray(run.transform(x[name], name))
    if o.kind in ("mapped", "mapped_features"):
        source, target = o.args
        features = o.kind == "mapped_features"
        return np.asarray(run.map(x[source], source, target, features=features))
    if o.kind == "cca":
        source, target, side = o.args
        return np.asarray(run.cca(x[source if side == "source" else target], source, target, side))
    if o.kind == "predictions":
        return np.asarray(run.predict(x, o.args[0]))
    if o.kind == "probabilities":
        return np.asarray(run.predict_proba(x, o.args[0]))
    raise ValueError(o.kind)  # pragma: no cover - the plan is built by mmpipe.apply


def compute_block(
    block: RowBlock, run: FittedRun, plan: ApplyPlan
) -> dict[str, tuple[np.ndarray, int]]:
    """Every output of ``plan`` on ``block``: array path -> (its rows, rows without a value)."""
    present = {name: present_rows(block, name) for name in plan.names}
    rows = block.rows
    out: dict[str, tuple[np.ndarray, int]] = {}
    # Each modality is converted to float64 once per block, and each set of needed modalities
    # selects its rows once: several outputs of one modality (pca/a, mapped/a--b) share them.
    # The models convert to float64 themselves, so the values are the same either way.
    as_float: dict[str, np.ndarray] = {}
    selected: dict[tuple[str, ...], tuple[np.ndarray, dict[str, np.ndarray]]] = {}

    def rows_of(needs: tuple[str, ...]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if needs not in selected:
            here = np.ones(rows, dtype=bool)
            for name in needs:
                here &= present[name]
                if name not in as_float:
                    as_float[name] = np.asarray(block.values[name], dtype=np.float64)
            every = bool(here.all())
            selected[needs] = (
                here,
                {n: as_float[n] if every else as_float[n][here] for n in needs},
            )
        return selected[needs]

    for o in plan.outputs:
        if o.kind == "imputed":
            target, sources = o.args
            values, imputed = _impute(block, run, plan, present, target, sources)
            missing = int(rows - imputed.sum())
            out[o.path] = (values, missing)
            out[_mask_path(o.path)] = (imputed, 0)  # a mask has a value in every row
            continue
        if o.kind == "multiview":  # from whatever views a row has: NaN with none
            (views,) = o.args
            values = np.asarray(
                run.embed_multiview(
                    {v: block.values[v] for v in views}, {v: present[v] for v in views}
                ),
                dtype=np.float64,
            )
            out[o.path] = (values, int(np.isnan(values).any(axis=1).sum()))
            continue
        here, x = rows_of(tuple(o.needs))
        label = o.kind == "predictions"
        shape = (rows,) if o.width is None else (rows, o.width)
        values = np.full(
            shape,
            plan.missing_label if label else np.nan,
            dtype=plan.label_dtype if label else np.float64,
        )
        if here.all():
            values[...] = _method(o, run, x)
        elif here.any():
            values[here] = _method(o, run, x)
        out[o.path] = (values, int(rows - here.sum()))
    return out


def _mask_path(path: str) -> str:
    return "imputed_mask/" + path.split("/", 1)[1]


def _impute(
    block: RowBlock,
    run: FittedRun,
    plan: ApplyPlan,
    present: Mapping[str, np.ndarray],
    target: str,
    sources: tuple[str, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """The run's imputation of ``target`` on ``block``: (values in feature units, NaN where
    not imputed; which rows were imputed). A modality absent from the dataset is absent from
    every row."""
    rows = block.rows
    xs: dict[str, np.ndarray] = {}
    here: dict[str, np.ndarray] = {}
    for name in (target, *sources):
        if name in block.values:
            xs[name] = block.values[name]
            here[name] = np.asarray(present[name])
        else:
            xs[name] = np.full((rows, plan.widths[name]), np.nan, dtype=np.float32)
            here[name] = np.zeros(rows, dtype=bool)
    values, imputed = run.impute(xs, here, target)
    imputed = np.asarray(imputed, dtype=bool)
    values = np.asarray(values, dtype=np.float64)
    values[~imputed] = np.nan  # only imputed rows hold values, whatever the method returned
    return values, imputed


def _apply_block(
    block: RowBlock,
    ids: zarr.Array | None,
    run: FittedRun,
    plan: ApplyPlan,
    targets: Mapping[str, zarr.Array],
) -> dict[str, int]:
    """Compute ``block``'s rows of every output and write them; return the counts of rows
    without a value per output array."""
    stop = block.start + block.rows
    computed = compute_block(block, run, plan)
    for path, (values, _) in computed.items():
        targets[path][block.start : stop] = values
    if ids is not None:
        targets[IDS][block.start : stop] = read_rows(ids, IDS, block.start, stop)
    return {path: missing for path, (_, missing) in computed.items()}


def _total(parts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for path, count in part.items():
            total[path] = total.get(path, 0) + count
    return total


def apply_pass(
    ds: Dataset, run: FittedRun, plan: ApplyPlan, targets: Mapping[str, zarr.Array]
) -> dict[str, int]:
    """One pass over ``ds``'s row blocks computing and writing every output of ``plan`` into
    ``targets`` (path -> output array, whose row chunks divide the blocks). Returns, per
    output array, the rows left without a value (NaN, or the missing label)."""
    parts = map_row_blocks(
        ds,
        plan.names,
        _apply_block,
        shared=(ds.id_array, run, plan, dict(targets)),
    )
    counts: dict[str, int] = compute_pass(delayed(_total)(parts), "apply", rows=ds.n_rows)
    return counts
