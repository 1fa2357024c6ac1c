"""Everything fitted for one directed pair (source → target) from its joint raw statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from mmpipe.models.linalg import block_diagonal
from mmpipe.models.pca import StandardPCA
from mmpipe.models.transfer import (
    CCA,
    ProcrustesTransfer,
    RidgeTransfer,
    SingularCovariance,
    canonical_correlations,
    regression_metrics,
    weighted_r2,
)
from mmpipe.stats.moments import Moments


@dataclass(frozen=True, eq=False)
class PairModels:
    """Scalers/PCAs of both sides and the maps between their scores."""

    source_pca: StandardPCA
    target_pca: StandardPCA
    ridge: RidgeTransfer
    procrustes: ProcrustesTransfer
    cca: CCA
    """The CCA of the chosen ``cca_reg`` (of the only one, without a path)."""
    cca_path: tuple[CCA | None, ...] = ()
    """One CCA per value of a ``cca_reg`` path, in order; None where that value is 0 and a
    side's covariance is singular. Empty without a path."""

    @property
    def k_source(self) -> int:
        return self.source_pca.n_components_

    def score_moments(self, raw: Moments) -> Moments:
        """Statistics of [t_source | t_target] from those of the raw [x_source | x_target]."""
        offset = np.concatenate([self.source_pca.mean_, self.target_pca.mean_])
        basis = block_diagonal(self.source_pca.basis_, self.target_pca.basis_)
        return raw.project(offset, basis)


@dataclass(frozen=True)
class PairScores:
    """Validation metrics of one split."""

    r2: np.ndarray
    """(n_alpha,) ridge R² per α."""
    mse: np.ndarray
    """(n_alpha,) ridge MSE per α."""
    procrustes_r2: float
    procrustes_mse: float
    cca_correlations: np.ndarray
    """(n_canonical,) correlations of the canonical variates on validation rows."""
    r2_weighted: np.ndarray | None = None
    """(n_alpha,) ridge variance-weighted R² per α (1 − ΣSS_res / ΣSS_tot)."""
    cca_path_correlations: tuple[np.ndarray | None, ...] = ()
    """With a ``cca_reg`` path: ``cca_correlations`` of each value's CCA (None: not fitted)."""


def fit_pair(
    raw: Moments,
    d_source: int,
    *,
    source_components: int | float | None,
    target_components: int | float | None,
    alphas: Sequence[float],
    cca_reg: float | Sequence[float],
    source_pca: StandardPCA | None = None,
    target_pca: StandardPCA | None = None,
) -> PairModels:
    """Fit both PCAs (unless given, e.g. shared between pairs) and every map.

    ``cca_reg`` a sequence: a CCA per value (``cca_path``); ``cca`` is the first one fitted
    until the engine chooses. :class:`SingularCovariance` when no value gives a CCA."""
    idx_s = np.arange(d_source)
    idx_t = np.arange(d_source, raw.dim)
    spca = source_pca or StandardPCA(source_components).fit_moments(raw.take(idx_s))
    tpca = target_pca or StandardPCA(target_components).fit_moments(raw.take(idx_t))
    regs = [float(cca_reg)] if isinstance(cca_reg, int | float) else [float(r) for r in cca_reg]
    partial = PairModels(spca, tpca, RidgeTransfer(alphas), ProcrustesTransfer(), CCA(regs[0]))
    reduced = partial.score_moments(raw)
    k = spca.n_components_
    partial.ridge.fit_moments(reduced, k)
    partial.procrustes.fit_moments(reduced, k)
    if len(regs) == 1 and isinstance(cca_reg, int | float):
        partial.cca.fit_moments(reduced, k)
        return partial
    path: list[CCA | None] = []
    failed: SingularCovariance | None = None
    for reg in regs:
        try:
            path.append(CCA(reg).fit_moments(reduced, k))
        except SingularCovariance as exc:
            path.append(None)
            failed = failed or exc
    first = next((c for c in path if c is not None), None)
    if first is None:
        assert failed is not None
        raise failed
    return PairModels(spca, tpca, partial.ridge, partial.procrustes, first, tuple(path))


def score_pair(models: PairModels, raw_validation: Moments) -> PairScores:
    """Validation metrics from the validation rows' raw statistics."""
    reduced = models.score_moments(raw_validation)
    k = models.k_source
    r2, mse = regression_metrics(reduced, k, models.ridge.coef_, models.ridge.intercept_)
    r2_weighted = weighted_r2(reduced, k, models.ridge.coef_, models.ridge.intercept_)
    pr2, pmse = regression_metrics(
        reduced, k, models.procrustes.coef_[None], models.procrustes.intercept_[None]
    )
    return PairScores(
        r2=r2,
        mse=mse,
        procrustes_r2=float(pr2[0]),
        procrustes_mse=float(pmse[0]),
        cca_correlations=canonical_correlations(reduced, k, models.cca),
        r2_weighted=r2_weighted,
        cca_path_correlations=tuple(
            None if c is None else canonical_correlations(reduced, k, c)
            for c in models.cca_path
        ),
    )


def choose_cca(
    scores: Sequence[PairScores], final: PairModels
) -> tuple[np.ndarray, int | None, PairModels]:
    """The validation canonical correlations (n_splits, n_canonical; NaN-padded) of the
    pair's CCA and, with a ``cca_reg`` path, the index of the value chosen and the final
    models with that value's CCA.

    The choice: the best validation total correlation (the sum of a split's validation
    canonical correlations over every component, mean over the splits), as α by R²; a value
    whose CCA could not be fitted on some split or on the final rows is never chosen."""
    index: int | None = None
    if final.cca_path:
        totals = np.full((len(scores), len(final.cca_path)), np.nan)
        for i, sc in enumerate(scores):
            for j, c in enumerate(sc.cca_path_correlations):
                if c is not None:
                    totals[i, j] = c.sum()
        mean = totals.mean(axis=0)
        usable = ~np.isnan(mean) & np.array([c is not None for c in final.cca_path])
        if not usable.any():
            raise SingularCovariance(
                "no value of the cca_reg path gives a CCA on every split: a PCA scores' "
                "covariance is singular"
            )
        index = int(np.argmax(np.where(usable, mean, -np.inf)))
        chosen = final.cca_path[index]
        assert chosen is not None
        final = replace(final, cca=chosen)
        per_split = [sc.cca_path_correlations[index] for sc in scores]
    else:
        per_split = [sc.cca_correlations for sc in scores]
    width = max(c.size for c in per_split if c is not None)
    out = np.full((len(scores), width), np.nan)
    for i, c in enumerate(per_split):
        assert c is not None
        out[i, : c.size] = c
    return out, index, final
