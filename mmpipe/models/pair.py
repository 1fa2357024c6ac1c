"""Everything fitted for one directed pair (source → target) from its joint raw statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmpipe.models.linalg import block_diagonal
from mmpipe.models.pca import StandardPCA
from mmpipe.models.transfer import (
    CCA,
    ProcrustesTransfer,
    RidgeTransfer,
    canonical_correlations,
    regression_metrics,
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


def fit_pair(
    raw: Moments,
    d_source: int,
    *,
    source_components: int | float | None,
    target_components: int | float | None,
    alphas: Sequence[float],
    cca_reg: float,
    source_pca: StandardPCA | None = None,
    target_pca: StandardPCA | None = None,
) -> PairModels:
    """Fit both PCAs (unless given, e.g. shared between pairs) and every map."""
    idx_s = np.arange(d_source)
    idx_t = np.arange(d_source, raw.dim)
    spca = source_pca or StandardPCA(source_components).fit_moments(raw.take(idx_s))
    tpca = target_pca or StandardPCA(target_components).fit_moments(raw.take(idx_t))
    partial = PairModels(spca, tpca, RidgeTransfer(alphas), ProcrustesTransfer(), CCA(cca_reg))
    reduced = partial.score_moments(raw)
    k = spca.n_components_
    partial.ridge.fit_moments(reduced, k)
    partial.procrustes.fit_moments(reduced, k)
    partial.cca.fit_moments(reduced, k)
    return partial


def score_pair(models: PairModels, raw_validation: Moments) -> PairScores:
    """Validation metrics from the validation rows' raw statistics."""
    reduced = models.score_moments(raw_validation)
    k = models.k_source
    r2, mse = regression_metrics(reduced, k, models.ridge.coef_, models.ridge.intercept_)
    pr2, pmse = regression_metrics(
        reduced, k, models.procrustes.coef_[None], models.procrustes.intercept_[None]
    )
    return PairScores(
        r2=r2,
        mse=mse,
        procrustes_r2=float(pr2[0]),
        procrustes_mse=float(pmse[0]),
        cca_correlations=canonical_correlations(reduced, k, models.cca),
    )
