"""Cross-validation plans defined on row positions.

A plan assigns every row to a group; each split names its training and validation groups.
Assignments depend only on the row count, the labels and the seed, never on chunking or on
the number of workers.

Stratified by labels, a class needs a row in every validation group and in every training set:
with fewer rows than the folds (or a hold-out fraction that leaves none of its rows on one
side) :func:`kfold_plan` and :func:`holdout_plan` raise :class:`~mmpipe.errors.DataValueError`
naming the class, or, with ``rare="note"`` (a fit that uses the labels only to balance its
folds), spread the class as well as they can and record it in ``FoldPlan.rare_classes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from mmpipe.errors import ConfigError, DataValueError

Rare = Literal["raise", "note"]
GIVEN_ROLES = ("train", "test", "unused")
"""The groups of a given split, in order (values 0, 1 and −1 of the dataset's ``split``)."""


@dataclass(frozen=True, eq=False)
class FoldPlan:
    """Which rows train and validate each split."""

    kind: str
    """'kfold', 'holdout' or 'given' (the dataset's own ``split`` array)."""
    assignment: np.ndarray
    """(n,) int8 group of every row."""
    n_groups: int
    """Number of groups (K for K-fold; 2 for hold-out: 0 validation, 1 training; 3 for a
    given split: 0 train, 1 test, 2 unused)."""
    splits: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    """Per split: (training groups, validation groups)."""
    seed: int
    """Seed the assignment was drawn with."""
    stratified: bool
    """Whether rows were spread over groups class by class."""
    rare_classes: dict[int, int] = field(default_factory=dict)
    """class -> rows, for the classes too small to appear in every training and validation
    set (only with ``rare="note"``; empty otherwise)."""
    final_groups: tuple[int, ...] | None = None
    """The groups whose rows the final models are fitted on: None for all rows (K-fold,
    hold-out), the train group for a given split (its test and unused rows never train)."""

    @property
    def n_splits(self) -> int:
        return len(self.splits)

    def train_mask(self, split: int) -> np.ndarray:
        return np.isin(self.assignment, self.splits[split][0])

    def validation_mask(self, split: int) -> np.ndarray:
        return np.isin(self.assignment, self.splits[split][1])

    def describe(self) -> dict[str, object]:
        """JSON-ready summary for results attributes (a given split: its rows per role)."""
        sizes = np.bincount(self.assignment, minlength=self.n_groups).tolist()
        return {
            "kind": self.kind,
            "n_splits": self.n_splits,
            "seed": self.seed,
            "stratified": self.stratified,
            "group_sizes": sizes,
        } | (
            {"rows": dict(zip(GIVEN_ROLES, sizes, strict=True))}
            if self.kind == "given"
            else {}
        ) | (
            {
                "rare_classes": {str(c): n for c, n in self.rare_classes.items()},
                "rare_classes_note": "too few rows to appear in every training and validation "
                "set; stratification spread them as well as it could",
            }
            if self.rare_classes
            else {}
        )


def _listing(classes: dict[int, int]) -> str:
    """'class 7 (3 rows) has' or 'classes 7 (3 rows), 9 (1 row) have' (at most five named)."""
    named = ", ".join(f"{c} ({n} row{'s' if n != 1 else ''})" for c, n in list(classes.items())[:5])
    more = f" and {len(classes) - 5} more" if len(classes) > 5 else ""
    return f"class {named} has" if len(classes) == 1 else f"classes {named}{more} have"


def _too_few(labels: np.ndarray, k: int) -> dict[int, int]:
    values, counts = np.unique(labels, return_counts=True)
    return {v.item(): int(c) for v, c in zip(values, counts, strict=True) if c < k}


def _spread(n: int, labels: np.ndarray | None, k: int, rng: np.random.Generator) -> np.ndarray:
    """Assign rows to k groups of near-equal size, class by class when labels are given."""
    out = np.empty(n, dtype=np.int8)
    if labels is None:
        out[rng.permutation(n)] = np.arange(n) % k
        return out
    # Stratify: walk the classes in a shuffled order of their rows, dealing groups round-robin
    # with one running counter, so class and group sizes both stay balanced.
    order = np.argsort(labels, kind="stable")
    start = 0
    offset = 0
    for count in np.unique(labels, return_counts=True)[1]:
        rows = order[start : start + count]
        rows = rows[rng.permutation(count)]
        out[rows] = (offset + np.arange(count)) % k
        offset += count
        start += count
    return out


def kfold_plan(
    n: int,
    k: int = 5,
    *,
    labels: np.ndarray | None = None,
    seed: int = 0,
    rare: Rare = "raise",
) -> FoldPlan:
    """K-fold plan over n rows, stratified by ``labels`` when given.

    A class with fewer than ``k`` rows raises DataValueError (``rare="raise"``) or is recorded
    in ``rare_classes`` (``rare="note"``)."""
    if not isinstance(k, int | np.integer) or not 2 <= k <= 127:
        # FitConfig refuses these first; this guards direct calls, in the same words.
        raise ConfigError(
            f"folds must be an int from 2 to 127 (each row's fold number is stored as an "
            f"int8); got {k!r}."
        )
    rare_classes = {} if labels is None else _too_few(labels, k)
    if rare_classes and rare == "raise":
        smallest = min(rare_classes.values())
        fewer = f"use --folds {smallest} or fewer, or " if smallest >= 2 else ""
        raise DataValueError(
            f"labels: {_listing(rare_classes)} fewer rows than the {k} folds, so some "
            "training or validation sets would hold none of it and its scores would mean "
            f"nothing: {fewer}merge or drop {'the class' if len(rare_classes) == 1 else 'them'}."
        )
    rng = np.random.default_rng(seed)
    assignment = _spread(n, labels, k, rng)
    splits = tuple((tuple(g for g in range(k) if g != f), (f,)) for f in range(k))
    return FoldPlan("kfold", assignment, k, splits, seed, labels is not None, rare_classes)


def holdout_plan(
    n: int,
    fraction: float,
    *,
    labels: np.ndarray | None = None,
    seed: int = 0,
    rare: Rare = "raise",
) -> FoldPlan:
    """One split: a ``fraction`` of the rows (of every class, when labels are given) validates.

    A class whose rows all land on one side raises DataValueError (``rare="raise"``) or is
    recorded in ``rare_classes`` (``rare="note"``)."""
    if not 0.0 < float(fraction) < 1.0:
        raise ConfigError(f"holdout must be a fraction of the rows in (0, 1); got {fraction!r}.")
    rng = np.random.default_rng(seed)
    # Rank every row in (0, 1) by a seeded shuffle, class by class; the lowest ranks validate.
    rank = np.empty(n)
    groups = (
        [np.arange(n)]
        if labels is None
        else [np.flatnonzero(labels == cls) for cls in np.unique(labels)]
    )
    for rows in groups:
        rank[rows[rng.permutation(rows.size)]] = (np.arange(rows.size) + 0.5) / rows.size
    assignment = np.where(rank < fraction, 0, 1).astype(np.int8)
    if assignment.min() == assignment.max():
        raise ConfigError(
            f"holdout {fraction!r} of {n} rows leaves no rows on one side: choose a fraction "
            "that keeps rows both to fit and to validate."
        )
    rare_classes: dict[int, int] = {}
    if labels is not None:
        for cls, rows in zip(np.unique(labels), groups, strict=True):
            validating = int(np.count_nonzero(assignment[rows] == 0))
            if validating in (0, rows.size):
                rare_classes[cls.item()] = int(rows.size)
    if rare_classes and rare == "raise":
        raise DataValueError(
            f"labels: {_listing(rare_classes)} too few rows for a hold-out of "
            f"{fraction}: all of them land in training or all in validation, so its scores "
            "would mean nothing: change --holdout, use K-fold, or merge or drop "
            f"{'the class' if len(rare_classes) == 1 else 'them'}."
        )
    return FoldPlan(
        "holdout", assignment, 2, (((1,), (0,)),), seed, labels is not None, rare_classes
    )


def given_plan(
    split: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    seed: int = 0,
    rare: Rare = "raise",
) -> FoldPlan:
    """One split given by the dataset: rows with ``split`` 0 train, 1 test (its validation),
    −1 are used nowhere. The final models are fitted on the train rows only
    (``final_groups``). ``seed`` only draws what later steps sample (retrieval's rows).
    ``split`` was checked when it was read
    (:meth:`mmpipe.io.dataset.Dataset.read_split`).

    With labels, a class without a train or a test row (among the rows used) raises
    DataValueError (``rare="raise"``) or is recorded in ``rare_classes`` (``rare="note"``)."""
    split = np.asarray(split)
    # Groups: 0 train, 1 test, 2 unused (GIVEN_ROLES); the split's values 0, 1, −1.
    assignment = np.where(split < 0, 2, split).astype(np.int8)
    rare_classes: dict[int, int] = {}
    if labels is not None:
        used = assignment < 2
        for cls in np.unique(labels[used]):
            rows = used & (labels == cls)
            training = int(np.count_nonzero(rows & (assignment == 0)))
            if training in (0, int(np.count_nonzero(rows))):
                rare_classes[cls.item()] = int(np.count_nonzero(rows))
    if rare_classes and rare == "raise":
        raise DataValueError(
            f"split: {_listing(rare_classes)} rows only in training or only in test (split 0 "
            "or 1), so its scores would mean nothing: give it rows on both sides, or merge or "
            f"drop {'the class' if len(rare_classes) == 1 else 'them'}."
        )
    return FoldPlan(
        "given", assignment, 3, (((0,), (1,)),), seed, False, rare_classes, final_groups=(0,)
    )
