"""Results for people: one description of a fit's tables, rendered for a terminal, as
Markdown, as Prefect table rows and as log lines.

Everything here is built from the summary of a fit (``FitResult.summary()``, the JSON that
``mmpipe fit --json`` prints and the Prefect flow returns) or, for the log lines, from one
result's own ``summary()``, which is the same dict as its entry in that JSON. One source: the
CLI's ``fit`` and ``run`` and the flow's artifacts show the same cells because they read the
same dict, and a summary read back from JSON (a flow run on another machine) renders alike.

Cells are formatted once, here (:class:`Table`); renderers only lay them out. The rows given
to Prefect's table artifacts keep numbers (rounded to 6 digits) so the UI can sort them.
``SECTIONS`` (the tables, in order) and ``LINES`` (log lines by kind of result) are the
registries a task that renders itself adds its functions to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # rich is imported only by render_rich
    from rich.console import Console

Summary = Mapping[str, Any]


@dataclass(frozen=True)
class Table:
    """A table for people, every cell already formatted."""

    title: str
    columns: tuple[str, ...]
    """Column headings."""
    rows: tuple[tuple[str, ...], ...]
    """One tuple of cells per row, as many as columns."""
    notes: tuple[str, ...] = ()
    """Sentences shown under the table (none in the common case)."""


def _splits(n: int) -> str:
    return f"{n} split{'s' if n > 1 else ''}"


def _arrow(item: Summary) -> str:
    return f"{item['source']} → {item['target']}"


def _features(item: Summary) -> str:
    return "+".join(item["features"])


def pairs_table(summary: Summary) -> Table:
    """Every pair: rows, components, chosen α, CV R² (mean ± sd over splits), CV MSE, the
    orthogonal map's R² and the first canonical correlation on validation rows."""
    plan = summary["plan"]
    rows = []
    for p in summary["pairs"]:
        r2 = np.asarray(p["cv"]["r2_folds"], dtype=np.float64)
        cca = p["cca_validation"]
        rows.append(
            (
                _arrow(p),
                str(p["rows"]),
                "{}→{}".format(*p["components"]),
                f"{p['alpha']:g}",
                f"{p['cv']['r2']:.4f} ± {r2.std():.4f}",
                f"{p['cv']['mse']:.4g}",
                f"{p['procrustes']['r2']:.4f}",
                f"{cca[0]:.3f}" if cca else "-",
            )
        )
    notes = [
        f"{_arrow(p)}: {p['rows_dropped']} rows left out (one of the two modalities missing)"
        for p in summary["pairs"]
        if p.get("rows_dropped")
    ]
    if plan.get("rare_classes"):
        notes.append(f"rare classes {plan['rare_classes']}: {plan['rare_classes_note']}")
    return Table(
        title=f"{summary['dataset']}: {summary['rows']} rows, {plan['kind']} "
        f"({_splits(plan['n_splits'])})",
        columns=(
            "source → target",
            "rows",
            "k",
            "α",
            "CV R²",
            "CV MSE",
            "Procrustes R²",
            "CCA ρ₁ (val)",
        ),
        rows=tuple(rows),
        notes=tuple(notes),
    )


def random_features_table(summary: Summary) -> Table | None:
    maps = summary.get("random_features") or []
    if not maps:
        return None
    linear = {(p["source"], p["target"]): p["cv"]["r2"] for p in summary["pairs"]}
    return Table(
        title="Non-linear maps: ridge on random Fourier features",
        columns=("source → target", "D", "γ", "α", "CV R²", "linear CV R²"),
        rows=tuple(
            (
                _arrow(rf),
                str(rf["features"]),
                f"{rf['gamma']:.3g}",
                f"{rf['alpha']:g}",
                f"{rf['cv']['r2']:.4f}",
                f"{linear[rf['source'], rf['target']]:.4f}",
            )
            for rf in maps
        ),
    )


_CLASSIFY_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "chance")


def classify_table(summary: Summary) -> Table | None:
    """Ridge classifiers, then the logistic regressions on the same features."""
    classify = summary.get("classify") or []
    if not classify:
        return None
    rows = [
        (_features(c), f"α={c['alpha']:g}", *(f"{c['cv'][k]:.4f}" for k in _CLASSIFY_METRICS))
        for c in classify
    ]
    rows += [
        (
            f"{_features(lr)} (logistic)",
            f"C={lr['C']:g}",
            *(f"{lr['cv'][k]:.4f}" for k in _CLASSIFY_METRICS),
        )
        for lr in summary.get("logistic") or []
    ]
    return Table(
        title="Classification from PCA scores (ridge classifier, logistic)",
        columns=("features", "penalty", "accuracy", "balanced acc.", "macro F1", "chance"),
        rows=tuple(rows),
    )


