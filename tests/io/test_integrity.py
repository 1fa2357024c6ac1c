"""Input that is absent, corrupt or inconsistent is an error naming the array, never a number.

Every fault is caused for real on a store written by mmpipe: a chunk file deleted, truncated
or overwritten with garbage, a zarr.json garbled, ids repeated, a class too small for the
folds, a constant modality. In-process (no cluster) except the one test that checks the
message survives the trip from a worker process.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr
import zarr.storage
from helpers import make_views, one_error_line
from typer.testing import CliRunner

import mmpipe
from mmpipe import engine
from mmpipe.cli import app
from mmpipe.errors import DatasetError, DataValueError, MmpipeError, StorageError
from mmpipe.io.dataset import open_dataset, write_dataset
from mmpipe.io.synth import SynthSpec, synthesize
from mmpipe.options import FitConfig
from mmpipe.prepare import prepare

N, CHUNK = 240, 50  # five row chunks: 0-49, ..., 200-239
FAST = {"folds": 3, "components": 2, "alphas": (1.0,), "sketch_above": None}


def make_store(tmp_path: Path, **changes: object) -> str:
    """m0, m1, m2 (m1 with a mask), labels, ids; chunks of 50 rows."""
    views, labels = make_views(N)
    mask = np.ones(N, dtype=bool)
    mask[::7] = False
    parts: dict[str, object] = {
        "views": views,
        "labels": labels,
        "ids": np.arange(N) + 1000,
        "masks": {"m1": mask},
    }
    parts.update(changes)
    return write_dataset(
        tmp_path / "ds.zarr",
        parts["views"],  # type: ignore[arg-type]
        labels=parts["labels"],  # type: ignore[arg-type]
        ids=parts["ids"],  # type: ignore[arg-type]
        masks=parts["masks"],  # type: ignore[arg-type]
        chunk_rows=CHUNK,
    )


def chunk_file(url: str, array: str, index: int) -> Path:
    """The file of row chunk ``index`` (default chunk key encoding; one column chunk)."""
    two_d = array.startswith("modalities/")
    return Path(url, array, "c", str(index), *(["0"] if two_d else []))


def error_line(result: object) -> str:
    """The CLI's stderr, checked to be one 'error: …' line with no traceback, exit 2."""
    return one_error_line(result, 2)


def validate(url: str) -> object:
    return CliRunner().invoke(app, ["validate", url, "--folds", "3"])


def fit_cli(url: str, *args: str) -> object:
    return CliRunner().invoke(
        app, ["fit", url, "--in-process", "--folds", "3", "--components", "2", *args]
    )


ARRAYS = ["modalities/m0", "labels", "ids", "masks/m1"]


@pytest.mark.parametrize("array", ARRAYS)
def test_absent_chunk_fails_before_the_pass(tmp_path: Path, array: str) -> None:
    url = make_store(tmp_path)
    chunk_file(url, array, 2).unlink()
    message = rf"^{re.escape(array)}: chunk 2 \(rows 100–149\) is absent from the store; "
    with pytest.raises(DatasetError, match=message):
        prepare(url, FitConfig(folds=3))  # before any computation
    line = error_line(validate(url))
    assert re.match("error: " + message[1:], line)
    assert "write_empty_chunks=True" in line


def test_absent_chunks_counted_and_first_ones_named(tmp_path: Path) -> None:
    url = make_store(tmp_path)
    for i in (0, 2, 3, 4):
        chunk_file(url, "modalities/m2", i).unlink()
    with pytest.raises(DatasetError) as info:
        open_dataset(url).check_chunks()
    assert str(info.value).startswith(
        "modalities/m2: 4 of 5 chunks are absent from the store, first chunk 0 (rows 0–49), "
        "chunk 2 (rows 100–149), chunk 3 (rows 150–199); zarr would read them as the fill "
        "value 0.0"
    )


def test_only_the_arrays_the_fit_reads_are_listed(tmp_path: Path) -> None:
    """A modality outside the fit's pairs may lack a chunk; validate still refuses it."""
    url = make_store(tmp_path)
    chunk_file(url, "modalities/m2", 1).unlink()
    result = mmpipe.fit(url, pairs=["m0:m1"], **FAST)  # type: ignore[arg-type]
    assert [(p.source, p.target) for p in result.pairs] == [("m0", "m1")]
    assert "modalities/m2: chunk 1 (rows 50–99)" in error_line(validate(url))


@pytest.mark.parametrize("array", ["modalities/m0", "masks/m1"])
def test_chunk_deleted_after_the_check_is_caught_by_the_read(tmp_path: Path, array: str) -> None:
    """The listing happens once, before the pass; a chunk lost afterwards is still no zero:
    the store wrapper raises when zarr finds no object for a chunk it asks for."""
    url = make_store(tmp_path)
    prepared = prepare(url, FitConfig(folds=3))
    chunk_file(url, array, 3).unlink()
    with pytest.raises(DatasetError, match=rf"^{re.escape(array)}: chunk 3 \(rows 150–199\)"):
        engine.statistics_pass(prepared)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    size = path.stat().st_size
    path.write_bytes(np.random.default_rng(0).bytes(size))


