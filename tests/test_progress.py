"""Progress of the passes (mmpipe.progress): every block reported once, in process and on a
LocalCluster; the CLI's bars only on a terminal; --dashboard's address answers HTTP."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mmpipe
from mmpipe.cluster import ClusterSpec, compute_pass, dask_client, using
from mmpipe.io.dataset import open_dataset
from mmpipe.io.synth import SynthSpec, synthesize
from mmpipe.progress import Update, dashboard_line, reporting
from mmpipe.stats.blocked import tree_reduce
from mmpipe.stats.rowblocks import map_row_blocks

MMPIPE = str(Path(sys.executable).with_name("mmpipe"))
ROWS, CHUNK = 2400, 300  # 8 row blocks
FIT = {
    "components": 3,
    "folds": 3,
    "chunk_rows": CHUNK,
    "classify": ["a"],
    "transfer": True,
    "retrieval": True,
    "logistic": True,
    "random_features": 8,
    "solver": "tsqr",
    "sketch_above": 10,
    "sketch_columns": 6,
    "seed": 1,
}
PASSES = {"sketch", "statistics", "TSQR", "held scores", "logistic iteration", "scoring"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = str(tmp_path_factory.mktemp("progress") / "data.zarr")
    spec = SynthSpec(
        rows=ROWS,
        modalities={"a": 12, "b": 9},
        classes=3,
        chunk_rows=CHUNK,
        missing_fraction=0.1,
    )
    return synthesize(url, spec)


def _rows(block: Any) -> int:
    return int(block.rows)


def _sum(*parts: int) -> int:
    return sum(parts)


def _by_pass(updates: list[Update]) -> dict[str, list[Update]]:
    passes: dict[str, list[Update]] = defaultdict(list)
    for update in updates:
        passes[update.name].append(update)
    return passes


def check_each_block_once(updates: list[Update]) -> dict[str, list[Update]]:
    """Per run of a pass: a start, every block once (done counting up to total), an end."""
    passes = _by_pass(updates)
    for name, seen in passes.items():
        runs: list[list[Update]] = []
        for update in seen:
            if update.key is None and not update.ended:
                runs.append([update])
            else:
                runs[-1].append(update)
        for run in runs:
            start, *blocks, end = run
            assert end.ended, name
            assert len(blocks) == start.total > 0, name
            assert len({b.key for b in blocks}) == start.total, name  # each block once
            assert [b.done for b in blocks] == list(range(1, start.total + 1)), name
            assert end.done == start.total, name
    return passes


def test_a_pass_reports_each_block_once_in_process(dataset: str) -> None:
    ds = open_dataset(dataset, chunk_rows=CHUNK)
    parts = map_row_blocks(ds, ["a"], _rows)
    updates: list[Update] = []
    with reporting(updates.append):
        total = compute_pass(tree_reduce(parts, _sum, 3), "count", rows=ds.n_rows)
    assert total == ROWS
    passes = check_each_block_once(updates)
    assert list(passes) == ["count"]
    assert passes["count"][0].total == len(parts) == ROWS // CHUNK
    assert passes["count"][0].rows == ROWS
    assert {u.key for u in passes["count"][1:-1]} == {p.key for p in parts}


def test_nothing_is_reported_outside_the_context(dataset: str) -> None:
    updates: list[Update] = []
    with reporting(updates.append):
        pass
    ds = open_dataset(dataset, chunk_rows=CHUNK)
    assert compute_pass(tree_reduce(map_row_blocks(ds, ["a"], _rows), _sum, 3)) == ROWS
    assert updates == []


def test_every_pass_of_a_fit_reports_and_the_numbers_do_not_change(dataset: str) -> None:
    quiet = mmpipe.fit(dataset, **FIT)
    updates: list[Update] = []
    with reporting(updates.append):
        watched = mmpipe.fit(dataset, **FIT)
    passes = check_each_block_once(updates)
    assert set(passes) >= PASSES
    assert passes["statistics"][0].total == ROWS // CHUNK
    for a, b in zip(quiet.pairs, watched.pairs, strict=True):
        np.testing.assert_array_equal(a.r2, b.r2)
        np.testing.assert_array_equal(a.coef, b.coef)


def test_a_broken_callback_does_not_break_the_pass(dataset: str) -> None:
    def broken(update: Update) -> None:
        raise RuntimeError("a display that failed")

    ds = open_dataset(dataset, chunk_rows=CHUNK)
    with reporting(broken):
        assert compute_pass(tree_reduce(map_row_blocks(ds, ["a"], _rows), _sum, 3)) == ROWS


@pytest.mark.slow
def test_every_block_once_on_a_local_cluster(dataset: str) -> None:
    updates: list[Update] = []
    with dask_client(ClusterSpec(workers=2)) as client:
        quiet = mmpipe.fit(dataset, **FIT, client=client)
        with reporting(updates.append):
            watched = mmpipe.fit(dataset, **FIT, client=client)
    passes = check_each_block_once(updates)
    assert set(passes) >= PASSES
    assert passes["scoring"][0].total == ROWS // CHUNK
    for a, b in zip(quiet.pairs, watched.pairs, strict=True):
        np.testing.assert_array_equal(a.r2, b.r2)


def _in_terminal(args: list[str], *, stdout_pipe: bool = False) -> tuple[str, str]:
    """Run ``mmpipe ARGS`` with its stderr (and stdout unless ``stdout_pipe``) on a
    pseudo-terminal: (what the terminal showed, stdout if piped)."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [MMPIPE, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if stdout_pipe else slave,
        stderr=slave,
        env={**os.environ, "COLUMNS": "80", "TERM": "xterm"},
    )
    os.close(slave)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    out = process.stdout.read().decode() if process.stdout else ""
    assert process.wait(timeout=300) == 0, shown.decode(errors="replace")
    os.close(master)
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode(errors="replace")), out


