"""History (issue 17): `mmpipe runs` lists each run with its start, dataset, status, duration
and headline metric; `mmpipe show` prints a past run as `fit` printed it; the fit's tables fit
80 columns with a legend and a mark on an α at the edge of the grid."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import make_views, one_error_line
from rich.console import Console
from typer.testing import CliRunner

import mmpipe
from mmpipe import report
from mmpipe.cli import app
from mmpipe.io.dataset import write_dataset
from mmpipe.io.runs import list_runs

WIDE = {"COLUMNS": "240"}
NARROW = {"COLUMNS": "80"}
FIT = ["--components", "2", "--folds", "3", "--alphas", "0.01,1,100", "--in-process"]


@pytest.fixture
def store(tmp_path: Path) -> str:
    views, labels = make_views(240, (7, 5, 4), classes=3)
    # a long modality name, as real ones are
    views = {"image_embedding": views["m0"], "text": views["m1"], "audio": views["m2"]}
    return write_dataset(tmp_path / "d.zarr", views, labels=labels, chunk_rows=60)


@pytest.fixture
def results(store: str, tmp_path: Path) -> str:
    out = str(tmp_path / "r.zarr")
    runner = CliRunner()
    for extra in ([], ["--classify", "image_embedding+text"]):
        done = runner.invoke(app, ["fit", store, "--out", out, *FIT, *extra], env=WIDE)
        assert done.exit_code == 0, done.output
    return out


# mmpipe runs --------------------------------------------------------------------------------


def test_runs_lists_start_dataset_status_duration_and_headline(results: str, store: str) -> None:
    listing = list_runs(results)
    assert len(listing) == 2
    for run in listing:
        run_group = mmpipe.read_run(results, run["run_id"])
        summary = dict(run_group.attrs)["summary"]
        mean_r2 = float(np.mean([p["cv"]["r2"] for p in summary["pairs"]]))
        assert run["headline"]["metric"] == "mean CV R²"
        assert run["headline"]["value"] == pytest.approx(mean_r2)
        assert run["headline"]["over"] == "6 pairs"
        assert run["duration"] is not None
        assert run["duration"] >= 0
        assert run["dataset"] == store

    printed = CliRunner().invoke(app, ["runs", results])
    assert printed.exit_code == 0, printed.output
    lines = printed.stdout.splitlines()
    assert lines[0].split() == ["run", "started", "(UTC)", "status", "duration", "dataset",
                                "headline"]  # fmt: skip
    for run, line in zip(listing, lines[1:], strict=True):
        assert line.startswith(run["run_id"])
        assert run["started"].replace("T", " ").removesuffix("+00:00") in line
        assert " complete " in line
        assert store in line
        assert f"mean CV R² {run['headline']['value']:.4f} (6 pairs)" in line

    as_json = json.loads(CliRunner().invoke(app, ["runs", results, "--json"]).stdout)
    assert [r["run_id"] for r in as_json] == [r["run_id"] for r in listing]
    assert as_json[0]["headline"]["value"] == pytest.approx(listing[0]["headline"]["value"])
    assert as_json[0]["duration"] == listing[0]["duration"]


def test_headline_without_pairs_is_the_first_tasks_accuracy() -> None:
    from mmpipe.io.runs import headline

    summary: dict[str, Any] = {
        "pairs": [],
        "classify": [{"features": ["a", "b"], "cv": {"accuracy": 0.75}}],
        "transfer": [{"source": "a", "target": "b", "cv": {"accuracy": 0.5}}],
    }
    assert headline(summary) == {"metric": "classify accuracy", "value": 0.75, "over": "a+b"}
    assert headline({"pairs": []}) is None
    assert headline(None) is None


def test_runs_on_a_dataset_exits_2(store: str) -> None:
    line = one_error_line(CliRunner().invoke(app, ["runs", store]), 2)
    assert "is a dataset, not a results store" in line


# mmpipe show --------------------------------------------------------------------------------


def test_show_prints_the_run_as_fit_did(store: str, tmp_path: Path) -> None:
    out = str(tmp_path / "r.zarr")
    runner = CliRunner()
    fitted = runner.invoke(app, ["fit", store, "--out", out, *FIT], env=WIDE)
    assert fitted.exit_code == 0, fitted.output
    shown = runner.invoke(app, ["show", out], env=WIDE)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == fitted.stdout

    (run,) = list_runs(out)
    by_id = runner.invoke(app, ["show", out, "--run", run["run_id"], "--json"])
    assert by_id.exit_code == 0, by_id.output
    stored = dict(mmpipe.read_run(out, run["run_id"]).attrs)["summary"]
    assert json.loads(by_id.stdout) == stored


def test_show_defaults_to_the_latest_complete_run(results: str) -> None:
    listing = list_runs(results)
    shown = CliRunner().invoke(app, ["show", results], env=WIDE)
    assert shown.exit_code == 0, shown.output
    assert listing[-1]["run_id"] in shown.stdout
    assert "Classification from PCA scores" in shown.stdout  # the second run had classify


def test_show_refuses_an_unknown_run_and_a_dataset(results: str, store: str) -> None:
    runner = CliRunner()
    assert "No run 'nope'" in one_error_line(
        runner.invoke(app, ["show", results, "--run", "nope"]), 2
    )
    assert "not a results store" in one_error_line(runner.invoke(app, ["show", store]), 2)


# The fit's tables at 80 columns -------------------------------------------------------------


def rendered(summary: dict[str, Any], width: int = 80) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    report.render_rich(report.tables(summary), console)
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


def header_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("┃")]


def test_tables_fit_80_columns_with_every_heading_whole(results: str) -> None:
    summary = dict(mmpipe.read_run(results).attrs)["summary"]
    text = rendered(summary)
    assert all(len(line) <= 80 for line in text.splitlines()), text
    headers = " ".join(header_lines(text))
    assert "…" not in headers, text
    for table in report.tables(summary):
        for column in table.columns:
            assert column in headers, (column, text)
    assert "…" not in text  # no cell cut either
    for p in summary["pairs"]:  # every number is there, on one line with its pair's name
        name = f"{p['source']} → {p['target']}"
        assert any(name in line and f"{p['procrustes']['r2']:.4f}" in line
                   for line in text.splitlines()), name  # fmt: skip


def test_the_fit_command_at_80_columns_cuts_no_heading(store: str, tmp_path: Path) -> None:
    out = str(tmp_path / "r.zarr")
    result = CliRunner().invoke(
        app, ["fit", store, "--out", out, *FIT, "--transfer", "--retrieve"], env=NARROW
    )
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout, result.stdout
    assert "Procrustes R²" in result.stdout
    assert all(len(line) <= 80 for line in result.stdout.splitlines())


def test_legend_under_the_pairs_table(results: str) -> None:
    summary = dict(mmpipe.read_run(results).attrs)["summary"]
    text = " ".join(rendered(summary, width=240).split())
    assert "Procrustes R²: R² of the best orthogonal map (a rotation, no scaling)" in text
    assert "at the edge of the α grid" in text
    assert "CV R²: R² of the ridge map on validation rows, mean ± sd over splits" in text
    pairs = report.tables(summary)[0]
    assert report.legend(pairs) in report.markdown([pairs])
    assert report.legend(report.tables(summary)[1]) == ""  # only the pairs table has it


def test_alpha_at_the_edge_of_the_grid_is_marked(results: str) -> None:
    summary = dict(mmpipe.read_run(results).attrs)["summary"]
    grid = summary["config"]["alphas"]
    cells = {row[0]: row[3] for row in report.tables(summary)[0].rows}
    for p in summary["pairs"]:
        edge = p["alpha"] in (min(grid), max(grid))
        assert cells[f"{p['source']} → {p['target']}"] == f"{p['alpha']:g}" + ("*" if edge else "")
    assert report.alpha_cell(100.0, [0.01, 1, 100]) == "100*"
    assert report.alpha_cell(0.01, [0.01, 1, 100]) == "0.01*"
    assert report.alpha_cell(1.0, [0.01, 1, 100]) == "1"
    assert report.alpha_cell(1.0, [1.0]) == "1"  # a grid of one has no edge to widen
    assert report.alpha_cell(1.0, None) == "1"
