"""Prefect test fixtures: an embedded server for the whole session, started once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    # Its default start-up timeout (20-30 s here) is too short on a busy 2-core machine.
    with prefect_test_harness(server_startup_timeout=180):
        yield
