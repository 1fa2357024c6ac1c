"""mmpipe.report: every cell, artifact row and log line checked against numbers computed here
from the fit's own arrays (metric means/sds with NumPy, classification metrics with
scikit-learn from the confusion matrices, recall and ranks from the ranks), never against
the summary the report is built from."""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import make_views
from rich.console import Console
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from typer.testing import CliRunner

import mmpipe
from mmpipe import report
from mmpipe.cli import app
from mmpipe.io.dataset import write_dataset

SETTINGS: dict[str, Any] = {
    "pairs": ["m0:m1", "m2:m0"],
    "components": 3,
    "folds": 4,
    "alphas": (0.5, 5.0),
    "classify": ["m0+m1", "m2"],
    "transfer": True,
    "retrieval": True,
    "logistic": True,
    "random_features": 16,
}
CLI_ARGS = [
    "--pair", "m0:m1", "--pair", "m2:m0", "--components", "3", "--folds", "4",
    "--alphas", "0.5,5", "--classify", "m0+m1", "--classify", "m2", "--transfer",
    "--retrieve", "--logistic", "--random-features", "16", "--in-process",
]  # fmt: skip
WIDE = {"COLUMNS": "240"}  # rich wraps cells at 80 columns when not on a terminal


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    views, labels = make_views()
    path = tmp_path_factory.mktemp("report") / "small.zarr"
    return write_dataset(path, views, labels=labels, chunk_rows=50, ids=np.arange(labels.size))


@pytest.fixture(scope="module")
def fitted(store: str) -> Any:
    return mmpipe.fit(store, **SETTINGS)


# The oracle: cells from the result's arrays ------------------------------------------------


def pair_cells(p: Any) -> tuple[str, ...]:
    i = p.alpha_index
    r2 = p.r2[:, i]
    return (
        f"{p.source} → {p.target}",
        str(p.rows),
        f"{p.models.source_pca.n_components_}→{p.models.target_pca.n_components_}",
        f"{p.alphas[i]:g}" + ("*" if p.alphas[i] in (min(p.alphas), max(p.alphas)) else ""),
        f"{np.mean(r2):.4f} ± {np.std(r2):.4f}",
        f"{np.mean(p.r2_weighted[:, i]):.4f}",
        f"{np.mean(p.mse[:, i]):.4g}",
        f"{np.mean(p.procrustes_r2):.4f}",
        f"{np.nanmean(p.cca_correlations[:, 0]):.3f}",
    )


def confusion_metrics(confusions: np.ndarray) -> dict[str, float]:
    """Fold means of scikit-learn's metrics on the labels each confusion matrix counts."""
    folds = []
    for c in confusions:
        classes = np.arange(c.shape[0])
        c = c.astype(np.int64)  # counts, stored as floats
        y_true = np.repeat(np.repeat(classes, c.shape[1]), c.ravel())
        y_pred = np.repeat(np.tile(classes, c.shape[0]), c.ravel())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a class absent from one fold
            folds.append(
                {
                    "accuracy": accuracy_score(y_true, y_pred),
                    "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
                    "macro_f1": f1_score(y_true, y_pred, average="macro", zero_division=0),
                    "chance": np.bincount(y_true).max() / y_true.size,
                }
            )
    return {k: float(np.mean([f[k] for f in folds])) for k in folds[0]}


METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "chance")


def classify_cells(result: Any) -> list[tuple[str, ...]]:
    rows = []
    for c in result.classify:
        m = confusion_metrics(c.confusion[:, c.alpha_index])
        rows.append(("+".join(c.features), f"α={c.alphas[c.alpha_index]:g}",
                     *(f"{m[k]:.4f}" for k in METRICS)))  # fmt: skip
    for lr in result.logistic:
        m = confusion_metrics(lr.confusion)
        rows.append((f"{'+'.join(lr.features)} (logistic)", f"C={lr.C:g}",
                     *(f"{m[k]:.4f}" for k in METRICS)))  # fmt: skip
    return rows


