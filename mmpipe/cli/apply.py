"""The apply command: a fitted run over a dataset, written to a new Zarr group."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mmpipe.cli.app import StorageOpt, _print_json, app, handled, parse_options
from mmpipe.cli.options import with_options
from mmpipe.cluster import ClusterSpec
from mmpipe.options import ApplyOptions


@app.command("apply")
@handled
@with_options(apply_options=ApplyOptions, cluster_options=ClusterSpec)
def apply_command(
    results: Annotated[str, typer.Argument(help="Results store of the fitted run (path or URL).")],
    dataset: Annotated[str, typer.Argument(help="Dataset to apply it to (path or URL).")],
    out: Annotated[str, typer.Option(help="New Zarr group for the outputs (path or URL).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    storage_option: StorageOpt = None,
    *,
    apply_options: dict[str, Any],
    cluster_options: dict[str, Any],
) -> None:
    """Apply a fitted run to a dataset in one pass: PCA scores (--embed), maps (--map),
    predictions (--classify), imputed modalities (--impute), written to OUT with the input's
    row chunks. Everything is checked before anything is read or written; OUT's status is
    'complete' only once every output is written (docs/apply.md)."""
    import mmpipe
    from mmpipe.cluster import dask_client
    from mmpipe.progress import announce_dashboard, terminal_bars

    options = ApplyOptions.parse(apply_options, "options")
    spec = ClusterSpec.parse(cluster_options, "options")
    storage = parse_options(storage_option)
    # Check the input (and learn its size) before paying for a cluster.
    size = mmpipe.open_dataset(dataset, storage_options=storage).nbytes
    with dask_client(spec, input_bytes=size) as client, terminal_bars(not as_json):
        announce_dashboard(client, spec.dashboard)
        summary = mmpipe.apply(
            results, dataset, out, options, storage_options=storage, client=client
        )
    if as_json:
        _print_json(summary)
        return
    print_apply(summary)


def print_apply(summary: dict[str, Any]) -> None:
    """What an apply wrote: one row per output array, then where it went."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{summary['out']} — {summary['rows']} rows, run {summary['run_id']}")
    for column in ("output", "shape", "dtype", "rows without a value"):
        table.add_column(column)
    for path, info in summary["outputs"].items():
        shape = " × ".join(str(s) for s in info["shape"])
        table.add_row(path, shape, info["dtype"], str(info["nan_rows"]))
    console.print(table)
    seconds = summary["timings"].get("total", 0.0)
    line = (
        f"{summary['status']}: {len(summary['outputs'])} arrays written to {summary['out']} "
        f"in {summary['blocks']} blocks, {seconds:.1f} s"
    )
    console.print(line, markup=False, highlight=False)
