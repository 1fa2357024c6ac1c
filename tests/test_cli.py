"""The `mmpipe fit` command: JSON contract, exit code 2 on bad input."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import ridge_search
from typer.testing import CliRunner

import mmpipe
from mmpipe.cli import app

Views = tuple[dict[str, np.ndarray], np.ndarray]
ALPHAS = (0.1, 1.0, 10.0)


def test_fit_json_contract(small_store: str, small_views: Views, tmp_path: Path) -> None:
    out = tmp_path / "r.zarr"
    result = CliRunner().invoke(
        app,
        [
            "fit",
            small_store,
            "--out",
            str(out),
            "--pair",
            "m0:m1",
            "--pair",
            "m2:m0",
            "--components",
            "3",
            "--folds",
            "4",
            "--alphas",
            "0.1,1,10",
            "--seed",
            "5",
            "--in-process",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["results"].startswith(str(out))
    assert info["run_id"] in info["results"]
    assert [(p["source"], p["target"]) for p in info["pairs"]] == [("m0", "m1"), ("m2", "m0")]
    p = info["pairs"][0]
    assert len(p["cv"]["r2_folds"]) == 4
    assert len(p["cv"]["mse_folds"]) == 4
    assert p["cv"]["r2"] == pytest.approx(sum(p["cv"]["r2_folds"]) / 4)
    assert len(p["cca"]) == 3
    # Same numbers as the Python API with the same settings: the flags are the keywords.
    api = mmpipe.fit(
        small_store, pairs=["m0:m1", "m2:m0"], components=3, folds=4, alphas=(0.1, 1, 10), seed=5
    )
    expected = json.loads(json.dumps(api.summary(), default=lambda v: v.tolist()))
    assert info["plan"] == expected["plan"]
    assert info["pairs"] == expected["pairs"]
    # And they are scikit-learn's over the same folds: α chosen by GridSearchCV, the chosen
    # α's R² and MSE in each fold, the mean R² of every α.
    views, _ = small_views
    for p, pair in zip(info["pairs"], api.pairs, strict=True):
        search = ridge_search(views[pair.source], views[pair.target], 3, 3, ALPHAS, api.plan)
        best = search.best_index_
        assert p["alpha"] == ALPHAS[best]
        assert p["r2_by_alpha"] == pytest.approx(search.cv_results_["mean_test_r2"], rel=1e-6)
        for metric in ("r2", "mse"):
            folds = [search.cv_results_[f"split{s}_test_{metric}"][best] for s in range(4)]
            assert p["cv"][f"{metric}_folds"] == pytest.approx(folds, rel=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pair", "m0:nope"], "names modality 'nope'"),
        (["--alphas", "1,x"], "alphas.1: Input should be a valid number"),
        (["--components", "lots"], "components: must be a count >= 1"),
        (["--folds", "1"], "folds: Input should be greater than or equal to 2 (got 1)"),
        (["--solver", "qr"], "solver: Input should be 'normal' or 'tsqr'"),
        (["--precision", "float16"], "precision: Input should be 'float64' or 'float32'"),
        (["--in-process", "--workers", "2"], "cluster.in_process: true"),
    ],
)
def test_fit_bad_input_exits_2(small_store: str, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["fit", small_store, *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_fit_table_output_and_runs(small_store: str, tmp_path: Path) -> None:
    runner = CliRunner()
    out = str(tmp_path / "r.zarr")
    result = runner.invoke(
        app, ["fit", small_store, "--out", out, "--components", "2", "--folds", "3", "--in-process"]
    )
    assert result.exit_code == 0, result.output
    assert "m0 → m1" in result.stdout
    for source, target in itertools.permutations(["m0", "m1", "m2"], 2):
        assert f"{source} → {target}" in result.stdout
    listing = runner.invoke(app, ["runs", out])
    assert "complete" in listing.stdout
    # The one run in the store is complete, and both outputs name it.
    (run,) = mmpipe.list_runs(out)
    assert run["status"] == "complete"
    assert run["run_id"] in result.stdout
    assert run["run_id"] in listing.stdout


@pytest.mark.slow
def test_fit_on_a_local_cluster(small_store: str) -> None:
    result = CliRunner().invoke(
        app,
        [
            "fit",
            small_store,
            "--workers",
            "2",
            "--components",
            "2",
            "--folds",
            "3",
            "--pair",
            "m0:m1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    api = mmpipe.fit(small_store, pairs=["m0:m1"], components=2, folds=3)
    assert json.loads(result.stdout)["pairs"][0]["cv"]["r2"] == pytest.approx(
        api.pairs[0].summary()["cv"]["r2"], rel=1e-10
    )


def test_fit_float32_precision_agrees_with_float64(small_store: str) -> None:
    runs = {}
    for precision in ("float64", "float32"):
        result = CliRunner().invoke(
            app, ["fit", small_store, "--components", "3", "--precision", precision, "--json"]
        )
        assert result.exit_code == 0, result.output
        runs[precision] = json.loads(result.stdout)
    assert runs["float32"]["config"]["precision"] == "float32"
    for single, double in zip(runs["float32"]["pairs"], runs["float64"]["pairs"], strict=True):
        np.testing.assert_allclose(single["r2_by_alpha"], double["r2_by_alpha"], atol=1e-5)
        assert single["r2_by_alpha"] != double["r2_by_alpha"]  # float32 really was used
