"""The interface every cross-modal task implements (:class:`Task`), and what the tasks of one
fit share while they run (:class:`TaskContext`).

A task is asked, in this order:

- ``check(config, dataset)`` before anything is read (every registered task, active or not:
  its options are checked whether or not it runs);
- ``active(config)``: whether this fit runs it;
- in the scoring step, ``score(context)``: the scorers and embedders it adds to the one
  shared scoring pass, and how it collects its results from that pass
  (:class:`ScoringRequest`); or, for a task with ``own_pass = True``, ``run(context)`` in a
  step of its own named ``<name>_pass``;
- then, for each result, its ``summary()`` (the task's list in ``FitResult.summary()``);
  ``write(run, results)`` into the run's group of the results store; and, for people,
  ``table_rows(summary)`` under ``table_title`` / ``table_columns``, ``artifact_rows(summary)``
  for Prefect tables and ``line(item)`` for the log.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import zarr

from mmpipe.errors import ConfigError
from mmpipe.stats.scoring import Embedder, LinearScorer, ScoringResult
from mmpipe.tables import Summary
from mmpipe.tasks import classifier

if TYPE_CHECKING:
    from mmpipe.engine import FittedModels
    from mmpipe.io.dataset import Dataset
    from mmpipe.models.pair import PairModels
    from mmpipe.options import FitConfig
    from mmpipe.prepare import Prepared
    from mmpipe.result import PairResult
    from mmpipe.stats.blocked import PassStatistics
    from mmpipe.tasks.classifier import Classifier


@dataclass(frozen=True, eq=False)
class ScoringRequest:
    """What a task adds to the shared scoring pass, and how it reads its results back."""

    collect: Callable[[ScoringResult], list[Any]]
    """Its results, in order, from the pass's confusions and ranks (by the names it chose)."""
    scorers: Sequence[LinearScorer] = ()
    embedders: Sequence[Embedder] = ()


@dataclass(eq=False)
class TaskContext:
    """One fit as the tasks see it, and the work several tasks reuse (done once, on demand).

    Tasks share work through this object, never through each other's scorer names: the
    classifiers of a feature set (classification, logistic regression) and a target's
    classifiers on its pairs' PCAs (transfer).
    """

    prepared: Prepared
    stats: PassStatistics
    models: FittedModels
    pairs: list[PairResult]
    components: dict[str, int | float | None]
    """PCA components of each modality of the fit."""
    _classifiers: dict[tuple[str, ...], list[Classifier]] = field(default_factory=dict)
    _targets: dict[tuple[str, tuple[int, ...]], tuple[int, list[Classifier]]] = field(
        default_factory=dict
    )

    @property
    def config(self) -> FitConfig:
        return self.prepared.config

    @property
    def n_splits(self) -> int:
        return self.prepared.plan.n_splits

    @property
    def train_groups(self) -> list[Any]:
        """The training fold groups of each split."""
        plan = self.prepared.plan
        return [plan.splits[s][0] for s in range(plan.n_splits)]

    @property
    def labelled(self) -> bool:
        return self.prepared.labels is not None and self.stats.classes is not None

    @cached_property
    def label_codes(self) -> np.ndarray | None:
        """Each row's class index in ``stats.classes`` (None without labels)."""
        if not self.labelled:
            return None
        return np.searchsorted(self.stats.classes, self.prepared.labels)  # type: ignore[arg-type]

    @property
    def n_classes(self) -> int:
        return 0 if self.stats.classes is None else self.stats.classes.size

    @property
    def classes(self) -> np.ndarray:
        """The classes of the labels; a task that needs them asks here."""
        if self.stats.classes is None or not self.labelled:
            raise ConfigError("classify and transfer need labels in the dataset.")
        return self.stats.classes

    def split_models(self, pair: tuple[str, str]) -> list[PairModels]:
        """The pair's models of each split."""
        return [self.models.split_models[(s, pair)] for s in range(self.n_splits)]

    def classifiers(self, features: tuple[str, ...]) -> list[Classifier]:
        """Ridge classifiers from the fused scores of ``features``: one per split, then the
        final one (on the plan's final rows: all rows, or a given split's train rows). Fitted
        once per fit."""
        if features not in self._classifiers:
            self._classifiers[features] = [
                classifier.fit_classifier(
                    self.stats, features, groups, self.components, self.config.alphas
                )
                for groups in [*self.train_groups, self.prepared.plan.final_groups]
            ]
        return self._classifiers[features]

    def target_classifiers(self, pair: tuple[str, str]) -> tuple[int, list[Classifier]]:
        """The classifiers of ``pair``'s target on the pair's per-split target PCAs, and which
        set of them that is (0, 1, ...). A target's accuracy depends only on the target and
        those PCAs: pairs that share both (no masks among them) share one set."""
        split_pairs = self.split_models(pair)
        key = (pair[1], tuple(id(m.target_pca) for m in split_pairs))
        if key not in self._targets:
            fitted = [
                classifier.fit_classifier(
                    self.stats, [pair[1]], groups, self.components, self.config.alphas,
                    pcas=[m.target_pca],
                )
                for groups, m in zip(self.train_groups, split_pairs, strict=True)
            ]  # fmt: skip
            self._targets[key] = (len(self._targets), fitted)
        return self._targets[key]


