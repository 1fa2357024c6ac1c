"""A common space of several modalities at once: multiset CCA (MCCA) of their PCA scores.

Everything comes from the one statistics pass (the views are read there, see
:meth:`Multiview.modalities`); the eigenproblem needs no pass of its own
(:mod:`mmpipe.models.mcca`). Per split: each view's scaler + PCA fitted on its training rows,
MCCA on the training rows' score covariances, and on the validation rows the correlations of
the views' projections and the eigenvalue each component reaches there (from the validation
statistics). On all rows: the final model, whose per-view weights act on the scores of each
modality's own PCA (``modalities/<name>/``). With missing views every covariance block is an
available-case estimate (the rows where both views of the block are present).

With labels, the scoring pass cross-validates ridge classifiers (the α path) on each view's
scores alone, on their concatenation and on the shared embedding (the mean of the views'
projections), all on the rows where every view is present: the mean over the present views
is a different linear map for each pattern of missing views, so the comparison keeps the
complete rows only.

``multiview=["a", "b", "c"]`` or ``"all"``; results in ``result.multiview`` (one item), the
summary's ``multiview`` object, stored under ``multiview/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from mmpipe.errors import ConfigError, DataValueError
from mmpipe.io.results import write_array
from mmpipe.jsonable import to_json
from mmpipe.models.classify import RidgeClassifierPath, classification_metrics
from mmpipe.models.linalg import block_diagonal
from mmpipe.models.mcca import MCCAFit, fit_mcca, pair_correlations, rayleigh_quotients
from mmpipe.models.pca import StandardPCA
from mmpipe.stats.blocked import PassStatistics
from mmpipe.stats.scoring import LinearScorer, ScoringResult
from mmpipe.tables import Summary
from mmpipe.tasks.base import ScoringRequest, Task, TaskContext
from mmpipe.tasks.classifier import CONFUSION_DIMS, best_alpha, decision_map
from mmpipe.tasks.classify import needs_labels

if TYPE_CHECKING:
    from mmpipe.io.dataset import Dataset
    from mmpipe.options import FitConfig

SHOWN = 5
"""Components shown in the report's table and the log line."""
MULTIVIEW = "multiview"
CONCATENATION = "concatenation"


def views_of(config: FitConfig, names: Sequence[str]) -> tuple[str, ...]:
    """The views ``config.multiview`` names ('all': every modality of the dataset, in order);
    every name checked against ``names``."""
    asked = config.multiview or ()
    if tuple(asked) == ("all",):
        views = tuple(names)
    else:
        views = tuple(asked)
        for name in views:
            if name not in names:
                raise ConfigError(
                    f"multiview names modality {name!r}, which the dataset does not have "
                    f"(modalities: {', '.join(names)})."
                )
    if len(views) < 2:
        raise ConfigError(
            f"multiview needs two or more modalities; the dataset has {len(views)} "
            f"({', '.join(views) or 'none'})."
        )
    return views


def regularization(config: FitConfig) -> float:
    """``cca_reg``, or the first value of its path when it is a list."""
    reg: Any = config.cca_reg
    if isinstance(reg, list | tuple):
        reg = reg[0]
    return float(reg)


def score_moments(
    stats: PassStatistics, views: Sequence[str], pcas: Sequence[StandardPCA], groups: Any
) -> Any:
    """Moments of the views' PCA scores side by side over the rows of ``groups`` where every
    one of ``views`` is present."""
    raw = stats.moments(list(views), groups)
    offset = np.concatenate([p.mean_ for p in pcas])
    return raw.project(offset, block_diagonal(*[p.basis_ for p in pcas]))


def covariance_blocks(
    stats: PassStatistics, views: Sequence[str], pcas: Sequence[StandardPCA], groups: Any
) -> tuple[list[list[np.ndarray]], dict[tuple[int, int], np.ndarray]]:
    """The available-case covariance blocks (ddof=1) of the views' scores over ``groups``'
    rows, and each pair's covariance of both views side by side over the rows where both are
    present (for the correlations of projections)."""
    m = len(views)
    blocks: list[list[np.ndarray]] = [[np.empty(0)] * m for _ in range(m)]
    pairs: dict[tuple[int, int], np.ndarray] = {}
    for i in range(m):
        one = score_moments(stats, [views[i]], [pcas[i]], groups)
        if one.n < 2:
            raise DataValueError(
                f"multiview: modality {views[i]!r} has {one.n} rows in a training or validation "
                "set; check masks/ or use fewer folds."
            )
        blocks[i][i] = one.covariance(ddof=1)
    for i, j in combinations(range(m), 2):
        both = score_moments(stats, [views[i], views[j]], [pcas[i], pcas[j]], groups)
        if both.n < 2:
            raise DataValueError(
                f"multiview: modalities {views[i]!r} and {views[j]!r} are both present in "
                f"{both.n} rows of a training or validation set; check masks/."
            )
        cov = both.covariance(ddof=1)
        k = pcas[i].n_components_
        blocks[i][j] = cov[:k, k:]
        blocks[j][i] = cov[:k, k:].T
        pairs[(i, j)] = cov
    return blocks, pairs


