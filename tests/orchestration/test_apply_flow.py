"""The apply flow (`flow: apply`) on Prefect's embedded server equals mmpipe.apply."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from typer.testing import CliRunner

import mmpipe
from mmpipe.cli import app
from mmpipe.config import ApplyConfig, load_config

pytestmark = pytest.mark.slow


@pytest.fixture
def fitted(small_store: str, tmp_path: Path) -> str:
    results = tmp_path / "results.zarr"
    mmpipe.fit(small_store, pairs=["m0:m1"], components=3, folds=3, out=str(results))
    return str(results)


def test_apply_flow_on_a_local_cluster_equals_apply(
    prefect_server: None, small_store: str, fitted: str, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client

    from flows.apply import mmpipe_apply

    config = load_config(
        {
            "flow": "apply",
            "results": fitted,
            "dataset": small_store,
            "out": str(tmp_path / "flow.zarr"),
            "embed": ["m0"],
            "map": ["m0:m1"],
            "cluster": {"workers": 2, "memory_limit": "2GiB"},
        }
    )
    assert isinstance(config, ApplyConfig)
    summary = mmpipe_apply(config)
    reference = mmpipe.apply(
        fitted, small_store, str(tmp_path / "direct.zarr"), embed=["m0"], map=["m0:m1"]
    )
    assert summary["run_id"] == reference["run_id"]
    assert summary["outputs"] == reference["outputs"]
    flow_out = zarr.open_group(str(tmp_path / "flow.zarr"), mode="r")
    direct = zarr.open_group(str(tmp_path / "direct.zarr"), mode="r")
    assert flow_out.attrs["status"] == "complete"
    for name in ("pca/m0", "mapped/m0--m1"):
        np.testing.assert_array_equal(flow_out[name][...], direct[name][...])  # type: ignore[index]
    with get_client(sync_client=True) as client:
        artifacts = {a.key: a.data for a in client.read_latest_artifacts()}
    assert "mmpipe-apply" in artifacts
    # The fitted run's HTML report, written beside its store and linked.
    report = Path(fitted + ".reports") / str(summary["run_id"]) / "index.html"
    assert report.is_file()
    assert report.as_uri() in str(artifacts["mmpipe-apply"])


def test_mmpipe_run_runs_the_flow_its_config_names(
    small_store: str, fitted: str, tmp_path: Path
) -> None:
    path = tmp_path / "apply.yaml"
    out = tmp_path / "run.zarr"
    path.write_text(
        yaml.safe_dump(
            {
                "flow": "apply",
                "results": fitted,
                "dataset": small_store,
                "out": str(out),
                "embed": ["m1"],
                "cluster": {"in_process": True},
            }
        )
    )
    result = CliRunner().invoke(app, ["run", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert zarr.open_group(str(out), mode="r").attrs["status"] == "complete"
    np.testing.assert_allclose(
        zarr.open_group(str(out), mode="r")["pca/m1"][...],  # type: ignore[index]
        mmpipe.open_run(fitted).transform(
            zarr.open_group(small_store, mode="r")["modalities/m1"][...], "m1"
        ),
        atol=1e-12,
    )
