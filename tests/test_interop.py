"""The exported scikit-learn pipelines serve Dask arrays through dask-ml's ParallelPostFit,
with the same outputs as mmpipe's own methods and as `mmpipe apply`."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr
from dask_ml.wrappers import ParallelPostFit
from helpers import make_views

import mmpipe
from mmpipe.fitted import FittedRun
from mmpipe.io.dataset import write_dataset


@pytest.fixture(scope="module")
def fitted(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[FittedRun, dict[str, np.ndarray], Path]:
    tmp = tmp_path_factory.mktemp("interop")
    views, labels = make_views()
    url = write_dataset(tmp / "d.zarr", views, labels=labels, chunk_rows=64)
    mmpipe.fit(
        url, pairs=["m0:m1"], components=3, folds=3, classify=["m0+m1"], out=str(tmp / "r.zarr")
    )
    return mmpipe.open_run(str(tmp / "r.zarr")), views, tmp


def test_exported_pipelines_serve_dask_arrays_as_mmpipe_does(
    fitted: tuple[FittedRun, dict[str, np.ndarray], Path],
) -> None:
    run, views, _ = fitted
    x = da.from_array(views["m0"], chunks=(70, -1))
    exported = run.to_sklearn()
    scores = ParallelPostFit(exported["modalities/m0"]).transform(x)
    assert isinstance(scores, da.Array)
    np.testing.assert_allclose(scores.compute(), run.transform(views["m0"], "m0"), atol=1e-10)
    # A pair's map has one output per target component; ParallelPostFit.predict drops the
    # second axis (it expects one prediction per row), so the map runs block by block.
    pipeline = exported["pairs/m0--m1"]
    k = run.map(views["m0"][:1], "m0", "m1").shape[1]
    mapped = x.map_blocks(pipeline.predict, chunks=(x.chunks[0], (k,)), dtype=np.float64)
    np.testing.assert_allclose(mapped.compute(), run.map(views["m0"], "m0", "m1"), atol=1e-10)


def test_parallel_post_fit_classifies_dask_arrays_as_mmpipe_does(
    fitted: tuple[FittedRun, dict[str, np.ndarray], Path],
) -> None:
    run, views, _ = fitted
    # The classifier's pipeline takes the set's modalities side by side, in the set's order.
    joined = da.from_array(np.hstack([views["m0"], views["m1"]]), chunks=(70, -1))
    predicted = ParallelPostFit(run.to_sklearn()["classify/m0+m1"]).predict(joined).compute()
    expected = run.predict({"m0": views["m0"], "m1": views["m1"]}, "m0+m1")
    np.testing.assert_array_equal(predicted.astype(np.float64), expected)
    assert len(np.unique(predicted)) > 1  # a real classifier, not a constant


def test_parallel_post_fit_equals_mmpipe_apply(
    fitted: tuple[FittedRun, dict[str, np.ndarray], Path],
) -> None:
    run, views, tmp = fitted
    out = tmp / "applied.zarr"
    mmpipe.apply(
        str(tmp / "r.zarr"), str(tmp / "d.zarr"), str(out),
        map=["m0:m1"], embed=["m0"], classify=["m0+m1"],
    )  # fmt: skip
    written = zarr.open_group(str(out), mode="r")
    x = da.from_array(views["m0"], chunks=(64, -1))
    exported = run.to_sklearn()
    pipeline = exported["pairs/m0--m1"]
    k = np.asarray(written["mapped/m0--m1"]).shape[1]
    np.testing.assert_allclose(
        np.asarray(written["mapped/m0--m1"]),
        x.map_blocks(pipeline.predict, chunks=(x.chunks[0], (k,)), dtype=np.float64).compute(),
        atol=1e-10,
    )
    np.testing.assert_allclose(
        np.asarray(written["pca/m0"]),
        ParallelPostFit(exported["modalities/m0"]).transform(x).compute(),
        atol=1e-10,
    )
    joined = da.from_array(np.hstack([views["m0"], views["m1"]]), chunks=(64, -1))
    np.testing.assert_array_equal(
        np.asarray(written["predictions/m0+m1"]),
        ParallelPostFit(exported["classify/m0+m1"]).predict(joined).compute(),
    )