def _garbage_body(path: Path) -> None:
    """Garbage after an intact 16-byte header (Blosc's): the codec itself fails."""
    data = path.read_bytes()
    path.write_bytes(data[:16] + np.random.default_rng(0).bytes(len(data) - 16))


@pytest.mark.parametrize(
    "damage", [_truncate, _garbage, _garbage_body], ids=["truncated", "garbage", "body"]
)
@pytest.mark.parametrize("array", ARRAYS)
def test_corrupt_chunk_names_array_and_chunk(tmp_path: Path, array: str, damage: object) -> None:
    url = make_store(tmp_path)
    damage(chunk_file(url, array, 1))  # type: ignore[operator]
    message = (
        rf"^{re.escape(array)}: chunk 1 \(rows 50–99\) (is truncated or corrupt|cannot be "
        r"decoded).*(restore the chunk from the source or rewrite the array)"
    )
    with pytest.raises(DatasetError, match=message):
        mmpipe.fit(url, **FAST)  # type: ignore[arg-type]
    assert re.match("error: " + message[1:], error_line(fit_cli(url)))


def test_flipped_bit_in_a_checksummed_chunk_is_named(tmp_path: Path) -> None:
    """A bit flipped inside a Blosc frame decodes into wrong values without a word; the
    CRC-32C that mmpipe's writers add turns it into an error naming the chunk."""
    url = make_store(tmp_path)
    path = chunk_file(url, "modalities/m0", 2)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"^modalities/m0: chunk 2 \(rows 100–149\)"):
        mmpipe.fit(url, **FAST)  # type: ignore[arg-type]


def test_truncated_blosc_chunk_is_not_decoded_into_garbage(tmp_path: Path) -> None:
    """Blosc does not check a frame's length: without the header check a truncated chunk
    decodes silently into other memory's bytes. (mmpipe's own writers add a checksum; this
    is an array written by another tool, with Blosc alone.)"""
    url = make_store(tmp_path)
    blosc = zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
    zarr.open_group(url, mode="a").create_array(
        "modalities/m0", data=make_views(N)[0]["m0"], chunks=(CHUNK, 7),
        compressors=(blosc,), overwrite=True,
    )  # fmt: skip
    path = chunk_file(url, "modalities/m0", 1)
    whole = path.read_bytes()
    path.write_bytes(whole[:-8])
    raw = zarr.open_array(url, path="modalities/m0", mode="r")
    raw[50:100]  # plain zarr: no error (the reason for the check)
    with pytest.raises(DatasetError, match=r"holds \d+ bytes but its Blosc header says \d+"):
        open_dataset(url).arrays.read("m0", 50, 100)


