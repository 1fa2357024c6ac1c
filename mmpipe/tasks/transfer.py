"""Knowledge transfer: for a pair source → target, the target's classifier applied to the
source's rows mapped into the target's score space through the ridge map W.

The target's classifier of each split is fitted on that split's target PCA (from the
statistics); pairs that share a target and its PCAs share it and its own-accuracy scorer
(:meth:`~mmpipe.tasks.base.TaskContext.target_classifiers`).

``transfer=True``; results in ``result.transfer``, stored under ``transfer/<s>--<t>/``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from mmpipe.io.results import pair_key, write_array
from mmpipe.jsonable import to_json
from mmpipe.models.classify import classification_metrics
from mmpipe.models.logistic import LogisticFit, fit_stacked_logistic
from mmpipe.models.pair import PairModels
from mmpipe.stats.held import hold_scores
from mmpipe.stats.scoring import LinearScorer, ScoringResult
from mmpipe.tables import Summary, arrow, rounded, task_row
from mmpipe.tasks.base import ScoringRequest, Task, TaskContext
from mmpipe.tasks.classifier import (
    CONFUSION_DIMS,
    Classifier,
    best_alpha,
    classifier_scorer,
    decision_map,
    mean_metrics,
)
from mmpipe.tasks.classify import needs_labels

if TYPE_CHECKING:
    from mmpipe.io.dataset import Dataset
    from mmpipe.options import FitConfig


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
        m, b = decision_map(pair.source_pca.mean_, basis, classifier.model)
        shift = np.einsum("t,atc->ac", intercept, classifier.model.coef_).reshape(-1)
        maps.append(m)
        biases.append(b + shift)
    return LinearScorer(
        name, (source,), (source, target), np.stack(maps), np.stack(biases),
        targets[0].model.alphas_.size,
    )  # fmt: skip


def logistic_transfer_scorer(
    name: str, pairs: Sequence[PairModels], fit: LogisticFit, map_index: int, source: str,
    target: str,
) -> LinearScorer:  # fmt: skip
    """Scorer of the target's logistic model of each split applied to source rows mapped
    through W(map_index): logits = ((x − μ_s) B_s W + w0) @ coef + intercept (one "α")."""
    maps, biases = [], []
    for s, pair in enumerate(pairs):
        coef = fit.coef[s][: pair.target_pca.n_components_]  # (k_t, C); padding dropped
        basis = pair.source_pca.basis_ @ pair.ridge.coef_[map_index] @ coef  # (d_s, C)
        bias = pair.ridge.intercept_[map_index] @ coef + fit.intercept[s]
        maps.append(basis)
        biases.append(bias - pair.source_pca.mean_ @ basis)
    return LinearScorer(name, (source,), (source, target), np.stack(maps), np.stack(biases), 1)


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
    classifier: str = "ridge"
    """The target's classifier: ridge (α path) or logistic (one C; ``alphas`` holds 1/C)."""
    C: float | None = None
    """The logistic model's C (logistic only)."""

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
            "cv": mean_metrics(moved),
            "target_cv": mean_metrics(own),
            **({"classifier": self.classifier, "C": self.C} if self.classifier != "ridge" else {}),
        }


