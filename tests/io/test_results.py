"""The results store: complete runs readable without mmpipe; failures never look complete."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import mmpipe
from mmpipe.errors import ResultsError
from mmpipe.io import results as results_mod
from mmpipe.io.results import list_runs, read_run


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
    root = zarr.open_group(str(out), mode="r")
    assert root.attrs["mmpipe_runs"] == [first.run_id, second.run_id]
    assert root.attrs["latest"] == second.run_id


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
    root = zarr.open_group(str(out), mode="r")
    assert root.attrs["latest"] == good.run_id
    assert root.attrs["mmpipe_runs"] == [good.run_id]
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
