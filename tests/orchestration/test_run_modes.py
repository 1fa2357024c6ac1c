"""The two run modes that need servers: ad hoc on an existing Dask cluster, and scheduled
through a Prefect deployment served by a process worker. Everything on 127.0.0.1."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from servers import BIN, DaskCluster, PrefectAPI

import mmpipe
from mmpipe.io.runs import list_runs

pytestmark = pytest.mark.slow

PAIRS = ["m0:m1", "m1:m2"]
SETTINGS: dict[str, Any] = {"pairs": PAIRS, "components": 3, "folds": 4, "alphas": [0.5, 5.0]}


def reference(dataset: str) -> dict[str, Any]:
    summary: dict[str, Any] = mmpipe.fit(
        dataset, pairs=PAIRS, components=3, folds=4, alphas=(0.5, 5.0)
    ).summary()
    return summary


def assert_same_pairs(got: dict[str, Any], ref: dict[str, Any]) -> None:
    assert [(p["source"], p["target"]) for p in got["pairs"]] == [
        (p["source"], p["target"]) for p in ref["pairs"]
    ]
    for g, r in zip(got["pairs"], ref["pairs"], strict=True):
        assert g["alpha"] == r["alpha"]
        assert g["cv"]["r2_folds"] == pytest.approx(r["cv"]["r2_folds"], rel=1e-10)
        assert g["cca"] == pytest.approx(r["cca"], rel=1e-8)


def test_adhoc_run_on_existing_cluster(
    prefect_api: PrefectAPI, dask_cluster: DaskCluster, small_store: str, tmp_path: Path
) -> None:
    out = tmp_path / "results.zarr"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"dataset": small_store, "results": str(out), **SETTINGS}))

    printed = prefect_api.run(
        str(BIN / "mmpipe"), "run", str(config), "--address", dask_cluster.address, "--json"
    )
    summary = json.loads(printed)

    assert_same_pairs(summary, reference(small_store))
    assert [r["status"] for r in list_runs(out)] == ["complete"]
    # The work ran on that cluster, and the run left it running.
    assert dask_cluster.running()
    from distributed import Client

    with Client(dask_cluster.address, set_as_default=False) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        done = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter)
    assert done > 0


def api_get(api: PrefectAPI, path: str) -> Any:
    with urllib.request.urlopen(f"{api.url}{path}", timeout=30) as response:
        return json.load(response)


def test_scheduled_deployment_runs_on_a_process_worker(
    prefect_api: PrefectAPI, small_store: str, tmp_path: Path
) -> None:
    prefect = str(BIN / "prefect")
    prefect_api.run(prefect, "work-pool", "create", "mmpipe-process", "--type", "process")
    prefect_api.run(
        prefect, "--no-prompt", "deploy", "--all", "--prefect-file", "deploy/prefect.yaml"
    )

    deployment = api_get(prefect_api, "/deployments/name/mmpipe-fit/mfeat-weekly")
    crons = [(s["schedule"].get("cron"), s["schedule"].get("timezone"), s["active"])
             for s in deployment["schedules"]]  # fmt: skip
    assert crons == [("0 3 * * 0", "UTC", True)]
    assert deployment["work_pool_name"] == "mmpipe-process"
    nightly = api_get(prefect_api, "/deployments/name/mmpipe-apply/mfeat-apply-nightly")
    assert [s["schedule"].get("cron") for s in nightly["schedules"]] == ["0 4 * * *"]
    assert nightly["parameters"]["config"]["flow"] == "apply"

    out = tmp_path / "scheduled.zarr"
    # Overrides merge over the deployment's config: its alphas and cluster stay.
    deployed = deployment["parameters"]["config"]
    given = {"pairs": PAIRS, "components": 3, "folds": 3}
    params = {"overrides": {"dataset": small_store, "results": str(out), **given}}
    created = prefect_api.run(
        prefect, "deployment", "run", "mmpipe-fit/mfeat-weekly", "--params", json.dumps(params)
    )
    match = re.search(r"UUID: ([0-9a-f-]{36})", created)
    assert match, created
    flow_run_id = match.group(1)

    prefect_api.run(
        prefect, "worker", "start", "--pool", "mmpipe-process", "--run-once", timeout=600,
        cwd=tmp_path,
    )  # fmt: skip

    flow_run = api_get(prefect_api, f"/flow_runs/{flow_run_id}")
    assert flow_run["state"]["type"] == "COMPLETED", flow_run["state"]
    runs = list_runs(out)
    assert [r["status"] for r in runs] == ["complete"]
    run = mmpipe.read_run(out)
    stored = dict(run.attrs)["config"]
    assert stored["folds"] == 3
    assert stored["components"] == 3
    assert stored["alphas"] == deployed["alphas"] == [0.1, 1, 10, 100, 1000]
    ref: dict[str, Any] = mmpipe.fit(
        small_store, pairs=PAIRS, components=3, folds=3, alphas=tuple(deployed["alphas"])
    ).summary()
    for pair in ref["pairs"]:
        group = run[f"pairs/{pair['source']}--{pair['target']}"]
        assert group.attrs["alpha"] == pair["alpha"]  # type: ignore[union-attr]
