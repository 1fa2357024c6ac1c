"""Bounded waits on the cluster: timeouts are options, validated, and reach the passes; a
task's own errors pass through the watch unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from dask.delayed import delayed

from mmpipe.cluster import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_SCHEDULER_TIMEOUT,
    ClusterSpec,
    dask_client,
    resolve,
    scheduler_timeout,
)
from mmpipe.config import load_config
from mmpipe.errors import ClusterError, ConfigError
from mmpipe.stats.blocked import compute_on


def test_timeouts_have_documented_defaults_and_reach_the_spec() -> None:
    assert ClusterSpec().connect_timeout == DEFAULT_CONNECT_TIMEOUT == 10
    assert ClusterSpec().scheduler_timeout == DEFAULT_SCHEDULER_TIMEOUT == 60
    config = load_config(
        {"dataset": "x.zarr", "cluster": {"connect_timeout": 3, "scheduler_timeout": 7.5}}
    )
    assert config.cluster.spec() == ClusterSpec(connect_timeout=3, scheduler_timeout=7.5)


@pytest.mark.parametrize("name", ["connect_timeout", "scheduler_timeout"])
@pytest.mark.parametrize("value", [0, -1, float("inf")])
def test_timeouts_must_be_positive_seconds(name: str, value: float) -> None:
    with pytest.raises(ConfigError, match=name):
        resolve(ClusterSpec(**{name: value}))
    with pytest.raises(ConfigError, match=f"cluster.{name}"):
        load_config({"dataset": "x.zarr", "cluster": {name: value}})


def _fails(error: BaseException) -> None:
    raise error


@pytest.mark.parametrize("error", [TimeoutError("slow store"), OSError("disk"), KeyError("k")])
def test_a_tasks_own_error_passes_through_the_watch(local_client: Any, error: Exception) -> None:
    # A task's TimeoutError is not the watch's own wait timing out: raised as it is, at once.
    with pytest.raises(type(error), match=str(error.args[0])):
        compute_on(delayed(_fails)(error), local_client)


def test_clients_made_by_mmpipe_carry_their_scheduler_timeout(local_client: Any) -> None:
    assert scheduler_timeout(local_client) == DEFAULT_SCHEDULER_TIMEOUT
    address = local_client.scheduler.address
    with dask_client(ClusterSpec(address=address, scheduler_timeout=12)) as client:
        assert scheduler_timeout(client) == 12
        assert compute_on(delayed(sum)([1, 2]), client) == 3


def test_a_closed_client_is_a_cluster_error(local_client: Any) -> None:
    # What a retried pass meets when its client lost the scheduler for good.
    with dask_client(ClusterSpec(address=local_client.scheduler.address)) as client:
        client.close()
        with pytest.raises(ClusterError, match="is closed"):
            compute_on(delayed(sum)([1, 2]), client)
