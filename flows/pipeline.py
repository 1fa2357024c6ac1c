"""The mmpipe fit as a Prefect flow.

open & validate → [sketch pass] → statistics pass → models → evaluation → [scoring pass,
random-features pass] → write results → artifacts. Opening comes before any cluster exists.

Tasks run in the flow's own process and submit Dask graphs to the cluster the flow holds (a
Prefect task inside a Dask worker would need a Prefect API there). Tasks pass Python objects
in memory and are never cached: a cache keyed on inputs would hash graphs, not data, and
return stale results for a store rewritten in place.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import TerminationSignal
from prefect.tasks import exponential_backoff

from flows.console import hide_tracebacks
from mmpipe import report
from mmpipe.cluster import choose, dask_client
from mmpipe.config import RunConfig
from mmpipe.engine import (
    CrossModal,
    FitResult,
    FittedModels,
    PairResult,
    Prepared,
    assemble,
    cross_modal,
    evaluate,
    fit_models,
    prepare,
    random_feature_maps,
    sketch_pass,
    statistics_pass,
    wide_modalities,
)
from mmpipe.errors import ClusterError, MmpipeError, RunInterrupted
from mmpipe.io.results import RunWriter, new_run_id
from mmpipe.nonlinear import RandomFeatureResult
from mmpipe.stats.blocked import PassStatistics


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry what may pass (a storage hiccup, a lost cluster), never bad input or a bug."""
    try:
        state.result()
    except MmpipeError as exc:
        return exc.transient
    except (OSError, ConnectionError, TimeoutError):
        return True
    except Exception:
        return False
    return False


def _retrying(retries: int, backoff_factor: float) -> dict[str, Any]:
    """Task options: retry transient failures only, never cache (data tasks, see above)."""
    return dict(
        retries=retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=backoff_factor),
        retry_condition_fn=_transient,
        cache_policy=NO_CACHE,
        persist_result=False,
    )


STORAGE = _retrying(2, 2)  # a permanent storage failure takes up to 120 s a try
# A pass is not retried on the client that failed it: a lost cluster is taken up again with a
# new client by the flow itself (CLUSTER_ATTEMPTS); bad input and bugs fail at once.
COMPUTE = _retrying(0, 1)


@task(name="open-and-validate", tags=["mmpipe", "storage"], **STORAGE)
def open_and_validate(config: RunConfig) -> Prepared:
    # Runs before any cluster exists: bad input fails without paying for one, and the size
    # of the input decides whether a cluster is worth starting. The labels (one small 1-D
    # array) are read here.
    prepared = prepare(
        config.dataset,
        config.fit_config(),
        storage_options=config.storage_options,
        out=config.results,
        results_storage_options=config.storage_options,
    )
    get_run_logger().info(
        "Dataset %s: %d rows, modalities %s; %d pairs, %s plan with %d splits",
        prepared.dataset.url,
        prepared.dataset.n_rows,
        prepared.dataset.widths,
        len(prepared.pairs),
        prepared.plan.kind,
        prepared.plan.n_splits,
    )
    return prepared


@task(name="sketch-pass", tags=["mmpipe", "dask"], **COMPUTE)
def run_sketch_pass(prepared: Prepared, client: Any) -> Prepared:
    wide = wide_modalities(prepared)
    reduced = sketch_pass(prepared, client=client)
    get_run_logger().info(
        "Wide modalities reduced to sketch coordinates: %s",
        ", ".join(f"{n} {prepared.dataset.widths[n]} -> {q} columns" for n, q in wide.items()),
    )
    return reduced


@task(name="statistics-pass", tags=["mmpipe", "dask"], **COMPUTE)
def run_statistics_pass(prepared: Prepared, client: Any) -> PassStatistics:
    stats = statistics_pass(prepared, client=client)
    get_run_logger().info(
        "One pass over %d rows in %d blocks: %d (fold, mask pattern) groups",
        stats.n_rows,
        len(prepared.dataset.row_chunks),
        len(stats.groups),
    )
    return stats


@task(name="fit-models", tags=["mmpipe"], **COMPUTE)
def run_fit_models(prepared: Prepared, stats: PassStatistics, client: Any) -> FittedModels:
    return fit_models(prepared, stats, client=client)


@task(name="evaluate", tags=["mmpipe"], **COMPUTE)
def run_evaluate(
    prepared: Prepared, stats: PassStatistics, models: FittedModels
) -> list[PairResult]:
    pairs = evaluate(prepared, stats, models)
    for p in pairs:
        get_run_logger().info(report.line("pairs", p.summary()))
    return pairs


@task(name="scoring-pass", tags=["mmpipe", "dask"], **COMPUTE)
def run_scoring_pass(
    prepared: Prepared,
    stats: PassStatistics,
    models: FittedModels,
    pairs: list[PairResult],
    client: Any,
) -> CrossModal:
    tasks = cross_modal(prepared, stats, models, pairs, client=client)
    logger = get_run_logger()
    done: dict[str, list[Any]] = {"classify": tasks.classify, "transfer": tasks.transfer}
    done |= {"logistic": tasks.logistic, "retrieval": tasks.retrieval}
    for kind, results in done.items():
        for one in results:
            logger.info(report.line(kind, one.summary()))
    return tasks


@task(name="random-features-pass", tags=["mmpipe", "dask"], **COMPUTE)
def run_random_features(
    prepared: Prepared, models: FittedModels, client: Any
) -> list[RandomFeatureResult]:
    maps = random_feature_maps(prepared, models, client=client)
    for rf in maps:
        get_run_logger().info(report.line("random_features", rf.summary()))
    return maps


