"""Tasks are plug-ins: a task registered in mmpipe.tasks.TASKS (and written nowhere else)
joins the one scoring pass and appears in FitResult, its summary, the results store, the
tables and the log, while every other task's numbers stay the same."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import mmpipe
import mmpipe.engine
import mmpipe.tasks
import mmpipe.tasks.classifier
from mmpipe import report
from mmpipe.io.results import write_array
from mmpipe.io.runs import read_run
from mmpipe.models.classify import classification_metrics
from mmpipe.options import FitConfig
from mmpipe.stats.scoring import ScoringResult
from mmpipe.tables import Summary
from mmpipe.tasks import ScoringRequest, Task, TaskContext
from mmpipe.tasks.classifier import classifier_scorer

OPTIONS: dict[str, Any] = {
    "components": 2,
    "folds": 3,
    "classify": ["m0"],
    "transfer": True,
    "retrieval": True,
    "retrieval_rows": 40,
}


@dataclass(frozen=True)
class DummyResult:
    confusion: np.ndarray

    def summary(self) -> dict[str, Any]:
        return {"accuracy": classification_metrics(self.confusion[:, 0].sum(axis=0))["accuracy"]}


class Dummy(Task):
    """Classifies from m0 with the classifiers the classify task shares (first α only)."""

    name = "dummy"
    table_title = "Dummy task"
    table_columns = ("task", "accuracy")

    def active(self, config: FitConfig) -> bool:
        return True

    def score(self, context: TaskContext) -> ScoringRequest:
        scorer = classifier_scorer("dummy:m0", context.classifiers(("m0",))[:-1])

        def collect(scored: ScoringResult) -> list[Any]:
            return [DummyResult(scored.confusions["dummy:m0"])]

        return ScoringRequest(collect, [scorer])

    def write(self, run: zarr.Group, results: list[Any]) -> None:
        group = run.create_group(self.name)
        write_array(group, "confusion", results[0].confusion, ["split", "alpha", "true", "pred"])

    def table_rows(self, summary: Summary) -> list[tuple[str, ...]]:
        return [("dummy", f"{d['accuracy']:.4f}") for d in summary.get(self.name) or []]

    def line(self, item: Summary) -> str:
        return f"dummy: accuracy {item['accuracy']:.4f}"


def counted_fit(
    store: str, monkeypatch: pytest.MonkeyPatch, **kwargs: Any
) -> tuple[Any, list[int], list[tuple[str, ...]]]:
    """A fit, with the scoring passes it ran and the classifiers it fitted."""
    passes: list[int] = []
    fitted: list[tuple[str, ...]] = []
    real_pass = mmpipe.engine.run_scoring_pass
    real_fit = mmpipe.tasks.classifier.fit_classifier

    def scoring_pass(*args: Any, **kw: Any) -> Any:
        passes.append(len(args[4]))  # the scorers it was given
        return real_pass(*args, **kw)

    def fit_classifier(stats: Any, features: Any, *args: Any, **kw: Any) -> Any:
        fitted.append(tuple(features))
        return real_fit(stats, features, *args, **kw)

    with monkeypatch.context() as patch:
        patch.setattr(mmpipe.engine, "run_scoring_pass", scoring_pass)
        patch.setattr(mmpipe.tasks.classifier, "fit_classifier", fit_classifier)
        result = mmpipe.fit(store, **OPTIONS, **kwargs)
    return result, passes, fitted


def without(summary: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in keys}


def test_a_registered_task_joins_the_one_scoring_pass(
    small_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    plain, plain_passes, plain_fitted = counted_fit(small_store, monkeypatch)
    plain_summary = plain.summary()  # before the registry has the dummy task
    monkeypatch.setattr(mmpipe.tasks, "TASKS", (*mmpipe.tasks.TASKS, Dummy()))
    with caplog.at_level(logging.INFO, logger="mmpipe"):
        result, passes, fitted = counted_fit(small_store, monkeypatch, out=tmp_path / "r.zarr")

    # One scoring pass, with one scorer more; no classifier fitted twice.
    assert len(plain_passes) == len(passes) == 1
    assert passes[0] == plain_passes[0] + 1
    assert sorted(fitted) == sorted(plain_fitted)

    # In FitResult, the summary (after the other tasks, same keys otherwise) and the store.
    (dummy,) = result.dummy
    assert result.tasks["dummy"] == [dummy]
    summary = result.summary()
    keys = list(plain_summary)
    # After the registry's last list task before the dummy (single-result tasks come later).
    listed = [t.name for t in mmpipe.tasks.TASKS[:-1] if not getattr(t, "single", False)]
    at = keys.index(listed[-1]) + 1
    assert list(summary) == [*keys[:at], "dummy", *keys[at:]]
    assert summary["dummy"] == [dummy.summary()]
    stored = read_run(tmp_path / "r.zarr")
    assert np.array_equal(stored["dummy/confusion"][...], dummy.confusion)  # type: ignore[index]
    assert summary["dummy"] == stored.attrs["summary"]["dummy"]  # type: ignore[index]

    # The same classifiers as the classify task: the same counts, and other numbers unchanged.
    (classify,) = result.classify
    assert np.array_equal(dummy.confusion, classify.confusion)
    skip = ("run_id", "results", "timings", "dummy")
    assert without(summary, *skip) == without(plain_summary, *skip)
    for name in ("classify", "transfer", "retrieval"):
        assert len(result.tasks[name]) == len(plain.tasks[name]) > 0
    for mine, theirs in zip(result.transfer, plain.transfer, strict=True):
        assert np.array_equal(mine.confusion, theirs.confusion)
        assert np.array_equal(mine.target_confusion, theirs.target_confusion)
    for mine, theirs in zip(result.retrieval, plain.retrieval, strict=True):
        for a, b in zip(mine.ranks, theirs.ranks, strict=True):
            assert np.array_equal(a.forward, b.forward)
            assert np.array_equal(a.rows, b.rows)

    # Rendered: its table after the others, its log line.
    titles = [t.title for t in report.tables(summary)]
    assert titles[-1] == "Dummy task"
    assert titles[:-1] == [t.title for t in report.tables(plain_summary)]
    assert report.line("dummy", summary["dummy"][0]) in caplog.messages


def test_every_task_reads_as_an_attribute(small_store: str) -> None:
    result = mmpipe.fit(small_store, components=2, folds=3, classify=["m0"])
    for task in mmpipe.tasks.TASKS:
        assert getattr(result, task.name) == result.tasks[task.name]
    assert len(result.classify) == 1
    assert result.logistic == []
    with pytest.raises(AttributeError):
        result.no_such_task  # noqa: B018
