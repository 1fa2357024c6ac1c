"""The Prefect flow on the embedded server with a LocalCluster equals mmpipe.fit."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import mmpipe
from mmpipe.config import load_config
from mmpipe.steps import STEPS

pytestmark = pytest.mark.slow


def test_flow_local_cluster_equals_fit(
    prefect_server: None, small_store: str, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client

    from flows.pipeline import mmpipe_fit

    out = tmp_path / "results.zarr"
    config = load_config(
        {
            "dataset": small_store,
            "results": str(out),
            "pairs": ["m0:m1", "m2:m0"],
            "components": 3,
            "folds": 4,
            "alphas": [0.5, 5.0],
            "classify": ["m0+m1"],
            "transfer": True,
            "retrieval": True,
            "logistic": True,
            "random_features": 16,
            "cluster": {"workers": 2, "memory_limit": "2GiB"},
        }
    )
    summary = mmpipe_fit(config)
    reference = mmpipe.fit(
        small_store,
        pairs=["m0:m1", "m2:m0"],
        components=3,
        folds=4,
        alphas=(0.5, 5.0),
        classify=["m0+m1"],
        transfer=True,
        retrieval=True,
        logistic=True,
        random_features=16,
    )
    assert summary["results"].startswith(str(out))
    run = mmpipe.read_run(out)  # complete, or it raises
    for got, ref in zip(summary["pairs"], reference.summary()["pairs"], strict=True):
        assert got["cv"]["r2_folds"] == pytest.approx(ref["cv"]["r2_folds"], rel=1e-10)
        assert got["alpha"] == ref["alpha"]
    np.testing.assert_allclose(
        run["pairs/m0--m1/coef"][...],  # type: ignore[index]
        reference.pairs[0].models.ridge.coef_,
        rtol=1e-10,
    )

    assert summary["classify"] == reference.summary()["classify"]
    assert summary["transfer"] == reference.summary()["transfer"]
    assert summary["retrieval"] == reference.summary()["retrieval"]
    assert summary["logistic"] == reference.summary()["logistic"]
    assert summary["random_features"] == reference.summary()["random_features"]
    np.testing.assert_array_equal(
        run["classify/m0+m1/confusion"][...],  # type: ignore[index]
        reference.classify[0].confusion,
    )

    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts()
        keys = {a.key for a in artifact}
        tasks = {t.name.rsplit("-", 1)[0] for t in client.read_task_runs()}
    assert {"mmpipe-fit-pairs", "mmpipe-fit-tasks", "mmpipe-fit-results"} <= keys
    # The HTML report beside the store, linked from the Markdown artifact.
    report = tmp_path / "results.zarr.reports" / str(summary["run_id"]) / "index.html"
    assert report.is_file()
    (markdown,) = [a.data for a in artifact if a.key == "mmpipe-fit-results"]
    assert report.as_uri() in str(markdown)
    # The flow ran one task per step of the library's list, and the run records their times.
    steps = [s.name for s in STEPS if s.name != "sketch_pass"]
    assert {name.replace("_", "-") for name in steps} <= tasks
    timings = dict(run.attrs)["timings"]
    assert set(steps) | {"prepare"} <= set(timings)
    assert all(timings[name] >= 0 for name in steps)


def test_flow_on_a_small_input_computes_in_process(
    prefect_server: None, small_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mmpipe.cluster
    from flows.pipeline import mmpipe_fit

    def no_cluster(*args: object) -> None:
        raise AssertionError("a small input with no cluster named must not start one")

    monkeypatch.setattr(mmpipe.cluster, "start_local_cluster", no_cluster)
    settings = {"pairs": ["m0:m1"], "components": 2, "folds": 3, "precision": "float32"}
    summary = mmpipe_fit(load_config({"dataset": small_store, **settings}))
    reference = mmpipe.fit(small_store, **settings)  # type: ignore[arg-type]
    assert summary["config"]["precision"] == "float32"
    assert summary["pairs"][0]["cv"]["r2_folds"] == pytest.approx(
        reference.summary()["pairs"][0]["cv"]["r2_folds"], rel=1e-10
    )


def test_local_workers_do_not_import_prefect(small_store: str) -> None:
    from mmpipe.cluster import ClusterSpec, dask_client

    with dask_client(ClusterSpec(workers=1, memory_limit="1GiB")) as client:
        mmpipe.fit(small_store, pairs=["m0:m1"], components=2, folds=3, client=client)
        loaded = client.run(lambda: "prefect" in sys.modules)
    assert not any(loaded.values())
