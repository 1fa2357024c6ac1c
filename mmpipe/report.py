"""Results for people: one description of a fit's tables, rendered for a terminal, as
Markdown, as Prefect table rows and as log lines.

Everything here is built from the summary of a fit (``FitResult.summary()``, the JSON that
``mmpipe fit --json`` prints and the Prefect flow returns) or, for the log lines, from one
result's own ``summary()``, which is the same dict as its entry in that JSON. One source: the
CLI's ``fit`` and ``run`` and the flow's artifacts show the same cells because they read the
same dict, and a summary read back from JSON (a flow run on another machine) renders alike.

Cells are formatted once, here (:class:`Table`); renderers only lay them out. The rows given
to Prefect's table artifacts keep numbers (rounded to 6 digits) so the UI can sort them.
The pairs are rendered here; every cross-modal task renders itself (its table rows, Prefect
rows and log line live in its module of :mod:`mmpipe.tasks`), and this module loops over
the registry ``mmpipe.tasks.TASKS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mmpipe import tasks as registry
from mmpipe.tables import Summary, Table, arrow, rounded

if TYPE_CHECKING:  # rich is imported only by render_rich
    from rich.console import Console


def _splits(n: int) -> str:
    return f"{n} split{'s' if n > 1 else ''}"


EDGE_MARK = "*"
"""Marks an α chosen at the smallest or largest value of the grid (its best may lie beyond)."""

LEGEND: dict[str, str] = {
    "k": "PCA components source→target",
    "α": f"ridge penalty chosen by CV ({EDGE_MARK} at the edge of the α grid: widen it)",
    "CV R²": "R² of the ridge map on validation rows, mean ± sd over splits "
    "(1 perfect, 0 = predicting the mean)",
    "CV R² (weighted)": "the same, columns weighted by their variance",
    "CV MSE": "mean squared error of the map on validation rows",
    "Procrustes R²": "R² of the best orthogonal map (a rotation, no scaling): very negative "
    "when the two spaces differ in scale",
    "CCA ρ₁ (val)": "first canonical correlation on validation rows",
}
"""What each column heading of the pairs table means (the legend under it)."""


PAIR_COLUMNS = (
    "source → target",
    "rows",
    "k",
    "α",
    "CV R²",
    "CV R² (weighted)",
    "CV MSE",
    "Procrustes R²",
    "CCA ρ₁ (val)",
)


def legend(table: Table) -> str:
    """The line under the pairs table explaining its metrics ('' for other tables)."""
    if table.columns != PAIR_COLUMNS:
        return ""
    return "; ".join(f"{c}: {LEGEND[c]}" for c in table.columns if c in LEGEND)


def alpha_cell(alpha: float, grid: Sequence[float] | None) -> str:
    """α as shown, with :data:`EDGE_MARK` when it is the smallest or largest of the grid."""
    edge = bool(grid) and len(grid or ()) > 1 and alpha in (min(grid or ()), max(grid or ()))
    return f"{alpha:g}{EDGE_MARK if edge else ''}"


def pairs_table(summary: Summary) -> Table:
    """Every pair: rows, components, chosen α, CV R² (mean ± sd over splits), its
    variance-weighted form, CV MSE, the
    orthogonal map's R² and the first canonical correlation on validation rows."""
    plan = summary["plan"]
    grid = (summary.get("config") or {}).get("alphas")
    rows = []
    for p in summary["pairs"]:
        r2 = np.asarray(p["cv"]["r2_folds"], dtype=np.float64)
        cca = p["cca_validation"]
        rows.append(
            (
                arrow(p),
                str(p["rows"]),
                "{}→{}".format(*p["components"]),
                alpha_cell(p["alpha"], grid),
                f"{p['cv']['r2']:.4f} ± {r2.std():.4f}",
                f"{p['cv']['r2_weighted']:.4f}" if "r2_weighted" in p["cv"] else "-",
                f"{p['cv']['mse']:.4g}",
                f"{p['procrustes']['r2']:.4f}",
                f"{cca[0]:.3f}" if cca else "-",
            )
        )
    notes = [
        f"{arrow(p)}: {p['rows_dropped']} rows left out (one of the two modalities missing)"
        for p in summary["pairs"]
        if p.get("rows_dropped")
    ]
    if plan.get("rare_classes"):
        notes.append(f"rare classes {plan['rare_classes']}: {plan['rare_classes_note']}")
    if plan["kind"] == "given":
        roles = ", ".join(f"{role} {n}" for role, n in plan["rows"].items())
        notes.append(
            f"the dataset's split ({roles} rows): models fitted on the train rows, the final "
            "ones too; every CV figure is on the test rows"
        )
    return Table(
        title=f"{summary['dataset']}: {summary['rows']} rows, {plan['kind']} "
        f"({_splits(plan['n_splits'])})",
        columns=PAIR_COLUMNS,
        rows=tuple(rows),
        notes=tuple(notes),
    )


