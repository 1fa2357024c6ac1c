"""The flow takes its passes up again on a new client when the cluster fails under them: the
scheduler is SIGKILLed mid-pass and the cluster restarted at the same address, and the run completes
with the same numbers as a fit that met no fault."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from faults.chaos import Background, external_cluster, kill_mid_pass, slow_down
from servers import BIN

import mmpipe
from mmpipe.config import load_config

pytestmark = pytest.mark.slow


def test_flow_survives_a_restarted_scheduler(
    prefect_server: None, small_store: str, tmp_path: Path
) -> None:
    from distributed import Client

    from flows.pipeline import mmpipe_fit

    settings = {"pairs": ["m0:m1", "m2:m0"], "components": 3, "folds": 4, "chunk_rows": 10}
    out = tmp_path / "results.zarr"
    with external_cluster(tmp_path, nanny=True) as cluster:
        config = load_config(
            {
                "dataset": small_store,
                "results": str(out),
                **settings,
                "cluster": {
                    "address": cluster.address,
                    "connect_timeout": 60,
                    "scheduler_timeout": 60,
                },
            }
        )
        with Client(cluster.address, timeout=30, set_as_default=False) as watcher:
            slow_down(watcher, ("mmpipe.stats.blocked", "block_statistics", 0.1))
            flowing = Background(lambda: mmpipe_fit(config))
            kill_mid_pass(watcher, "block_statistics", {}, running=flowing.running, act=False)
            os.kill(cluster.scheduler.pid, signal.SIGKILL)
        cluster.scheduler.wait()
        port = cluster.address.rsplit(":", 1)[1]
        log = (tmp_path / "scheduler-2.log").open("w")
        # The cluster comes back at the same address, as a deployment would restart it.
        restarted = [
            subprocess.Popen(
                [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", port,
                 "--no-dashboard"],
                stdout=log, stderr=subprocess.STDOUT,
            ),
            subprocess.Popen(
                [str(BIN / "dask"), "worker", cluster.address, "--nthreads", "1",
                 "--no-dashboard", "--host", "127.0.0.1", "--memory-limit", "2GiB"],
                stdout=log, stderr=subprocess.STDOUT,
            ),
        ]  # fmt: skip
        try:
            flowing.wait(300)
        finally:
            for proc in reversed(restarted):
                proc.terminate()
                proc.wait(30)
            log.close()
    assert flowing.error is None, flowing.error
    summary = flowing.result
    reference = mmpipe.fit(small_store, **settings)  # type: ignore[arg-type]
    for got, want in zip(summary["pairs"], reference.summary()["pairs"], strict=True):
        assert got["cv"]["r2_folds"] == pytest.approx(want["cv"]["r2_folds"], rel=1e-10)
    assert [r["status"] for r in mmpipe.list_runs(out)] == ["complete"]
