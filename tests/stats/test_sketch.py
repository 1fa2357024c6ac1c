"""Wide modalities: the randomized sketch against exact NumPy, chunking and the exact fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mmpipe
from mmpipe.io.dataset import open_dataset, write_dataset
from mmpipe.models.sketch import RangeSketch, merge_sketches, rademacher
from mmpipe.stats.sketch import sketch_wide


def _wide(n: int = 1500, d: int = 400, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A wide view and a narrow one sharing 6 latent factors; uneven column scales/offsets."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 6))
    wide = latent @ rng.standard_normal((6, d)) * 2 + rng.standard_normal((n, d))
    wide = wide * rng.uniform(0.5, 20, d) + rng.uniform(-50, 50, d)
    narrow = latent @ rng.standard_normal((6, 12)) + 0.5 * rng.standard_normal((n, 12))
    labels = (latent[:, 0] > 0).astype(np.int64)
    return {"wide": wide.astype(np.float32), "narrow": narrow}, labels


def test_rademacher_depends_only_on_the_row() -> None:
    rows = np.arange(100, 160)
    whole = rademacher(rows, 8, seed=3)
    assert set(np.unique(whole)) == {-1.0, 1.0}
    np.testing.assert_array_equal(whole[10:20], rademacher(rows[10:20], 8, seed=3))
    assert not np.array_equal(whole, rademacher(rows, 8, seed=4))
    assert abs(whole.mean()) < 0.2


def test_merged_sketches_equal_the_direct_product() -> None:
    x = np.random.default_rng(1).standard_normal((300, 7)) * 5 + 40
    rows = np.arange(300)
    direct_mean = x.mean(axis=0)
    omega = rademacher(rows, 5, seed=0)
    parts = [
        RangeSketch.from_rows(x[a:b], rows[a:b], 5, 0) for a, b in [(0, 17), (17, 200), (200, 300)]
    ]
    merged = merge_sketches(*parts)
    assert merged.n == 300
    np.testing.assert_allclose(merged.mean, direct_mean, rtol=1e-13)
    np.testing.assert_allclose(merged.sq, ((x - direct_mean) ** 2).sum(axis=0), rtol=1e-11)
    np.testing.assert_allclose(merged.sketch, omega.T @ (x - direct_mean), atol=1e-9)
    np.testing.assert_allclose(merged.weights, omega.sum(axis=0))


def test_sketch_finds_the_top_subspace_and_ignores_chunking(tmp_path: Path) -> None:
    views, labels = _wide()
    url = write_dataset(tmp_path / "w.zarr", views, labels=labels, chunk_rows=100)
    ds = open_dataset(url)
    red = sketch_wide(ds, {"wide": 40}, power_iterations=1)["wide"]
    x = views["wide"].astype(np.float64)
    np.testing.assert_allclose(red.offset, x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(red.scale, x.std(axis=0), rtol=1e-6)
    np.testing.assert_allclose(red.basis.T @ red.basis, np.eye(40), atol=1e-10)
    # The exact top-6 eigenvectors of the standardized covariance lie in the sketch's span.
    standardized = (x - x.mean(axis=0)) / x.std(axis=0)
    _, vectors = np.linalg.eigh(np.cov(standardized, rowvar=False))
    top = vectors[:, -6:]
    cosines = np.linalg.svd(red.basis.T @ top, compute_uv=False)
    assert cosines.min() > 0.999
    # The reduction's coordinates are the formula's.
    np.testing.assert_allclose(
        red.apply(views["wide"][:50]), standardized[:50] @ red.basis, atol=1e-8
    )
    # Other row blocks give the same reduction (Ω depends on the row, not the block).
    again = sketch_wide(open_dataset(url, chunk_rows=37), {"wide": 40}, power_iterations=1)
    np.testing.assert_allclose(again["wide"].basis, red.basis, atol=1e-9)


def test_sketched_fit_is_close_to_the_exact_one(tmp_path: Path) -> None:
    views, labels = _wide()
    url = write_dataset(tmp_path / "w.zarr", views, labels=labels, chunk_rows=100)
    kw = dict(components=6, folds=3, alphas=(0.1, 10.0), classify=["wide"])
    exact = mmpipe.fit(url, sketch_above=None, **kw)
    sketched = mmpipe.fit(url, sketch_above=100, **kw)
    assert sketched.reductions["wide"].width == min(400, 4 * 6 + 64)
    assert exact.reductions == {}
    assert sketched.summary()["sketched"] == {"wide": {"columns": 400, "sketch_columns": 88}}
    for a, b in zip(exact.pairs, sketched.pairs, strict=True):
        np.testing.assert_allclose(a.r2, b.r2, atol=5e-3)
    accuracy = [c.summary()["cv"]["accuracy"] for c in (exact.classify[0], sketched.classify[0])]
    assert accuracy[1] == pytest.approx(accuracy[0], abs=0.02)
    assert accuracy[1] > 0.9
    # The reduction is written with the run, so raw rows can be mapped later.
    written = mmpipe.fit(url, sketch_above=100, out=tmp_path / "r.zarr", **kw)
    import zarr

    stored = zarr.open_group(str(written.results), mode="r")["sketches/wide"]
    np.testing.assert_array_equal(stored["basis"][...], written.reductions["wide"].basis)
    assert stored["offset"].shape == (400,)
    # Chunking does not change the sketched fit either.
    other = mmpipe.fit(url, sketch_above=100, chunk_rows=64, **kw)
    for a, b in zip(sketched.pairs, other.pairs, strict=True):
        np.testing.assert_allclose(a.r2, b.r2, rtol=1e-9)


def test_bad_sketch_settings_are_named(tmp_path: Path) -> None:
    views, labels = _wide(n=100, d=20)
    url = write_dataset(tmp_path / "w.zarr", views, labels=labels)
    with pytest.raises(mmpipe.MmpipeError, match="sketch_columns"):
        mmpipe.fit(url, sketch_above=10, sketch_columns=1)
    with pytest.raises(mmpipe.MmpipeError, match="sketch_power"):
        mmpipe.fit(url, sketch_power=-1)