def transfer_cells(t: Any) -> tuple[str, ...]:
    a = t.alpha_index
    moved, own = confusion_metrics(t.confusion[:, a]), confusion_metrics(t.target_confusion[:, a])
    return (f"{t.source} → {t.target}", f"{t.alphas[a]:g}", f"{moved['accuracy']:.4f}",
            f"{own['accuracy']:.4f}", f"{moved['chance']:.4f}")  # fmt: skip


def rank_means(r: Any, direction: str) -> dict[str, float]:
    ranks = [getattr(m, direction) for m in r.ranks]
    return {
        "recall@1": float(np.mean([np.mean(x == 1) for x in ranks])),
        "recall@10": float(np.mean([np.mean(x <= 10) for x in ranks])),
        "median_rank": float(np.mean([np.median(x) for x in ranks])),
    }


def retrieval_cells(r: Any) -> tuple[str, ...]:
    fw, bw = rank_means(r, "forward"), rank_means(r, "backward")
    return (
        f"{r.source} → {r.target}", f"{np.mean([m.rows.size for m in r.ranks]):.0f}",
        f"{fw['recall@1']:.3f}", f"{fw['recall@10']:.3f}", f"{fw['median_rank']:g}",
        f"{bw['recall@1']:.3f}", f"{bw['recall@10']:.3f}", f"{bw['median_rank']:g}",
    )  # fmt: skip


def nonlinear_cells(result: Any, rf: Any) -> tuple[str, ...]:
    linear = result.pair(rf.source, rf.target)
    return (
        f"{rf.source} → {rf.target}", str(rf.features.n_features), f"{rf.features.gamma:.3g}",
        f"{rf.alphas[rf.alpha_index]:g}", f"{np.mean(rf.r2[:, rf.alpha_index]):.4f}",
        f"{np.mean(linear.r2[:, linear.alpha_index]):.4f}",
    )  # fmt: skip


def expected_rows(result: Any) -> dict[str, list[tuple[str, ...]]]:
    """First column heading of each table → its rows, from the arrays."""
    return {
        "pairs": [pair_cells(p) for p in result.pairs],
        "random_features": [nonlinear_cells(result, rf) for rf in result.random_features],
        "classify": classify_cells(result),
        "transfer": [transfer_cells(t) for t in result.transfer],
        "retrieval": [retrieval_cells(r) for r in result.retrieval],
    }


# Tables -------------------------------------------------------------------------------------


def test_tables_cells_equal_the_arrays(fitted: Any) -> None:
    tables = report.tables(fitted.summary())
    expected = expected_rows(fitted)
    assert [len(t.rows) for t in tables] == [len(rows) for rows in expected.values()]
    for table, rows in zip(tables, expected.values(), strict=True):
        assert list(table.rows) == rows, table.title
        assert all(len(row) == len(table.columns) for row in table.rows)
    splits = fitted.plan.n_splits
    assert tables[0].title == f"{fitted.dataset}: {fitted.n_rows} rows, kfold ({splits} splits)"
    assert tables[0].notes == ()  # nothing missing, no rare classes


def test_sections_with_nothing_to_show_are_left_out(store: str) -> None:
    plain = mmpipe.fit(store, pairs=["m0:m1"], components=2, folds=3)
    (only,) = report.tables(plain.summary())
    assert list(only.rows) == [pair_cells(plain.pairs[0])]
    assert report.task_rows(plain.summary()) == []


def test_rows_left_out_are_noted(fitted: Any) -> None:
    summary = copy.deepcopy(fitted.summary())
    summary["pairs"][1]["rows_dropped"] = 7
    notes = report.tables(summary)[0].notes
    assert notes == ("m2 → m0: 7 rows left out (one of the two modalities missing)",)
    assert f"_{notes[0]}_" in report.markdown(report.tables(summary))


# Markdown -----------------------------------------------------------------------------------


def test_markdown_has_every_table_and_row(fitted: Any) -> None:
    summary = fitted.summary()
    text = report.markdown(report.tables(summary), lead=report.markdown_heading(summary))
    assert text.startswith(f"**mmpipe run** `{fitted.run_id}`")
    assert f"- dataset: `{fitted.dataset}`" in text
    assert "- results: `(not written: no results location)`" in text
    lines = text.splitlines()
    for rows in expected_rows(fitted).values():
        for cells in rows:
            assert "| " + " | ".join(cells) + " |" in lines
    for p in fitted.pairs:
        assert sum(line.startswith(f"| {p.source} → {p.target} |") for line in lines) >= 1
    # every table: a heading row, then an alignment row of as many columns
    for table in report.tables(summary):
        at = lines.index("| " + " | ".join(table.columns) + " |")
        assert lines[at + 1] == "|" + "---:|" * len(table.columns)


