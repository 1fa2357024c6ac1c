"""Cross-modal tasks on top of the fitted maps.

- classification from the concatenated PCA scores of one or more modalities (fused);
- knowledge transfer: for a pair source → target, the target's classifier applied to the
  source's rows mapped into the target's score space through the ridge map W;
- retrieval: source rows mapped through W rank the target's rows by cosine similarity.

Every classifier comes from the statistics of the first pass (no pass of its own). Every
prediction is an affine map of raw columns composed here, and one scoring pass
(mmpipe.stats.scoring) counts the confusion matrices of every task, split and α at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmpipe.models.classify import RidgeClassifierPath, classification_metrics
from mmpipe.models.linalg import block_diagonal
from mmpipe.models.logistic import LogisticFit
from mmpipe.models.pair import PairModels
from mmpipe.models.pca import StandardPCA
from mmpipe.stats.blocked import PassStatistics
from mmpipe.stats.retrieval import rank_metrics
from mmpipe.stats.scoring import Embedder, LinearScorer, MatchRanks


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


def _decision_map(
    offset: np.ndarray, basis: np.ndarray, model: RidgeClassifierPath
) -> tuple[np.ndarray, np.ndarray]:
    """maps (d, n_alpha·C) and bias (n_alpha·C) of model((x − offset) @ basis) for every α."""
    maps = np.einsum("dk,akc->dac", basis, model.coef_)
    bias = model.intercept_ - np.einsum("d,dac->ac", offset, maps)
    d, n_alpha, c = maps.shape
    return maps.reshape(d, n_alpha * c), bias.reshape(n_alpha * c)


def classify_scorer(name: str, per_split: Sequence[Classifier]) -> LinearScorer:
    """Scorer of a classifier on its own feature modalities, one classifier per split."""
    maps, bias = zip(*(_decision_map(*c.raw_affine(), c.model) for c in per_split), strict=True)
    first = per_split[0]
    return LinearScorer(
        name, first.features, first.features, np.stack(maps), np.stack(bias),
        first.model.alphas_.size,
    )  # fmt: skip


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


def transfer_scorer(
    name: str, pairs: Sequence[PairModels], targets: Sequence[Classifier], map_index: int,
    source: str, target: str,
) -> LinearScorer:  # fmt: skip
    """Scorer of the target's classifier applied to source rows mapped through W(map_index)."""
    maps, biases = [], []
    for pair, classifier in zip(pairs, targets, strict=True):
        coef = pair.ridge.coef_[map_index]  # (k_s, k_t)
        intercept = pair.ridge.intercept_[map_index]  # (k_t,)
        # mapped = (x − μ_s) @ B_s @ W + w0 = (x − offset) @ basis with basis = B_s W and
        # offset solving offset @ basis = μ_s @ basis − w0; fold w0 into the bias instead.
        basis = pair.source_pca.basis_ @ coef
        m, b = _decision_map(pair.source_pca.mean_, basis, classifier.model)
        shift = np.einsum("t,atc->ac", intercept, classifier.model.coef_).reshape(-1)
        maps.append(m)
        biases.append(b + shift)
    return LinearScorer(
        name, (source,), (source, target), np.stack(maps), np.stack(biases),
        targets[0].model.alphas_.size,
    )  # fmt: skip


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
            "cv": _mean_metrics(folds),
            "accuracy_by_alpha": [
                float(np.mean([m["accuracy"] for m in self.fold_metrics(a)]))
                for a in range(self.alphas.size)
            ],
            "confusion": self.confusion[:, self.alpha_index].sum(axis=0).astype(int).tolist(),
        }


@dataclass(frozen=True, eq=False)
class TransferResult:
    """The target's classifier applied to source rows mapped through W (source → target)."""

    source: str
    target: str
    alphas: np.ndarray
    """The classifier's α path."""
    map_alpha: float
    """The α of W (the pair's chosen α)."""
    confusion: np.ndarray
    """(n_splits, n_alpha, C, C) on the source's validation rows mapped into the target."""
    target_confusion: np.ndarray
    """(n_splits, n_alpha, C, C) the same classifier on the target's own validation rows."""
    alpha_index: int
    """Chosen by the target's own validation accuracy (never by the transferred one)."""

    @property
    def alpha(self) -> float:
        return float(self.alphas[self.alpha_index])

    def summary(self) -> dict[str, Any]:
        a = self.alpha_index
        moved = [classification_metrics(c) for c in self.confusion[:, a]]
        own = [classification_metrics(c) for c in self.target_confusion[:, a]]
        return {
            "source": self.source,
            "target": self.target,
            "alpha": self.alpha,
            "map_alpha": self.map_alpha,
            "cv": _mean_metrics(moved),
            "target_cv": _mean_metrics(own),
        }


def _mean_metrics(folds: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: float(np.mean([m[k] for m in folds])) for k in folds[0]}
    out["accuracy_folds"] = [m["accuracy"] for m in folds]
    return out


def retrieval_embedder(
    name: str, pairs: Sequence[PairModels], map_index: int, fractions: Sequence[float],
    source: str, target: str,
) -> Embedder:  # fmt: skip
    """Embeddings in the target's score space: source rows through W(map_index), target rows
    through its own scaler and PCA, one pair of maps per split."""
    qmaps, qbias, cmaps, cbias = [], [], [], []
    for pair in pairs:
        basis = pair.source_pca.basis_ @ pair.ridge.coef_[map_index]
        qmaps.append(basis)
        qbias.append(pair.ridge.intercept_[map_index] - pair.source_pca.mean_ @ basis)
        cmaps.append(pair.target_pca.basis_)
        cbias.append(-pair.target_pca.mean_ @ pair.target_pca.basis_)
    return Embedder(
        name, source, target, np.stack(qmaps), np.stack(qbias), np.stack(cmaps),
        np.stack(cbias), np.asarray(fractions, dtype=np.float64),
    )  # fmt: skip


@dataclass(frozen=True, eq=False)
class RetrievalResult:
    """Cross-modal retrieval on each split's validation rows (or a seeded subset of them)."""

    source: str
    target: str
    map_alpha: float
    """The α of W used to map source rows into the target's space (the pair's chosen α)."""
    ranks: list[MatchRanks]
    """Per split: the rows ranked and the ranks of their true matches, both directions."""

    def fold_metrics(self, direction: str = "forward") -> list[dict[str, float]]:
        return [rank_metrics(getattr(r, direction)) for r in self.ranks]

    def summary(self) -> dict[str, Any]:
        def mean(direction: str) -> dict[str, float]:
            folds = self.fold_metrics(direction)
            return {k: float(np.mean([f[k] for f in folds])) for k in folds[0]}

        return {
            "source": self.source,
            "target": self.target,
            "map_alpha": self.map_alpha,
            "rows_per_split": [int(r.rows.size) for r in self.ranks],
            "source_to_target": mean("forward"),
            "target_to_source": mean("backward"),
        }


@dataclass(frozen=True, eq=False)
class LogisticResult:
    """Multinomial logistic regression on the fused scores of ``features``, cross-validated."""

    features: tuple[str, ...]
    C: float
    classes: np.ndarray
    confusion: np.ndarray
    """(n_splits, C, C) validation confusion matrices."""
    coef: np.ndarray
    """(k, C) of the final model (all rows), on the final classifier's scores."""
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
            "cv": _mean_metrics(folds),
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
