"""A fit as a list of named steps, run alike by :func:`fit` and by the Prefect flow.

    prepare → [sketch_pass] → statistics_pass → models → evaluate → [scoring_pass]
            → [random_features_pass] → assemble (→ the run's last write)

:data:`STEPS` is the one place that says which steps there are, in which order, and when a
fit needs them; :func:`run_steps` iterates it and times every step. ``mmpipe.fit`` runs each
step as a plain call; ``flows/pipeline.py`` runs each as a Prefect task of the same name. The
work itself lives in :mod:`mmpipe.engine`; a step only says what it takes from and adds to
the :class:`FitState`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from mmpipe import engine, report, tasks
from mmpipe.cluster import using
from mmpipe.engine import FittedModels
from mmpipe.io.dataset import Dataset
from mmpipe.io.results import run_writer
from mmpipe.io.storage import StorageOptions
from mmpipe.options import FitConfig
from mmpipe.prepare import Prepared, prepare, wide_modalities
from mmpipe.result import FitResult, PairResult
from mmpipe.signals import stop_signals_raise
from mmpipe.stats.blocked import PassStatistics
from mmpipe.stats.folds import FoldPlan


@dataclass(frozen=True, eq=False)
class FitState:
    """What a fit knows so far: each step returns it with its own part filled in."""

    prepared: Prepared
    """The validated dataset, config and fold plan (a sketch step swaps in the reduced data)."""
    stats: PassStatistics | None = None
    models: FittedModels | None = None
    pairs: list[PairResult] = field(default_factory=list)
    tasks: dict[str, list[Any]] = field(default_factory=dict)
    """Each cross-modal task's results so far, under its name (see :mod:`mmpipe.tasks`)."""

    def statistics(self) -> PassStatistics:
        if self.stats is None:
            raise RuntimeError("this step needs the statistics pass to have run first")
        return self.stats

    def fitted(self) -> FittedModels:
        if self.models is None:
            raise RuntimeError("this step needs the models to have been fitted first")
        return self.models

    def result(self, timings: dict[str, float]) -> FitResult:
        """The FitResult of a fit whose steps have all run (not yet written)."""
        return engine.assemble(
            self.prepared, self.statistics(), self.fitted(), self.pairs, timings, self.tasks
        )


@dataclass(frozen=True)
class Step:
    """One named step of a fit."""

    name: str
    """Its key in the run's timings, and (with - for _) the name of its Prefect task."""
    run: Callable[[FitState], FitState]
    """``run(state)``: the step's work, on the run's client (:func:`mmpipe.cluster.using`)."""
    needed: Callable[[FitState], bool]
    """Whether this fit needs the step at all."""
    says: Callable[[FitState, FitState], list[str]]
    """``says(before, after)``: the log lines of the step once done (see mmpipe.report)."""


def _always(state: FitState) -> bool:
    return True


def _silent(before: FitState, after: FitState) -> list[str]:
    return []


def _sketch_says(before: FitState, after: FitState) -> list[str]:
    widths = before.prepared.dataset.widths
    wide = wide_modalities(before.prepared)
    reduced = ", ".join(f"{n} {widths[n]} -> {q} columns" for n, q in wide.items())
    return [f"Wide modalities reduced to sketch coordinates: {reduced}"]


def _statistics_says(before: FitState, after: FitState) -> list[str]:
    stats = after.statistics()
    blocks = len(after.prepared.dataset.row_chunks)
    return [
        f"One pass over {stats.n_rows} rows in {blocks} blocks: {len(stats.groups)} "
        "(fold, mask pattern) groups"
    ]


def _evaluate_says(before: FitState, after: FitState) -> list[str]:
    return [report.line("pairs", p.summary()) for p in after.pairs]


def _tasks_say(before: FitState, after: FitState) -> list[str]:
    """A line per result of the tasks the step ran, in the registry's order."""
    return [
        report.line(name, one.summary())
        for name, results in after.tasks.items()
        if name not in before.tasks
        for one in results
    ]


# The engine's functions are looked up on the module at call time, so that a test (or a user)
# that replaces one, e.g. to pause a pass, replaces it for every runner.
def _sketch(state: FitState) -> FitState:
    return replace(state, prepared=engine.sketch_pass(state.prepared))


def _statistics(state: FitState) -> FitState:
    return replace(state, stats=engine.statistics_pass(state.prepared))


def _models(state: FitState) -> FitState:
    models = engine.fit_models(state.prepared, state.statistics())
    return replace(state, models=models)


def _evaluate(state: FitState) -> FitState:
    pairs = engine.evaluate(state.prepared, state.statistics(), state.fitted())
    return replace(state, pairs=pairs)


def _scoring(state: FitState) -> FitState:
    done = engine.scoring_pass(state.prepared, state.statistics(), state.fitted(), state.pairs)
    return replace(state, tasks=state.tasks | done)