@task(name="begin-run", tags=["mmpipe", "storage"], **STORAGE)
def begin_run(prepared: Prepared, config: RunConfig, run_id: str) -> RunWriter:
    # Before the first pass: the run exists as "running" and the location is proven writable.
    assert config.results is not None
    writer = RunWriter.begin(
        config.results,
        dataset=prepared.dataset.url,
        config=prepared.config.to_json(),
        storage_options=config.storage_options,
        run_id=run_id,
    )
    get_run_logger().info("Run %s begun in %s", writer.run_id, writer.location)
    return writer


@task(name="write-results", tags=["mmpipe", "storage"], **STORAGE)
def write_results(result: FitResult, writer: RunWriter) -> FitResult:
    # A retry rewrites the same run's arrays; only the last write marks it complete.
    written = writer.complete(result)
    get_run_logger().info("Results written to %s", written.results)
    return written


def publish_artifact(result: FitResult) -> None:
    """The fit's tables as Prefect artifacts: pairs and tasks as tables, everything as Markdown
    with where the results went."""
    summary = result.summary()
    where = report.where(summary)
    create_table_artifact(
        key="mmpipe-fit-pairs",
        table=report.pair_rows(summary),
        description=f"mmpipe fit of {result.dataset}, run {result.run_id}; results: {where}",
    )
    task_rows = report.task_rows(summary)
    if task_rows:
        create_table_artifact(
            key="mmpipe-fit-tasks",
            table=task_rows,
            description=f"Cross-modal tasks of run {result.run_id}: CV metrics at the chosen α",
        )
    create_markdown_artifact(
        key="mmpipe-fit-results",
        markdown=report.markdown(report.tables(summary), lead=report.markdown_heading(summary)),
        description="Where the results of this run were written, and its tables",
    )


def _quiet_dask_logs() -> None:
    # Prefect's handlers would relay every scheduler/nanny INFO line of a LocalCluster; dask's
    # logging config gives the child loggers (distributed.scheduler, ...) levels of their own,
    # set when distributed is first imported: import it first.
    import distributed  # noqa: F401

    names = [n for n in logging.root.manager.loggerDict if n.startswith("distributed")]
    for name in ["distributed", *names]:
        logging.getLogger(name).setLevel(logging.WARNING)


CLUSTER_ATTEMPTS = 2
"""Times the flow runs its passes, each on a new client, when the cluster fails under them."""


def compute_steps(prepared: Prepared, client: Any) -> tuple[Any, ...]:
    """The passes and the models between them, as Prefect tasks, on one client."""
    if wide_modalities(prepared):
        prepared = run_sketch_pass(prepared, client)
    stats = run_statistics_pass(prepared, client)
    models = run_fit_models(prepared, stats, client)
    pairs = run_evaluate(prepared, stats, models)
    tasks = (
        run_scoring_pass(prepared, stats, models, pairs, client)
        if prepared.config.scoring
        else CrossModal()
    )
    nonlinear = (
        run_random_features(prepared, models, client) if prepared.config.random_features else []
    )
    return prepared, stats, models, pairs, tasks, nonlinear


@flow(name="mmpipe-fit", log_prints=False, validate_parameters=True)
def mmpipe_fit(config: RunConfig) -> dict[str, Any]:
    """Fit scalers, PCA and transfer maps for every pair with cross-validation."""
    logger = get_run_logger()
    _quiet_dask_logs()
    prepared = open_and_validate(config)
    writer = begin_run(prepared, config, new_run_id()) if config.results is not None else None
    try:
        spec = choose(config.cluster.spec(), prepared.dataset.nbytes)
        logger.info("Computing on %s", spec.describe())
        timings: dict[str, float] = {}
        for attempt in range(1, CLUSTER_ATTEMPTS + 1):
            try:
                with dask_client(spec) as client:
                    prepared, stats, models, pairs, tasks, nonlinear = compute_steps(
                        prepared, client
                    )
                break
            except ClusterError as exc:
                # A client whose scheduler is gone stays dead: only a new one can take the
                # passes again (a restarted scheduler, a new LocalCluster).
                if not exc.transient or attempt == CLUSTER_ATTEMPTS:
                    raise
                logger.warning(
                    "The cluster failed (%s); running the passes again on a new client "
                    "(attempt %d of %d)", exc, attempt + 1, CLUSTER_ATTEMPTS,
                )  # fmt: skip
        result = assemble(prepared, stats, models, pairs, timings, tasks, nonlinear)
        if writer is not None:
            result = write_results(result, writer)
    except BaseException as exc:
        if writer is not None:
            writer.fail(as_interrupt(exc))
        raise
    finally:
        if writer is not None:
            writer.close()
    publish_artifact(result)
    summary: dict[str, Any] = result.summary()
    return summary


def as_interrupt(exc: BaseException) -> BaseException:
    """Prefect's own SIGTERM handler raises TerminationSignal: say which signal stopped us."""
    if not isinstance(exc, TerminationSignal):
        return exc
    name = signal.Signals(exc.signal).name
    error = RunInterrupted(f"The run was stopped by {name}; it is marked failed.")
    error.exit_code = 128 + exc.signal
    return error


def run_flow(config: RunConfig, *, tracebacks: bool = False) -> dict[str, Any]:
    """Run :func:`mmpipe_fit` from a terminal (``mmpipe run``): Prefect's console lines without
    tracebacks unless asked, and a stop by signal reported as RunInterrupted."""
    if not tracebacks:
        hide_tracebacks()
    try:
        return mmpipe_fit(config)
    except TerminationSignal as exc:
        raise as_interrupt(exc) from None