def test_markdown_escapes_pipes() -> None:
    table = report.Table("a|b", ("x",), (("1|2",),))
    assert "| 1\\|2 |" in report.markdown([table]).splitlines()


# Rows for Prefect table artifacts -----------------------------------------------------------


def test_pair_rows_numbers_equal_the_summary(fitted: Any) -> None:
    summary = fitted.summary()
    rows = report.pair_rows(summary)
    assert len(rows) == len(summary["pairs"])
    for row, p in zip(rows, summary["pairs"], strict=True):
        assert (row["source"], row["target"], row["rows"]) == (p["source"], p["target"], p["rows"])
        assert row["alpha"] == p["alpha"]
        assert row["cv_r2"] == pytest.approx(p["cv"]["r2"], abs=5e-7)
        assert row["cv_r2_weighted"] == pytest.approx(p["cv"]["r2_weighted"], abs=5e-7)
        assert row["cv_mse"] == pytest.approx(p["cv"]["mse"], abs=5e-7)
        assert row["procrustes_r2"] == pytest.approx(p["procrustes"]["r2"], abs=5e-7)
        assert row["cca_rho1"] == pytest.approx(p["cca"][0], abs=5e-7)
        assert all(
            isinstance(v, int | float) for k, v in row.items() if k not in ("source", "target")
        )


def test_task_rows_numbers_equal_the_summary(fitted: Any) -> None:
    summary = fitted.summary()
    rows = report.task_rows(summary)
    by_task: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_task.setdefault(row["task"], []).append(row)
    assert [len(by_task[k]) for k in ("classify", "logistic", "transfer", "retrieval")] == [
        len(summary[k]) for k in ("classify", "logistic", "transfer", "retrieval")
    ]
    for row, c in zip(by_task["classify"], summary["classify"], strict=True):
        assert row["features"] == "+".join(c["features"])
        assert row["alpha"] == c["alpha"]
        assert set(row) == {"task", "features", "alpha", *METRICS}
        for k in METRICS:
            assert row[k] == pytest.approx(c["cv"][k], abs=5e-7)
    for row, lr in zip(by_task["logistic"], summary["logistic"], strict=True):
        assert row["alpha"] == pytest.approx(1 / lr["C"])
        assert row["accuracy"] == pytest.approx(lr["cv"]["accuracy"], abs=5e-7)
    for row, t in zip(by_task["transfer"], summary["transfer"], strict=True):
        assert row["features"] == f"{t['source']} → {t['target']}"
        assert row["accuracy"] == pytest.approx(t["cv"]["accuracy"], abs=5e-7)
        assert row["target_accuracy"] == pytest.approx(t["target_cv"]["accuracy"], abs=5e-7)
    for row, r in zip(by_task["retrieval"], summary["retrieval"], strict=True):
        assert row["alpha"] == r["map_alpha"]
        for k, v in r["source_to_target"].items():
            assert row[f"{k} →"] == pytest.approx(v, abs=5e-7)
        for k, v in r["target_to_source"].items():
            assert row[f"{k} ←"] == pytest.approx(v, abs=5e-7)


# Log lines: the text the flow logged before there was a report ----------------------------


def logged(fmt: str, *args: object) -> str:
    """What ``logger.info(fmt, *args)`` wrote: the flow's calls before there was a report."""
    return fmt % args


