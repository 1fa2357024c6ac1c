"""The HTML report of a run: self-contained, made only of the store's numbers, and rendered by
a real browser (Debian's headless Chromium, started here; no network)."""

from __future__ import annotations

import base64
import html
import os
import re
import shutil
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
from mmpipe.htmlreport import alpha, metric, report_location, report_run
from mmpipe.io.dataset import write_dataset
from mmpipe.io.results import RunWriter

PNG = b"\x89PNG\r\n\x1a\n"
TASKS = dict(
    components=3,
    folds=3,
    classify=["m0+m1", "m2"],
    transfer=True,
    retrieval=True,
    logistic=True,
    multiview=["all"],
)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(results store, dataset) of one run with every task the report draws."""
    root = tmp_path_factory.mktemp("report")
    views, labels = make_views(n=300)
    dataset = write_dataset(root / "data.zarr", views, labels=labels, chunk_rows=100)
    results = str(root / "results.zarr")
    mmpipe.fit(dataset, out=results, **TASKS)
    return results, str(dataset)


def cells(page: str) -> list[list[str]]:
    """Every table row's cells (text, unescaped)."""
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", page, flags=re.S):
        found = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, flags=re.S)
        rows.append([html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in found])
    return rows


def expected_numbers(results: str) -> dict[str, object]:
    """What the page must show, read from the store with plain zarr (not through mmpipe)."""
    root = zarr.open_group(results, mode="r")
    (run_id,) = list(root["runs"].group_keys())
    run = root["runs"][run_id]
    attrs = dict(run.attrs)
    pairs = {}
    for key in run["pairs"].group_keys():
        g = run["pairs"][key]
        alphas, r2 = np.asarray(g["alphas"][...]), np.asarray(g["r2"][...])
        chosen = float(g.attrs["alpha"])
        (index,) = np.flatnonzero(alphas == chosen)
        pairs[key.replace("--", " → ")] = (chosen, float(r2[:, index].mean()))
    first = sorted(run["logistic"].group_keys())[0]
    confusion = np.asarray(run["logistic"][first]["confusion"][...]).sum(axis=0)
    return {
        "run_id": run_id,
        "fingerprint": attrs["fingerprint"],
        "pairs": pairs,
        "logistic_confusion": confusion,
        "timings": attrs["timings"],
        "versions": attrs["versions"],
    }


def check_numbers(page: str, results: str) -> None:
    """The page (source or a browser's DOM) shows the store's numbers as it formats them."""
    want = expected_numbers(results)
    rows = cells(page)
    for name, (chosen, r2) in want["pairs"].items():  # type: ignore[attr-defined]
        (row,) = [r for r in rows if r and r[0] == name and len(r) == 9]
        assert row[3] == alpha(chosen), (name, row)
        assert row[4] == metric(r2), (name, row)
    assert metric(0.123456) == "0.1235"  # the page's format, spelled out once
    assert ["fingerprint", want["fingerprint"]] in rows
    for step, seconds in want["timings"].items():  # type: ignore[attr-defined]
        assert [step, repr(seconds)] in rows
    for package, version in want["versions"].items():  # type: ignore[attr-defined]
        assert [package, version] in rows
    counts = want["logistic_confusion"]
    body = [[str(int(v)) for v in line] for line in counts]  # type: ignore[attr-defined]
    start = [i for i, r in enumerate(rows) if r[:1] == ["true \\ predicted"]]
    assert any([r[1:] for r in rows[i + 1 : i + 1 + len(body)]] == body for i in start), (
        "the logistic model's confusion counts are not on the page"
    )
    assert want["run_id"] in page


def test_report_is_self_contained_and_shows_the_stores_numbers(
    fitted: tuple[str, str], tmp_path: Path
) -> None:
    results, _ = fitted
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "notes.txt").write_text("mine")  # left alone: only index.html
    path = report_run(results, tmp_path / "report")
    assert path == tmp_path / "report" / "index.html"
    page = path.read_text()
    assert not re.search(r"https?://", page)
    for external in ("<script", "<link", "@import", "url("):
        assert external not in page
    images = re.findall(r"<img[^>]*>", page)
    assert len(images) >= 7  # variance, R²/α, heatmaps, recall@K, confusions, CCA, multiview
    for tag in images:
        (src,) = re.findall(r'src="([^"]*)"', tag)
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    for heading in ("Explained variance", "CV R² against α", "All directed pairs",
                    "recall@K", "Confusion matrices", "Canonical correlations",
                    "Multi-view spectrum"):  # fmt: skip
        assert heading in page
    check_numbers(page, results)
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["index.html", "notes.txt"]


