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
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import TerminationSignal
from prefect.tasks import exponential_backoff

from flows.console import hide_tracebacks
from mmpipe import report
from mmpipe.cluster import choose, dask_client, using
from mmpipe.config import ApplyConfig, RunConfig
from mmpipe.errors import ClusterError, MmpipeError, RunInterrupted
from mmpipe.htmlreport import report_location, report_run
from mmpipe.io.results import RunWriter, new_run_id
from mmpipe.prepare import Prepared, prepare
from mmpipe.result import FitResult
from mmpipe.steps import STEPS, FitState, Step, run_steps


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


def _step_task(step: Step) -> Any:
    """The Prefect task of one step of mmpipe.steps.STEPS: the step's work, then its lines."""

    def run(state: FitState, client: Any) -> FitState:
        with using(client):  # the task may run in a thread of its own: enter it here
            after = step.run(state)
        for text in step.says(state, after):
            get_run_logger().info(text)
        return after

    return task(name=step.name.replace("_", "-"), tags=["mmpipe"], **COMPUTE)(run)


STEP_TASKS = {step.name: _step_task(step) for step in STEPS}
"""One task per step, made from the library's list: the flow has no list of its own."""


def run_as_task(step: Step, state: FitState, client: Any) -> FitState:
    return cast(FitState, STEP_TASKS[step.name](state, client))


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


@task(name="write-report", tags=["mmpipe", "storage"], cache_policy=NO_CACHE, persist_result=False)
def write_report(results: str, run_id: str, storage_options: dict[str, Any]) -> str | None:
    """The run's HTML report beside a local results store (``<results>.reports/<run_id>/``);
    none beside a remote one. A report that fails is logged: the run stays complete."""
    logger = get_run_logger()
    where = report_location(results, run_id)
    if where is None:
        logger.info("No HTML report beside remote results %s: `mmpipe report` writes one", results)
        return None
    if (where / "index.html").exists():  # a complete run never changes (apply links it again)
        return str(where / "index.html")
    try:
        path = report_run(results, where, run_id=run_id, storage_options=storage_options)
    except Exception as exc:
        logger.warning("The HTML report of run %s was not written: %s", run_id, exc)
        return None
    logger.info("Report written to %s", path)
    return str(path)


def publish_artifact(result: FitResult, html: str | None = None) -> None:
    """The fit's tables as Prefect artifacts: pairs and tasks as tables, everything as Markdown
    with where the results went (and the HTML report, when written)."""
    summary = result.summary()
    where = report.where(summary)
    link = f"- report: [{html}]({Path(html).resolve().as_uri()})\n" if html else ""
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
        markdown=report.markdown(
            report.tables(summary), lead=report.markdown_heading(summary) + link
        ),
        description="Where the results of this run were written, and its tables",
    )


def quiet_dask_logs() -> None:
    # Prefect's handlers would relay every scheduler/nanny INFO line of a LocalCluster; dask's
    # logging config gives the child loggers (distributed.scheduler, ...) levels of their own,
    # set when distributed is first imported: import it first.
    import distributed  # noqa: F401

    names = [n for n in logging.root.manager.loggerDict if n.startswith("distributed")]
    for name in ["distributed", *names]:
        logging.getLogger(name).setLevel(logging.WARNING)


_Config = TypeVar("_Config", RunConfig, ApplyConfig)


def with_overrides(config: _Config, overrides: Mapping[str, Any] | None) -> _Config:
    """A deployment's ``config`` with a run's ``overrides`` on top, validated again.

    Prefect replaces a deployment's parameters one by one, so a run given ``config`` loses
    the deployment's whole config; a run gives ``overrides`` instead: its keys replace those of
    the config, a mapping (``cluster``) merges key by key, and a dotted key
    (``cluster.workers``) reaches inside, as ``mmpipe run --set`` does. Lists replace."""
    if not overrides:
        return config
    data = config.model_dump(mode="json", exclude_unset=True)

    def merge(target: dict[str, Any], key: str, value: Any) -> None:
        *parents, last = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        if isinstance(value, Mapping) and isinstance(target.get(last), dict):
            for inner, item in value.items():
                merge(target[last], inner, item)
        else:
            target[last] = value

    for key, value in overrides.items():
        merge(data, key, value)
    return type(config).parse(data, "run config with the run's overrides")


CLUSTER_ATTEMPTS = 2
"""Times the flow runs its passes, each on a new client, when the cluster fails under them."""


@flow(name="mmpipe-fit", log_prints=False, validate_parameters=True)
def mmpipe_fit(config: RunConfig, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit scalers, PCA and transfer maps for every pair with cross-validation.

    ``overrides`` (e.g. ``{"folds": 3}``) are merged over ``config``, the deployment's."""
    config = with_overrides(config, overrides)
    logger = get_run_logger()
    quiet_dask_logs()
    start = time.perf_counter()
    prepared = open_and_validate(config)
    opened = {"prepare": round(time.perf_counter() - start, 4)}
    writer = begin_run(prepared, config, new_run_id()) if config.results is not None else None
    try:
        spec = choose(config.cluster, prepared.dataset.nbytes)
        logger.info("Computing on %s", spec.describe())
        for attempt in range(1, CLUSTER_ATTEMPTS + 1):
            try:
                timings = dict(opened)
                with dask_client(spec) as client:
                    state = run_steps(prepared, client, timings, runner=run_as_task)
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
        result = state.result(timings)
        if writer is not None:
            result = write_results(result, writer)
    except BaseException as exc:
        if writer is not None:
            writer.fail(as_interrupt(exc))
        raise
    finally:
        if writer is not None:
            writer.close()
    html = None
    if config.results is not None and result.run_id is not None:
        html = write_report(config.results, result.run_id, config.storage_options)
    publish_artifact(result, html)
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


def run_flow(config: RunConfig | ApplyConfig, *, tracebacks: bool = False) -> dict[str, Any]:
    """Run the flow of ``config`` (:func:`mmpipe_fit`, or ``flows.apply.mmpipe_apply`` for
    ``flow: apply``) from a terminal (``mmpipe run``): Prefect's console lines without
    tracebacks unless asked, and a stop by signal reported as RunInterrupted."""
    if not tracebacks:
        hide_tracebacks()
    try:
        if isinstance(config, ApplyConfig):
            from flows.apply import mmpipe_apply  # it builds on this module's task options

            return mmpipe_apply(config)
        return mmpipe_fit(config)
    except TerminationSignal as exc:
        raise as_interrupt(exc) from None
