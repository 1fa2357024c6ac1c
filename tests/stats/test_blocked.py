"""One block's per-group statistics against NumPy on the group's rows."""

from __future__ import annotations

import numpy as np
import pytest

from mmpipe.stats.blocked import block_statistics
from mmpipe.stats.rowblocks import RowBlock


def _block(rng: np.random.Generator, rows: int, *, masked: bool) -> RowBlock:
    # Offsets far from zero and spread scales: the centered Gram must still be exact.
    a = (rng.standard_normal((rows, 5)) * [1e-2, 1, 10, 100, 1] + 1e4).astype(np.float32)
    b = rng.standard_normal((rows, 3)) - 50.0
    mask_b = rng.random(rows) > 0.3 if masked else None
    if mask_b is not None:
        b[~mask_b] = np.nan  # absent rows may hold anything
    return RowBlock(0, {"a": a, "b": b}, {"a": None, "b": mask_b})


def _reference(block: RowBlock, folds: np.ndarray, codes: np.ndarray, n_classes: int) -> dict:
    a, b = (np.asarray(block.values[n], dtype=np.float64) for n in ("a", "b"))
    here_b = block.present(["b"])
    b = np.where(here_b[:, None], b, 0.0)
    z = np.hstack([a, b, np.eye(n_classes)[codes]])
    out = {}
    for fold in np.unique(folds):
        for pattern in (1, 3):
            rows = (folds == fold) & ((pattern == 3) == here_b)
            if rows.any():
                out[(int(fold), pattern)] = z[rows]
    return out


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("sorted_rows", [False, True])
def test_groups_match_numpy(masked: bool, sorted_rows: bool) -> None:
    rng = np.random.default_rng(3)
    rows = 200
    block = _block(rng, rows, masked=masked)
    folds = np.sort(rng.integers(0, 3, rows)) if sorted_rows else rng.integers(0, 3, rows)
    codes = rng.integers(0, 4, rows)
    result = block_statistics(block, codes, folds, ("a", "b"), 4)
    expected = _reference(block, folds, codes, 4)
    assert set(result.groups) == set(expected)
    assert result.rows == rows
    assert result.nonfinite.tolist() == [0, 0]
    for key, z in expected.items():
        got = result.groups[key]
        mean = z.mean(axis=0)
        m2 = (z - mean).T @ (z - mean)
        assert got.n == len(z)
        np.testing.assert_allclose(got.mean, mean, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(got.m2, m2, rtol=1e-9, atol=1e-8 * np.abs(m2).max())
        np.testing.assert_array_equal(got.m2, got.m2.T)


def test_float32_gram_is_close() -> None:
    rng = np.random.default_rng(4)
    block = _block(rng, 500, masked=True)
    folds = rng.integers(0, 2, 500)
    codes = rng.integers(0, 2, 500)
    exact = block_statistics(block, codes, folds, ("a", "b"), 2)
    single = block_statistics(block, codes, folds, ("a", "b"), 2, "float32")
    for key, m in exact.groups.items():
        np.testing.assert_allclose(single.groups[key].mean, m.mean, rtol=1e-6)
        scale = np.sqrt(np.outer(np.diag(m.m2), np.diag(m.m2)))
        assert np.abs(single.groups[key].m2 - m.m2).max() / scale.max() < 1e-5


def test_nonfinite_present_values_are_counted() -> None:
    rng = np.random.default_rng(5)
    block = _block(rng, 60, masked=True)
    block.values["a"][[3, 4], 0] = np.inf
    here_b = block.present(["b"])
    first_present = int(np.flatnonzero(here_b)[0])
    block.values["b"][first_present, 1] = np.nan
    result = block_statistics(block, None, np.zeros(60, dtype=int), ("a", "b"), 0)
    # NaN in absent rows of b are not counted: they never enter a statistic.
    assert result.nonfinite.tolist() == [2, 1]
    for m in result.groups.values():
        assert np.isfinite(m.m2).all()
        assert np.isfinite(m.mean).all()


def test_shifted_gram_is_exact_on_drifting_and_constant_columns() -> None:
    # Each block shifts its values by a sample mean before the Gram: columns that drift along
    # the rows (sorted data), sit far from zero or never vary must still come out exact.
    rng = np.random.default_rng(6)
    rows = 3000
    drift = np.arange(rows, dtype=np.float64) * 1e3 + rng.standard_normal(rows)
    a = np.column_stack([drift, np.full(rows, 7e6), rng.standard_normal(rows) * 1e-3 + 1e5])
    b = rng.standard_normal((rows, 2))
    block = RowBlock(0, {"a": a, "b": b}, {"a": None, "b": None})
    folds = rng.integers(0, 4, rows)
    result = block_statistics(block, None, folds, ("a", "b"), 0)
    z = np.hstack([a, b])
    for fold in range(4):
        rows_of_fold = z[folds == fold]
        mean = rows_of_fold.mean(axis=0)
        m2 = (rows_of_fold - mean).T @ (rows_of_fold - mean)
        got = result.groups[(fold, 3)]
        np.testing.assert_allclose(got.mean, mean, rtol=1e-13)
        scale = np.sqrt(np.outer(np.diag(m2), np.diag(m2))) + 1e-300
        np.testing.assert_array_less(np.abs(got.m2 - m2), 1e-9 * scale + 1e-12)
