"""The TSQR pass: R factors of the training scores [T_s | T_t] of every (pair, split), in one
pass over the data (mmpipe.models.tsqr solves the ridge maps from them).

Rows outside the training set are zeroed (zero rows leave R unchanged), which keeps the row
chunks known and the graph one pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as da
import numpy as np
from dask.delayed import delayed

from mmpipe.cluster import compute_pass
from mmpipe.io.dataset import Dataset
from mmpipe.models.pair import PairModels
from mmpipe.stats.folds import FoldPlan


def _scores_block(
    x: np.ndarray,
    folds: np.ndarray,
    present: np.ndarray | None,
    *,
    mean: np.ndarray,
    basis: np.ndarray,
    train_groups: tuple[int, ...],
) -> np.ndarray:
    keep = np.isin(folds, train_groups)
    if present is not None:
        keep &= present
    out = (np.asarray(x, dtype=np.float64) - mean) @ basis
    out[~keep] = 0.0
    return out


def _training_scores(
    ds: Dataset,
    name: str,
    plan: FoldPlan,
    split: int,
    pca_mean: np.ndarray,
    basis: np.ndarray,
    pair_masks: list[da.Array],
) -> da.Array:
    folds = da.from_array(plan.assignment, chunks=(ds.row_chunks,))
    present = None
    for mask in pair_masks:
        present = mask if present is None else present & mask
    args = [ds.modalities[name], "ij", folds, "i"] + ([present, "i"] if present is not None else [])
    fn = (
        _scores_block
        if present is not None
        else (lambda x, f, **kw: _scores_block(x, f, None, **kw))
    )
    return da.blockwise(
        fn,
        "ij",
        *args,
        mean=pca_mean,
        basis=basis,
        train_groups=plan.splits[split][0],
        new_axes={"j": basis.shape[1]},
        concatenate=True,
        dtype=np.float64,
        adjust_chunks={"j": basis.shape[1]},
    )


def training_r_factors(
    ds: Dataset,
    plan: FoldPlan,
    jobs: Sequence[tuple[str, str, int | None, PairModels]],
) -> list[np.ndarray]:
    """The R factor of [T_s | T_t] over the training rows of each (source, target, split,
    models) job; ``split`` None means the final models' rows (``plan.final_groups``). All jobs
    run in one compute: one pass."""
    r_factors = []
    for source, target, split, models in jobs:
        masks = [ds.masks[n] for n in (source, target) if n in ds.masks]
        final = plan.final_groups
        every = tuple(range(plan.n_groups)) if final is None else final
        sp = plan.splits[split][0] if split is not None else every
        split_plan = FoldPlan(
            plan.kind, plan.assignment, plan.n_groups, ((sp, ()),), plan.seed, plan.stratified
        )
        ts = _training_scores(
            ds, source, split_plan, 0, models.source_pca.mean_, models.source_pca.basis_, masks
        )
        tt = _training_scores(
            ds, target, split_plan, 0, models.target_pca.mean_, models.target_pca.basis_, masks
        )
        joint = da.concatenate([ts, tt], axis=1).rechunk({1: -1})
        _, r = da.linalg.tsqr(joint)
        r_factors.append(r)
    computed: list[np.ndarray] = compute_pass(delayed(r_factors), "TSQR", rows=ds.n_rows)
    return computed
