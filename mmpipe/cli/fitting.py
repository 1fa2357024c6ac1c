"""Commands that fit (fit, run) and read what runs wrote (runs, show); the run config."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from mmpipe.cli.app import StorageOpt, _print_json, app, debugging, handled, parse_options
from mmpipe.cli.options import with_options
from mmpipe.cluster import ClusterSpec
from mmpipe.errors import MissingDependencyError
from mmpipe.options import ApplyOptions, FitConfig
from mmpipe.signals import stop_signals_raise


@app.command()
@handled
@with_options(fit_options=FitConfig, cluster_options=ClusterSpec)
def fit(
    store: Annotated[str, typer.Argument(help="Dataset path or URL.")],
    out: Annotated[str | None, typer.Option(help="Results store (path or URL).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    storage_option: StorageOpt = None,
    *,
    fit_options: dict[str, Any],
    cluster_options: dict[str, Any],
) -> None:
    """Standardize, PCA and transfer maps for every pair, cross-validated, in one pass.

    Every option has the same name and values as in a run config (mmpipe config schema) and
    as a keyword of mmpipe.fit. With --classify, --transfer or --retrieval, one more pass
    scores the cross-modal tasks; --random-features and --logistic read their modalities once
    more each."""
    import mmpipe
    from mmpipe.cluster import dask_client
    from mmpipe.progress import announce_dashboard, terminal_bars

    config = FitConfig.parse(fit_options, "options")
    spec = ClusterSpec.parse(cluster_options, "options")
    options = parse_options(storage_option)
    # Check the input (and learn its size) before paying for a cluster.
    size = mmpipe.open_dataset(store, storage_options=options).nbytes
    with dask_client(spec, input_bytes=size) as client, terminal_bars(not as_json):
        announce_dashboard(client, spec.dashboard)
        result = mmpipe.fit(
            store,
            config,
            out=out,
            client=client,
            storage_options=options,
            results_storage_options=options,
        )
    summary = result.summary()
    if as_json:
        _print_json(summary)
        return
    print_fit(summary)


def print_fit(summary: dict[str, Any], unwritten: str = "no --out") -> None:
    """The fit's tables and where the run went, from its summary (``FitResult.summary()``)."""
    from rich.console import Console

    from mmpipe import report

    console = Console()
    report.render_rich(report.tables(summary), console)
    console.print(report.run_line(summary, unwritten), markup=False, highlight=False)