def test_report_refuses_a_dataset_and_an_incomplete_run(
    fitted: tuple[str, str], tmp_path: Path
) -> None:
    results, dataset = fitted
    runner = CliRunner()
    out = str(tmp_path / "r")
    line = one_error_line(runner.invoke(app, ["report", dataset, "--out", out]), 2)
    assert "is a dataset, not a results store" in line
    store = str(tmp_path / "partial.zarr")
    writer = RunWriter.begin(store, dataset=dataset, heartbeat_seconds=0)
    try:
        line = one_error_line(runner.invoke(app, ["report", store, "--out", out]), 2)
        assert "No complete run" in line
        args = ["report", store, "--run", writer.run_id, "--out", out]
        line = one_error_line(runner.invoke(app, args), 2)
        assert writer.run_id in line
        assert "not complete" in line
        writer.fail(RuntimeError("stopped"))
        line = one_error_line(runner.invoke(app, args), 2)
        assert "'failed', not complete" in line
    finally:
        writer.close()
    (tmp_path / "file").write_text("")
    args = ["report", results, "--out", str(tmp_path / "file")]
    assert "is a file" in one_error_line(runner.invoke(app, args), 2)
    assert not (tmp_path / "r").exists()


def test_report_location_is_beside_a_local_store() -> None:
    assert report_location("/data/r.zarr/", "RUN") == Path("/data/r.zarr.reports/RUN")
    assert report_location("file:///data/r.zarr", "RUN") == Path("/data/r.zarr.reports/RUN")
    assert report_location("s3://bucket/r.zarr", "RUN") is None


def chromium_path() -> str:
    exe = shutil.which("chromium")
    if exe is None:  # never a skip: CI installs it (make test, .ci/run)
        pytest.fail("chromium is not installed: `make test` installs Debian's chromium package")
    return exe


def chromium(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    exe = chromium_path()
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    command = [
        exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-extensions", "--disable-background-networking", "--disable-sync",
        "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={home / 'profile'}", *args,
    ]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)


def mmpipe_cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mmpipe.cli", *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_chromium_renders_the_report_with_the_stores_numbers(tmp_path: Path) -> None:
    chromium_path()  # fails at once without it
    data, results, out = tmp_path / "d.zarr", tmp_path / "res.zarr", tmp_path / "report"
    mmpipe_cli("synth", str(data), "--rows", "900", "-m", "image=12", "-m", "text=8",
               "-m", "audio=6", "--classes", "3", "--chunk-rows", "300")  # fmt: skip
    mmpipe_cli("fit", str(data), "--out", str(results), "--components", "3", "--folds", "3",
               "--classify", "image+text", "--classify", "audio", "--transfer", "--retrieval",
               "--logistic", "--multiview", "all")  # fmt: skip
    said = mmpipe_cli("report", str(results), "--out", str(out))
    index = out / "index.html"
    assert str(index) in said
    url = index.resolve().as_uri()

    shot = tmp_path / "shot.png"
    done = chromium(f"--screenshot={shot}", "--window-size=1280,4000", url, home=tmp_path)
    assert shot.exists(), done.stderr
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (4000, 1280)
    assert float(pixels[..., :3].var()) > 1e-3  # not a blank page
    assert float((pixels[..., :3] < 0.9).mean()) > 0.02  # drawn: plots and text, not white

    done = chromium("--dump-dom", url, home=tmp_path)
    assert done.returncode == 0, done.stderr
    dom = done.stdout
    assert "<img" in dom
    check_numbers(dom, str(results))
    assert len(expected_numbers(str(results))["pairs"]) == 6  # type: ignore[arg-type]