@dataclass(frozen=True, eq=False)
class MultiviewAccuracy:
    """Cross-validated classification on the rows with every view present."""

    names: tuple[str, ...]
    """Each view's name, then 'concatenation', then 'multiview'."""
    alphas: np.ndarray
    confusion: np.ndarray
    """(n_sets, n_splits, n_alpha, C, C) validation confusion matrices."""
    rows: int
    """Rows with every view present."""

    def accuracy(self, index: int) -> np.ndarray:
        """(n_splits, n_alpha) validation accuracy of set ``index``."""
        c = self.confusion[index]
        return np.trace(c, axis1=2, axis2=3) / np.maximum(c.sum(axis=(2, 3)), 1)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": self.rows}
        for index, name in enumerate(self.names):
            a = best_alpha(self.confusion[index])
            folds = [classification_metrics(c) for c in self.confusion[index][:, a]]
            acc = self.accuracy(index)
            out[name] = {
                "alpha": float(self.alphas[a]),
                "accuracy": float(np.mean([f["accuracy"] for f in folds])),
                "accuracy_folds": [f["accuracy"] for f in folds],
                "balanced_accuracy": float(np.mean([f["balanced_accuracy"] for f in folds])),
                "accuracy_by_alpha": acc.mean(axis=0).tolist(),
            }
        return out


@dataclass(frozen=True, eq=False)
class MultiviewResult:
    """MCCA of ``modalities``: the final model (all rows), each split's, their validation."""

    modalities: tuple[str, ...]
    reg: float
    final: MCCAFit
    """On all rows, on the scores of each modality's own PCA."""
    folds: list[MCCAFit]
    """Each split's, on the scores of the views' PCAs fitted on its training rows."""
    fold_pcas: list[tuple[StandardPCA, ...]]
    validation_eigenvalues: np.ndarray
    """(n_splits, c) vᵀCv / vᵀDv of the split's components on its validation rows."""
    validation_correlations: np.ndarray
    """(n_splits, n_pairs, c) correlation of the two views' projections on validation rows."""
    rows: dict[str, int]
    """Rows where each view is present."""
    accuracy: MultiviewAccuracy | None = None
    pairs: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n_components(self) -> int:
        return self.final.n_components

    @property
    def eigenvalues(self) -> np.ndarray:
        """(c,) the final model's top eigenvalues."""
        return self.final.eigenvalues[: self.n_components]

    @property
    def eigenvalues_folds(self) -> np.ndarray:
        """(n_splits, c) each split's top eigenvalues."""
        return np.stack([f.eigenvalues[: self.n_components] for f in self.folds])

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """Per view, (k, c): the final weights on the scores of ``modalities/<name>``."""
        return dict(zip(self.modalities, self.final.weights, strict=True))

    def summary(self) -> dict[str, Any]:
        corr = self.validation_correlations
        out: dict[str, Any] = {
            "modalities": list(self.modalities),
            "rows": self.rows,
            "components": self.n_components,
            "cca_reg": self.reg,
            "eigenvalues": self.eigenvalues.tolist(),
            "eigenvalues_folds": self.eigenvalues_folds.tolist(),
            "validation": {
                "eigenvalues": self.validation_eigenvalues.mean(axis=0).tolist(),
                "eigenvalues_folds": self.validation_eigenvalues.tolist(),
                "mean_correlation": corr.mean(axis=(0, 1)).tolist(),
                "correlations": {
                    f"{a}:{b}": corr[:, p].mean(axis=0).tolist()
                    for p, (a, b) in enumerate(self.pairs)
                },
            },
        }
        if self.accuracy is not None:
            out["accuracy"] = self.accuracy.summary()
        return out