def _shown() -> list[registry.Task]:
    """The tasks in the order their tables are shown: maps between modalities first (right
    after the pairs), then the others; tasks that share a table title share one table, at the
    first one's place."""
    ordered = [t for t in registry.TASKS if t.is_map] + [t for t in registry.TASKS if not t.is_map]
    titles = list(dict.fromkeys(t.table_title for t in ordered))
    return sorted(ordered, key=lambda t: titles.index(t.table_title))


def task_tables(summary: Summary) -> list[Table]:
    """The cross-modal tasks' tables of a fit's summary (those with rows), in the order shown."""
    tables: dict[str, Table] = {}
    for task in _shown():
        rows = tuple(task.table_rows(summary))
        if not rows:
            continue
        if task.table_title in tables:
            shared = tables[task.table_title]
            tables[task.table_title] = Table(shared.title, shared.columns, shared.rows + rows)
        else:
            tables[task.table_title] = Table(task.table_title, task.table_columns, rows)
    return list(tables.values())


def tables(summary: Summary) -> list[Table]:
    """The tables of a fit's summary (``FitResult.summary()``), in the order shown: the pairs,
    then the tasks' (a table with nothing to show is left out)."""
    return [pairs_table(summary), *task_tables(summary)]


def where(summary: Summary, unwritten: str = "no results location") -> str:
    """Where the run was written, or why it was not."""
    return str(summary["results"]) if summary.get("results") else f"(not written: {unwritten})"


def run_line(summary: Summary, unwritten: str = "no results location") -> str:
    """The closing line of a fit on a terminal: the run id and where it was written."""
    if summary.get("results"):
        return f"run {summary['run_id']} written to {summary['results']}"
    return f"run {summary['run_id']} (not written: {unwritten})"


# Renderers ---------------------------------------------------------------------------------


def _column_width(table: Table, index: int) -> int:
    from rich.cells import cell_len

    return max(cell_len(text) for text in (table.columns[index], *(r[index] for r in table.rows)))


def column_groups(table: Table, width: int) -> list[list[int]]:
    """The columns of ``table`` split into groups that each fit ``width`` terminal columns
    (rich's box: 3 per column plus 1), the first column (the row's name) repeated in every
    group; one group when the whole table fits."""
    widths = [_column_width(table, i) for i in range(len(table.columns))]
    groups: list[list[int]] = []
    for i in range(1, len(widths)):
        if groups and sum(widths[j] + 3 for j in groups[-1]) + widths[i] + 3 + 1 <= width:
            groups[-1].append(i)
        else:
            groups.append([0, i])
    return groups or [[0]]


def render_rich(tables: Sequence[Table], console: Console) -> None:
    """Print the tables on a rich console, numbers right-aligned, notes and the legend under
    their table. A table wider than the console is shown as several narrower ones (the
    row's name in each); a cell that still does not fit folds onto a second line, so no
    heading or number is ever cut."""
    from rich.table import Table as RichTable
    from rich.text import Text

    # Text, not str: a name like "[red]" is a modality, not rich markup.
    for table in tables:
        groups = column_groups(table, console.width)
        for part, columns in enumerate(groups):
            title = table.title if part == 0 else f"{table.title} (continued)"
            out = RichTable(title=Text(title, style="italic"))
            for i in columns:
                out.add_column(Text(table.columns[i]), justify="right", overflow="fold")
            for row in table.rows:
                out.add_row(*(Text(row[i]) for i in columns))
            console.print(out)
        for note in table.notes:
            console.print(note, style="dim", markup=False, highlight=False)
        if key := legend(table):
            console.print(key, style="dim", markup=False, highlight=False)


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
        if key := legend(table):
            lines.append(f"\n_{_cell(key)}_")
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


def pair_rows(summary: Summary) -> list[dict[str, Any]]:
    """One row per pair: CV metric means at the chosen α, Procrustes R², final CCA ρ₁."""
    return [
        {
            "source": p["source"],
            "target": p["target"],
            "rows": p["rows"],
            "alpha": p["alpha"],
            "cv_r2": rounded(p["cv"]["r2"]),
            "cv_r2_weighted": rounded(p["cv"]["r2_weighted"]) if "r2_weighted" in p["cv"] else None,
            "cv_mse": rounded(p["cv"]["mse"]),
            "procrustes_r2": rounded(p["procrustes"]["r2"]),
            "cca_rho1": rounded(p["cca"][0]) if p["cca"] else None,
        }
        for p in summary["pairs"]
    ]


def task_rows(summary: Summary) -> list[dict[str, Any]]:
    """One row per result of a cross-modal task (classify, logistic with α = 1/C, transfer,
    retrieval), in the order of their tables; empty when the fit ran none."""
    return [row for task in _shown() for row in task.artifact_rows(summary)]


# Log lines ----------------------------------------------------------------------------------


def _pair_line(p: Summary) -> str:
    return f"{arrow(p)}: CV R² {p['cv']['r2']:.4f}, MSE {p['cv']['mse']:.4g} at α={p['alpha']:g}"


def line(kind: str, item: Summary) -> str:
    """The one-line log message of one result, from its ``summary()``; ``kind`` is the key of
    its list in ``FitResult.summary()`` ("pairs", or a task's name: "classify", ...)."""
    if kind == "pairs":
        return _pair_line(item)
    return registry.task_named(kind).line(item)
