"""No surprises (issue 17): making a dataset never deletes what is at OUT unless asked, and
never anything mmpipe did not write; every check of the options is the same in validate and
fit; messages in user wording; a LocalCluster takes no well-known port."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import make_views, one_error_line
from typer.testing import CliRunner

import mmpipe
from mmpipe.cli import app
from mmpipe.errors import ConfigError
from mmpipe.io.dataset import write_dataset
from mmpipe.io.examples import make_digits
from mmpipe.io.synth import SynthSpec, synthesize

SYNTH = ["--rows", "300", "--chunk-rows", "100", "-m", "a=4", "-m", "b=3"]


def arrays(path: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(path), mode="r")
    return {
        name: np.asarray(node[...])
        for name, node in group.members(max_depth=None)
        if isinstance(node, zarr.Array)
    }


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for name, values in want.items():
        np.testing.assert_array_equal(got[name], values, err_msg=name)


# Making a dataset ---------------------------------------------------------------------------


def test_second_synth_into_the_same_out_is_refused_and_the_first_is_intact(
    tmp_path: Path,
) -> None:
    out = tmp_path / "d.zarr"
    runner = CliRunner()
    assert runner.invoke(app, ["synth", str(out), *SYNTH]).exit_code == 0
    first = arrays(out)

    result = runner.invoke(app, ["synth", str(out), *SYNTH[:1], "500", *SYNTH[2:], "--seed", "1"])
    line = one_error_line(result, 2)
    assert str(out) in line
    assert "--overwrite" in line
    assert_same(arrays(out), first)


def test_a_folder_of_other_files_is_never_deleted_even_with_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    runner = CliRunner()
    for extra in ([], ["--overwrite"]):
        line = one_error_line(runner.invoke(app, ["synth", str(out), *SYNTH, *extra]), 2)
        assert str(out) in line
    assert (out / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_overwrite_replaces_an_mmpipe_dataset(tmp_path: Path) -> None:
    out = tmp_path / "d.zarr"
    runner = CliRunner()
    assert runner.invoke(app, ["synth", str(out), *SYNTH]).exit_code == 0
    result = runner.invoke(app, ["synth", str(out), *SYNTH, "--seed", "7", "--overwrite"])
    assert result.exit_code == 0, result.output
    fresh = tmp_path / "fresh.zarr"
    synthesize(fresh, SynthSpec(rows=300, modalities={"a": 4, "b": 3}, seed=7, chunk_rows=100))
    assert_same(arrays(out), arrays(fresh))


def test_overwrite_keeps_a_dataset_holding_a_foreign_file(tmp_path: Path) -> None:
    out = tmp_path / "d.zarr"
    synthesize(out, SynthSpec(rows=200, modalities={"a": 2, "b": 2}, chunk_rows=100))
    (out / "README.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"README\.txt"):
        synthesize(out, SynthSpec(rows=200, modalities={"a": 2, "b": 2}), overwrite=True)
    assert (out / "README.txt").exists()


def test_a_results_store_is_never_overwritten(tmp_path: Path, small_store: str) -> None:
    results = tmp_path / "r.zarr"
    mmpipe.fit(small_store, components=2, folds=3, out=results)
    before = arrays(results)
    line = one_error_line(
        CliRunner().invoke(app, ["synth", str(results), *SYNTH, "--overwrite"]), 2
    )
    assert "results store" in line
    assert_same(arrays(results), before)


def test_write_dataset_and_examples_refuse_too(tmp_path: Path) -> None:
    views, labels = make_views(60)
    out = tmp_path / "w.zarr"
    write_dataset(out, views, labels=labels)
    with pytest.raises(ConfigError, match="overwrite"):
        write_dataset(out, views)
    write_dataset(out, {"x": views["m0"], "y": views["m1"]}, overwrite=True)
    assert mmpipe.open_dataset(out).names == ["x", "y"]

    digits = tmp_path / "digits.zarr"
    assert CliRunner().invoke(app, ["example", "digits", str(digits)]).exit_code == 0
    line = one_error_line(CliRunner().invoke(app, ["example", "digits", str(digits)]), 2)
    assert str(digits) in line
    assert "--overwrite" in line
    make_digits(digits, overwrite=True)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a dataset mmpipe wrote"):
        make_digits(other, overwrite=True)
    assert (other / "notes.txt").exists()


def test_an_empty_folder_is_written_into(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    assert CliRunner().invoke(app, ["synth", str(out), *SYNTH]).exit_code == 0
    assert mmpipe.open_dataset(out).names == ["a", "b"]


# One place for every check ------------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "fit"])
def test_folds_1_is_refused_by_validate_as_by_fit(command: str, small_store: str) -> None:
    result = CliRunner().invoke(app, [command, small_store, "--folds", "1", "--in-process"][:4])
    line = one_error_line(result, 2)
    assert "folds" in line
    assert "greater than or equal to 2" in line


def test_validate_and_fit_say_the_same(small_store: str) -> None:
    runner = CliRunner()
    for args in (["--folds", "300"], ["--holdout", "0.2", "--folds", "3"], ["--folds", "0"]):
        said = {one_error_line(runner.invoke(app, [cmd, small_store, *args]), 2)
                for cmd in ("validate", "fit")}  # fmt: skip
        assert len(said) == 1, said


def test_folds_above_127_gets_the_options_message(small_store: str) -> None:
    line = one_error_line(CliRunner().invoke(app, ["fit", small_store, "--folds", "300"]), 2)
    assert line.startswith("error: Invalid options: folds:")
    assert "127" in line
    assert "kfold_plan" not in line
    assert "parameter of" not in line
    assert "int8" in (Path(__file__).parents[1] / "docs" / "options.md").read_text()


def test_holdout_with_an_explicit_folds_is_an_error(small_store: str) -> None:
    line = one_error_line(
        CliRunner().invoke(app, ["fit", small_store, "--holdout", "0.2", "--folds", "5"]), 2
    )
    assert "folds and holdout both choose the validation rows" in line
    # holdout alone, and folds alone, are fine
    assert mmpipe.FitConfig(holdout=0.2).holdout == 0.2
    with pytest.raises(ConfigError, match="folds and holdout"):
        mmpipe.FitConfig.parse({"holdout": 0.2, "folds": 5}, "run config")


def test_validate_checks_the_fit_options_against_the_dataset(small_store: str) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", small_store, "--folds", "3"])
    assert ok.exit_code == 0
    assert ok.stdout.startswith("ok: ")
    line = one_error_line(runner.invoke(app, ["validate", small_store, "--pair", "m0:nope"]), 2)
    fit_line = one_error_line(runner.invoke(app, ["fit", small_store, "--pair", "m0:nope"]), 2)
    assert line == fit_line


def test_messages_use_user_wording(tmp_path: Path, small_store: str) -> None:
    runner = CliRunner()
    line = one_error_line(runner.invoke(app, ["synth", str(tmp_path / "x"), "--rows", "0"]), 2)
    assert "synth --rows must be an int >= 1" in line
    line = one_error_line(runner.invoke(app, ["fit", small_store, "--holdout", "0.001"]), 2)
    assert "parameter of" not in line
    assert "holdout" in line
    line = one_error_line(
        runner.invoke(app, ["fit", small_store, "--in-process", "--workers", "2"]), 2
    )
    assert "parameter of" not in line
    assert "or None" not in line
    source = Path(mmpipe.__file__).parent
    reachable = [source / "stats" / "folds.py", source / "io" / "synth.py", source / "prepare.py"]
    for path in reachable:
        assert "bad_parameter(" not in path.read_text(), path


def test_runs_on_a_dataset_exits_2_with_one_line(small_store: str) -> None:
    line = one_error_line(CliRunner().invoke(app, ["runs", small_store]), 2)
    assert "is a dataset, not a results store" in line


# The LocalCluster takes no well-known port ----------------------------------------------------

NO_PORT_WARNING = """
import logging, warnings, sys
logging.basicConfig(level=logging.INFO)
warnings.simplefilter("always")
from mmpipe.cluster import ClusterSpec, dask_client
with dask_client(ClusterSpec(workers=1, threads_per_worker=1, memory_limit="1GiB")) as client:
    assert client.submit(lambda x: x + 1, 1).result() == 2
    print("dashboard", client.scheduler_info().get("services"))
"""


@pytest.mark.slow
def test_local_cluster_warns_of_no_busy_port() -> None:
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            busy.bind(("127.0.0.1", 8787))
        except OSError:
            pass  # something already holds 8787: the check is as good
        else:
            busy.listen()
        done = subprocess.run(
            [sys.executable, "-c", NO_PORT_WARNING],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "already in use" not in output, output
    assert "8787" not in output, output