BAR = re.compile(r"(\d+)/(\d+) blocks .*left")


def _bars(shown: str) -> dict[str, tuple[int, int]]:
    """Each bar's last state: description -> (done, total)."""
    last = {}
    for line in re.split(r"[\r\n]+", shown):
        found = BAR.search(line)
        if found:
            last[line.split("━")[0].strip()] = (int(found[1]), int(found[2]))
    return last


@pytest.mark.slow
def test_the_cli_shows_bars_on_a_terminal_only(tmp_path: Path) -> None:
    out = str(tmp_path / "synth.zarr")
    args = ["synth", out, "-n", "4000", "--chunk-rows", "500", "--classes", "3"]
    shown, _ = _in_terminal(args)
    assert _bars(shown)["synth"][0] == _bars(shown)["synth"][1] > 0, shown
    assert "rows/s" in shown
    fit = ["fit", out, "--folds", "3", "--components", "3", "--chunk-rows", "1000"]
    shown, _ = _in_terminal(fit)
    assert _bars(shown)["statistics"] == (4, 4), shown
    # --json on a terminal: no bars, and stdout is the JSON object alone.
    shown, stdout = _in_terminal([*fit, "--json"], stdout_pipe=True)
    assert not _bars(shown), shown
    assert "blocks" not in shown, shown
    assert json.loads(stdout)["rows"] == 4000
    # Not a terminal: no bars.
    piped = subprocess.run([MMPIPE, *fit], capture_output=True, text=True, timeout=300, check=True)
    assert "blocks" not in piped.stderr + piped.stdout
    again = subprocess.run(
        [MMPIPE, "synth", str(tmp_path / "b.zarr"), "-n", "2000"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "blocks" not in again.stderr + again.stdout


ADDRESS = re.compile(r"Dask dashboard: (http://127\.0\.0\.1:(\d+)/\S*)")


def _answers(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return int(response.status)


@pytest.mark.slow
def test_the_dashboard_answers_while_the_cluster_lives() -> None:
    with dask_client(ClusterSpec(workers=1, dashboard=True)) as client:
        found = ADDRESS.search(dashboard_line(client))
        assert found, dashboard_line(client)
        assert _answers(found[1]) == 200
    with pytest.raises(urllib.error.URLError, match="refused"):
        _answers(found[1])  # gone with the cluster
    assert "no Dask dashboard" in dashboard_line(None)


@pytest.mark.slow
def test_synth_dashboard_prints_an_address_that_answers(tmp_path: Path) -> None:
    args = [MMPIPE, "synth", str(tmp_path / "d.zarr"), "-n", "300000", "--chunk-rows", "5000"]
    process = subprocess.Popen(
        [*args, "--dashboard"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 120
    found = None
    while found is None and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        found = ADDRESS.search(line)
    try:
        assert found, "no dashboard address printed"
        assert _answers(found[1]) == 200  # the cluster writes for several seconds
    finally:
        out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "wrote 300000 rows" in out


def _fails(rows: int) -> int:
    raise ValueError(f"a task that failed after {rows} rows")


@pytest.mark.slow
def test_a_watched_pass_that_fails_raises_as_before_and_ends_its_bar(dataset: str) -> None:
    from dask.delayed import delayed

    ds = open_dataset(dataset, chunk_rows=CHUNK)
    parts = map_row_blocks(ds, ["a"], _rows)
    graph = delayed(_fails)(tree_reduce(parts, _sum, 3))
    updates: list[Update] = []
    with (
        dask_client(ClusterSpec(workers=1)) as client,
        using(client),
        reporting(updates.append),
    ):
        with pytest.raises(ValueError, match="failed after 2400 rows"):
            compute_pass(graph, "failing")
        assert compute_pass(tree_reduce(parts, _sum, 3), "again") == ROWS
    failing = _by_pass(updates)["failing"]
    assert failing[-1].ended
    assert failing[-1].done <= len(parts)  # what finished before the task failed
    check_each_block_once(_by_pass(updates)["again"])