class Transfer(Task):
    name = "transfer"
    table_title = "Transfer: target's classifier on source mapped through W"
    table_columns = ("source → target", "α", "accuracy", "target's own", "chance")

    def active(self, config: FitConfig) -> bool:
        return bool(config.transfer)

    def check(self, config: FitConfig, dataset: Dataset) -> None:
        if config.transfer:
            needs_labels("transfer", dataset)

    def learns_labels(self, config: FitConfig) -> bool:
        return self.active(config)

    def score(self, context: TaskContext) -> ScoringRequest:
        if context.config.transfer_classifier == "logistic":
            return self._score_logistic(context)
        scorers: list[LinearScorer] = []
        own_scorers: set[int] = set()
        for pair in context.pairs:
            key = (pair.source, pair.target)
            shared, targets = context.target_classifiers(key)
            if shared not in own_scorers:
                own_scorers.add(shared)
                scorers.append(classifier_scorer(f"transfer:own#{shared}", targets))
            scorers.append(
                transfer_scorer(
                    f"transfer:{pair_key(*key)}", context.split_models(key), targets,
                    pair.alpha_index, *key,
                )
            )  # fmt: skip

        def collect(scored: ScoringResult) -> list[Any]:
            out = []
            for pair in context.pairs:
                key = (pair.source, pair.target)
                own = scored.confusions[f"transfer:own#{context.target_classifiers(key)[0]}"]
                out.append(
                    TransferResult(
                        source=pair.source,
                        target=pair.target,
                        alphas=np.asarray(context.config.alphas),
                        map_alpha=pair.alpha,
                        confusion=scored.confusions[f"transfer:{pair_key(*key)}"],
                        target_confusion=own,
                        alpha_index=best_alpha(own),
                    )
                )
            return out

        return ScoringRequest(collect, scorers)

    def _score_logistic(self, context: TaskContext) -> ScoringRequest:
        """The target's multinomial logistic model of each split, fitted on the scores of its
        ridge classifier's PCA (the pair's target PCA of that split, the space W maps into):
        one held-scores pass and the L-BFGS passes per shared target, before the scoring
        pass; then one scorer per pair (and one for the target's own rows) in that pass."""
        config, codes = context.config, context.label_codes
        ds, plan = context.prepared.dataset, context.prepared.plan
        if codes is None:
            return ScoringRequest(lambda scored: [])
        # Imported here: mmpipe.tasks.logistic imports this task's neighbours.
        from mmpipe.tasks.logistic import logistic_scorer, stacked_affine

        fits: dict[int, LogisticFit] = {}
        scorers: list[LinearScorer] = []
        for pair in context.pairs:
            key = (pair.source, pair.target)
            shared, targets = context.target_classifiers(key)
            if shared not in fits:
                # hold_scores also trains a model on every row (the last): not used here.
                offsets, bases = stacked_affine([*targets, targets[-1]])
                held = hold_scores(ds, plan, [pair.target], codes, offsets, bases)
                fits[shared] = fit_stacked_logistic(
                    functools.partial(held.loss_and_gradient, n_classes=context.n_classes),
                    held.n_models, held.k, context.n_classes, held.n_train,
                    C=config.logistic_c,
                )  # fmt: skip
                scorers.append(
                    logistic_scorer(
                        f"transfer:own#{shared}", (pair.target,), offsets[:-1], bases[:-1],
                        fits[shared],
                    )
                )  # fmt: skip
            scorers.append(
                logistic_transfer_scorer(
                    f"transfer:{pair_key(*key)}", context.split_models(key), fits[shared],
                    pair.alpha_index, *key,
                )
            )  # fmt: skip

        def collect(scored: ScoringResult) -> list[Any]:
            out = []
            for pair in context.pairs:
                key = (pair.source, pair.target)
                shared = context.target_classifiers(key)[0]
                out.append(
                    TransferResult(
                        source=pair.source,
                        target=pair.target,
                        alphas=np.array([1.0 / config.logistic_c]),
                        map_alpha=pair.alpha,
                        confusion=scored.confusions[f"transfer:{pair_key(*key)}"],
                        target_confusion=scored.confusions[f"transfer:own#{shared}"],
                        alpha_index=0,
                        classifier="logistic",
                        C=config.logistic_c,
                    )
                )
            return out

        return ScoringRequest(collect, scorers)

    def write(self, run: zarr.Group, results: list[TransferResult]) -> None:
        moved = run.create_group(self.name)
        for t in results:
            g = moved.create_group(pair_key(t.source, t.target))
            g.attrs.update(
                to_json(
                    {"source": t.source, "target": t.target, "alpha": t.alpha,
                     "map_alpha": t.map_alpha, "classifier": t.classifier, "C": t.C}
                )
            )  # fmt: skip
            write_array(g, "alphas", t.alphas, ["alpha"])
            write_array(g, "confusion", t.confusion.astype(np.int64), CONFUSION_DIMS)
            write_array(g, "target_confusion", t.target_confusion.astype(np.int64), CONFUSION_DIMS)

    def table_rows(self, summary: Summary) -> list[tuple[str, ...]]:
        return [
            (
                arrow(t),
                f"C={t['C']:g}" if t.get("classifier") == "logistic" else f"{t['alpha']:g}",
                f"{t['cv']['accuracy']:.4f}",
                f"{t['target_cv']['accuracy']:.4f}",
                f"{t['cv']['chance']:.4f}",
            )
            for t in summary.get(self.name) or []
        ]

    def artifact_rows(self, summary: Summary) -> list[dict[str, Any]]:
        rows = []
        for t in summary.get(self.name, []):
            row = task_row("transfer", arrow(t), t["alpha"], t["cv"])
            rows.append(row | {"target_accuracy": rounded(t["target_cv"]["accuracy"])})
        return rows

    def line(self, item: Summary) -> str:
        return (
            f"transfer {arrow(item)}: CV accuracy {item['cv']['accuracy']:.4f} "
            f"(target's own {item['target_cv']['accuracy']:.4f}) at "
            + (f"C={item['C']:g} (logistic)" if item.get("classifier") == "logistic" else "")
            + (f"α={item['alpha']:g}" if item.get("classifier") != "logistic" else "")
        )