def transfer_table(summary: Summary) -> Table | None:
    transfer = summary.get("transfer") or []
    if not transfer:
        return None
    return Table(
        title="Transfer: target's classifier on source mapped through W",
        columns=("source → target", "α", "accuracy", "target's own", "chance"),
        rows=tuple(
            (
                _arrow(t),
                f"{t['alpha']:g}",
                f"{t['cv']['accuracy']:.4f}",
                f"{t['target_cv']['accuracy']:.4f}",
                f"{t['cv']['chance']:.4f}",
            )
            for t in transfer
        ),
    )


def retrieval_table(summary: Summary) -> Table | None:
    retrieval = summary.get("retrieval") or []
    if not retrieval:
        return None
    rows = []
    for r in retrieval:
        fw, bw = r["source_to_target"], r["target_to_source"]
        rows.append(
            (
                _arrow(r),
                f"{np.mean(r['rows_per_split']):.0f}",
                f"{fw['recall@1']:.3f}",
                f"{fw['recall@10']:.3f}",
                f"{fw['median_rank']:g}",
                f"{bw['recall@1']:.3f}",
                f"{bw['recall@10']:.3f}",
                f"{bw['median_rank']:g}",
            )
        )
    return Table(
        title="Retrieval: source mapped through W ranks the target's rows (cosine)",
        columns=(
            "source → target",
            "rows/split",
            "R@1 →",
            "R@10 →",
            "med. rank →",
            "R@1 ←",
            "R@10 ←",
            "med. rank ←",
        ),
        rows=tuple(rows),
    )


SECTIONS: tuple[Callable[[Summary], Table | None], ...] = (
    pairs_table,
    random_features_table,
    classify_table,
    transfer_table,
    retrieval_table,
)
"""The tables of a fit, in the order they are shown; a section with nothing to show is left
out."""


def tables(summary: Summary) -> list[Table]:
    """The tables of a fit's summary (``FitResult.summary()``), in the order shown."""
    return [t for section in SECTIONS if (t := section(summary)) is not None]


def where(summary: Summary, unwritten: str = "no results location") -> str:
    """Where the run was written, or why it was not."""
    return str(summary["results"]) if summary.get("results") else f"(not written: {unwritten})"


def run_line(summary: Summary, unwritten: str = "no results location") -> str:
    """The closing line of a fit on a terminal: the run id and where it was written."""
    if summary.get("results"):
        return f"run {summary['run_id']} written to {summary['results']}"
    return f"run {summary['run_id']} (not written: {unwritten})"


# Renderers ---------------------------------------------------------------------------------


def render_rich(tables: Sequence[Table], console: Console) -> None:
    """Print the tables on a rich console, numbers right-aligned, notes under their table."""
    from rich.table import Table as RichTable
    from rich.text import Text

    # Text, not str: a name like "[red]" is a modality, not rich markup.
    for table in tables:
        out = RichTable(title=Text(table.title, style="italic"))
        for column in table.columns:
            out.add_column(Text(column), justify="right")
        for row in table.rows:
            out.add_row(*(Text(cell) for cell in row))
        console.print(out)
        for note in table.notes:
            console.print(note, style="dim", markup=False, highlight=False)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(tables: Sequence[Table], lead: str = "") -> str:
    """GitHub-flavoured Markdown: ``lead`` first, then each table under a bold title."""
    parts = [lead.rstrip("\n")] if lead else []
    for table in tables:
        lines = [f"**{_cell(table.title)}**", ""]
        lines.append("| " + " | ".join(_cell(c) for c in table.columns) + " |")
        lines.append("|" + "---:|" * len(table.columns))
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
        lines += [f"\n_{_cell(note)}_" for note in table.notes]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def markdown_heading(summary: Summary) -> str:
    """The run, its dataset, where it was written and its validation plan, as Markdown."""
    plan = summary["plan"]
    how = f"{plan['kind']}, {_splits(plan['n_splits'])}, seed {plan['seed']}"
    if plan.get("stratified"):
        how += ", stratified"
    return (
        f"**mmpipe run** `{summary['run_id']}`\n\n- dataset: `{summary['dataset']}`\n"
        f"- results: `{where(summary)}`\n- plan: {how}\n"
    )


