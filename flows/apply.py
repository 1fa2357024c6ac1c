"""Applying a fitted run to a dataset as a Prefect flow (``flow: apply`` in a run config).

size the input → apply (one pass on the cluster the flow holds) → artifact. The dataset is
opened before any cluster exists: a dataset that cannot be read fails without paying for
one, and its size decides whether a cluster is worth starting (as in the fit flow).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.pipeline import COMPUTE, STORAGE, quiet_dask_logs, with_overrides, write_report
from mmpipe.applying import apply
from mmpipe.cluster import choose, dask_client
from mmpipe.config import ApplyConfig
from mmpipe.io.dataset import open_dataset


@task(name="size-input", tags=["mmpipe", "storage"], **STORAGE)
def size_input(config: ApplyConfig) -> int:
    dataset = open_dataset(config.dataset, storage_options=config.storage_options)
    get_run_logger().info(
        "Dataset %s: %d rows, modalities %s", dataset.url, dataset.n_rows, dataset.widths
    )
    return int(dataset.nbytes)


@task(name="apply-pass", tags=["mmpipe"], **COMPUTE)
def apply_pass(config: ApplyConfig, out: str, client: Any) -> dict[str, Any]:
    summary: dict[str, Any] = apply(
        config.results,
        config.dataset,
        out,
        config.apply_options(),
        storage_options=config.storage_options,
        client=client,
    )
    return summary


def _uri(path: str) -> str:
    return Path(path).resolve().as_uri()


def publish_artifact(summary: dict[str, Any], html: str | None = None) -> None:
    """What the apply wrote, and where (and the fitted run's HTML report), as Markdown."""
    lines = [
        f"# mmpipe apply: run {summary.get('run_id')}",
        "",
        f"Outputs in `{summary.get('out')}` from `{summary.get('dataset')}` "
        f"({summary.get('rows')} rows), models of `{summary.get('results')}`.",
        "",
        *([f"The fitted run's report: [{html}]({_uri(html)})", ""] if html else []),
        "| output | shape | rows without a value |",
        "|---|---|---|",
    ]
    for name, info in (summary.get("outputs") or {}).items():
        shape = " × ".join(str(n) for n in info.get("shape", []))
        lines.append(f"| `{name}` | {shape} | {info.get('nan_rows', 0)} |")
    create_markdown_artifact(
        key="mmpipe-apply",
        markdown="\n".join(lines),
        description=f"What mmpipe apply wrote to {summary.get('out')}",
    )


@flow(name="mmpipe-apply", log_prints=False, validate_parameters=True)
def mmpipe_apply(config: ApplyConfig, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Apply a fitted run (the latest complete one unless run_id is set) to a dataset.

    ``overrides`` are merged over ``config``, the deployment's (see ``with_overrides``)."""
    config = with_overrides(config, overrides)
    logger = get_run_logger()
    quiet_dask_logs()
    out = config.out_at(datetime.now(UTC))
    size = size_input(config)
    spec = choose(config.cluster, size)
    logger.info("Computing on %s", spec.describe())
    with dask_client(spec) as client:
        summary = apply_pass(config, out, client)
    logger.info("Applied run %s; outputs written to %s", summary.get("run_id"), out)
    html = write_report(config.results, str(summary["run_id"]), config.storage_options)
    publish_artifact(summary, html)
    return summary
