"""The dataset contract: round trip and every validation error, by API and by CLI."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import dask
import numpy as np
import pytest
import zarr
import zarr.storage
from helpers import CountingStore
from typer.testing import CliRunner

import mmpipe
import mmpipe.io.dataset
from mmpipe.cli import app
from mmpipe.errors import DatasetError, MmpipeError, StoreNotFoundError
from mmpipe.io.dataset import check_folds, open_dataset, write_dataset


def test_round_trip_same_values_and_row_chunks(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((103, 6)).astype(np.float32)
    b = rng.standard_normal((103, 4))
    labels = rng.integers(0, 3, 103)
    mask = rng.random(103) > 0.2
    url = write_dataset(
        tmp_path / "d.zarr",
        {"a": a, "b": b},
        labels=labels,
        ids=np.arange(103),
        masks={"b": mask},
        chunk_rows=20,
    )
    ds = open_dataset(url, chunk_rows=25)
    np.testing.assert_array_equal(ds.modalities["a"].compute(), a)
    np.testing.assert_array_equal(ds.modalities["b"].compute(), b)
    np.testing.assert_array_equal(ds.labels.compute(), labels)
    np.testing.assert_array_equal(ds.masks["b"].compute(), mask)
    assert ds.modalities["a"].dtype == np.float32
    for arr in [*ds.modalities.values(), ds.labels, ds.ids, ds.masks["b"]]:
        assert arr.chunks[0] == (25, 25, 25, 25, 3)
        assert all(len(c) == 1 for c in arr.chunks[1:])  # columns never split
    assert ds.nbytes == sum(v.nbytes for v in ds.modalities.values())
    np.testing.assert_array_equal(ds.read_labels(), labels)


def test_opening_reads_no_data_and_imports_no_dask_array(tmp_path: Path) -> None:
    """The client of a cluster fit needs only metadata and the labels: dask.array (about a
    second to import) is imported only when a Dask view is asked for."""
    url = write_dataset(
        tmp_path / "d.zarr", {"a": np.ones((30, 3)), "b": np.ones((30, 2))}, labels=np.arange(30)
    )
    script = (
        "import sys, mmpipe\n"
        f"ds = mmpipe.open_dataset({url!r}, chunk_rows=7)\n"
        "assert ds.nbytes == 30 * 5 * 8 and ds.row_chunks == (7, 7, 7, 7, 2)\n"
        "assert ds.read_labels().tolist() == list(range(30))\n"
        "print('dask.array' in sys.modules)\n"
        "ds.modalities\n"
        "print('dask.array' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "True"]


def test_store_chunks_split_across_columns_are_merged(tmp_path: Path) -> None:
    g = zarr.open_group(tmp_path / "d.zarr", mode="w")
    g.create_array("modalities/a", data=np.ones((40, 10)), chunks=(8, 3))
    g.create_array("modalities/b", data=np.ones((40, 2)), chunks=(12, 2))
    ds = open_dataset(tmp_path / "d.zarr")
    assert ds.modalities["a"].chunks[1] == (10,)
    assert ds.modalities["b"].chunks[1] == (2,)
    # 40 rows of 12 float64 columns are far below the 64 MiB block: one block of every row
    # (the rule for larger stores is tested below).
    assert ds.row_chunks == (40,)
    np.testing.assert_array_equal(ds.modalities["a"].compute(), np.ones((40, 10)))


# The rule, from open_dataset's docstring: by default a row block is a multiple of the store's
# row chunks (so no store chunk is read by two blocks) of about 64 MiB of float64 rows, all
# modalities side by side. Expected blocks are worked out by hand below.
BLOCK_BYTES = 64 * 2**20


@pytest.mark.parametrize(
    ("chunks", "widths", "every_chunk_divides", "expected"),
    [
        # lcm(8, 12) = 24; 1020 columns are 8160 bytes a row, 8224.1 rows fill 64 MiB, and
        # the largest multiple of 24 not over that is 342 × 24 = 8208 (of 12 alone: 8220).
        ((8, 12), (1000, 20), True, 8208),
        # lcm(4, 6, 10) = 60; 8000 columns are 64000 bytes a row, 1048.6 rows fill 64 MiB:
        # 17 × 60 = 1020 (of 10 alone: 1040).
        ((4, 6, 10), (3000, 3000, 2000), True, 1020),
        # lcm(97, 101) = 9797 rows, 97 times the largest chunk: not worth it, a multiple of
        # the largest store chunk instead: 81 × 101 = 8181 rows fill 64 MiB.
        ((97, 101), (1000, 24), False, 8181),
        # One lcm (15000 rows of 160 kB) is already over 64 MiB: one lcm, never smaller.
        ((5000, 3000), (10_000, 10_000), True, 15_000),
    ],
)
def test_default_row_block_is_a_multiple_of_the_store_chunks(
    tmp_path: Path,
    chunks: tuple[int, ...],
    widths: tuple[int, ...],
    every_chunk_divides: bool,
    expected: int,
) -> None:
    n = 100_003
    g = zarr.open_group(tmp_path / "d.zarr", mode="w")
    for i, (rows, width) in enumerate(zip(chunks, widths, strict=True)):
        # Metadata only (no chunk written): opening reads none, so the store can be large.
        g.create_array(f"modalities/m{i}", shape=(n, width), chunks=(rows, width), dtype="f8")
    row_chunks = open_dataset(tmp_path / "d.zarr").row_chunks
    block = row_chunks[0]
    assert block == expected
    assert sum(row_chunks) == n
    assert set(row_chunks[:-1]) == {block}
    assert 0 < row_chunks[-1] <= block
    # The same rule, stated as properties of the block.
    unit = math.lcm(*chunks) if every_chunk_divides else max(chunks)
    assert all(block % c == 0 for c in chunks) is every_chunk_divides
    assert block % unit == 0
    row_bytes = 8 * sum(widths)
    assert block == unit or block * row_bytes <= BLOCK_BYTES  # about 64 MiB, not more ...
    assert (block + unit) * row_bytes > BLOCK_BYTES  # ... and the largest such multiple


def test_default_row_blocks_read_every_store_chunk_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    g = zarr.open_group(tmp_path / "d.zarr", mode="w")
    g.create_array("modalities/a", data=rng.random((200, 3)), chunks=(8, 3))
    g.create_array("modalities/b", data=rng.random((200, 2)), chunks=(12, 2))
    # With 64 MiB these 200 rows are one block. A target of 40 rows of 5 float64 columns
    # gives several blocks, whose boundaries must fall on both store chunkings: 24 rows (40
    # would cut chunks of b, 36 = 3 × 12 chunks of a).
    monkeypatch.setattr(mmpipe.io.dataset, "TARGET_BLOCK_BYTES", 40 * 5 * 8)

    def chunk_reads(chunk_rows: int | None) -> tuple[tuple[int, ...], dict[str, int]]:
        store = CountingStore(zarr.storage.LocalStore(tmp_path / "d.zarr", read_only=True))
        ds = open_dataset(store, chunk_rows=chunk_rows)
        dask.compute(*ds.modalities.values(), scheduler="sync")
        return ds.row_chunks, {k: v for k, v in store.reads.items() if "/c/" in k}

    row_chunks, reads = chunk_reads(None)
    assert row_chunks == (24,) * 8 + (8,)
    assert len(reads) == 25 + 17  # every chunk of a (8 rows) and of b (12 rows) ...
    assert set(reads.values()) == {1}  # ... read once
    # The count does see a chunk cut by a block boundary (50 is no multiple of 8 or 12).
    _, cut = chunk_reads(50)
    assert max(cut.values()) == 2


def _group(tmp_path: Path) -> zarr.Group:
    return zarr.open_group(tmp_path / "bad.zarr", mode="w")


BAD_CASES = {
    "no_modalities": (
        lambda g: g.create_array("x", data=np.ones((4, 2))),
        "has no 'modalities' group",
    ),
    "one_modality": (
        lambda g: g.create_array("modalities/a", data=np.ones((4, 2))),
        "needs at least two",
    ),
    "not_2d": (
        lambda g: (
            g.create_array("modalities/a", data=np.ones((4, 2, 2))),
            g.create_array("modalities/b", data=np.ones((4, 2))),
        ),
        r"'modalities/a' has shape \(4, 2, 2\); each modality must be 2-D",
    ),
    "non_numeric": (
        lambda g: (
            g.create_array("modalities/a", data=np.array([["x"]] * 4)),
            g.create_array("modalities/b", data=np.ones((4, 2))),
        ),
        "'modalities/a' has dtype .* not numeric: convert it to float32",
    ),
    "row_mismatch": (
        lambda g: (
            g.create_array("modalities/a", data=np.ones((4, 2))),
            g.create_array("modalities/b", data=np.ones((5, 2))),
        ),
        r"different row counts \(modalities/a: 4, modalities/b: 5\)",
    ),
    "labels_rows": (
        lambda g: (
            g.create_array("modalities/a", data=np.ones((4, 2))),
            g.create_array("modalities/b", data=np.ones((4, 2))),
            g.create_array("labels", data=np.ones(3, dtype=int)),
        ),
        "'labels' has 3 rows but the modalities have 4",
    ),
    "labels_float": (
        lambda g: (
            g.create_array("modalities/a", data=np.ones((4, 2))),
            g.create_array("modalities/b", data=np.ones((4, 2))),
            g.create_array("labels", data=np.ones(4)),
        ),
        "labels must be integer class indices",
    ),
    "ids_rows": (
        lambda g: (
            g.create_array("modalities/a", data=np.ones((4, 2))),
            g.create_array("modalities/b", data=np.ones((4, 2))),
            g.create_array("ids", data=np.arange(6)),
        ),
        "'ids' has 6 rows",
    ),
    "mask_not_bool": (
        lambda g: (
            g.create_array("modalities/a", data=np.ones((4, 2))),
            g.create_array("modalities/b", data=np.ones((4, 2))),
            g.create_array("masks/a", data=np.ones(4, dtype=np.int8)),
        ),
        "a mask must be boolean",
    ),
    "mask_rows": (
        lambda g: (
            g.create_array("modalities/a", data=np.ones((4, 2))),
            g.create_array("modalities/b", data=np.ones((4, 2))),
            g.create_array("masks/a", data=np.ones(2, dtype=bool)),
        ),
        "'masks/a' has 2 rows",
    ),
    "mask_unknown": (
        lambda g: (
            g.create_array("modalities/a", data=np.ones((4, 2))),
            g.create_array("modalities/b", data=np.ones((4, 2))),
            g.create_array("masks/c", data=np.ones(4, dtype=bool)),
        ),
        "'masks/c' names no modality",
    ),
}


# Fixed-length strings (the non-numeric case) have no stable Zarr v3 spec yet; zarr warns.
@pytest.mark.filterwarnings("ignore::zarr.errors.UnstableSpecificationWarning")
@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_validation_errors_name_the_array(tmp_path: Path, case: str) -> None:
    build, message = BAD_CASES[case]
    build(_group(tmp_path))
    with pytest.raises(DatasetError, match=message):
        open_dataset(tmp_path / "bad.zarr")
    # The CLI: exit code 2, the same message on stderr, no traceback.
    result = CliRunner().invoke(app, ["inspect", str(tmp_path / "bad.zarr")])
    assert result.exit_code == 2
    assert "error:" in result.stderr
    assert "Traceback" not in result.output


def test_missing_path_and_not_a_group(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="does not exist"):
        open_dataset(tmp_path / "nope.zarr")
    (tmp_path / "file.txt").write_text("hello")
    with pytest.raises(StoreNotFoundError, match="No Zarr group found"):
        open_dataset(tmp_path / "file.txt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(StoreNotFoundError, match="No Zarr group found"):
        open_dataset(tmp_path / "folder")
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "nope.zarr")])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_fewer_rows_than_folds(tmp_path: Path) -> None:
    url = write_dataset(tmp_path / "d.zarr", {"a": np.ones((3, 2)), "b": np.ones((3, 1))})
    ds = open_dataset(url)
    with pytest.raises(DatasetError, match="3 rows, fewer than the 5 folds"):
        check_folds(ds, 5)
    with pytest.raises(DatasetError, match="fewer than the 5 folds"):
        mmpipe.fit(url, folds=5)
    result = CliRunner().invoke(app, ["validate", url, "--folds", "5"])
    assert result.exit_code == 2
    assert "fewer than the 5 folds" in result.stderr


def test_errors_share_one_base_and_builtins() -> None:
    assert issubclass(DatasetError, MmpipeError)
    assert issubclass(DatasetError, ValueError)
    assert issubclass(StoreNotFoundError, FileNotFoundError)


def test_inspect_json_and_table(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    url = write_dataset(
        tmp_path / "d.zarr",
        {"a": rng.random((50, 3)), "b": rng.random((50, 2))},
        labels=np.repeat([0, 1], 25),
        masks={"a": np.arange(50) % 5 != 0},
        ids=np.arange(50),
        chunk_rows=20,
    )
    runner = CliRunner()
    result = runner.invoke(app, ["inspect", url, "--json"])
    assert result.exit_code == 0, result.output
    import json

    info = json.loads(result.stdout)
    assert info["rows"] == 50
    assert info["modalities"]["a"]["shape"] == [50, 3]
    assert info["modalities"]["a"]["chunks"] == [20, 3]
    assert info["labels"]["counts"] == {"0": 25, "1": 25}
    assert info["masks"]["a"]["present"] == 40
    assert info["masks"]["a"]["present_fraction"] == pytest.approx(0.8)
    assert info["ids"]["dtype"] == "int64"
    table = runner.invoke(app, ["inspect", url])
    assert table.exit_code == 0
    assert "2 classes" in table.stdout
    assert "80.0%" in table.stdout