def test_log_lines_keep_the_flows_text(fitted: Any) -> None:
    for p in fitted.pairs:
        i = p.alpha_index
        assert report.line("pairs", p.summary()) == logged(
            "%s → %s: CV R² %.4f, MSE %.4g at α=%g",
            p.source, p.target, np.mean(p.r2[:, i]), np.mean(p.mse[:, i]), p.alphas[i],
        )  # fmt: skip
    for c in fitted.classify:
        m = confusion_metrics(c.confusion[:, c.alpha_index])
        assert report.line("classify", c.summary()) == logged(
            "classify from %s: CV accuracy %.4f (chance %.4f) at α=%g",
            "+".join(c.features), m["accuracy"], m["chance"], c.alphas[c.alpha_index],
        )  # fmt: skip
    for t in fitted.transfer:
        a = t.alpha_index
        moved = confusion_metrics(t.confusion[:, a])["accuracy"]
        own = confusion_metrics(t.target_confusion[:, a])["accuracy"]
        assert report.line("transfer", t.summary()) == logged(
            "transfer %s → %s: CV accuracy %.4f (target's own %.4f) at α=%g",
            t.source, t.target, moved, own, t.alphas[a],
        )  # fmt: skip
    for lr in fitted.logistic:
        assert report.line("logistic", lr.summary()) == logged(
            "logistic regression from %s: CV accuracy %.4f at C=%g (%d L-BFGS passes)",
            "+".join(lr.features), confusion_metrics(lr.confusion)["accuracy"], lr.C, lr.passes,
        )  # fmt: skip
    for r in fitted.retrieval:
        fw, bw = rank_means(r, "forward"), rank_means(r, "backward")
        assert report.line("retrieval", r.summary()) == logged(
            "retrieval %s → %s: recall@1 %.3f (→), %.3f (←), median rank %g (→)",
            r.source, r.target, fw["recall@1"], bw["recall@1"], fw["median_rank"],
        )  # fmt: skip
    for rf in fitted.random_features:
        i = rf.alpha_index
        assert report.line("random_features", rf.summary()) == logged(
            "non-linear %s → %s: CV R² %.4f with %d random features (γ=%.3g) at α=%g",
            rf.source, rf.target, np.mean(rf.r2[:, i]), rf.features.n_features,
            rf.features.gamma, rf.alphas[i],
        )  # fmt: skip


# Terminal -----------------------------------------------------------------------------------


def test_render_rich_shows_names_verbatim(fitted: Any) -> None:
    summary = copy.deepcopy(fitted.summary())
    summary["pairs"][0]["source"] = "[red]m0"  # a modality name, not rich markup
    console = Console(file=io.StringIO(), width=240, color_system=None)
    report.render_rich([report.pairs_table(summary)], console)
    assert "[red]m0 → m1" in console.file.getvalue()  # type: ignore[attr-defined]


def in_order(line: str, cells: tuple[str, ...]) -> bool:
    """Whether the cells are the columns of a rich table line, in order (rich pads them)."""
    return [c.strip() for c in line.strip("│ ").split("│")] == list(cells)


def assert_shows(output: str, result: Any) -> None:
    lines = output.splitlines()
    for rows in expected_rows(result).values():
        for cells in rows:
            assert any(in_order(line, cells) for line in lines), (cells, output)
    for title in ("Non-linear maps", "Classification from PCA scores", "Transfer:", "Retrieval:"):
        assert title in output


def test_cli_fit_prints_the_tables(store: str, tmp_path: Path) -> None:
    out = str(tmp_path / "r.zarr")
    result = CliRunner().invoke(app, ["fit", store, "--out", out, *CLI_ARGS], env=WIDE)
    assert result.exit_code == 0, result.output
    reference = mmpipe.fit(store, **SETTINGS)  # the same fit, read from its arrays
    assert_shows(result.stdout, reference)
    assert f"{reference.n_rows} rows, kfold (4 splits)" in result.stdout
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("run ")
    assert f" written to {out}" in last


def test_cli_run_prints_the_same_tables(
    store: str, tmp_path: Path, fitted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The flow's part is tested in tests/orchestration; here `mmpipe run` renders the summary
    # the flow returns.
    import flows.pipeline

    monkeypatch.setattr(flows.pipeline, "run_flow", lambda config, tracebacks: fitted.summary())
    config = tmp_path / "run.yaml"
    config.write_text(f"dataset: {store}\n")
    result = CliRunner().invoke(app, ["run", str(config)], env=WIDE)
    assert result.exit_code == 0, result.output
    assert_shows(result.stdout, fitted)
    assert f"run {fitted.run_id} (not written: no results in the run config)" in result.stdout
