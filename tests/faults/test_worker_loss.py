"""A worker SIGKILLed in the middle of a pass changes nothing in the results.

Each test fits once without faults, then again while a real worker process is killed at a
moment the scheduler shows the pass running (some of its block tasks done, others not), on the
same cluster: the second fit completes and holds the same numbers. Before the passes' graphs
held all their data, the loss ended the fit (``FutureCancelledError``: the worker held
scattered data, which Dask cannot recompute).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from chaos import (
    Background,
    Kill,
    assert_same_results,
    external_cluster,
    kill_mid_pass,
    numbers,
    slow_down,
    worker_pids,
)

import mmpipe
from mmpipe.cluster import ClusterSpec, dask_client
from mmpipe.io.synth import SynthSpec, synthesize

pytestmark = pytest.mark.slow

FIT = {"pairs": ["a:b"], "folds": 3, "components": 4}
# Per pass: the block function slowed down on the workers (module, name, seconds), the prefix
# of its tasks' keys, and the fit's options. 40 row blocks make a pass of many short tasks;
# the logistic fit makes about 30 passes over 10 blocks with no help.
PASSES: dict[str, tuple[tuple[str, str, float], str, dict[str, Any]]] = {
    "statistics": (
        ("mmpipe.stats.blocked", "block_statistics", 0.05), "block_statistics",
        {"chunk_rows": 250},
    ),
    "scoring": (
        ("mmpipe.stats.scoring", "score_block", 0.05), "score_block",
        {"chunk_rows": 250, "classify": ["a+b"], "transfer": True},
    ),
    "logistic": (
        ("mmpipe.models.logistic", "block_loss_grad", 0.0), "block_loss_grad",
        {"chunk_rows": 1000, "classify": ["a+b"], "logistic": True},
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    # Stored in 250-row chunks, so that a pass can have many short tasks.
    path = tmp_path_factory.mktemp("worker-loss") / "d.zarr"
    spec = SynthSpec(rows=10_000, modalities={"a": 12, "b": 10}, classes=3, chunk_rows=250)
    return synthesize(path, spec)


def _fit_with_a_kill(store: str, client: Any, kind: str) -> tuple[Any, Any, Kill]:
    slow, prefix, options = PASSES[kind]
    kwargs = {**FIT, **options}
    slow_down(client, slow)
    reference = mmpipe.fit(store, client=client, **kwargs)
    pids = worker_pids(client)
    fitting = Background(lambda: mmpipe.fit(store, client=client, **kwargs))
    kill = kill_mid_pass(client, prefix, pids, running=fitting.running)
    fitting.wait(300)
    if fitting.error is not None:
        raise AssertionError(f"the fit failed after {kill}") from fitting.error
    return fitting.result, reference, kill


def _check(result: Any, reference: Any, kill: Kill, kind: str) -> None:
    assert kill.states is not None
    assert kill.states.get("memory", 0) >= 2
    # Bitwise, not only to 1e-10: a recomputed block does the same arithmetic on the same
    # kind of worker, and the merge tree has a fixed order.
    assert assert_same_results(result, reference) == len(numbers(reference))
    if kind == "scoring":
        assert result.transfer
        assert result.classify
    if kind == "logistic":
        assert result.logistic
        assert result.logistic[0].passes == reference.logistic[0].passes


@pytest.mark.parametrize(
    ("nanny", "kind"), [(False, "statistics"), (True, "scoring"), (False, "logistic")]
)
def test_external_cluster_survives_a_killed_worker(
    tmp_path: Path, store: str, nanny: bool, kind: str
) -> None:
    with external_cluster(tmp_path, nanny=nanny) as cluster:
        with dask_client(ClusterSpec(address=cluster.address)) as client:
            result, reference, kill = _fit_with_a_kill(store, client, kind)
        killed = [p for p in cluster.workers if p.poll() is not None]
        assert len(killed) == (0 if nanny else 1)  # a nanny outlives its worker
    _check(result, reference, kill, kind)


def test_local_cluster_survives_a_killed_worker(store: str) -> None:
    spec = ClusterSpec(workers=2, threads_per_worker=1, memory_limit="2GiB")
    with dask_client(spec) as client:
        result, reference, kill = _fit_with_a_kill(store, client, "statistics")
        # The nanny replaced the worker: two again, one of them new.
        client.wait_for_workers(2, timeout=60)
        assert kill.pid not in worker_pids(client).values()
    _check(result, reference, kill, "statistics")


def _dies() -> None:
    import os

    os.kill(os.getpid(), 9)


def test_a_task_that_kills_every_worker_it_runs_on_is_a_cluster_error_not_retried() -> None:
    import dask
    from dask.delayed import delayed

    from mmpipe.cluster import compute_pass, using
    from mmpipe.errors import ClusterError

    spec = ClusterSpec(workers=1, threads_per_worker=1, memory_limit="1GiB")
    once = {"distributed.scheduler.allowed-failures": 0}
    expected = "every one of them died while running it"
    with (
        dask.config.set(once),
        dask_client(spec) as c,
        using(c),
        pytest.raises(ClusterError) as info,
    ):
        compute_pass(delayed(_dies)())
    assert expected in str(info.value)
    assert info.value.transient is False  # the same task would kill workers again
    assert "\n" not in str(info.value)
