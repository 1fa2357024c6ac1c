"""Partial least squares per pair, from the statistics the fit already has (no pass).

On each pair's standardized PCA scores (the scores the ridge map uses: ``pairs/<s>--<t>/``'s
source and target PCAs), from the same joint statistics as the pair's other maps
(:mod:`mmpipe.models.pls`):

- PLS-SVD on the final models' rows: the singular values of the scores' cross-covariance and its
  weights (scikit-learn's ``PLSSVD(scale=False)`` on those scores);
- PLS regression source → target (scikit-learn's ``PLSRegression(scale=False)``) with 1..n
  components, n = min(``pls``, source components): R² and MSE of every split from its
  validation statistics, the number of components with the best mean R², and the maps of
  every number of components refitted on the final models' rows (all rows, or a given
  split's train rows).

The work is done before the shared scoring pass and adds nothing to it: a fit that asks for
PLS alone runs no scoring pass. Results in ``result.pls``, stored under ``pls/<s>--<t>/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from mmpipe.io.results import pair_key, write_array
from mmpipe.jsonable import to_json
from mmpipe.models.pls import PLSSVD, PLSRegression
from mmpipe.models.transfer import regression_metrics
from mmpipe.stats.scoring import ScoringResult
from mmpipe.tables import Summary, arrow
from mmpipe.tasks.base import ScoringRequest, Task, TaskContext

if TYPE_CHECKING:
    from mmpipe.options import FitConfig


@dataclass(frozen=True, eq=False)
class PLSResult:
    """A pair's PLS-SVD and PLS regression map, on its PCA scores."""

    source: str
    target: str
    svd: PLSSVD
    """PLS-SVD of the final rows' scores."""
    r2: np.ndarray
    """(n_splits, n_components) validation R² (uniform over the target's components) of the
    map with 1, 2, ... components."""
    mse: np.ndarray
    n_components: int
    """The number of components chosen: the best mean validation R² (the fewest on a tie)."""
    regression: PLSRegression
    """The maps with 1..n components, refitted on the final rows."""

    @property
    def coef(self) -> np.ndarray:
        """(k_source, k_target) the chosen map: target scores ≈ source scores @ coef + intercept."""
        return self.regression.coef_[self.n_components - 1]

    @property
    def intercept(self) -> np.ndarray:
        return self.regression.intercept_[self.n_components - 1]

    def summary(self) -> dict[str, Any]:
        i = self.n_components - 1
        return {
            "source": self.source,
            "target": self.target,
            "n_components": self.n_components,
            "components_tried": int(self.r2.shape[1]),
            "singular_values": self.svd.singular_values_.tolist(),
            "cv": {
                "r2": float(self.r2[:, i].mean()),
                "mse": float(self.mse[:, i].mean()),
                "r2_folds": self.r2[:, i].tolist(),
            },
            "r2_by_components": self.r2.mean(axis=0).tolist(),
            "r2_splits": self.r2.tolist(),
        }


def fit_pls(context: TaskContext, pair: tuple[str, str], n_components: int) -> PLSResult:
    """One pair's PLS from the training and validation statistics of every split."""
    stats, plan = context.stats, context.prepared.plan
    splits = context.split_models(pair)
    final = context.models.final_models[pair]
    n_max = min(n_components, *(m.k_source for m in [*splits, final]))
    r2, mse = [], []
    for models, (train, validation) in zip(splits, plan.splits, strict=True):
        k = models.k_source
        fitted = PLSRegression(n_max).fit_moments(
            models.score_moments(stats.moments(list(pair), train)), k
        )
        split_r2, split_mse = regression_metrics(
            models.score_moments(stats.moments(list(pair), validation)),
            k,
            fitted.coef_,
            fitted.intercept_,
        )
        r2.append(split_r2)
        mse.append(split_mse)
    r2_all = np.stack(r2)
    # The final models' rows: all rows, or a given split's train rows (FoldPlan.final_groups).
    final_rows = getattr(plan, "final_groups", None)
    reduced = final.score_moments(stats.moments(list(pair), final_rows))
    return PLSResult(
        source=pair[0],
        target=pair[1],
        svd=PLSSVD(n_components).fit_moments(reduced, final.k_source),
        r2=r2_all,
        mse=np.stack(mse),
        n_components=int(np.argmax(r2_all.mean(axis=0))) + 1,
        regression=PLSRegression(n_max).fit_moments(reduced, final.k_source),
    )


class PLS(Task):
    name = "pls"
    is_map = True
    table_title = "Partial least squares (on the pairs' PCA scores)"
    table_columns = (
        "source → target",
        "components",
        "PLS-SVD σ₁",
        "CV R²",
        "ridge CV R²",
    )

    def active(self, config: FitConfig) -> bool:
        return config.pls > 0

    def score(self, context: TaskContext) -> ScoringRequest:
        """Everything from the statistics, before the pass; nothing added to it."""
        results = [fit_pls(context, pair, context.config.pls) for pair in context.prepared.pairs]

        def collect(scored: ScoringResult) -> list[Any]:
            return list(results)

        return ScoringRequest(collect)

    def write(self, run: zarr.Group, results: list[PLSResult]) -> None:
        group = run.create_group(self.name)
        for r in results:
            g = group.create_group(pair_key(r.source, r.target))
            g.attrs.update(to_json(r.summary()))
            # On the scores of the pair's final PCAs (pairs/<s>--<t>/source_*, target_*).
            g.attrs["pcas"] = f"pairs/{pair_key(r.source, r.target)}"
            write_array(g, "singular_values", r.svd.singular_values_, ["component"])
            write_array(g, "x_weights", r.svd.x_weights_, ["source_component", "component"])
            write_array(g, "y_weights", r.svd.y_weights_, ["target_component", "component"])
            write_array(g, "r2", r.r2, ["split", "n_components"])
            write_array(g, "mse", r.mse, ["split", "n_components"])
            write_array(
                g,
                "coef",
                r.regression.coef_,
                ["n_components", "source_component", "target_component"],
            )
            write_array(
                g, "intercept", r.regression.intercept_, ["n_components", "target_component"]
            )

    def table_rows(self, summary: Summary) -> list[tuple[str, ...]]:
        ridge = {(p["source"], p["target"]): p["cv"]["r2"] for p in summary["pairs"]}
        return [
            (
                arrow(r),
                f"{r['n_components']:d} of {r['components_tried']:d}",
                f"{r['singular_values'][0]:.4g}" if r["singular_values"] else "",
                f"{r['cv']['r2']:.4f}",
                f"{ridge[r['source'], r['target']]:.4f}",
            )
            for r in summary.get(self.name) or []
        ]

    def line(self, item: Summary) -> str:
        sigma = item["singular_values"]
        first = f"; PLS-SVD σ₁ {sigma[0]:.4g}" if sigma else ""
        return (
            f"PLS {arrow(item)}: CV R² {item['cv']['r2']:.4f} with {item['n_components']:d} "
            f"of {item['components_tried']:d} components{first}"
        )
