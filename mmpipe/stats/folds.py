"""Cross-validation plans defined on row positions.

A plan assigns every row to a group; each split names its training and validation groups.
Assignments depend only on the row count, the labels and the seed, never on chunking or on
the number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmpipe.errors import bad_parameter


@dataclass(frozen=True, eq=False)
class FoldPlan:
    """Which rows train and validate each split."""

    kind: str
    """'kfold' or 'holdout'."""
    assignment: np.ndarray
    """(n,) int8 group of every row."""
    n_groups: int
    """Number of groups (K for K-fold; 2 for hold-out: 0 validation, 1 training)."""
    splits: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    """Per split: (training groups, validation groups)."""
    seed: int
    """Seed the assignment was drawn with."""
    stratified: bool
    """Whether rows were spread over groups class by class."""

    @property
    def n_splits(self) -> int:
        return len(self.splits)

    def train_mask(self, split: int) -> np.ndarray:
        return np.isin(self.assignment, self.splits[split][0])

    def validation_mask(self, split: int) -> np.ndarray:
        return np.isin(self.assignment, self.splits[split][1])

    def describe(self) -> dict[str, object]:
        """JSON-ready summary for results attributes."""
        return {
            "kind": self.kind,
            "n_splits": self.n_splits,
            "seed": self.seed,
            "stratified": self.stratified,
            "group_sizes": np.bincount(self.assignment, minlength=self.n_groups).tolist(),
        }


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


def kfold_plan(n: int, k: int = 5, *, labels: np.ndarray | None = None, seed: int = 0) -> FoldPlan:
    """K-fold plan over n rows, stratified by ``labels`` when given."""
    if not isinstance(k, int | np.integer) or k < 2:
        raise bad_parameter("folds", "kfold_plan", "an int in the range [2, 127]", k)
    if k > 127:
        raise bad_parameter("folds", "kfold_plan", "an int in the range [2, 127]", k)
    rng = np.random.default_rng(seed)
    assignment = _spread(n, labels, k, rng)
    splits = tuple((tuple(g for g in range(k) if g != f), (f,)) for f in range(k))
    return FoldPlan("kfold", assignment, k, splits, seed, labels is not None)


def holdout_plan(
    n: int, fraction: float, *, labels: np.ndarray | None = None, seed: int = 0
) -> FoldPlan:
    """One split: a ``fraction`` of the rows (of every class, when labels are given) validates."""
    if not 0.0 < float(fraction) < 1.0:
        raise bad_parameter("holdout", "holdout_plan", "a float in the range (0, 1)", fraction)
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
        raise bad_parameter(
            "holdout",
            "holdout_plan",
            f"a fraction that leaves rows on both sides for n={n}",
            fraction,
        )
    return FoldPlan("holdout", assignment, 2, (((1,), (0,)),), seed, labels is not None)