class Task(ABC):
    """A cross-modal task: one module of :mod:`mmpipe.tasks` and one line of its ``TASKS``."""

    name: ClassVar[str]
    """Its key in ``FitResult`` (``result.<name>``), in the summary JSON, the results store's
    group and the report."""
    own_pass: ClassVar[bool] = False
    """False: it joins the one shared scoring pass (:meth:`score`). True: it runs a pass of its
    own (:meth:`run`) as the step ``<name>_pass``, after the scoring pass."""
    single: ClassVar[bool] = False
    """At most one result per fit: the summary holds its ``summary()`` as one object (null
    when it did not run) instead of a list."""
    is_map: ClassVar[bool] = False
    """A map between modalities (like the pairs): its table is shown right after the pairs'."""
    table_title: ClassVar[str] = ""
    """The title of its table; tasks with the same title share one table (rows in order)."""
    table_columns: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def active(self, config: FitConfig) -> bool:
        """Whether ``config`` asks for this task."""

    def check(self, config: FitConfig, dataset: Dataset) -> None:
        """Raise ConfigError when its options do not fit ``dataset`` (the options' own bounds
        are :class:`FitConfig`'s)."""
        return None

    def learns_labels(self, config: FitConfig) -> bool:
        """Whether it learns the labels (then a class smaller than the folds is an error)."""
        return False

    def modalities(self, config: FitConfig) -> set[str]:
        """Modalities it reads beyond those of the pairs."""
        return set()

    def modalities_of(self, config: FitConfig, names: Sequence[str]) -> set[str]:
        """Modalities it reads beyond those of the pairs, for a dataset with modalities
        ``names`` (an option such as ``multiview="all"`` names them through the dataset)."""
        return self.modalities(config)

    def score(self, context: TaskContext) -> ScoringRequest:
        """What it adds to the shared scoring pass (tasks without ``own_pass``)."""
        raise NotImplementedError(f"task {self.name!r} does not join the scoring pass")

    def run(self, context: TaskContext) -> list[Any]:
        """Its results from a pass of its own (tasks with ``own_pass``)."""
        raise NotImplementedError(f"task {self.name!r} has no pass of its own")

    @abstractmethod
    def write(self, run: zarr.Group, results: list[Any]) -> None:
        """Write its (non-empty) results into the run's group, under ``run/<name>/``."""

    def table_rows(self, summary: Summary) -> list[tuple[str, ...]]:
        """Its rows in the table ``table_title``, from the fit's summary (which may lack its
        key: a summary written before the task existed)."""
        return []

    def artifact_rows(self, summary: Summary) -> list[dict[str, Any]]:
        """Its rows in the Prefect table of tasks (numbers, not strings)."""
        return []

    @abstractmethod
    def line(self, item: Summary) -> str:
        """The log line of one result, from its ``summary()``."""