def _scoring_needed(state: FitState) -> bool:
    """Some active task joins the scoring pass."""
    return bool(tasks.scoring_tasks(state.prepared.config))


def _own_pass(task: tasks.Task) -> Step:
    """The step ``<name>_pass`` of a task with a pass of its own (random features)."""

    def run(state: FitState) -> FitState:
        done = engine.task_pass(
            task, state.prepared, state.statistics(), state.fitted(), state.pairs
        )
        return replace(state, tasks=state.tasks | {task.name: done})

    return Step(f"{task.name}_pass", run, lambda s: task.active(s.prepared.config), _tasks_say)


STEPS: tuple[Step, ...] = (
    Step("sketch_pass", _sketch, lambda s: bool(wide_modalities(s.prepared)), _sketch_says),
    Step("statistics_pass", _statistics, _always, _statistics_says),
    Step("models", _models, _always, _silent),
    Step("evaluate", _evaluate, _always, _evaluate_says),
    Step("scoring_pass", _scoring, _scoring_needed, _tasks_say),
    *(_own_pass(task) for task in tasks.TASKS if task.own_pass),
)
"""Every step after ``prepare``, in order: the scoring pass of every task that joins it, then
a pass per task with one of its own (mmpipe.tasks.TASKS)."""

StepRunner = Callable[[Step, FitState, Any], FitState]
log = logging.getLogger("mmpipe")


def call_step(step: Step, state: FitState, client: Any) -> FitState:
    """Run a step as a plain call on ``client`` (what :func:`fit` does); its lines go to the
    ``mmpipe`` logger (silent unless the application configures logging)."""
    with using(client):
        after = step.run(state)
    for text in step.says(state, after):
        log.info(text)
    return after


def run_steps(
    prepared: Prepared,
    client: Any,
    timings: dict[str, float],
    *,
    runner: StepRunner = call_step,
) -> FitState:
    """Every step this fit needs, in order, each through ``runner``; adds each step's wall
    time in seconds to ``timings`` under its name."""
    state = FitState(prepared)
    for step in STEPS:
        if not step.needed(state):
            continue
        start = time.perf_counter()
        state = runner(step, state, client)
        timings[step.name] = round(time.perf_counter() - start, 4)
    return state


def fit(
    dataset: str | os.PathLike[str] | Dataset,
    config: FitConfig | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    client: object | None = None,
    storage_options: StorageOptions | None = None,
    results_storage_options: StorageOptions | None = None,
    plan: FoldPlan | None = None,
    **options: Any,
) -> FitResult:
    """Fit standardization, PCA and every transfer map with cross-validation, in one pass.

    The fit's options are :class:`~mmpipe.options.FitConfig`'s fields, given as ``config``,
    as keyword arguments, or both (keywords replace the config's values): ``pairs``,
    ``components``, ``folds``, ``holdout``, ``alphas``, ``classify``, ``transfer``,
    ``retrieval``, ``logistic``, ``random_features``... (``mmpipe fit --help`` lists them all
    with their defaults; the values are the same as the run config's). A bad option is a
    :class:`~mmpipe.errors.ConfigError` naming it.

    Returns a :class:`FitResult`; with ``out`` the run is also written to that results store
    (see :mod:`mmpipe.io.results`). ``client`` is a ``distributed.Client``, made the run's
    client for every pass; without one, the current client (``client.as_current()``), else
    Dask's default one, else threads in this process. ``plan`` replaces the K-fold/hold-out
    plan with splits of your own (:class:`~mmpipe.stats.folds.FoldPlan`).

    The cross-modal tasks (classify, transfer, retrieval) are scored in one more pass over
    the data; logistic regression reads its modalities once more to hold their scores on the
    workers, where each L-BFGS iteration is one pass over them; random features add one more
    pass over the pairs' modalities. Modalities wider than ``sketch_above`` columns are first
    reduced by a randomized sketch, one pass per power iteration (:mod:`mmpipe.models.sketch`).
    """
    config = FitConfig.with_overrides(config, options) if options or config is None else config
    start = time.perf_counter()
    prepared = prepare(
        dataset,
        config,
        storage_options=storage_options,
        plan=plan,
        out=out,
        results_storage_options=results_storage_options,
    )
    timings = {"prepare": round(time.perf_counter() - start, 4)}
    # From here on the run exists in the results store (status "running", proven writable);
    # an error or SIGTERM/SIGINT marks it failed, only the last write marks it complete.
    with (
        stop_signals_raise(),
        run_writer(
            out,
            dataset=prepared.dataset.url,
            config=config.to_json(),
            storage_options=results_storage_options,
        ) as writer,
    ):
        result = run_steps(prepared, client, timings).result(timings)
        if writer is None:
            return result
        start = time.perf_counter()
        written = writer.complete(result)
        timings["write"] = round(time.perf_counter() - start, 4)
        return written