@pytest.mark.parametrize(
    "key", ["zarr.json", "modalities/zarr.json", "modalities/m1/zarr.json", "labels/zarr.json"]
)
@pytest.mark.parametrize("garble", ["truncated", "not json", "wrong fields"])
def test_garbled_zarr_json_names_the_file(tmp_path: Path, key: str, garble: str) -> None:
    url = make_store(tmp_path)
    path = Path(url, key)
    text = path.read_text()
    node = "group" if key.count("/") < (2 if key.startswith("modalities/") else 1) else "array"
    wrong = f'{{"zarr_format": 3, "node_type": "{node}", "shape": "many", "attributes": []}}'
    path.write_text(
        {"truncated": text[: len(text) // 2], "not json": "<html>oops</html>"}.get(garble, wrong)
    )
    message = rf"^{re.escape(repr(os.path.join(url, key)))} cannot be read \("
    with pytest.raises(DatasetError, match=message):
        open_dataset(url)
    assert re.match("error: " + message[1:], error_line(validate(url)))


def test_duplicate_ids_name_the_first_ones_and_their_rows(tmp_path: Path) -> None:
    ids = np.arange(N) + 1000
    ids[[130, 200]] = 1007
    ids[150] = 1003
    url = make_store(tmp_path, ids=ids)
    message = (
        r"^ids: ids occur more than once, 1003 at rows 3, 150; 1007 at rows 7, 130, 200: "
        r"every row must have its own id"
    )
    with pytest.raises(DataValueError, match=message):
        prepare(url, FitConfig(folds=3))
    assert re.match("error: " + message[1:], error_line(validate(url)))
    assert re.match("error: " + message[1:], error_line(fit_cli(url)))


# Fixed-length strings have no stable Zarr v3 spec yet; zarr warns when writing them.
@pytest.mark.filterwarnings("ignore::zarr.errors.UnstableSpecificationWarning")
def test_duplicate_string_ids(tmp_path: Path) -> None:
    ids = np.array([f"s{i}" for i in range(N)])
    ids[99] = "s5"
    url = make_store(tmp_path, ids=ids)
    with pytest.raises(DataValueError, match=r"^ids: ids occur more than once, 's5' at rows 5, 99"):
        open_dataset(url).check_ids()


def _rare_labels() -> np.ndarray:
    _, labels = make_views(N)
    labels = labels.copy()
    labels[labels == 2] = 1
    labels[[10, 20]] = 2  # class 2: two rows
    return labels


def test_class_with_fewer_rows_than_folds_is_refused_when_classifying(tmp_path: Path) -> None:
    url = make_store(tmp_path, labels=_rare_labels())
    message = (
        r"^labels: class 2 \(2 rows\) has fewer rows than the 3 folds, .*use --folds 2 or "
        r"fewer, or merge or drop the class\.$"
    )
    with pytest.raises(DataValueError, match=message):
        mmpipe.fit(url, classify=["m0"], **FAST)  # type: ignore[arg-type]
    assert re.match("error: " + message[1:], error_line(fit_cli(url, "--classify", "m0")))
    holdout = r"^labels: class 2 \(2 rows\) has too few rows for a hold-out of 0.2"
    hold_out = {k: v for k, v in FAST.items() if k != "folds"}  # holdout or folds, not both
    with pytest.raises(DataValueError, match=holdout):
        mmpipe.fit(url, classify=["m0"], **{**hold_out, "holdout": 0.2})  # type: ignore[arg-type]


def test_rare_class_only_balancing_folds_is_recorded_in_the_results(tmp_path: Path) -> None:
    url = make_store(tmp_path, labels=_rare_labels())
    result = mmpipe.fit(url, pairs=["m0:m2"], **FAST)  # type: ignore[arg-type]
    assert result.plan.rare_classes == {2: 2}
    assert result.summary()["plan"]["rare_classes"] == {"2": 2}


def test_constant_modality_is_refused(tmp_path: Path) -> None:
    views, _ = make_views(N)
    views["m2"] = np.full((N, 4), 3.7, dtype=np.float32)
    url = make_store(tmp_path, views=views)
    message = (
        r"^modalities/m2: every column is constant over the 240 rows where it is present: "
        r"nothing to learn from it"
    )
    with pytest.raises(DataValueError, match=message):
        mmpipe.fit(url, **FAST)  # type: ignore[arg-type]
    assert re.match("error: " + message[1:], error_line(fit_cli(url)))


def test_modality_constant_where_present_is_refused(tmp_path: Path) -> None:
    """Values behind a False mask do not count: m1 varies only in rows where it is absent."""
    views, _ = make_views(N)
    mask = np.ones(N, dtype=bool)
    mask[::7] = False
    views["m1"] = np.where(mask[:, None], -2.5, np.random.default_rng(1).random((N, 5)))
    url = make_store(tmp_path, views=views)
    with pytest.raises(DataValueError, match=r"^modalities/m1: every column is constant over "
                       rf"the {int(mask.sum())} rows where it is present"):  # fmt: skip
        mmpipe.fit(url, **FAST)  # type: ignore[arg-type]


def test_all_zero_chunks_are_written_and_no_false_alarm(tmp_path: Path) -> None:
    """A chunk equal to the fill value (zeros, class 0, all-False mask) is a real chunk."""
    views, labels = make_views(N)
    views["m0"][50:100] = 0.0
    labels = labels.copy()
    labels[100:150] = 0
    mask = np.ones(N, dtype=bool)
    mask[150:200] = False
    url = make_store(tmp_path, views=views, labels=labels, masks={"m1": mask})
    for array, index in [("modalities/m0", 1), ("labels", 2), ("masks/m1", 3)]:
        assert chunk_file(url, array, index).is_file(), array
    assert validate(url).exit_code == 0  # type: ignore[attr-defined]
    result = mmpipe.fit(url, **FAST)  # type: ignore[arg-type]
    assert result.pair("m0", "m1").rows == N - 50


def test_synth_writes_every_chunk(tmp_path: Path) -> None:
    """One-row chunks: label 0 and a False mask equal the fill value, and are still written."""
    url = synthesize(
        str(tmp_path / "s.zarr"),
        SynthSpec(rows=40, modalities={"a": 2, "b": 3}, classes=2, chunk_rows=1,
                  missing_fraction=0.5),
    )  # fmt: skip
    ds = open_dataset(url)
    assert (np.asarray(ds.read_labels()) == 0).any()
    assert not np.asarray(ds.arrays.masks["a"][:]).all()
    ds.check_chunks()
    assert len(os.listdir(Path(url, "labels", "c"))) == 40


def test_absent_shard_is_named(tmp_path: Path) -> None:
    url = make_store(tmp_path)
    group = zarr.open_group(url, mode="a")
    data = np.random.default_rng(2).standard_normal((N, 6))
    group.create_array(
        "modalities/m3",
        data=data,
        chunks=(25, 6),
        shards=(100, 6),
        config={"write_empty_chunks": True},
    )
    ds = open_dataset(url)
    ds.check_chunks()
    np.testing.assert_array_equal(ds.arrays.read("m3", 0, N), data)
    chunk_file(url, "modalities/m3", 1).unlink()  # shard 1: rows 100-199
    message = r"^modalities/m3: shard 1 \(rows 100–199\) is absent from the store"
    with pytest.raises(DatasetError, match=message):
        ds.check_chunks()
    with pytest.raises(DatasetError, match=message):
        ds.arrays.read("m3", 90, 110)


def test_errors_pickle_with_their_message(tmp_path: Path) -> None:
    url = make_store(tmp_path)
    _garbage(chunk_file(url, "modalities/m0", 4))
    ds = open_dataset(url)
    with pytest.raises(DatasetError) as info:
        pickle.loads(pickle.dumps(ds.arrays)).read("m0", 200, 240)
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is DatasetError
    assert str(again) == str(info.value)
    assert isinstance(again, MmpipeError)
    assert again.exit_code == 2


@pytest.mark.slow
def test_corrupt_chunk_message_survives_the_worker(tmp_path: Path, local_client: object) -> None:
    """Read and diagnosed on a worker process of a real 2-worker cluster (the mask is read in
    the statistics pass); the client gets the same DatasetError, message intact."""
    url = make_store(tmp_path)
    _garbage(chunk_file(url, "masks/m1", 3))
    message = (
        r"^masks/m1: chunk 3 \(rows 150–199\) cannot be decoded \(RuntimeError: Zstd "
        r"decompression error: invalid input data\): the stored object 'masks/m1/c/3' is "
        r"corrupt or truncated; restore the chunk from the source or rewrite the array\.$"
    )
    with pytest.raises(DatasetError, match=message):
        mmpipe.fit(url, client=local_client, **FAST)  # type: ignore[arg-type]


@pytest.fixture
def s3_options(tmp_path: Path) -> Iterator[dict[str, object]]:
    """A moto S3 server on 127.0.0.1 (free port) with one bucket; fake credentials only."""
    from s3server import moto_s3

    with moto_s3(tmp_path) as endpoint:
        yield {"endpoint_url": endpoint, "anon": False}


@pytest.mark.slow
def test_absent_and_truncated_chunks_on_s3(s3_options: dict[str, object]) -> None:
    """FsspecStore: the listing (ListObjectsV2) and the read-time guard both name the chunk."""
    import s3fs

    views, labels = make_views(N)
    url = write_dataset(
        "s3://bucket/ds.zarr", views, labels=labels, ids=np.arange(N), chunk_rows=CHUNK,
        storage_options=s3_options,
    )  # fmt: skip
    ds = open_dataset(url, storage_options=s3_options)
    ds.check_chunks()
    fs = s3fs.S3FileSystem(endpoint_url=s3_options["endpoint_url"])
    fs.rm("bucket/ds.zarr/labels/c/4")
    with pytest.raises(DatasetError, match=r"^labels: chunk 4 \(rows 200–239\) is absent"):
        ds.check_chunks()
    with pytest.raises(DatasetError, match=r"^labels: chunk 4 \(rows 200–239\) is absent"):
        ds.read_labels()
    options = [f"-S{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in s3_options.items()]
    line = error_line(CliRunner().invoke(app, ["validate", url, *options]))
    assert line.startswith("error: labels: chunk 4 (rows 200–239) is absent from the store")
    key = "bucket/ds.zarr/modalities/m1/c/2/0"
    fs.pipe(key, fs.cat(key)[:-8])
    with pytest.raises(DatasetError, match=r"^modalities/m1: chunk 2 \(rows 100–149\) "
                       r"(is truncated or corrupt|cannot be decoded)"):  # fmt: skip
        ds.arrays.read("m1", 0, N)


class _EmptyListing(zarr.storage.WrapperStore[zarr.storage.LocalStore]):
    """A store whose listings come back empty (an object store answering with no keys)."""

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        nothing: tuple[str, ...] = ()
        for key in nothing:  # an async generator that yields nothing
            yield key


def test_a_listing_that_shows_nothing_is_not_every_chunk_absent(tmp_path: Path) -> None:
    url = make_store(tmp_path)
    ds = open_dataset(_EmptyListing(zarr.storage.LocalStore(url, read_only=True)))
    with pytest.raises(StorageError, match=r"^modalities/m0: listing its objects in the store "
                       "did not even return its zarr.json"):  # fmt: skip
        ds.check_chunks()
