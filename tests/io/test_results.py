"""The results store: complete runs readable without mmpipe; failures never look complete."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import mmpipe
from mmpipe import engine
from mmpipe.errors import DatasetError, ResultsError
from mmpipe.io import results as results_mod
from mmpipe.io.dataset import write_dataset
from mmpipe.io.locations import check_results_location
from mmpipe.io.results import RunWriter
from mmpipe.io.runs import clean_runs, list_runs, read_run


def test_run_written_complete_and_plain(small_store: str, tmp_path: Path) -> None:
    out = tmp_path / "results.zarr"
    result = mmpipe.fit(small_store, components=3, folds=4, alphas=(1.0, 10.0), out=out)
    assert result.results == f"{out}/runs/{result.run_id}"
    run = read_run(out)
    attrs = dict(run.attrs)
    assert attrs["status"] == "complete"
    assert attrs["config"]["folds"] == 4
    assert attrs["config"]["alphas"] == [1.0, 10.0]
    assert attrs["fingerprint"] == result.fingerprint
    assert attrs["plan"]["n_splits"] == 4
    assert set(attrs["versions"]) >= {"numpy", "dask", "zarr", "mmpipe"}
    assert "statistics_pass" in attrs["timings"]
    assert attrs["summary"]["pairs"][0]["cv"]["r2"] == pytest.approx(
        result.summary()["pairs"][0]["cv"]["r2"]
    )
    # Plain zarr, no mmpipe: arrays equal to the result's.
    pair = result.pair("m0", "m1")
    plain = zarr.open_group(str(out), mode="r")
    g = plain[f"runs/{result.run_id}/pairs/m0--m1"]
    np.testing.assert_array_equal(g["coef"][...], pair.models.ridge.coef_)
    np.testing.assert_array_equal(g["r2"][...], pair.r2)
    np.testing.assert_array_equal(plain[f"runs/{result.run_id}/folds"][...], result.plan.assignment)
    # xarray opens every group with named dimensions.
    ds = xr.open_zarr(str(out), group=f"runs/{result.run_id}/pairs/m0--m1", consolidated=False)
    assert ds["coef"].dims == ("alpha", "source_component", "target_component")
    assert ds.sizes["split"] == 4
    mod = xr.open_zarr(str(out), group=f"runs/{result.run_id}/modalities/m0", consolidated=False)
    assert mod["components"].dims == ("component", "feature")
    np.testing.assert_allclose(mod["mean"].values, result.modalities["m0"].pca.mean_)


def test_second_run_leaves_first_untouched(small_store: str, tmp_path: Path) -> None:
    out = tmp_path / "results.zarr"
    first = mmpipe.fit(small_store, components=3, folds=3, out=out)
    before = read_run(out, first.run_id)["pairs/m0--m1/coef"][...]  # type: ignore[index]
    second = mmpipe.fit(small_store, components=2, folds=3, out=out)
    assert [r["run_id"] for r in list_runs(out)] == sorted([first.run_id, second.run_id])
    after = read_run(out, first.run_id)["pairs/m0--m1/coef"][...]  # type: ignore[index]
    np.testing.assert_array_equal(before, after)
    assert [r["status"] for r in list_runs(out)] == ["complete", "complete"]
    assert read_run(out).path.endswith(second.run_id)  # the latest complete run
    root = zarr.open_group(str(out), mode="r")
    assert root.attrs["mmpipe_results"] == {"format": 1}


def test_failed_write_never_looks_complete(
    small_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "results.zarr"
    good = mmpipe.fit(small_store, components=3, folds=3, out=out)

    def broken(run: zarr.Group, result: object) -> None:
        run.create_group("modalities")
        raise OSError("disk full")

    monkeypatch.setattr(results_mod, "_write_body", broken)
    with pytest.raises(OSError, match="disk full"):
        mmpipe.fit(small_store, components=3, folds=3, out=out)
    runs = {r["run_id"]: r["status"] for r in list_runs(out)}
    failed = [k for k, v in runs.items() if v == "failed"]
    assert len(failed) == 1
    assert runs[good.run_id] == "complete"
    with pytest.raises(ResultsError, match="is 'failed', not complete"):
        read_run(out, failed[0])
    assert read_run(out).path.endswith(good.run_id)


def test_results_location_checked_before_the_pass(small_store: str, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ResultsError, match="is a file"):
        mmpipe.fit(small_store, out=tmp_path / "file")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("x")
    with pytest.raises(ResultsError, match="non-empty folder that is not a Zarr group"):
        mmpipe.fit(small_store, out=tmp_path / "full")
    with pytest.raises(ResultsError, match="parent folder"):
        mmpipe.fit(small_store, out=tmp_path / "no" / "such" / "r.zarr")


def test_run_is_running_before_the_pass_and_failed_after_an_error(
    small_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "results.zarr"
    seen: list[list[dict[str, object]]] = []

    def broken_pass(prepared: object, **kwargs: object) -> None:
        seen.append(list_runs(out))
        raise RuntimeError("the pass broke")

    monkeypatch.setattr(engine, "statistics_pass", broken_pass)
    with pytest.raises(RuntimeError, match="the pass broke"):
        mmpipe.fit(small_store, components=3, folds=3, out=out)
    (before,) = seen[0]
    assert before["status"] == "running"
    assert before["owner"]["pid"] == os.getpid()  # type: ignore[index]
    (after,) = list_runs(out)
    assert after["run_id"] == before["run_id"]
    assert after["status"] == "failed"
    assert after["error"] == "RuntimeError: the pass broke"


def test_results_store_and_dataset_never_mix(small_store: str, tmp_path: Path) -> None:
    out = tmp_path / "results.zarr"
    mmpipe.fit(small_store, components=3, folds=3, out=out)
    with pytest.raises(DatasetError, match="results store, not a dataset"):
        mmpipe.open_dataset(out)
    with pytest.raises(DatasetError, match="results store, not a dataset"):
        mmpipe.fit(out, components=3)
    other = write_dataset(tmp_path / "other.zarr", {"a": np.ones((20, 2)), "b": np.ones((20, 2))})
    with pytest.raises(ResultsError, match="is a dataset"):
        mmpipe.fit(small_store, components=3, out=other)
    with pytest.raises(ResultsError, match="is a dataset, not a results store"):
        list_runs(small_store)
    # A Zarr group of something else is not taken over either.
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w").create_group("images")
    with pytest.raises(ResultsError, match="not an mmpipe results store"):
        mmpipe.fit(small_store, components=3, out=tmp_path / "plain.zarr")


@pytest.mark.parametrize(
    ("relative", "match"),
    [
        ("small.zarr", "is the input dataset"),
        ("small.zarr/", "is the input dataset"),
        ("sub/../small.zarr", "is the input dataset"),
        ("small.zarr/modalities/out.zarr", "lies inside the input dataset"),
        ("small.zarr/runs.zarr", "lies inside the input dataset"),
        ("link.zarr/out.zarr", "lies inside the input dataset"),
        (".", "contains the input dataset"),
    ],
)
def test_results_never_on_in_or_around_the_input(
    small_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relative: str, match: str
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.zarr").symlink_to(tmp_path / "small.zarr")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    def no_pass(*args: object, **kwargs: object) -> None:
        raise AssertionError("the pass ran before the results location was refused")

    monkeypatch.setattr(engine, "statistics_pass", no_pass)
    with pytest.raises(ResultsError, match=match):
        mmpipe.fit(small_store, components=3, out=str(tmp_path / relative))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    mmpipe.open_dataset(small_store)  # still a valid dataset


@pytest.mark.parametrize(
    ("out", "dataset", "options", "refused"),
    [
        ("s3://bucket/data.zarr/runs", "s3://bucket/data.zarr", {}, True),
        ("s3a://bucket/data.zarr", "s3://bucket/data.zarr/", {}, True),
        ("s3://bucket", "s3://bucket/data.zarr", {}, True),
        ("s3://bucket/data.zarr-results", "s3://bucket/data.zarr", {}, False),
        ("gs://bucket/data.zarr/x", "s3://bucket/data.zarr", {}, False),
        ("memory://d.zarr/out", "memory://d.zarr", {}, True),
        # Same bucket name on another endpoint is another store.
        ("s3://bucket/data.zarr/r", "s3://bucket/data.zarr", {"endpoint_url": "http://x"}, False),
    ],
)
def test_results_location_check_on_urls(
    out: str, dataset: str, options: dict[str, str], refused: bool
) -> None:
    def check() -> None:
        check_results_location(out, dataset, results_storage_options=options)

    if refused:
        with pytest.raises(ResultsError, match="input dataset"):
            check()
    else:
        check()


def test_abandoned_stale_and_clean(small_store: str, tmp_path: Path) -> None:
    out = tmp_path / "results.zarr"
    good = mmpipe.fit(small_store, components=3, folds=3, out=out)
    runs = zarr.open_group(str(out), mode="a")["runs"]
    assert isinstance(runs, zarr.Group)
    now = datetime.now(UTC)

    def fake(run_id: str, owner: dict[str, object], beat: datetime) -> None:
        g = runs.create_group(run_id)
        g.attrs.update(
            {"status": "running", "owner": owner, "heartbeat": beat.isoformat(), "started": ""}
        )

    # Another host: only the heartbeat can tell.
    fake("0-elsewhere-live", {"host": "elsewhere", "pid": 1}, now - timedelta(seconds=20))
    fake("0-elsewhere-stale", {"host": "elsewhere", "pid": 1}, now - timedelta(hours=1))
    # This host: a process that is gone, whatever its heartbeat says.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    fake("0-here-gone", {"host": socket.gethostname(), "pid": int(gone.stdout)}, now)
    live = RunWriter.begin(out, dataset=small_store, heartbeat_seconds=0.2)
    try:
        first_beat = dict(live.group.attrs)["heartbeat"]
        status = {r["run_id"]: r["status"] for r in list_runs(out)}
        assert status == {
            good.run_id: "complete",
            "0-elsewhere-live": "running",
            "0-elsewhere-stale": "abandoned",
            "0-here-gone": "abandoned",
            live.run_id: "running",
        }
        time.sleep(1.5)
        assert dict(zarr.open_group(live.location, mode="r").attrs)["heartbeat"] >= first_beat
        assert sorted(clean_runs(out)) == ["0-elsewhere-stale", "0-here-gone"]
        remaining = {r["run_id"] for r in list_runs(out)}
        assert remaining == {good.run_id, "0-elsewhere-live", live.run_id}
    finally:
        live.close()
    assert read_run(out).path.endswith(good.run_id)


def test_heartbeat_is_refreshed(small_store: str, tmp_path: Path) -> None:
    out = tmp_path / "results.zarr"
    writer = RunWriter.begin(out, dataset=small_store, heartbeat_seconds=0.1)
    try:
        started = dict(writer.group.attrs)["started"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            beat = dict(zarr.open_group(writer.location, mode="r").attrs)["heartbeat"]
            if beat > started:
                break
            time.sleep(0.2)
        assert beat > started
    finally:
        writer.close()
