"""Shared fixtures. No network: Dask dashboards off, Prefect analytics off."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import make_views

from mmpipe.io.dataset import write_dataset


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the LocalCluster fixture starts worker processes: it must say so with
    ``@pytest.mark.slow``, so that ``-m "not slow"`` really leaves them out."""
    unmarked = [
        item.nodeid
        for item in items
        if "local_client" in getattr(item, "fixturenames", ())
        and item.get_closest_marker("slow") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests use the local_client fixture (a LocalCluster) without "
            "@pytest.mark.slow: " + ", ".join(unmarked)
        )
