"""The ridge classifier that several tasks share, and its scorer in the scoring pass.

A :class:`Classifier` comes from the statistics of the first pass (no pass of its own): PCAs of
its feature modalities, then a ridge classifier on their concatenated scores, for every α.
Its predictions are an affine map of raw columns (:func:`classifier_scorer`), so the scoring
pass counts its confusion matrices with one matrix product per row block and split.

Classification fits one per feature set, logistic regression starts from those, and transfer
fits one per target (shared by the pairs with that target): the
:class:`~mmpipe.tasks.base.TaskContext` of a fit keeps them, so each is fitted once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmpipe.models.classify import RidgeClassifierPath
from mmpipe.models.linalg import block_diagonal
from mmpipe.models.pca import StandardPCA
from mmpipe.stats.blocked import PassStatistics
from mmpipe.stats.scoring import LinearScorer

CONFUSION_DIMS = ["split", "alpha", "true_class", "predicted_class"]
"""Dimension names of a stored (n_splits, n_alpha, C, C) stack of confusion matrices."""


@dataclass(frozen=True, eq=False)
class Classifier:
    """A ridge classifier (whole α path) on the standardized PCA scores of ``features``."""

    features: tuple[str, ...]
    pcas: tuple[StandardPCA, ...]
    model: RidgeClassifierPath

    def scores(self, blocks: Sequence[np.ndarray]) -> np.ndarray:
        """Concatenated PCA scores of raw rows, one array per feature modality."""
        return np.concatenate([p.transform(b) for p, b in zip(self.pcas, blocks, strict=True)], 1)

    def raw_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(offset, basis): scores = (x − offset) @ basis for x the raw columns side by side."""
        offset = np.concatenate([p.mean_ for p in self.pcas])
        return offset, block_diagonal(*[p.basis_ for p in self.pcas])


def fit_classifier(
    stats: PassStatistics,
    features: Sequence[str],
    groups: Sequence[int] | None,
    components: dict[str, int | float | None],
    alphas: Sequence[float],
    pcas: Sequence[StandardPCA] | None = None,
) -> Classifier:
    """Fit PCAs (unless given) and the classifier from the statistics of ``groups``' rows where
    every feature modality is present."""
    raw = stats.moments(list(features), groups, labels=True)
    if pcas is None:
        start, fitted = 0, []
        for name in features:
            width = stats.layout.widths[stats.layout.names.index(name)]
            cols = np.arange(start, start + width)
            pca = StandardPCA(components[name], scale=stats.layout.scaled(name))
            fitted.append(pca.fit_moments(raw.take(cols)))
            start += width
        pcas = fitted
    n_classes = stats.layout.n_classes
    offset = np.concatenate([*[p.mean_ for p in pcas], np.zeros(n_classes)])
    basis = block_diagonal(*[p.basis_ for p in pcas], np.eye(n_classes))
    k = sum(p.n_components_ for p in pcas)
    model = RidgeClassifierPath(alphas).fit_moments(raw.project(offset, basis), k)
    return Classifier(tuple(features), tuple(pcas), model)


def decision_map(
    offset: np.ndarray, basis: np.ndarray, model: RidgeClassifierPath
) -> tuple[np.ndarray, np.ndarray]:
    """maps (d, n_alpha·C) and bias (n_alpha·C) of model((x − offset) @ basis) for every α."""
    maps = np.einsum("dk,akc->dac", basis, model.coef_)
    bias = model.intercept_ - np.einsum("d,dac->ac", offset, maps)
    d, n_alpha, c = maps.shape
    return maps.reshape(d, n_alpha * c), bias.reshape(n_alpha * c)


def classifier_scorer(name: str, per_split: Sequence[Classifier]) -> LinearScorer:
    """Scorer of a classifier on its own feature modalities, one classifier per split."""
    maps, bias = zip(*(decision_map(*c.raw_affine(), c.model) for c in per_split), strict=True)
    first = per_split[0]
    return LinearScorer(
        name, first.features, first.features, np.stack(maps), np.stack(bias),
        first.model.alphas_.size,
    )  # fmt: skip


def best_alpha(matrices: np.ndarray) -> int:
    """The α of the best mean validation accuracy, from (n_splits, n_alpha, C, C) matrices."""
    correct = np.trace(matrices, axis1=2, axis2=3) / matrices.sum(axis=(2, 3))
    return int(np.argmax(correct.mean(axis=0)))


def mean_metrics(folds: list[dict[str, float]]) -> dict[str, Any]:
    """Each metric's mean over the splits, and the accuracy of every split."""
    out: dict[str, Any] = {k: float(np.mean([m[k] for m in folds])) for k in folds[0]}
    out["accuracy_folds"] = [m["accuracy"] for m in folds]
    return out
