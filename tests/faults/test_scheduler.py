"""A scheduler that is wrong, frozen or gone ends the run with ClusterError in bounded time.

Bounds are generous on purpose (a busy 2-core machine): what is tested is that the wait ends
with the right error, not how fast.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from chaos import Background, external_cluster, kill_mid_pass, slow_down
from distributed import Client
from servers import BIN, free_port

import mmpipe
from mmpipe.cluster import ClusterSpec, dask_client
from mmpipe.errors import ClusterError
from mmpipe.io.synth import SynthSpec, synthesize

pytestmark = pytest.mark.slow

TIMEOUT = 4.0  # the scheduler timeout of these tests, in seconds


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("scheduler") / "d.zarr"
    return synthesize(path, SynthSpec(rows=10_000, modalities={"a": 12, "b": 10}, chunk_rows=250))


def test_a_wrong_address_fails_fast_with_one_line(store: str) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    expected = f"cannot reach the Dask scheduler at {address} within 2 s"
    with (
        pytest.raises(ClusterError, match=expected),
        dask_client(ClusterSpec(address=address, connect_timeout=2)),
    ):
        pass
    assert time.monotonic() - start < 2 + 15
    done = subprocess.run(
        [str(BIN / "mmpipe"), "fit", store, "--address", address, "--connect-timeout", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: cannot reach the Dask scheduler at {address} within 2 s: check the address "
        "and that the scheduler runs"
    ]


def _stop(cluster: Any) -> None:
    os.kill(cluster.scheduler.pid, signal.SIGSTOP)


def _kill(cluster: Any) -> None:
    os.kill(cluster.scheduler.pid, signal.SIGKILL)


def _kill_workers(cluster: Any) -> None:
    for worker in cluster.workers:
        os.kill(worker.pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (_stop, f"has not answered for {TIMEOUT:g} s"),
        (_kill, "lost the connection to the Dask scheduler at"),
        (_kill_workers, f"has had no worker for {TIMEOUT:g} s"),
    ],
    ids=["SIGSTOP scheduler", "SIGKILL scheduler", "SIGKILL all workers"],
)
def test_a_pass_ends_with_cluster_error_when_the_cluster_fails(
    tmp_path: Path, store: str, fault: Any, message: str
) -> None:
    with external_cluster(tmp_path, nanny=False) as cluster:
        spec = ClusterSpec(address=cluster.address, connect_timeout=5, scheduler_timeout=TIMEOUT)
        with dask_client(spec) as client:
            slow_down(client, ("mmpipe.stats.blocked", "block_statistics", 0.05))
            fitting = Background(lambda: mmpipe.fit(store, client=client, chunk_rows=250))
            # Hit the pass while it runs (no worker is killed: pids are not needed).
            watching = Background(lambda: _when_running(client, fitting))
            watching.wait(120)
            hit = time.monotonic()
            fault(cluster)
            fitting.wait(TIMEOUT + 60)
        ended = time.monotonic()
        cluster.scheduler.send_signal(signal.SIGCONT)
    assert isinstance(fitting.error, ClusterError), fitting.error
    text = str(fitting.error)
    assert message in text
    assert cluster.address in text
    assert "\n" not in text
    assert fitting.ended - hit < TIMEOUT + 30
    assert ended - hit < TIMEOUT + 45  # closing the client is bounded too


def _when_running(client: Any, fitting: Background) -> None:
    """Return once the statistics pass has block tasks done and others to go."""
    kill_mid_pass(client, "block_statistics", {}, running=fitting.running, act=False)


def test_the_cli_says_one_line_when_the_scheduler_dies_mid_pass(tmp_path: Path, store: str) -> None:
    with external_cluster(tmp_path, nanny=False) as cluster:
        watcher = Client(cluster.address, timeout=30, set_as_default=False)
        try:
            slow_down(watcher, ("mmpipe.stats.blocked", "block_statistics", 0.05))
            fit = subprocess.Popen(
                [
                    str(BIN / "mmpipe"),
                    "fit",
                    store,
                    "--address",
                    cluster.address,
                    "--chunk-rows",
                    "250",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            kill_mid_pass(
                watcher, "block_statistics", {}, running=lambda: fit.poll() is None, act=False
            )
            _kill(cluster)
            _, stderr = fit.communicate(timeout=120)
        finally:
            with contextlib.suppress(Exception):
                watcher.close(timeout=5)
    assert fit.returncode == 1
    assert stderr.strip().splitlines() == [
        f"error: lost the connection to the Dask scheduler at {cluster.address} during the "
        "computation: check that it runs, then run again"
    ]