def _classifier_map(
    raw: Any, offset: np.ndarray, basis: np.ndarray, alphas: Sequence[float], n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """A ridge classifier (every α) on (x − offset) @ basis of ``raw``'s rows (its columns,
    then the one-hot labels), as the scoring pass's decision map of x."""
    q = basis.shape[1]
    features = raw.project(
        np.concatenate([offset, np.zeros(n_classes)]), block_diagonal(basis, np.eye(n_classes))
    )
    model = RidgeClassifierPath(alphas).fit_moments(features, q)
    return decision_map(offset, basis, model)


def fit_multiview(context: TaskContext) -> tuple[MultiviewResult, list[LinearScorer]]:
    """The MCCA of every split and on all rows, its validation figures, and (with labels) the
    scorers of the classification on the complete rows."""
    config, stats = context.config, context.stats
    views = views_of(config, context.prepared.dataset.names)
    reg = regularization(config)
    plan = context.prepared.plan
    layout = stats.layout

    final_pcas = [context.models.modalities[v].pca for v in views]
    # The final model's rows: all rows (or, with a given split, its train rows).
    final_blocks, _ = covariance_blocks(stats, views, final_pcas, plan.final_groups)
    fold_pcas: list[tuple[StandardPCA, ...]] = []
    for train, _validation in plan.splits:
        fold_pcas.append(
            tuple(
                StandardPCA(context.components[v], scale=layout.scaled(v)).fit_moments(
                    stats.moments([v], train)
                )
                for v in views
            )
        )
    fold_blocks = [
        covariance_blocks(stats, views, pcas, train)[0]
        for pcas, (train, _) in zip(fold_pcas, plan.splits, strict=True)
    ]
    total = min(
        sum(b[i][i].shape[0] for i in range(len(views))) for b in [final_blocks, *fold_blocks]
    )
    widest = max(p.n_components_ for p in final_pcas)
    c = min(widest, total)
    final = fit_mcca(final_blocks, reg, c)
    folds = [fit_mcca(b, reg, c) for b in fold_blocks]

    pairs = list(combinations(range(len(views)), 2))
    val_eigen, val_corr = [], []
    for fit, pcas, (_, validation) in zip(folds, fold_pcas, plan.splits, strict=True):
        blocks, pair_covs = covariance_blocks(stats, views, pcas, validation)
        val_eigen.append(rayleigh_quotients(blocks, fit.weights))
        val_corr.append(
            np.stack([pair_correlations(pair_covs[p], *(fit.weights[i] for i in p)) for p in pairs])
        )

    scorers: list[LinearScorer] = []
    if context.labelled:
        n_classes, alphas = context.n_classes, config.alphas
        sets: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(len(views) + 2)]
        inputs: list[tuple[str, ...]] = [(v,) for v in views] + [views, views]
        for fit, pcas, (train, _) in zip(folds, fold_pcas, plan.splits, strict=True):
            raw = stats.moments(list(views), train, labels=True)
            starts = np.cumsum([0, *(layout.widths[layout.names.index(v)] for v in views)])
            label_cols = np.arange(starts[-1], starts[-1] + n_classes)
            for i, pca in enumerate(pcas):
                own = raw.take(np.concatenate([np.arange(starts[i], starts[i + 1]), label_cols]))
                sets[i].append(_classifier_map(own, pca.mean_, pca.basis_, alphas, n_classes))
            offset = np.concatenate([p.mean_ for p in pcas])
            basis = block_diagonal(*[p.basis_ for p in pcas])
            sets[len(views)].append(_classifier_map(raw, offset, basis, alphas, n_classes))
            embedding = basis @ np.concatenate(fit.weights, axis=0) / len(views)
            sets[len(views) + 1].append(_classifier_map(raw, offset, embedding, alphas, n_classes))
        names = [*views, CONCATENATION, MULTIVIEW]
        for name, used, maps in zip(names, inputs, sets, strict=True):
            scorers.append(
                LinearScorer(
                    f"multiview:{name}",
                    used,
                    views,
                    np.stack([m for m, _ in maps]),
                    np.stack([b for _, b in maps]),
                    len(alphas),
                )
            )

    result = MultiviewResult(
        modalities=views,
        reg=reg,
        final=final,
        folds=folds,
        fold_pcas=fold_pcas,
        validation_eigenvalues=np.stack(val_eigen),
        validation_correlations=np.stack(val_corr),
        rows={v: stats.rows_present([v]) for v in views},
        pairs=[(views[i], views[j]) for i, j in pairs],
    )
    return result, scorers