config_app = typer.Typer(help="The run config used by `mmpipe run`.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON schema of the run config."""
    from mmpipe.config import config_schema as schema

    typer.echo(json.dumps(schema(), indent=2))


@config_app.command("options")
def config_options() -> None:
    """Print every option as Markdown tables: run-config key, flag, default, meaning."""

    typer.echo(options_markdown())


def options_markdown() -> str:
    """docs/options.md: the fit's options and the cluster's, from their models."""
    from mmpipe.cli.options import markdown_table

    return "\n".join(
        [
            "# Options",
            "",
            "Generated from `mmpipe.options` (FitConfig, ApplyOptions) and",
            "`mmpipe.cluster.ClusterSpec` by `mmpipe config options`. Each option has one name:",
            "the key in a run config, the keyword of `mmpipe.fit` (`mmpipe.apply`), and the flag",
            "of `mmpipe fit` (`mmpipe apply`) with dashes. A flag's value is",
            "read as the run config's YAML value is, and a bad value gets the same message from",
            "all three. Words such as `never` or `all` stand for null (Python's None).",
            "",
            "## The fit",
            "",
            markdown_table(FitConfig),
            "",
            "## The cluster (`cluster:` in a run config)",
            "",
            markdown_table(ClusterSpec, prefix="cluster."),
            "",
            "## Apply (`mmpipe apply`, `mmpipe.apply`, a run config with `flow: apply`)",
            "",
            markdown_table(ApplyOptions),
            "",
        ]
    )


@config_app.command("check")
@handled
def config_check(
    path: Annotated[str, typer.Argument(help="YAML run config.")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE override.")] = None,
) -> None:
    """Validate a run config file and print it with its defaults filled in."""
    from mmpipe.config import read_config

    config = read_config(path, parse_options(set_, "--set"))
    typer.echo(json.dumps(config.model_dump(), indent=2))


ORCHESTRATOR_GROUP = "mmpipe.orchestrators"
"""Entry-point group through which an orchestrator offers `mmpipe run`: the library does not
import its orchestration (flows/ is built on top of mmpipe, never the other way round)."""


def orchestrator(name: str = "prefect") -> Any:
    """The ``run_flow(config, tracebacks=...)`` function registered under ``name``."""
    from importlib.metadata import entry_points

    found = entry_points(group=ORCHESTRATOR_GROUP, name=name)
    if not found:
        raise MissingDependencyError(
            f"mmpipe run needs the {name!r} orchestrator, which is not installed: install "
            "mmpipe with its flows (pip install -e . from the repository)."
        )
    return next(iter(found)).load()


@app.command()
@handled
def run(
    path: Annotated[
        str,
        typer.Argument(
            help="YAML run config: a fit, or `flow: apply` (see `mmpipe config schema`)."
        ),
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a key, dotted for nesting: --set folds=3 --set cluster.workers=2",
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(help="Scheduler address of an existing Dask cluster (overrides the config)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run a config's flow with Prefect: the fit, or apply for `flow: apply` (embedded Prefect
    server unless PREFECT_API_URL is set)."""
    import os

    from mmpipe.config import read_config

    overrides = parse_options(set_, "--set")
    if address:
        overrides["cluster.address"] = address
    config = read_config(path, overrides)
    # Prefect's embedded server can take 20-30 s to start on a small machine; its default
    # start-up timeout is 20 s. No telemetry.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    run_flow = orchestrator()
    with stop_signals_raise():
        summary = run_flow(config, tracebacks=debugging())
    if as_json:
        _print_json(summary)
    elif config.flow == "apply":
        from mmpipe.cli.apply import print_apply

        print_apply(summary)
    else:
        print_fit(summary, unwritten="no results in the run config")


@app.command()
@handled
def runs(
    results: Annotated[str, typer.Argument(help="Results store path or URL.")],
    clean: Annotated[
        bool,
        typer.Option("--clean", help="Delete the failed and abandoned runs (keeps live ones)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    storage_option: StorageOpt = None,
) -> None:
    """List the runs in a results store: complete, running, failed, or abandoned (its process
    is gone or its heartbeat stopped)."""
    from mmpipe.io.runs import clean_runs, list_runs

    options = parse_options(storage_option)
    if clean:
        removed = clean_runs(results, storage_options=options)
        typer.echo(f"removed {len(removed)} incomplete run{'s' * (len(removed) != 1)}")
        for run_id in removed:
            typer.echo(f"  {run_id}")
        return
    listing = list_runs(results, storage_options=options)
    if as_json:
        _print_json(listing)
        return
    if not listing:
        typer.echo(f"no runs in {results}")
        return
    for line in runs_lines(listing):
        typer.echo(line)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{value:.1f} s"


def runs_lines(listing: list[dict[str, Any]]) -> list[str]:
    """`mmpipe runs`: a heading, then per run its id, start time (UTC), status, duration,
    dataset and headline metric; a failed run's reason on the next line."""
    rows = [("run", "started (UTC)", "status", "duration", "dataset", "headline")]
    for run in listing:
        head = run.get("headline")
        rows.append(
            (
                run["run_id"],
                str(run["started"] or "-").replace("T", " ").removesuffix("+00:00"),
                run["status"],
                _seconds(run.get("duration")),
                str(run.get("dataset") or "-"),
                f"{head['metric']} {head['value']:.4f} ({head['over']})" if head else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  "
             + row[5] for row in rows]  # fmt: skip
    out = []
    errors = [None, *(run["error"] for run in listing)]
    for line, error in zip(lines, errors, strict=True):
        out.append(line.rstrip())
        if error:
            out.append(f"  error: {' '.join(str(error).split())[:200]}")
    return out


@app.command()
@handled
def show(
    results: Annotated[str, typer.Argument(help="Results store path or URL.")],
    run_id: Annotated[
        str | None, typer.Option("--run", help="Run id (default: the latest complete run).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print its summary as JSON.")] = False,
    storage_option: StorageOpt = None,
) -> None:
    """Show one run of a results store: the tables `mmpipe fit` printed, from its summary."""
    from mmpipe.io.runs import read_run

    run = read_run(results, run_id, storage_options=parse_options(storage_option))
    summary = dict(run.attrs).get("summary")
    if not isinstance(summary, dict) or not summary:
        from mmpipe.errors import ResultsError

        raise ResultsError(f"Run {run.basename!r} in {results!r} has no stored summary.")
    if as_json:
        _print_json(summary)
        return
    print_fit(summary)
