"""Bounded waits on the cluster: timeouts are options, validated, and reach the passes; a
task's own errors pass through the watch unchanged."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from dask.delayed import delayed

from mmpipe.cluster import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_SCHEDULER_TIMEOUT,
    ClusterSpec,
    compute_pass,
    dask_client,
    resolve,
    scheduler_timeout,
    using,
)
from mmpipe.config import load_config
from mmpipe.errors import ClusterError, ConfigError


def test_timeouts_have_documented_defaults_and_reach_the_spec() -> None:
    assert ClusterSpec().connect_timeout == DEFAULT_CONNECT_TIMEOUT == 10
    assert ClusterSpec().scheduler_timeout == DEFAULT_SCHEDULER_TIMEOUT == 60
    config = load_config(
        {"dataset": "x.zarr", "cluster": {"connect_timeout": 3, "scheduler_timeout": 7.5}}
    )
    assert config.cluster == ClusterSpec(connect_timeout=3, scheduler_timeout=7.5)


@pytest.mark.parametrize("name", ["connect_timeout", "scheduler_timeout"])
@pytest.mark.parametrize("value", [0, -1, float("inf")])
def test_timeouts_must_be_positive_seconds(name: str, value: float) -> None:
    with pytest.raises(ConfigError, match=name):
        resolve(ClusterSpec(**{name: value}))
    with pytest.raises(ConfigError, match=f"cluster.{name}"):
        load_config({"dataset": "x.zarr", "cluster": {name: value}})


def _fails(error: BaseException) -> None:
    raise error


@pytest.mark.slow  # the session's LocalCluster: real worker processes
@pytest.mark.parametrize("error", [TimeoutError("slow store"), OSError("disk"), KeyError("k")])
def test_a_tasks_own_error_passes_through_the_watch(local_client: Any, error: Exception) -> None:
    # A task's TimeoutError is not the watch's own wait timing out: raised as it is, at once.
    with pytest.raises(type(error), match=str(error.args[0])), using(local_client):
        compute_pass(delayed(_fails)(error))


@pytest.mark.slow  # the session's LocalCluster: real worker processes
def test_clients_made_by_mmpipe_carry_their_scheduler_timeout(local_client: Any) -> None:
    assert scheduler_timeout(local_client) == DEFAULT_SCHEDULER_TIMEOUT
    address = local_client.scheduler.address
    with dask_client(ClusterSpec(address=address, scheduler_timeout=12)) as client:
        assert scheduler_timeout(client) == 12
        with using(client):
            assert compute_pass(delayed(sum)([1, 2])) == 3


@pytest.mark.slow  # the session's LocalCluster: real worker processes
def test_a_closed_client_is_a_cluster_error(local_client: Any) -> None:
    # What a retried pass meets when its client lost the scheduler for good.
    with dask_client(ClusterSpec(address=local_client.scheduler.address)) as client:
        client.close()
        with pytest.raises(ClusterError, match="is closed"), using(client):
            compute_pass(delayed(sum)([1, 2]))


def _connect(spec: ClusterSpec, limit: float) -> tuple[BaseException | None, float]:
    """Connect (in a thread, so that a hang fails the test instead of blocking it); the error
    and how long it took."""
    out: dict[str, Any] = {}

    def run() -> None:
        start = time.monotonic()
        try:
            with dask_client(spec):
                pass
        except BaseException as error:  # handed to the test
            out["error"] = error
        out["took"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"still connecting after {limit} s"
    return out.get("error"), out["took"]


def test_a_missing_scheduler_file_fails_in_bounded_time(tmp_path: Path) -> None:
    # distributed alone waits for the file forever.
    spec = ClusterSpec(scheduler_file=str(tmp_path / "none.json"), connect_timeout=1)
    error, took = _connect(spec, 30)
    assert isinstance(error, ClusterError)
    assert "cannot read the Dask scheduler's address from scheduler file" in str(error)
    assert took < 1 + 10


def test_a_peer_that_never_answers_fails_in_bounded_time() -> None:
    # The kernel completes the TCP handshake for a listening socket's backlog: the client is
    # connected, then waits for a scheduler's answer that never comes (as from a frozen one).
    # distributed alone waits forever.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        error, took = _connect(ClusterSpec(address=address, connect_timeout=1), 30)
    assert isinstance(error, ClusterError)
    assert f"cannot reach the Dask scheduler at {address} within 1 s" in str(error)
    assert took < 1 + 10


@pytest.mark.slow  # the session's LocalCluster: real worker processes
def test_passes_compute_on_the_client_chosen_at_the_entry_point(local_client: Any) -> None:
    import os

    here = os.getpid()
    assert compute_pass(delayed(os.getpid)()) == here  # no client chosen: threads here
    with using(local_client):
        assert compute_pass(delayed(os.getpid)()) != here  # a worker process
    assert compute_pass(delayed(os.getpid)()) == here  # the choice ends with the block
