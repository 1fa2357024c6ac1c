"""Shared fixtures. No network: Dask dashboards off, Prefect analytics off."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mmpipe.io.dataset import write_dataset


def make_views(
    n: int = 240, widths: tuple[int, ...] = (7, 5, 4), *, seed: int = 0, classes: int = 3
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Correlated views of n rows from shared latent factors, plus labels."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    views = {}
    for i, w in enumerate(widths):
        load = rng.standard_normal((3, w))
        views[f"m{i}"] = z @ load + 0.5 * rng.standard_normal((n, w)) + rng.normal(0, 3, w)
    labels = np.argmax(z @ rng.standard_normal((3, classes)), axis=1).astype(np.int64)
    return views, labels


@pytest.fixture
def small_views() -> tuple[dict[str, np.ndarray], np.ndarray]:
    return make_views()


@pytest.fixture
def small_store(tmp_path: Path, small_views: tuple[dict[str, np.ndarray], np.ndarray]) -> str:
    views, labels = small_views
    return write_dataset(
        tmp_path / "small.zarr", views, labels=labels, chunk_rows=50, ids=np.arange(labels.size)
    )


@pytest.fixture(scope="session")
def local_client() -> Iterator[object]:
    """One 2-worker LocalCluster for the tests that need real worker processes."""
    from mmpipe.cluster import ClusterSpec, dask_client

    with dask_client(ClusterSpec(workers=2, threads_per_worker=1, memory_limit="2GiB")) as c:
        yield c