class Multiview(Task):
    name = "multiview"
    single = True
    table_title = "Multi-view common space (MCCA)"
    table_columns = ("features", "CV accuracy", "α", "top eigenvalues", "validation corr.")

    def active(self, config: FitConfig) -> bool:
        return config.multiview is not None

    def check(self, config: FitConfig, dataset: Dataset) -> None:
        if config.multiview is not None:
            views_of(config, dataset.names)

    def modalities(self, config: FitConfig) -> set[str]:
        """The views the one statistics pass reads ('all' needs the dataset: see
        :meth:`modalities_of`)."""
        views = config.multiview or ()
        return set() if tuple(views) == ("all",) else set(views)

    def modalities_of(self, config: FitConfig, names: Sequence[str]) -> set[str]:
        if config.multiview is None:
            return set()
        return set(views_of(config, names))

    def score(self, context: TaskContext) -> ScoringRequest:
        result, scorers = fit_multiview(context)

        def collect(scored: ScoringResult) -> list[Any]:
            if not scorers:
                return [result]
            names = [s.name.split(":", 1)[1] for s in scorers]
            accuracy = MultiviewAccuracy(
                tuple(names),
                np.asarray(context.config.alphas, dtype=np.float64),
                np.stack([scored.confusions[s.name] for s in scorers]),
                context.stats.rows_present(list(result.modalities)),
            )
            return [
                MultiviewResult(**{**result.__dict__, "accuracy": accuracy}),
            ]

        return ScoringRequest(collect, scorers)

    def write(self, run: zarr.Group, results: list[MultiviewResult]) -> None:
        (mv,) = results
        g = run.create_group(self.name)
        g.attrs.update(to_json(mv.summary()))
        g.attrs["weights_on"] = "the scores of modalities/<name> (the modality's own PCA)"
        write_array(g, "eigenvalues", mv.final.eigenvalues, ["eigenvalue"])
        write_array(g, "eigenvalues_folds", mv.eigenvalues_folds, ["split", "component"])
        write_array(g, "validation_eigenvalues", mv.validation_eigenvalues, ["split", "component"])
        write_array(
            g,
            "validation_correlations",
            mv.validation_correlations,
            ["split", "view_pair", "component"],
        )
        views = g.create_group("views")
        for name, w in mv.weights.items():
            write_array(views.create_group(name), "weights", w, [f"{name}_component", "component"])
        if mv.accuracy is not None:
            write_array(g, "alphas", mv.accuracy.alphas, ["alpha"])
            write_array(
                g, "confusion", mv.accuracy.confusion.astype(np.int64), ["set", *CONFUSION_DIMS]
            )

    def table_rows(self, summary: Summary) -> list[tuple[str, ...]]:
        item = summary.get(self.name)
        if not item:
            return []
        eigen = ", ".join(f"{v:.3f}" for v in item["eigenvalues"][:SHOWN])
        corr = ", ".join(f"{v:.3f}" for v in item["validation"]["mean_correlation"][:SHOWN])
        shared = "+".join(item["modalities"])
        accuracy = item.get("accuracy")
        if accuracy is None:
            return [(f"MCCA of {shared}", "", "", eigen, corr)]
        rows: list[tuple[str, ...]] = []
        for name in [*item["modalities"], CONCATENATION, MULTIVIEW]:
            a = accuracy[name]
            label = {CONCATENATION: "concatenation", MULTIVIEW: f"MCCA of {shared}"}.get(name, name)
            rows.append(
                (
                    label,
                    f"{a['accuracy']:.4f}",
                    f"α={a['alpha']:g}",
                    eigen if name == MULTIVIEW else "",
                    corr if name == MULTIVIEW else "",
                )
            )
        return rows

    def line(self, item: Summary) -> str:
        eigen = ", ".join(f"{v:.3f}" for v in item["eigenvalues"][:SHOWN])
        corr = item["validation"]["mean_correlation"][0]
        text = (
            f"multiview MCCA of {'+'.join(item['modalities'])}: top eigenvalues {eigen}; "
            f"first component's validation correlation {corr:.4f}"
        )
        accuracy = item.get("accuracy")
        if accuracy:
            text += (
                f"; CV accuracy {accuracy[MULTIVIEW]['accuracy']:.4f} from the shared embedding "
                f"({accuracy[CONCATENATION]['accuracy']:.4f} from the concatenation)"
            )
        return text


__all__ = ["Multiview", "MultiviewResult", "needs_labels"]
