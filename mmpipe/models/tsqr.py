"""A second, independent solver for the ridge maps: TSQR on the PCA scores (one more pass).

The normal equations square the condition number of the source scores; TSQR never forms the
Gram. One tall-skinny QR of [T_s | T_t] over the training rows gives
R = [[R_ss, R_st], [0, R_tt]] with R_ss the R factor of T_s and R_st = Q_sᵀ T_t, so for every
α:  W(α) = argmin ‖[R_ss; √α I] W − [R_st; 0]‖, a small dense least-squares problem.
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


def tsqr_ridge(
    ds: Dataset,
    plan: FoldPlan,
    jobs: Sequence[tuple[str, str, int | None, PairModels]],
    alphas: Sequence[float],
) -> list[np.ndarray]:
    """Ridge coefficients (n_alpha, k_s, k_t) for each (source, target, split, models) job.

    ``split`` None means all rows. All jobs run in one compute, so the data is read once.
    """
    r_factors = []
    for source, target, split, models in jobs:
        masks = [ds.masks[n] for n in (source, target) if n in ds.masks]
        sp = plan.splits[split][0] if split is not None else tuple(range(plan.n_groups))
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
    computed = compute_pass(delayed(r_factors))
    out = []
    for (_, _, _, models), r in zip(jobs, computed, strict=True):
        k = models.k_source
        r_ss, r_st = r[:k, :k], r[:k, k:]
        coefs = []
        for alpha in alphas:
            a = np.vstack([r_ss, np.sqrt(alpha) * np.eye(k)])
            b = np.vstack([r_st, np.zeros((k, r_st.shape[1]))])
            coefs.append(np.linalg.lstsq(a, b, rcond=None)[0])
        out.append(np.stack(coefs))
    return out
