"""Servers for the orchestration tests; see servers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import DaskCluster, PrefectAPI, dask_processes, prefect_api_server


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """Prefect's embedded server, through its test harness, for flows run in this process."""
    from prefect.testing.utilities import prefect_test_harness

    # Its default start-up timeout (20-30 s here) is too short on a busy 2-core machine.
    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectAPI]:
    with prefect_api_server(tmp_path_factory.mktemp("prefect-home")) as api:
        yield api


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[DaskCluster]:
    with dask_processes(tmp_path) as cluster:
        yield cluster
