"""Multinomial logistic regression on the fused scores of each classify feature set.

It starts from the classification task's classifiers (their PCAs give the scores): one pass
holds those scores on the workers, where each L-BFGS iteration is one pass over them
(:mod:`mmpipe.models.logistic`); this runs before the scoring pass, which then counts the
logistic models' confusion matrices with everything else.

``logistic=True`` (needs ``classify``); results in ``result.logistic``, stored under
``logistic/<a+b>/``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from mmpipe.io.results import write_array
from mmpipe.jsonable import to_json
from mmpipe.models.classify import classification_metrics
from mmpipe.models.logistic import LogisticFit, fit_stacked_logistic
from mmpipe.stats.held import hold_scores
from mmpipe.stats.scoring import LinearScorer, ScoringResult
from mmpipe.tables import Summary, features, task_row
from mmpipe.tasks.base import ScoringRequest, Task, TaskContext
from mmpipe.tasks.classifier import CONFUSION_DIMS, Classifier, mean_metrics
from mmpipe.tasks.classify import TABLE_COLUMNS, TABLE_METRICS, TABLE_TITLE, parse_feature_sets

if TYPE_CHECKING:
    from mmpipe.options import FitConfig


@dataclass(frozen=True, eq=False)
class LogisticResult:
    """Multinomial logistic regression on the fused scores of ``features``, cross-validated."""

    features: tuple[str, ...]
    C: float
    classes: np.ndarray
    confusion: np.ndarray
    """(n_splits, C, C) validation confusion matrices."""
    coef: np.ndarray
    """(k, C) of the final model (the plan's final rows), on the final classifier's scores."""
    intercept: np.ndarray
    iterations: int
    passes: int
    """Dask passes over the held scores (one per loss-and-gradient evaluation)."""
    converged: bool

    @property
    def name(self) -> str:
        return "+".join(self.features)

    def summary(self) -> dict[str, Any]:
        folds = [classification_metrics(c) for c in self.confusion]
        return {
            "features": list(self.features),
            "C": self.C,
            "cv": mean_metrics(folds),
            "iterations": self.iterations,
            "passes": self.passes,
            "converged": self.converged,
        }


def stacked_affine(models: Sequence[Classifier]) -> tuple[np.ndarray, np.ndarray]:
    """offsets (M, d) and bases (M, d, k_max) of several classifiers' score maps; bases with
    fewer components are padded with zero columns (scores that are always 0)."""
    affine = [m.raw_affine() for m in models]
    k = max(basis.shape[1] for _, basis in affine)
    offsets = np.stack([offset for offset, _ in affine])
    bases = np.zeros((len(affine), affine[0][1].shape[0], k))
    for i, (_, basis) in enumerate(affine):
        bases[i, :, : basis.shape[1]] = basis
    return offsets, bases


def logistic_scorer(
    name: str, features: tuple[str, ...], offsets: np.ndarray, bases: np.ndarray,
    fit: LogisticFit,
) -> LinearScorer:  # fmt: skip
    """Scorer of the logistic models of each split (argmax of the logits, one "α")."""
    maps, biases = [], []
    for s in range(offsets.shape[0]):
        m = bases[s] @ fit.coef[s]  # (d, C)
        maps.append(m)
        biases.append(fit.intercept[s] - offsets[s] @ m)
    return LinearScorer(name, features, features, np.stack(maps), np.stack(biases), 1)


class Logistic(Task):
    name = "logistic"
    table_title = TABLE_TITLE
    table_columns = TABLE_COLUMNS

    def active(self, config: FitConfig) -> bool:
        return bool(config.logistic)

    def score(self, context: TaskContext) -> ScoringRequest:
        """The held-scores pass and L-BFGS of every feature set, now; its scorers join the
        scoring pass."""
        config, codes = context.config, context.label_codes
        ds, plan = context.prepared.dataset, context.prepared.plan
        if codes is None:
            return ScoringRequest(lambda scored: [])
        fits: dict[tuple[str, ...], LogisticFit] = {}
        scorers = []
        for f in parse_feature_sets(config.classify, ds.names):
            offsets, bases = stacked_affine(context.classifiers(f))
            held = hold_scores(ds, plan, f, codes, offsets, bases)
            fits[f] = fit_stacked_logistic(
                functools.partial(held.loss_and_gradient, n_classes=context.n_classes),
                held.n_models, held.k, context.n_classes, held.n_train, C=config.logistic_c,
            )  # fmt: skip
            scorers.append(
                logistic_scorer(f"logistic:{'+'.join(f)}", f, offsets[:-1], bases[:-1], fits[f])
            )

        def collect(scored: ScoringResult) -> list[Any]:
            return [
                LogisticResult(
                    features=f,
                    C=config.logistic_c,
                    classes=context.classes,
                    confusion=scored.confusions[f"logistic:{'+'.join(f)}"][:, 0],
                    coef=fit.coef[-1][: context.classifiers(f)[-1].model.coef_.shape[1]],
                    intercept=fit.intercept[-1],
                    iterations=fit.iterations,
                    passes=fit.passes,
                    converged=fit.converged,
                )
                for f, fit in fits.items()
            ]

        return ScoringRequest(collect, scorers)

    def write(self, run: zarr.Group, results: list[LogisticResult]) -> None:
        fitted = run.create_group(self.name)
        for lr in results:
            g = fitted.create_group(lr.name)
            g.attrs.update(to_json(lr.summary()))
            # Its scores are those of the final ridge classifier of the same set.
            g.attrs["pcas"] = f"classify/{lr.name}/pcas"
            write_array(g, "classes", lr.classes, ["class"])
            dims = CONFUSION_DIMS[:1] + CONFUSION_DIMS[2:]
            write_array(g, "confusion", lr.confusion.astype(np.int64), dims)
            write_array(g, "coef", lr.coef, ["feature_component", "class"])
            write_array(g, "intercept", lr.intercept, ["class"])

    def table_rows(self, summary: Summary) -> list[tuple[str, ...]]:
        return [
            (
                f"{features(lr)} (logistic)",
                f"C={lr['C']:g}",
                *(f"{lr['cv'][k]:.4f}" for k in TABLE_METRICS),
            )
            for lr in summary.get(self.name) or []
        ]

    def artifact_rows(self, summary: Summary) -> list[dict[str, Any]]:
        """α = 1/C, comparable with the ridge classifier's α."""
        return [
            task_row("logistic", features(lr), 1.0 / lr["C"], lr["cv"])
            for lr in summary.get(self.name, [])
        ]

    def line(self, item: Summary) -> str:
        return (
            f"logistic regression from {features(item)}: CV accuracy "
            f"{item['cv']['accuracy']:.4f} at C={item['C']:g} ({item['passes']:d} L-BFGS passes)"
        )
