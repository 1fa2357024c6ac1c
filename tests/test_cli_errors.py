"""Every error a user can meet is one `error: …` line and an exit code: 2 for bad input,
1 for the environment (or a bug); the traceback only with --debug or MMPIPE_DEBUG=1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import one_error_line
from typer.testing import CliRunner

import mmpipe.io.inspect
from mmpipe.cli import app


def test_bad_input_exits_2(tmp_path: Path) -> None:
    line = one_error_line(CliRunner().invoke(app, ["inspect", str(tmp_path / "none.zarr")]), 2)
    assert "none.zarr" in line


def test_fit_into_its_own_input_exits_2_before_the_pass(small_store: str) -> None:
    result = CliRunner().invoke(app, ["fit", small_store, "--out", f"{small_store}/out.zarr"])
    assert "lies inside the input dataset" in one_error_line(result, 2)


def test_runs_on_a_dataset_exits_2(small_store: str) -> None:
    result = CliRunner().invoke(app, ["runs", small_store])
    assert "is a dataset, not a results store" in one_error_line(result, 2)


def test_environment_failure_exits_1(monkeypatch: pytest.MonkeyPatch, small_store: str) -> None:
    def unreachable(*args: object, **kwargs: object) -> None:
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(mmpipe.io.inspect, "describe", unreachable)
    line = one_error_line(CliRunner().invoke(app, ["inspect", small_store]), 1)
    assert "ConnectionResetError" in line
    assert "Connection reset by peer" in line


def test_a_bug_exits_1_and_says_so(monkeypatch: pytest.MonkeyPatch, small_store: str) -> None:
    def bug(*args: object, **kwargs: object) -> None:
        raise TypeError("unsupported operand\nover two lines")

    monkeypatch.setattr(mmpipe.io.inspect, "describe", bug)
    line = one_error_line(CliRunner().invoke(app, ["inspect", small_store]), 1)
    assert line.startswith("error: unexpected TypeError: unsupported operand over two lines")
    assert "--debug" in line


@pytest.mark.parametrize(
    ("flag", "env"), [(["--debug"], ""), ([], "1")], ids=["--debug", "MMPIPE_DEBUG=1"]
)
def test_debug_shows_the_traceback(tmp_path: Path, flag: list[str], env: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mmpipe.cli", *flag, "inspect", str(tmp_path / "none.zarr")],
        capture_output=True,
        text=True,
        env={**os.environ, "MMPIPE_DEBUG": env},
    )
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "StoreNotFoundError" in done.stderr


def test_unknown_storage_option_exits_2() -> None:
    # No server is contacted: the client library refuses the option when it starts.
    result = CliRunner().invoke(
        app,
        ["inspect", "s3://bucket/x.zarr", "-S", "bogus=1", "-S", "endpoint_url=http://127.0.0.1:9"],
    )
    line = one_error_line(result, 2)
    assert "storage option 'bogus' is not accepted" in line


def test_run_without_an_orchestrator_is_one_clear_error() -> None:
    from mmpipe.cli import orchestrator
    from mmpipe.errors import MissingDependencyError

    with pytest.raises(MissingDependencyError, match="'airflow' orchestrator, which is not"):
        orchestrator("airflow")
    assert orchestrator("prefect").__name__ == "run_flow"  # the flows/ package registers it