# Rows for table artifacts (numbers, not strings) --------------------------------------------


def _round(value: float) -> float:
    return round(float(value), 6)


def pair_rows(summary: Summary) -> list[dict[str, Any]]:
    """One row per pair: CV metric means at the chosen α, Procrustes R², final CCA ρ₁."""
    return [
        {
            "source": p["source"],
            "target": p["target"],
            "rows": p["rows"],
            "alpha": p["alpha"],
            "cv_r2": _round(p["cv"]["r2"]),
            "cv_mse": _round(p["cv"]["mse"]),
            "procrustes_r2": _round(p["procrustes"]["r2"]),
            "cca_rho1": _round(p["cca"][0]) if p["cca"] else None,
        }
        for p in summary["pairs"]
    ]


def _task_row(task: str, features: str, alpha: float, cv: Mapping[str, Any]) -> dict[str, Any]:
    """CV metric means at the chosen penalty (the per-fold lists are left out)."""
    metrics = {k: _round(v) for k, v in cv.items() if k != "accuracy_folds"}
    return {"task": task, "features": features, "alpha": alpha} | metrics


def task_rows(summary: Summary) -> list[dict[str, Any]]:
    """One row per cross-modal task (classify, logistic with α = 1/C, transfer, retrieval);
    empty when the fit ran none."""
    rows = [
        _task_row("classify", _features(c), c["alpha"], c["cv"])
        for c in summary.get("classify", [])
    ]
    rows += [
        _task_row("logistic", _features(lr), 1.0 / lr["C"], lr["cv"])
        for lr in summary.get("logistic", [])
    ]
    for t in summary.get("transfer", []):
        row = _task_row("transfer", _arrow(t), t["alpha"], t["cv"])
        rows.append(row | {"target_accuracy": _round(t["target_cv"]["accuracy"])})
    for r in summary.get("retrieval", []):
        row = _task_row("retrieval", _arrow(r), r["map_alpha"], {})
        row |= {f"{k} →": _round(v) for k, v in r["source_to_target"].items()}
        rows.append(row | {f"{k} ←": _round(v) for k, v in r["target_to_source"].items()})
    return rows


# Log lines ----------------------------------------------------------------------------------


def _pair_line(p: Summary) -> str:
    return f"{_arrow(p)}: CV R² {p['cv']['r2']:.4f}, MSE {p['cv']['mse']:.4g} at α={p['alpha']:g}"


def _random_features_line(rf: Summary) -> str:
    return (
        f"non-linear {_arrow(rf)}: CV R² {rf['cv']['r2']:.4f} with {rf['features']:d} random "
        f"features (γ={rf['gamma']:.3g}) at α={rf['alpha']:g}"
    )


def _classify_line(c: Summary) -> str:
    return (
        f"classify from {_features(c)}: CV accuracy {c['cv']['accuracy']:.4f} "
        f"(chance {c['cv']['chance']:.4f}) at α={c['alpha']:g}"
    )


def _transfer_line(t: Summary) -> str:
    return (
        f"transfer {_arrow(t)}: CV accuracy {t['cv']['accuracy']:.4f} "
        f"(target's own {t['target_cv']['accuracy']:.4f}) at α={t['alpha']:g}"
    )


def _logistic_line(lr: Summary) -> str:
    return (
        f"logistic regression from {_features(lr)}: CV accuracy {lr['cv']['accuracy']:.4f} "
        f"at C={lr['C']:g} ({lr['passes']:d} L-BFGS passes)"
    )


def _retrieval_line(r: Summary) -> str:
    fw, bw = r["source_to_target"], r["target_to_source"]
    return (
        f"retrieval {_arrow(r)}: recall@1 {fw['recall@1']:.3f} (→), {bw['recall@1']:.3f} (←), "
        f"median rank {fw['median_rank']:g} (→)"
    )


LINES: dict[str, Callable[[Summary], str]] = {
    "pairs": _pair_line,
    "random_features": _random_features_line,
    "classify": _classify_line,
    "transfer": _transfer_line,
    "logistic": _logistic_line,
    "retrieval": _retrieval_line,
}
"""kind (the key of its list in the fit's summary) → the log line of one result of it."""


def line(kind: str, item: Summary) -> str:
    """The one-line log message of one result, from its ``summary()``; ``kind`` is the key of
    its list in ``FitResult.summary()`` ("pairs", "classify", "transfer", ...)."""
    return LINES[kind](item)
