"""A table for people (:class:`Table`) and the cell formats the tables share.

:mod:`mmpipe.report` lays tables out (terminal, Markdown, Prefect); each task of
:mod:`mmpipe.tasks` builds its own rows with the helpers here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Summary = Mapping[str, Any]


@dataclass(frozen=True)
class Table:
    """A table for people, every cell already formatted."""

    title: str
    columns: tuple[str, ...]
    """Column headings."""
    rows: tuple[tuple[str, ...], ...]
    """One tuple of cells per row, as many as columns."""
    notes: tuple[str, ...] = ()
    """Sentences shown under the table (none in the common case)."""


def arrow(item: Summary) -> str:
    """ "source → target" of a pair's summary."""
    return f"{item['source']} → {item['target']}"


def features(item: Summary) -> str:
    """ "a+b" of a feature set's summary."""
    return "+".join(item["features"])


def rounded(value: float) -> float:
    """A number of a Prefect table row: 6 digits, still a number (the UI sorts by it)."""
    return round(float(value), 6)


def task_row(task: str, features: str, alpha: float, cv: Mapping[str, Any]) -> dict[str, Any]:
    """A task's Prefect table row: CV metric means at the chosen penalty (the per-fold lists
    are left out)."""
    metrics = {k: rounded(v) for k, v in cv.items() if k != "accuracy_folds"}
    return {"task": task, "features": features, "alpha": alpha} | metrics
