"""Runs stay honest when their process is stopped, the disk fills, or writers race.

Every fault is caused for real: signals to a real ``mmpipe fit`` process, four processes
writing one store at once, a tmpfs that runs full, a read-only mount.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import make_views

import mmpipe
from mmpipe import engine
from mmpipe.errors import DiskFullError, ResultsError
from mmpipe.io.dataset import write_dataset
from mmpipe.io.runs import list_runs, read_run

pytestmark = pytest.mark.slow

# A child that runs the real CLI, but whose statistics pass waits (after announcing itself)
# so that the test can signal it at a known moment.
PAUSED_FIT = """
import sys, time
from mmpipe import engine, cli
def paused(prepared, **kwargs):
    print("in-pass", flush=True)
    time.sleep(120)
engine.statistics_pass = paused
sys.argv = ["mmpipe", "fit", *sys.argv[1:]]
cli.main()
"""


@pytest.fixture
def store(tmp_path: Path) -> str:
    views, labels = make_views()
    return write_dataset(tmp_path / "data.zarr", views, labels=labels, chunk_rows=50)


def start_paused_fit(store: str, out: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", PAUSED_FIT, store, "--out", str(out), "--components", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MMPIPE_DEBUG": ""},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the pass has begun
    assert line.strip() == "in-pass", proc.stderr.read() if proc.stderr else ""
    return proc


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_marks_the_run_failed(
    store: str, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    out = tmp_path / "results.zarr"
    proc = start_paused_fit(store, out)
    (run,) = list_runs(out)
    assert run["status"] == "running"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert stderr.strip() == f"error: The run was stopped by {sig.name}; it is marked failed."
    (run,) = list_runs(out)
    assert run["status"] == "failed"
    assert sig.name in run["error"]


def test_sigkill_leaves_an_abandoned_run_that_clean_removes(store: str, tmp_path: Path) -> None:
    out = tmp_path / "results.zarr"
    good = mmpipe.fit(store, components=3, folds=3, out=out)
    proc = start_paused_fit(store, out)
    proc.kill()
    proc.communicate(timeout=60)
    status = {r["run_id"]: r["status"] for r in list_runs(out)}
    assert sorted(status.values()) == ["abandoned", "complete"]
    assert read_run(out).path.endswith(good.run_id)
    done = subprocess.run(
        [sys.executable, "-m", "mmpipe.cli", "runs", str(out), "--clean"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "removed 1 incomplete run" in done.stdout
    assert [r["run_id"] for r in list_runs(out)] == [good.run_id]


def test_four_concurrent_writers_all_listed(store: str, tmp_path: Path) -> None:
    out = tmp_path / "results.zarr"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mmpipe.cli",
                "fit",
                store,
                "--out",
                str(out),
                "--components",
                "3",
                "--folds",
                "3",
                "--seed",
                str(seed),
                "--in-process",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    runs = list_runs(out)
    assert len(runs) == 4
    assert {r["status"] for r in runs} == {"complete"}
    seeds = sorted(dict(read_run(out, r["run_id"]).attrs)["config"]["seed"] for r in runs)
    assert seeds == [0, 1, 2, 3]


@pytest.fixture
def small_mount(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted afterwards. Needs root (CI and the dev machines run as root)."""
    where = tmp_path / "mnt"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs in CI: {done.stderr!r}")
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_full_disk_never_looks_complete(store: str, small_mount: Path) -> None:
    out = small_mount / "results.zarr"
    good = mmpipe.fit(store, components=3, folds=3, out=out)
    # Leave 64 KiB: enough to begin a run (one small zarr.json), far from its arrays.
    free = os.statvfs(small_mount).f_bavail * os.statvfs(small_mount).f_frsize
    (small_mount / "filler").write_bytes(b"\0" * (free - 65536))
    with pytest.raises(DiskFullError, match="No space left"):
        mmpipe.fit(store, components=3, folds=3, out=out)
    status = {r["run_id"]: r["status"] for r in list_runs(out)}
    assert status[good.run_id] == "complete"
    assert sorted(status.values()) == ["complete", "failed"]
    (failed,) = [r for r in list_runs(out) if r["status"] == "failed"]
    assert "No space left" in failed["error"]
    run = read_run(out)
    assert run.path.endswith(good.run_id)
    np.testing.assert_array_equal(
        run["pairs/m0--m1/coef"][...],  # type: ignore[index]
        good.pair("m0", "m1").models.ridge.coef_,
    )


def test_read_only_location_refused_before_the_pass(
    store: str, small_mount: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], check=True)

    def no_pass(*args: object, **kwargs: object) -> None:
        raise AssertionError("the pass ran before the results location was refused")

    monkeypatch.setattr(engine, "statistics_pass", no_pass)
    started = time.monotonic()
    with pytest.raises(ResultsError, match="not writable"):
        mmpipe.fit(store, components=3, out=small_mount / "results.zarr")
    assert time.monotonic() - started < 60


def test_unwritable_system_paths_refused(store: str) -> None:
    for out in ("/proc/mmpipe-results.zarr", "/sys/mmpipe-results.zarr"):
        with pytest.raises(ResultsError, match=r"cannot be created|not writable"):
            mmpipe.fit(store, components=3, out=out)
