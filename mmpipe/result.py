"""What a fit returns: models, metrics and provenance (:class:`FitResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mmpipe import tasks as registry
from mmpipe.io.reduction import Reduction
from mmpipe.models.pair import PairModels
from mmpipe.models.pca import StandardPCA
from mmpipe.options import FitConfig
from mmpipe.stats.folds import FoldPlan

if TYPE_CHECKING:
    import zarr


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
    """A directed pair: cross-validated metrics and final models refitted on its final rows
    (all its rows; a given split's train rows)."""

    source: str
    target: str
    rows: int
    """Rows where both modalities are present among the plan's final rows (the rows its final
    models are fitted on: all rows, or a given split's train rows)."""
    rows_dropped: int
    """Final rows left out because one of the two is missing."""
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
    """Final models on the pair's final rows (``rows``); ridge coefficients for every α."""
    r2_weighted: np.ndarray | None = None
    """(n_splits, n_alpha) validation variance-weighted R² (1 − ΣSS_res / ΣSS_tot over the
    target's components, scikit-learn's multioutput="variance_weighted")."""
    cca_regs: np.ndarray | None = None
    """(n_reg,) the ``cca_reg`` value(s) of the fit."""
    cca_reg_index: int | None = None
    """With a ``cca_reg`` path: index of the value chosen (best validation total correlation);
    None without a path."""

    @property
    def cca_reg(self) -> float:
        """The ridge term of the pair's CCA (the chosen one with a path)."""
        return float(self.models.cca.reg)

    @property
    def alpha(self) -> float:
        return float(self.alphas[self.alpha_index])

    @property
    def coef(self) -> np.ndarray:
        """(k_source, k_target) ridge map at the chosen α."""
        return np.asarray(self.models.ridge.coef_[self.alpha_index])

    def summary(self) -> dict[str, Any]:
        i = self.alpha_index
        weighted: dict[str, Any] = {}
        by_alpha: dict[str, Any] = {}
        path: dict[str, Any] = {}
        if self.r2_weighted is not None:
            weighted = {
                "r2_weighted": float(self.r2_weighted[:, i].mean()),
                "r2_weighted_folds": self.r2_weighted[:, i].tolist(),
            }
            by_alpha = {"r2_weighted_by_alpha": self.r2_weighted.mean(axis=0).tolist()}
        if self.cca_reg_index is not None:
            path = {"cca_reg": self.cca_reg}
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
                **weighted,
            },
            "r2_by_alpha": self.r2.mean(axis=0).tolist(),
            **by_alpha,
            "procrustes": {
                "r2": float(self.procrustes_r2.mean()),
                "mse": float(self.procrustes_mse.mean()),
            },
            "cca": self.models.cca.correlations_.tolist(),
            "cca_validation": np.nanmean(self.cca_correlations, axis=0).tolist(),
            # The sum over the top k = every canonical component, mean over the splits.
            "cca_validation_total": float(np.mean(np.nansum(self.cca_correlations, axis=1))),
            **path,
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
    tasks: dict[str, list[Any]] = field(default_factory=dict)
    """Each cross-modal task's results in order, under its name (``mmpipe.tasks.TASKS``); also
    read as ``result.<name>``: ``result.classify``, ``result.transfer``, ``result.retrieval``,
    ``result.logistic``, ``result.random_features`` (empty when not asked)."""
    reductions: dict[str, Reduction] = field(default_factory=dict)
    """Wide modalities' sketches: their PCA and maps work on u = reduction.apply(x)."""

    def __getattr__(self, name: str) -> list[Any]:
        """``result.<task name>``: that task's results (empty when it did not run)."""
        if not name.startswith("_") and any(t.name == name for t in registry.TASKS):
            return self.__dict__.get("tasks", {}).get(name, [])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def write_tasks(self, run: zarr.Group) -> None:
        """Each task's results into the run's group of the results store (a group per task
        that has results)."""
        for task in registry.TASKS:
            if self.tasks.get(task.name):
                task.write(run, self.tasks[task.name])

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
            **{
                task.name: [one.summary() for one in self.tasks.get(task.name, [])]
                for task in registry.TASKS
                if not task.single
            },
            **{  # a task with one result at most: its object, or null
                task.name: next((one.summary() for one in self.tasks.get(task.name, [])), None)
                for task in registry.TASKS
                if task.single
            },
            "timings": self.timings,
            "fingerprint": self.fingerprint,
            "config": self.config.to_json(),
            "sketched": {
                name: {"columns": int(r.offset.size), "sketch_columns": r.width}
                for name, r in self.reductions.items()
            },
        }
