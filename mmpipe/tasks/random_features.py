"""Non-linear maps between modalities: ridge on random Fourier features of the source scores.

For each pair, φ(source PCA scores) (RBF random features, seeded) is regressed on the target's
PCA scores with the same ridge path as the linear map. A pass of its own over the pairs'
modalities gives the statistics of every split (:mod:`mmpipe.stats.nonlinear`), and R² and
MSE per split and α come from them as for the linear maps.

``random_features=D`` (``rff_gamma``); results in ``result.random_features``, stored under
``random_features/<s>--<t>/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from mmpipe.io.dataset import Dataset
from mmpipe.io.results import pair_key, write_array
from mmpipe.jsonable import to_json
from mmpipe.models.pair import PairModels
from mmpipe.models.rff import RandomFourierFeatures, median_gamma
from mmpipe.models.transfer import RidgeTransfer, regression_metrics
from mmpipe.stats.folds import FoldPlan
from mmpipe.stats.nonlinear import FeatureJob, feature_statistics, merged
from mmpipe.tables import Summary, arrow
from mmpipe.tasks.base import Task, TaskContext

if TYPE_CHECKING:
    from mmpipe.options import FitConfig

GAMMA_SAMPLE_ROWS = 1000


@dataclass(frozen=True, eq=False)
class RandomFeatureResult:
    """A pair's ridge map on random Fourier features of the source scores."""

    source: str
    target: str
    features: RandomFourierFeatures
    alphas: np.ndarray
    r2: np.ndarray
    """(n_splits, n_alpha) validation R² (uniform over the target's components)."""
    mse: np.ndarray
    alpha_index: int
    ridge: RidgeTransfer
    """Final map φ(source scores) → target scores on all rows, every α."""

    @property
    def alpha(self) -> float:
        return float(self.alphas[self.alpha_index])

    def summary(self) -> dict[str, Any]:
        i = self.alpha_index
        return {
            "source": self.source,
            "target": self.target,
            "features": self.features.n_features,
            "gamma": self.features.gamma,
            "alpha": self.alpha,
            "cv": {
                "r2": float(self.r2[:, i].mean()),
                "mse": float(self.mse[:, i].mean()),
                "r2_folds": self.r2[:, i].tolist(),
            },
            "r2_by_alpha": self.r2.mean(axis=0).tolist(),
        }


def sample_gamma(ds: Dataset, plan: FoldPlan, source: str, models: PairModels) -> float:
    """Median heuristic on the source's final-PCA scores of the first rows where present
    (among the final models' rows, ``plan.final_groups``, from the first of them on)."""
    final = None if plan.final_groups is None else np.isin(plan.assignment, plan.final_groups)
    start = 0 if final is None else int(np.argmax(final))
    stop = min(start + GAMMA_SAMPLE_ROWS, ds.n_rows)
    # A small sample, read in this process straight from the store.
    x = np.asarray(ds.arrays.read(source, start, stop), dtype=np.float64)
    present = ds.arrays.read_mask(source, start, stop)
    if final is not None:
        present = final[start:stop] if present is None else present & final[start:stop]
    if present is not None:
        x = x[present]
    return median_gamma(models.source_pca.transform(x))


