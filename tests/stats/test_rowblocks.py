"""Every pass's task reads its own rows: no row data moves between tasks before the arithmetic."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dask._task_spec import DataNode
from dask.highlevelgraph import HighLevelGraph
from helpers import make_views

from mmpipe.cluster import compute_pass, using
from mmpipe.io.dataset import open_dataset, write_dataset
from mmpipe.stats.blocked import statistics_graph
from mmpipe.stats.folds import kfold_plan
from mmpipe.stats.rowblocks import RowBlock, map_row_blocks


def _dataset(tmp_path: Path) -> str:
    views, labels = make_views(240)
    missing = np.zeros(240, dtype=bool)
    missing[::7] = True
    views["m1"][missing] = np.nan  # absent rows may hold anything
    return write_dataset(
        tmp_path / "d.zarr", views, labels=labels, masks={"m1": ~missing}, chunk_rows=50
    )


def test_the_pass_graph_has_no_reading_tasks(tmp_path: Path) -> None:
    ds = open_dataset(_dataset(tmp_path), chunk_rows=100)
    graph = statistics_graph(ds, kfold_plan(ds.n_rows, 3), ds.names, split_every=8)
    tasks = dict(graph.__dask_graph__())
    blocks = [k for k in tasks if str(k).startswith("block_statistics-")]
    assert len(blocks) == len(ds.row_chunks) == 3
    # The blocks, one merge, and four shared objects (store handle, names, classes,
    # precision): nothing that reads or moves rows for a block.
    assert len(tasks) == len(blocks) + 1 + 4


def test_blocks_read_the_rows_they_name(tmp_path: Path) -> None:
    url = _dataset(tmp_path)
    ds = open_dataset(url, chunk_rows=70)  # not a multiple of the store's 50-row chunks
    assert ds.row_chunks == (70, 70, 70, 30)
    marks = np.arange(ds.n_rows)

    def describe(block: RowBlock, rows: np.ndarray, scale: int) -> tuple[int, ...]:
        present = block.present(["m0", "m1"])
        assert np.array_equal(rows, marks[block.start : block.start + block.rows])
        np.testing.assert_array_equal(
            block.values["m0"], ds.arrays.read("m0", block.start, block.start + block.rows)
        )
        assert block.masks["m0"] is None
        assert block.masks["m1"] is not None
        return block.start, block.rows, int(present.sum()) * scale

    import dask

    parts = map_row_blocks(ds, ["m0", "m1"], describe, per_row=(marks,), shared=(1,))
    (results,) = dask.compute(parts)
    assert [r[:2] for r in results] == [(0, 70), (70, 70), (140, 70), (210, 30)]
    mask = np.asarray(ds.masks["m1"].compute())
    assert sum(r[2] for r in results) == int(mask.sum())


def _total(block: RowBlock, big: np.ndarray) -> float:
    return float(big.sum()) + block.rows


@pytest.mark.slow  # the session's LocalCluster: real worker processes
def test_a_large_shared_object_is_one_node_of_the_graph_and_sent_without_warning(
    tmp_path: Path, local_client: Any
) -> None:
    ds = open_dataset(_dataset(tmp_path), chunk_rows=100)
    big = np.ones((2000, 1000))  # 16 MB: distributed warns about graphs over 10 MB
    parts = map_row_blocks(ds, ["m0"], _total, shared=(big,))
    graph = dict(HighLevelGraph.merge(*(p.__dask_graph__() for p in parts)))
    # One key holds it (the scheduler can recompute it after a worker loss, unlike scattered
    # data); the three block tasks refer to that key, they do not carry a copy each.
    holding = [k for k, v in graph.items() if isinstance(v, DataNode) and v.value is big]
    assert len(holding) == 1
    assert len(pickle.dumps(graph)) < 1.2 * big.nbytes
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "large graph" UserWarning fails the test
        with using(local_client):
            results = [compute_pass(p) for p in parts]
    assert results == [2e6 + 100, 2e6 + 100, 2e6 + 40]


def test_rows_present_counts_what_the_merged_statistics_count(tmp_path: Path) -> None:
    from mmpipe.stats.blocked import compute_statistics

    ds = open_dataset(_dataset(tmp_path), chunk_rows=100)
    stats = compute_statistics(ds, kfold_plan(ds.n_rows, 3), ds.names)
    for names in (["m0"], ["m1"], ["m0", "m1"]):
        for groups in (None, [0], [1, 2]):
            assert stats.rows_present(names, groups) == stats.moments(names, groups).n
    assert stats.rows_present(["m1"]) == int(np.asarray(ds.masks["m1"].compute()).sum()) < 240
