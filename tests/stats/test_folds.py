"""Fold plans: deterministic, balanced, stratified, independent of chunking."""

from __future__ import annotations

import numpy as np
import pytest

from mmpipe.errors import ConfigError, DataValueError
from mmpipe.stats.folds import holdout_plan, kfold_plan


def test_kfold_partitions_rows_evenly() -> None:
    plan = kfold_plan(103, 5, seed=3)
    sizes = np.bincount(plan.assignment)
    assert sizes.sum() == 103
    assert sizes.max() - sizes.min() <= 1
    for s in range(5):
        assert not np.any(plan.train_mask(s) & plan.validation_mask(s))
        assert np.all(plan.train_mask(s) | plan.validation_mask(s))


def test_kfold_stratified_by_class() -> None:
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    plan = kfold_plan(100, 5, labels=labels, seed=0)
    for f in range(5):
        counts = np.bincount(labels[plan.assignment == f], minlength=3)
        np.testing.assert_array_equal(counts, [10, 6, 4])


def test_same_seed_same_plan_other_seed_other_plan() -> None:
    a = kfold_plan(200, 4, seed=7).assignment
    assert np.array_equal(a, kfold_plan(200, 4, seed=7).assignment)
    assert not np.array_equal(a, kfold_plan(200, 4, seed=8).assignment)


def test_holdout_fraction_per_class() -> None:
    labels = np.repeat([0, 1], [600, 400])
    plan = holdout_plan(1000, 0.2, labels=labels, seed=1)
    val = plan.validation_mask(0)
    assert val.sum() == 200
    assert np.bincount(labels[val]).tolist() == [120, 80]
    assert plan.n_splits == 1


@pytest.mark.parametrize("k", [1, 0, 200])
def test_bad_folds(k: int) -> None:
    with pytest.raises(ConfigError, match="folds must be an int from 2 to 127"):
        kfold_plan(500, k)


@pytest.mark.parametrize("frac", [0.0, 1.0, -0.1, 1.5])
def test_bad_holdout(frac: float) -> None:
    with pytest.raises(ConfigError, match="holdout must be a fraction"):
        holdout_plan(100, frac)


def test_kfold_refuses_a_class_with_fewer_rows_than_folds() -> None:
    """Stratified 5-fold with a 3-row class: two validation folds would hold none of it.
    scikit-learn's StratifiedKFold only warns here."""
    labels = np.repeat([0, 1, 2], [50, 3, 47])
    with pytest.raises(
        DataValueError,
        match=r"^labels: class 1 \(3 rows\) has fewer rows than the 5 folds, .*"
        r"use --folds 3 or fewer, or merge or drop the class\.$",
    ):
        kfold_plan(100, 5, labels=labels)
    with pytest.raises(DataValueError, match=r"^labels: classes 1 \(1 row\), 2 \(1 row\) have"):
        kfold_plan(52, 2, labels=np.repeat([0, 1, 2], [50, 1, 1]))


def test_kfold_rare_class_recorded_when_asked() -> None:
    labels = np.repeat([0, 1, 2], [50, 3, 47])
    plan = kfold_plan(100, 5, labels=labels, rare="note")
    assert plan.rare_classes == {1: 3}
    assert plan.describe()["rare_classes"] == {"1": 3}
    # the plan itself is the same stratified plan
    counts = [np.count_nonzero(labels[plan.assignment == f] == 1) for f in range(5)]
    assert sorted(counts) == [0, 0, 1, 1, 1]
    assert "rare_classes" not in kfold_plan(100, 5, labels=np.repeat([0, 1], 50)).describe()


@pytest.mark.parametrize(("sizes", "fraction"), [([600, 2], 0.2), ([600, 1], 0.6)])
def test_holdout_refuses_a_class_all_on_one_side(sizes: list[int], fraction: float) -> None:
    """A 2-row class under a 0.2 hold-out has no validation row; a 1-row class under 0.6
    has no training row."""
    labels = np.repeat([0, 1], sizes)
    with pytest.raises(DataValueError, match=r"^labels: class 1 \(\d rows?\) has too few rows"):
        holdout_plan(labels.size, fraction, labels=labels)
    assert holdout_plan(labels.size, fraction, labels=labels, rare="note").rare_classes == {
        1: sizes[1]
    }