def fit_random_features(
    ds: Dataset,
    plan: FoldPlan,
    split_models: dict[tuple[int, tuple[str, str]], PairModels],
    final_models: dict[tuple[str, str], PairModels],
    pairs: Sequence[tuple[str, str]],
    *,
    n_features: int,
    gamma: float | None,
    alphas: Sequence[float],
    seed: int,
) -> list[RandomFeatureResult]:
    """One pass for every pair; the ridge path and validation metrics from its statistics."""
    jobs = []
    for pair in pairs:
        models = [split_models[(s, pair)] for s in range(plan.n_splits)] + [final_models[pair]]
        k = max(m.source_pca.n_components_ for m in models)
        g = gamma if gamma is not None else sample_gamma(ds, plan, pair[0], final_models[pair])
        jobs.append(
            FeatureJob(
                name=f"{pair[0]}--{pair[1]}",
                source=pair[0],
                target=pair[1],
                source_offsets=[m.source_pca.mean_ for m in models],
                source_bases=[m.source_pca.basis_ for m in models],
                target_offsets=[m.target_pca.mean_ for m in models],
                target_bases=[m.target_pca.basis_ for m in models],
                features=RandomFourierFeatures(n_features, g, seed).fit(k),
            )
        )
    stats = feature_statistics(ds, plan, jobs)
    results = []
    final_groups = range(plan.n_groups) if plan.final_groups is None else plan.final_groups
    for job, pair in zip(jobs, pairs, strict=True):
        r2, mse = [], []
        for s, (train, validation) in enumerate(plan.splits):
            dim = n_features + job.target_bases[s].shape[1]
            ridge = RidgeTransfer(alphas).fit_moments(
                merged(stats, job.name, s, train, dim), n_features
            )
            split_r2, split_mse = regression_metrics(
                merged(stats, job.name, s, validation, dim),
                n_features,
                ridge.coef_,
                ridge.intercept_,
            )
            r2.append(split_r2)
            mse.append(split_mse)
        final_dim = n_features + job.target_bases[-1].shape[1]
        final = RidgeTransfer(alphas).fit_moments(
            merged(stats, job.name, plan.n_splits, final_groups, final_dim), n_features
        )
        r2_all = np.stack(r2)
        results.append(
            RandomFeatureResult(
                source=pair[0],
                target=pair[1],
                features=job.features,
                alphas=np.asarray(alphas, dtype=np.float64),
                r2=r2_all,
                mse=np.stack(mse),
                alpha_index=int(np.argmax(r2_all.mean(axis=0))),
                ridge=final,
            )
        )
    return results


class RandomFeatures(Task):
    name = "random_features"
    own_pass = True
    is_map = True
    table_title = "Non-linear maps: ridge on random Fourier features"
    table_columns = ("source → target", "D", "γ", "α", "CV R²", "linear CV R²")

    def active(self, config: FitConfig) -> bool:
        return config.random_features > 0

    def run(self, context: TaskContext) -> list[Any]:
        """Ridge on random Fourier features of the source scores, every pair."""
        config, models = context.config, context.models
        return fit_random_features(
            context.prepared.dataset,
            context.prepared.plan,
            models.split_models,
            models.final_models,
            context.prepared.pairs,
            n_features=config.random_features,
            gamma=config.rff_gamma,
            alphas=config.alphas,
            seed=config.seed,
        )

    def write(self, run: zarr.Group, results: list[RandomFeatureResult]) -> None:
        nonlinear = run.create_group(self.name)
        for rf in results:
            g = nonlinear.create_group(pair_key(rf.source, rf.target))
            g.attrs.update(to_json(rf.summary()))
            # φ acts on the scores of the pair's final source PCA (pairs/<s>--<t>/source_*),
            # the map predicts the scores of its target PCA (target_*).
            g.attrs["pcas"] = f"pairs/{pair_key(rf.source, rf.target)}"
            write_array(g, "alphas", rf.alphas, ["alpha"])
            write_array(g, "weights", rf.features.weights_, ["source_component", "feature"])
            write_array(g, "offsets", rf.features.offsets_, ["feature"])
            write_array(g, "r2", rf.r2, ["split", "alpha"])
            write_array(g, "mse", rf.mse, ["split", "alpha"])
            write_array(g, "coef", rf.ridge.coef_, ["alpha", "feature", "target_component"])
            write_array(g, "intercept", rf.ridge.intercept_, ["alpha", "target_component"])

    def table_rows(self, summary: Summary) -> list[tuple[str, ...]]:
        linear = {(p["source"], p["target"]): p["cv"]["r2"] for p in summary["pairs"]}
        return [
            (
                arrow(rf),
                str(rf["features"]),
                f"{rf['gamma']:.3g}",
                f"{rf['alpha']:g}",
                f"{rf['cv']['r2']:.4f}",
                f"{linear[rf['source'], rf['target']]:.4f}",
            )
            for rf in summary.get(self.name) or []
        ]

    def line(self, item: Summary) -> str:
        return (
            f"non-linear {arrow(item)}: CV R² {item['cv']['r2']:.4f} with {item['features']:d} "
            f"random features (γ={item['gamma']:.3g}) at α={item['alpha']:g}"
        )
