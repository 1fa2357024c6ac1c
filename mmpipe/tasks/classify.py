"""Classification of the labels from the concatenated PCA scores of one or more modalities
(fused), with a ridge classifier for every α, cross-validated in the scoring pass.

``classify=["image", "image+text"]``; results in ``result.classify``, stored under
``classify/<a+b>/``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from mmpipe.errors import ConfigError
from mmpipe.io.results import write_array, write_pca
from mmpipe.jsonable import to_json
from mmpipe.models.classify import classification_metrics
from mmpipe.options import feature_set
from mmpipe.stats.scoring import ScoringResult
from mmpipe.tables import Summary, features, task_row
from mmpipe.tasks.base import ScoringRequest, Task, TaskContext
from mmpipe.tasks.classifier import (
    CONFUSION_DIMS,
    Classifier,
    best_alpha,
    classifier_scorer,
    mean_metrics,
)

if TYPE_CHECKING:
    from mmpipe.io.dataset import Dataset
    from mmpipe.options import FitConfig

TABLE_TITLE = "Classification from PCA scores (ridge classifier, logistic)"
TABLE_COLUMNS = ("features", "penalty", "accuracy", "balanced acc.", "macro F1", "chance")
TABLE_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "chance")
"""The classification table (logistic regression adds its rows to it) and its metrics."""


def parse_feature_sets(
    sets: Iterable[str | Sequence[str]] | None, names: Sequence[str]
) -> tuple[tuple[str, ...], ...]:
    """Normalize 'a+b' strings or sequences of modality names; checks every name."""
    out: list[tuple[str, ...]] = []
    for item in sets or ():
        features = feature_set(item)
        for name in features:
            if name not in names:
                raise ConfigError(
                    f"classify feature set {'+'.join(features)!r} names modality {name!r}, "
                    f"which the dataset does not have (modalities: {', '.join(names)})."
                )
        if len(set(features)) != len(features) or not features:
            raise ConfigError(f"classify feature set {item!r} repeats a modality or is empty.")
        if features not in out:
            out.append(features)
    return tuple(out)


def needs_labels(task: str, dataset: Dataset) -> None:
    """Refuse a task that learns the labels on a dataset without them."""
    if dataset.label_array is None:
        raise ConfigError(
            f"{task} needs labels, but {dataset.url!r} has no 'labels' array: add labels (n,) "
            "integer classes to the dataset, or drop the classification options."
        )


@dataclass(frozen=True, eq=False)
class ClassifyResult:
    """Cross-validated classification from the fused scores of ``features``."""

    features: tuple[str, ...]
    alphas: np.ndarray
    classes: np.ndarray
    confusion: np.ndarray
    """(n_splits, n_alpha, C, C) validation confusion matrices (rows: true, columns: predicted)."""
    alpha_index: int
    """The α with the best mean validation accuracy."""
    model: Classifier
    """Refitted on all rows (every α)."""

    @property
    def name(self) -> str:
        return "+".join(self.features)

    @property
    def alpha(self) -> float:
        return float(self.alphas[self.alpha_index])

    def fold_metrics(self, index: int | None = None) -> list[dict[str, float]]:
        a = self.alpha_index if index is None else index
        return [classification_metrics(c) for c in self.confusion[:, a]]

    def summary(self) -> dict[str, Any]:
        folds = self.fold_metrics()
        return {
            "features": list(self.features),
            "alpha": self.alpha,
            "cv": mean_metrics(folds),
            "accuracy_by_alpha": [
                float(np.mean([m["accuracy"] for m in self.fold_metrics(a)]))
                for a in range(self.alphas.size)
            ],
            "confusion": self.confusion[:, self.alpha_index].sum(axis=0).astype(int).tolist(),
        }


class Classify(Task):
    name = "classify"
    table_title = TABLE_TITLE
    table_columns = TABLE_COLUMNS

    def active(self, config: FitConfig) -> bool:
        return bool(config.classify)

    def check(self, config: FitConfig, dataset: Dataset) -> None:
        parse_feature_sets(config.classify, dataset.names)
        if config.classify:
            needs_labels("classify", dataset)

    def learns_labels(self, config: FitConfig) -> bool:
        return self.active(config)

    def modalities(self, config: FitConfig) -> set[str]:
        return {name for features in config.classify for name in features}

    def score(self, context: TaskContext) -> ScoringRequest:
        sets = parse_feature_sets(context.config.classify, context.prepared.dataset.names)
        scorers = [
            classifier_scorer(f"classify:{'+'.join(f)}", context.classifiers(f)[:-1]) for f in sets
        ]

        def collect(scored: ScoringResult) -> list[Any]:
            out = []
            for f in sets:
                matrices = scored.confusions[f"classify:{'+'.join(f)}"]
                out.append(
                    ClassifyResult(
                        f,
                        np.asarray(context.config.alphas),
                        context.classes,
                        matrices,
                        best_alpha(matrices),
                        context.classifiers(f)[-1],
                    )
                )
            return out

        return ScoringRequest(collect, scorers)

    def write(self, run: zarr.Group, results: list[ClassifyResult]) -> None:
        tasks = run.create_group(self.name)
        for c in results:
            g = tasks.create_group(c.name)
            g.attrs.update(to_json({"features": list(c.features), "alpha": c.alpha}))
            write_array(g, "alphas", c.alphas, ["alpha"])
            write_array(g, "classes", c.classes, ["class"])
            write_array(g, "confusion", c.confusion.astype(np.int64), CONFUSION_DIMS)
            model = c.model.model
            write_array(g, "coef", model.coef_, ["alpha", "feature_component", "class"])
            write_array(g, "intercept", model.intercept_, ["alpha", "class"])
            # The final classifier's own scaler + PCA of each feature modality: fitted on the
            # rows where every one of them is present, so not the modality's when masks exist.
            pcas = g.create_group("pcas")
            for name, pca in zip(c.features, c.model.pcas, strict=True):
                write_pca(pcas.create_group(name), pca)

    def table_rows(self, summary: Summary) -> list[tuple[str, ...]]:
        return [
            (features(c), f"α={c['alpha']:g}", *(f"{c['cv'][k]:.4f}" for k in TABLE_METRICS))
            for c in summary.get(self.name) or []
        ]

    def artifact_rows(self, summary: Summary) -> list[dict[str, Any]]:
        return [
            task_row("classify", features(c), c["alpha"], c["cv"])
            for c in summary.get(self.name, [])
        ]

    def line(self, item: Summary) -> str:
        return (
            f"classify from {features(item)}: CV accuracy {item['cv']['accuracy']:.4f} "
            f"(chance {item['cv']['chance']:.4f}) at α={item['alpha']:g}"
        )
