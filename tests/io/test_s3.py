"""Reading and writing through fsspec against a real S3-compatible server (moto) on 127.0.0.1.

The server is a separate HTTP endpoint in a thread of this process; everything goes through
s3fs and zarr's FsspecStore exactly as it would against a real bucket. Fake credentials only,
no other address is ever contacted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import mmpipe
from mmpipe.cli import app
from mmpipe.errors import DatasetError, StoreNotFoundError
from mmpipe.io.inspect import describe
from mmpipe.io.synth import SynthSpec, synthesize

s3fs = pytest.importorskip("s3fs")
from s3server import BUCKET, moto_s3  # noqa: E402 (after the skip: needs s3fs, moto)

pytestmark = pytest.mark.slow

SPEC = SynthSpec(
    rows=2000, modalities={"image": 16, "text": 8}, classes=3, chunk_rows=300, missing_fraction=0.1
)


@dataclass(frozen=True)
class S3:
    endpoint: str
    options: dict[str, Any]

    def url(self, key: str) -> str:
        return f"s3://{BUCKET}/{key}"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    """A moto S3 server on 127.0.0.1 (free port), fake credentials, one empty bucket."""
    with moto_s3(tmp_path_factory.mktemp("aws")) as endpoint:
        yield S3(endpoint=endpoint, options={"endpoint_url": endpoint, "anon": False})


@pytest.fixture(autouse=True)
def _fresh_s3fs() -> Iterator[None]:
    """No cached filesystem (and its listing cache) shared between tests."""
    s3fs.S3FileSystem.clear_instance_cache()
    yield
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def local_ds(tmp_path_factory: pytest.TempPathFactory) -> str:
    return synthesize(str(tmp_path_factory.mktemp("local") / "ds.zarr"), SPEC)


@pytest.fixture(scope="module")
def s3_ds(s3: S3) -> str:
    # moto's in-process servers share one backend: another module may have written it.
    url = synthesize(s3.url("ds.zarr"), SPEC, storage_options=s3.options, overwrite=True)
    s3fs.S3FileSystem.clear_instance_cache()
    return url


def _all_arrays(ds: mmpipe.Dataset) -> dict[str, np.ndarray]:
    out = {f"modalities/{k}": v.compute() for k, v in ds.modalities.items()}
    out.update({f"masks/{k}": v.compute() for k, v in ds.masks.items()})
    if ds.labels is not None:
        out["labels"] = ds.labels.compute()
    if ds.ids is not None:
        out["ids"] = ds.ids.compute()
    return out


def test_synth_round_trip_matches_local(s3: S3, s3_ds: str, local_ds: str) -> None:
    remote = mmpipe.open_dataset(s3_ds, storage_options=s3.options)
    local = mmpipe.open_dataset(local_ds)
    assert remote.url == "s3://bucket/ds.zarr"
    assert remote.widths == local.widths == {"image": 16, "text": 8}
    assert remote.row_chunks == local.row_chunks
    assert remote.attrs == local.attrs
    got, want = _all_arrays(remote), _all_arrays(local)
    assert (
        sorted(got)
        == sorted(want)
        == ["ids", "labels", "masks/image", "masks/text", "modalities/image", "modalities/text"]
    )
    for key, value in want.items():
        assert got[key].dtype == value.dtype, key
        assert np.array_equal(got[key], value, equal_nan=value.dtype.kind == "f"), key
    # The missing rows really are NaN in the remote copy too.
    assert np.isnan(got["modalities/image"][~got["masks/image"]]).all()


@pytest.mark.parametrize("key", ["nothing.zarr", "nothing.zarr/"])
def test_missing_url_raises_store_not_found(s3: S3, key: str) -> None:
    url = s3.url(key)
    with pytest.raises(StoreNotFoundError, match=r"No Zarr group found in 's3://bucket/nothing"):
        mmpipe.open_dataset(url, storage_options=s3.options)


def test_missing_bucket_raises_store_not_found(s3: S3) -> None:
    with pytest.raises(StoreNotFoundError, match=re.escape("s3://no-such-bucket/ds.zarr")):
        mmpipe.open_dataset("s3://no-such-bucket/ds.zarr", storage_options=s3.options)


def test_one_modality_on_s3_is_rejected(s3: S3) -> None:
    url = mmpipe.write_dataset(
        s3.url("one.zarr"), {"a": np.ones((10, 3))}, storage_options=s3.options
    )
    s3fs.S3FileSystem.clear_instance_cache()
    with pytest.raises(DatasetError, match="at least two"):
        mmpipe.open_dataset(url, storage_options=s3.options)


def test_describe_matches_local(s3: S3, s3_ds: str, local_ds: str) -> None:
    remote = describe(s3_ds, storage_options=s3.options)
    local = describe(local_ds)
    assert remote["rows"] == local["rows"] == SPEC.rows
    for name in SPEC.modalities:
        for field in ("shape", "dtype", "chunks", "bytes"):
            assert remote["modalities"][name][field] == local["modalities"][name][field]
    assert remote["labels"] == local["labels"]
    assert sum(remote["labels"]["counts"].values()) == SPEC.rows
    assert remote["masks"] == local["masks"]
    assert set(remote["masks"]) == set(SPEC.modalities)
    for m in remote["masks"].values():
        assert 0.8 < m["present_fraction"] < 1.0
    assert remote["ids"] == local["ids"]
    assert remote["synth"] == local["synth"]


def test_cli_synth_and_inspect_through_s3(s3: S3) -> None:
    runner = CliRunner()
    opt = ["-S", f"endpoint_url={s3.endpoint}"]
    url = s3.url("cli.zarr")
    made = runner.invoke(app, ["synth", url, "-n", "1000", "-m", "a=8", "-m", "b=4", *opt])
    assert made.exit_code == 0, made.output
    assert "wrote 1000 rows" in made.stdout

    s3fs.S3FileSystem.clear_instance_cache()
    shown = runner.invoke(app, ["inspect", url, "--json", *opt])
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.stdout)
    assert info["rows"] == 1000
    assert info["url"] == url
    assert {k: v["shape"] for k, v in info["modalities"].items()} == {
        "a": [1000, 8],
        "b": [1000, 4],
    }

    missing = runner.invoke(app, ["inspect", s3.url("missing.zarr"), *opt])
    assert missing.exit_code == 2, missing.output
    assert "error:" in missing.stderr
    assert "s3://bucket/missing.zarr" in missing.stderr
    assert "Traceback" not in missing.output


def test_fit_reads_and_writes_results_on_s3(s3: S3, s3_ds: str, local_ds: str) -> None:
    results = s3.url("results.zarr")
    remote = mmpipe.fit(
        s3_ds,
        components=4,
        folds=3,
        out=results,
        storage_options=s3.options,
        results_storage_options=s3.options,
    )
    local = mmpipe.fit(local_ds, components=4, folds=3)
    assert remote.results == f"{results}/runs/{remote.run_id}"
    assert remote.fingerprint == local.fingerprint

    got, want = remote.summary()["pairs"], local.summary()["pairs"]
    assert (
        [(p["source"], p["target"]) for p in got]
        == [(p["source"], p["target"]) for p in want]
        == [("image", "text"), ("text", "image")]
    )
    for g, w in zip(got, want, strict=True):
        assert (g["rows"], g["rows_dropped"], g["alpha"], g["components"]) == (
            w["rows"],
            w["rows_dropped"],
            w["alpha"],
            w["components"],
        )
        np.testing.assert_allclose(g["cv"]["r2"], w["cv"]["r2"], rtol=1e-10)
        np.testing.assert_allclose(g["cv"]["r2_folds"], w["cv"]["r2_folds"], rtol=1e-10)
        np.testing.assert_allclose(g["r2_by_alpha"], w["r2_by_alpha"], rtol=1e-10)
        np.testing.assert_allclose(g["procrustes"]["r2"], w["procrustes"]["r2"], rtol=1e-10)

    s3fs.S3FileSystem.clear_instance_cache()
    run = mmpipe.read_run(results, storage_options=s3.options)
    attrs = dict(run.attrs)
    assert attrs["status"] == "complete"
    assert attrs["run_id"] == remote.run_id
    assert attrs["dataset"] == s3_ds
    assert [r["status"] for r in mmpipe.list_runs(results, storage_options=s3.options)] == [
        "complete"
    ]
    coef = np.asarray(run["pairs/image--text/coef"][...])  # type: ignore[index]
    np.testing.assert_allclose(
        coef, remote.pair("image", "text").models.ridge.coef_, rtol=0, atol=0
    )


def test_a_second_synth_into_the_same_s3_prefix_is_refused(s3: S3, s3_ds: str) -> None:
    from mmpipe.errors import ConfigError

    before = _all_arrays(mmpipe.open_dataset(s3_ds, storage_options=s3.options))
    with pytest.raises(ConfigError, match="already exists and is not empty"):
        synthesize(s3_ds, SPEC, storage_options=s3.options)
    after = _all_arrays(mmpipe.open_dataset(s3_ds, storage_options=s3.options))
    assert before.keys() == after.keys()
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])
