"""Chan merges equal the direct statistics, for any partition and any tree."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mmpipe.stats.moments import Moments, gram, merge, merge_all


def test_from_rows_matches_numpy() -> None:
    z = np.random.default_rng(0).standard_normal((50, 4)) * 10 + 100
    m = Moments.from_rows(z)
    np.testing.assert_allclose(m.mean, z.mean(axis=0))
    np.testing.assert_allclose(m.m2, (z - z.mean(0)).T @ (z - z.mean(0)), rtol=1e-12)
    np.testing.assert_allclose(m.covariance(), np.cov(z, rowvar=False), rtol=1e-12)


def test_gram_is_symmetric_syrk() -> None:
    z = np.random.default_rng(1).standard_normal((30, 6))
    np.testing.assert_allclose(gram(z), z.T @ z, rtol=1e-12)
    assert np.array_equal(gram(z), gram(z).T)


# Random partitions drawn with NumPy, not Hypothesis: Hypothesis fails a draw when any thread
# (a Dask or Prefect thread left by an earlier test) touches the global `random` module.
@pytest.mark.parametrize("seed", range(40))
def test_any_partition_merges_to_the_whole(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cuts = rng.integers(0, 81, size=rng.integers(0, 9)).tolist()  # empty parts included
    z = rng.standard_normal((80, 3)) * 5 + 7
    bounds = sorted({0, 80, *cuts})
    parts = [Moments.from_rows(z[a:b]) for a, b in itertools.pairwise(bounds)]
    whole = Moments.from_rows(z)
    merged = merge_all(parts)
    assert merged.n == 80
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(merged.m2, whole.m2, rtol=1e-10, atol=1e-10)
    # Sequential (left-fold) merging agrees with the balanced tree.
    seq = Moments.empty(3)
    for p in parts:
        seq = merge(seq, p)
    np.testing.assert_allclose(seq.m2, whole.m2, rtol=1e-10, atol=1e-10)


def test_project_and_take() -> None:
    z = np.random.default_rng(2).standard_normal((40, 5))
    m = Moments.from_rows(z)
    basis = np.random.default_rng(3).standard_normal((5, 2))
    offset = np.arange(5.0)
    direct = Moments.from_rows((z - offset) @ basis)
    proj = m.project(offset, basis)
    np.testing.assert_allclose(proj.mean, direct.mean, rtol=1e-12)
    np.testing.assert_allclose(proj.m2, direct.m2, rtol=1e-10)
    sub = m.take(np.array([3, 1]))
    np.testing.assert_allclose(sub.m2, Moments.from_rows(z[:, [3, 1]]).m2, rtol=1e-12)


def test_float32_gram_is_close_to_float64_and_stored_as_float64() -> None:
    # Off-centre data: the rows are centred before the float32 product, so the mean does not
    # cost precision.
    z = np.random.default_rng(4).standard_normal((5000, 6)) * 3 + 1000
    exact = Moments.from_rows(z)
    single = Moments.from_rows(z.astype(np.float32), dtype=np.float32)
    assert single.m2.dtype == np.float64
    assert single.mean.dtype == np.float64
    np.testing.assert_allclose(single.mean, exact.mean, rtol=1e-7)
    scale = np.abs(exact.m2).max()
    assert np.abs(single.m2 - exact.m2).max() / scale < 1e-5
    assert np.abs(single.m2 - exact.m2).max() / scale > 0  # it really ran in float32


def test_from_shifted_gram_matches_numpy() -> None:
    rng = np.random.default_rng(8)
    z = rng.standard_normal((500, 4)) * [1, 10, 1e-3, 3] + [1e5, -7, 2, 0]
    shift = z[:20].mean(axis=0)
    ones = np.hstack([z - shift, np.ones((500, 1))])
    m = Moments.from_shifted_gram(ones.T @ ones, 500, shift)
    mean = z.mean(axis=0)
    np.testing.assert_allclose(m.mean, mean, rtol=1e-14)
    np.testing.assert_allclose(m.m2, (z - mean).T @ (z - mean), rtol=1e-9)
