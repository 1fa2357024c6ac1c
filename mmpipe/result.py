"""What a fit returns: models, metrics and provenance (:class:`FitResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmpipe.crossmodal import (
    ClassifyResult,
    LogisticResult,
    RetrievalResult,
    TransferResult,
)
from mmpipe.io.reduction import Reduction
from mmpipe.models.pair import PairModels
from mmpipe.models.pca import StandardPCA
from mmpipe.nonlinear import RandomFeatureResult
from mmpipe.options import FitConfig
from mmpipe.stats.folds import FoldPlan


@dataclass(frozen=True, eq=False)
class ModalityResult:
    """A modality's scaler and PCA fitted on every row where it is present."""

    name: str
    rows: int
    """Rows where the modality is present."""
    pca: StandardPCA
    zero_variance_columns: np.ndarray
    """Indices of columns with zero variance (scaled by 1, as scikit-learn)."""


@dataclass(frozen=True, eq=False)
class PairResult:
    """A directed pair: cross-validated metrics and final models refitted on all its rows."""

    source: str
    target: str
    rows: int
    """Rows where both modalities are present (the rows this pair is fitted on)."""
    rows_dropped: int
    """Rows left out because one of the two is missing."""
    alphas: np.ndarray
    """(n_alpha,) the α path."""
    r2: np.ndarray
    """(n_splits, n_alpha) validation R² of the ridge map."""
    mse: np.ndarray
    """(n_splits, n_alpha) validation MSE of the ridge map."""
    procrustes_r2: np.ndarray
    """(n_splits,) validation R² of the orthogonal map."""
    procrustes_mse: np.ndarray
    cca_correlations: np.ndarray
    """(n_splits, n_canonical) validation canonical correlations (NaN-padded)."""
    alpha_index: int
    """Index of the chosen α (best mean validation R²)."""
    models: PairModels
    """Final models on all rows of the pair; ridge coefficients for every α."""

    @property
    def alpha(self) -> float:
        return float(self.alphas[self.alpha_index])

    @property
    def coef(self) -> np.ndarray:
        """(k_source, k_target) ridge map at the chosen α."""
        return np.asarray(self.models.ridge.coef_[self.alpha_index])

    def summary(self) -> dict[str, Any]:
        i = self.alpha_index
        return {
            "source": self.source,
            "target": self.target,
            "rows": self.rows,
            "rows_dropped": self.rows_dropped,
            "alpha": self.alpha,
            "components": [
                self.models.source_pca.n_components_,
                self.models.target_pca.n_components_,
            ],
            "cv": {
                "r2": float(self.r2[:, i].mean()),
                "mse": float(self.mse[:, i].mean()),
                "r2_folds": self.r2[:, i].tolist(),
                "mse_folds": self.mse[:, i].tolist(),
            },
            "r2_by_alpha": self.r2.mean(axis=0).tolist(),
            "procrustes": {
                "r2": float(self.procrustes_r2.mean()),
                "mse": float(self.procrustes_mse.mean()),
            },
            "cca": self.models.cca.correlations_.tolist(),
            "cca_validation": np.nanmean(self.cca_correlations, axis=0).tolist(),
        }


@dataclass(frozen=True, eq=False)
class FitResult:
    """What ``fit`` returns: models, metrics and provenance."""

    config: FitConfig
    dataset: str
    n_rows: int
    plan: FoldPlan
    modalities: dict[str, ModalityResult]
    pairs: list[PairResult]
    fingerprint: str
    timings: dict[str, float]
    run_id: str
    results: str | None = None
    """Where the run was written (None if not written)."""
    started: str = ""
    classes: np.ndarray | None = None
    classify: list[ClassifyResult] = field(default_factory=list)
    """Classification from (fused) modalities, in the order asked."""
    transfer: list[TransferResult] = field(default_factory=list)
    """Cross-modal transfer, one per pair (when asked)."""
    retrieval: list[RetrievalResult] = field(default_factory=list)
    """Cross-modal retrieval, one per pair (when asked)."""
    logistic: list[LogisticResult] = field(default_factory=list)
    """Multinomial logistic regression per classify set (when asked)."""
    random_features: list[RandomFeatureResult] = field(default_factory=list)
    """Non-linear (random Fourier feature) maps, one per pair (when asked)."""
    reductions: dict[str, Reduction] = field(default_factory=dict)
    """Wide modalities' sketches: their PCA and maps work on u = reduction.apply(x)."""

    def pair(self, source: str, target: str) -> PairResult:
        for p in self.pairs:
            if (p.source, p.target) == (source, target):
                return p
        raise KeyError(f"no pair {source}->{target} in this fit")

    def summary(self) -> dict[str, Any]:
        """The JSON printed by ``mmpipe fit --json``."""
        return {
            "run_id": self.run_id,
            "results": self.results,
            "dataset": self.dataset,
            "rows": self.n_rows,
            "plan": self.plan.describe(),
            "modalities": {
                name: {
                    "rows": m.rows,
                    "components": m.pca.n_components_,
                    "explained_variance_ratio": float(m.pca.explained_variance_ratio_.sum()),
                    "zero_variance_columns": m.zero_variance_columns.tolist(),
                }
                for name, m in self.modalities.items()
            },
            "pairs": [p.summary() for p in self.pairs],
            "classify": [c.summary() for c in self.classify],
            "transfer": [t.summary() for t in self.transfer],
            "retrieval": [r.summary() for r in self.retrieval],
            "logistic": [g.summary() for g in self.logistic],
            "random_features": [r.summary() for r in self.random_features],
            "timings": self.timings,
            "fingerprint": self.fingerprint,
            "config": self.config.to_json(),
            "sketched": {
                name: {"columns": int(r.offset.size), "sketch_columns": r.width}
                for name, r in self.reductions.items()
            },
        }
