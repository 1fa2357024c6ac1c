"""The report command: one run of a results store as a self-contained HTML page."""

from __future__ import annotations

from typing import Annotated

import typer

from mmpipe.cli.app import StorageOpt, app, handled, parse_options


@app.command("report")
@handled
def report_command(
    results: Annotated[str, typer.Argument(help="Results store path or URL.")],
    out: Annotated[str, typer.Option("--out", help="Folder to write index.html into.")],
    run: Annotated[
        str | None, typer.Option("--run", help="Run id (default: the latest complete run).")
    ] = None,
    storage_option: StorageOpt = None,
) -> None:
    """Write an HTML report of a complete run (plots and tables, viewable offline) to
    OUT/index.html: explained variance, CV R² against α, all pairs at a glance, recall@K,
    confusion matrices, canonical correlations, the multi-view spectrum, and the run's config,
    fingerprint, timings and versions (docs/report.md)."""
    from mmpipe.htmlreport import report_run

    path = report_run(results, out, run_id=run, storage_options=parse_options(storage_option))
    typer.echo(f"report written to {path}")
