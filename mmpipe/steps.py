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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from mmpipe import engine, report
from mmpipe.cluster import using
from mmpipe.defaults import DEFAULT_ALPHAS, DEFAULT_COMPONENTS
from mmpipe.engine import CrossModal, FittedModels
from mmpipe.io.dataset import Dataset
from mmpipe.io.results import run_writer
from mmpipe.io.storage import StorageOptions
from mmpipe.nonlinear import RandomFeatureResult
from mmpipe.options import Components, FitConfig, feature_set, pair_of
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
    tasks: CrossModal = field(default_factory=CrossModal)
    nonlinear: list[RandomFeatureResult] = field(default_factory=list)

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
            self.prepared, self.statistics(), self.fitted(), self.pairs, timings, self.tasks,
            self.nonlinear,
        )  # fmt: skip


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


def _scoring_says(before: FitState, after: FitState) -> list[str]:
    done: dict[str, list[Any]] = {
        "classify": after.tasks.classify,
        "transfer": after.tasks.transfer,
        "logistic": after.tasks.logistic,
        "retrieval": after.tasks.retrieval,
    }
    return [report.line(kind, one.summary()) for kind, results in done.items() for one in results]


def _random_features_says(before: FitState, after: FitState) -> list[str]:
    return [report.line("random_features", rf.summary()) for rf in after.nonlinear]


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
    tasks = engine.cross_modal(state.prepared, state.statistics(), state.fitted(), state.pairs)
    return replace(state, tasks=tasks)


def _random_features(state: FitState) -> FitState:
    maps = engine.random_feature_maps(state.prepared, state.fitted())
    return replace(state, nonlinear=maps)


STEPS: tuple[Step, ...] = (
    Step("sketch_pass", _sketch, lambda s: bool(wide_modalities(s.prepared)), _sketch_says),
    Step("statistics_pass", _statistics, _always, _statistics_says),
    Step("models", _models, _always, _silent),
    Step("evaluate", _evaluate, _always, _evaluate_says),
    Step("scoring_pass", _scoring, lambda s: s.prepared.config.scoring, _scoring_says),
    Step(
        "random_features_pass",
        _random_features,
        lambda s: s.prepared.config.random_features > 0,
        _random_features_says,
    ),
)
"""Every step after ``prepare``, in order."""

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
    *,
    pairs: Iterable[str | Sequence[str]] | None = None,
    components: Components = DEFAULT_COMPONENTS,
    folds: int = 5,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    holdout: float | None = None,
    seed: int = 0,
    solver: Literal["normal", "tsqr"] = "normal",
    cca_reg: float = 1e-3,
    chunk_rows: int | None = None,
    precision: Literal["float64", "float32"] = "float64",
    sketch_above: int | None = 4096,
    sketch_columns: int | None = None,
    sketch_power: int = 1,
    out: str | os.PathLike[str] | None = None,
    client: object | None = None,
    storage_options: StorageOptions | None = None,
    results_storage_options: StorageOptions | None = None,
    plan: FoldPlan | None = None,
    classify: Iterable[str | Sequence[str]] | None = None,
    transfer: bool = False,
    retrieval: bool = False,
    retrieval_rows: int | None = 5000,
    logistic: bool = False,
    logistic_c: float = 1.0,
    random_features: int = 0,
    rff_gamma: float | None = None,
) -> FitResult:
    """Fit standardization, PCA and every transfer map with cross-validation, in one pass.

    Returns a :class:`FitResult`; with ``out`` the run is also written to that results store
    (see :mod:`mmpipe.io.results`). ``client`` is a ``distributed.Client``; without one the
    current Dask scheduler is used. ``plan`` replaces the K-fold/hold-out plan with splits of
    your own (:class:`~mmpipe.stats.folds.FoldPlan`).

    ``classify`` lists feature sets ("image", "image+text") to classify the labels from;
    ``transfer=True`` applies each pair target's classifier to the source's rows mapped through
    W; ``retrieval=True`` ranks, for every pair, the target's validation rows for each source
    row mapped through W (recall@1/5/10, median rank, both directions) on up to
    ``retrieval_rows`` rows per split. All of these are scored in one more pass over the data.
    ``logistic=True`` also fits multinomial logistic regression (``logistic_c`` = scikit-learn's
    C) per classify set; it reads those modalities once more to hold their scores on the
    workers, where each L-BFGS iteration is one pass over them. ``random_features=D`` adds a
    non-linear map per pair: ridge on D random Fourier features of the source scores (one more
    pass over the pairs' modalities).

    ``precision="float32"`` computes each row block's Gram in float32 (faster; about 1e-6
    relative). Modalities wider than ``sketch_above`` columns are first reduced to
    ``sketch_columns`` coordinates by a randomized sketch with ``sketch_power`` power
    iterations, one pass each (:mod:`mmpipe.models.sketch`); ``sketch_above=None`` never does.
    """
    config = FitConfig(
        pairs=None
        if pairs is None
        else tuple(
            pair_of(p)  # type: ignore[misc]
            for p in pairs
        ),
        components=dict(components) if isinstance(components, Mapping) else components,
        folds=folds,
        holdout=holdout,
        alphas=tuple(float(a) for a in alphas),
        seed=seed,
        solver=solver,
        cca_reg=cca_reg,
        chunk_rows=chunk_rows,
        precision=precision,
        sketch_above=sketch_above,
        sketch_columns=sketch_columns,
        sketch_power=sketch_power,
        classify=tuple(feature_set(c) for c in classify or ()),
        transfer=transfer,
        retrieval=retrieval,
        retrieval_rows=retrieval_rows,
        logistic=logistic,
        logistic_c=logistic_c,
        random_features=random_features,
        rff_gamma=rff_gamma,
    )
    return fit_config(
        dataset,
        config,
        out=out,
        client=client,
        storage_options=storage_options,
        results_storage_options=results_storage_options,
        plan=plan,
    )


def fit_config(
    dataset: str | os.PathLike[str] | Dataset,
    config: FitConfig,
    *,
    out: str | os.PathLike[str] | None = None,
    client: object | None = None,
    storage_options: StorageOptions | None = None,
    results_storage_options: StorageOptions | None = None,
    plan: FoldPlan | None = None,
) -> FitResult:
    """:func:`fit` with a ready :class:`FitConfig` (and optionally a fold plan of your own)."""
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
