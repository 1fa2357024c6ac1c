"""The engine behind ``mmpipe.fit``: one pass of statistics, every model and metric, written out.

Data flows one way: dataset → fold plan → statistics pass → per split and pair: models from the
training statistics, metrics from the validation statistics → chosen α → final models on the
plan's final rows (``FoldPlan.final_groups``: all rows, or a given split's train rows) →
results store.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mmpipe import tasks
from mmpipe.errors import DataValueError
from mmpipe.io.dataset import Dataset
from mmpipe.io.results import new_run_id
from mmpipe.models.pair import PairModels, PairScores, choose_cca, fit_pair, score_pair
from mmpipe.models.pca import StandardPCA
from mmpipe.models.transfer import SingularCovariance
from mmpipe.prepare import Prepared, components_for, wide_modalities
from mmpipe.result import FitResult, ModalityResult, PairResult
from mmpipe.stats.blocked import PassStatistics, compute_statistics
from mmpipe.stats.scoring import run_scoring_pass
from mmpipe.stats.sketch import sketch_wide
from mmpipe.tasks import Task, TaskContext


@dataclass(frozen=True, eq=False)
class FittedModels:
    """Models of every split and the final ones, before evaluation."""

    modalities: dict[str, ModalityResult]
    split_models: dict[tuple[int, tuple[str, str]], PairModels]
    final_models: dict[tuple[str, str], PairModels]


def sketch_pass(prepared: Prepared) -> Prepared:
    """Reduce the wide modalities to their sketch coordinates (1 + sketch_power passes over
    them); every later step sees q columns for each. Fitted on the final models' rows."""
    plan = prepared.plan
    reductions = sketch_wide(
        prepared.dataset,
        wide_modalities(prepared),
        power_iterations=prepared.config.sketch_power,
        seed=prepared.config.seed,
        scale=prepared.config.scale,
        rows=None
        if plan.final_groups is None
        else np.isin(plan.assignment, plan.final_groups),
    )
    return replace(prepared, dataset=prepared.dataset.reduced(reductions))


def statistics_pass(prepared: Prepared) -> PassStatistics:
    """The one pass over the data; stops on NaN/inf with counts per modality."""
    ds = prepared.dataset
    stats = compute_statistics(
        ds,
        prepared.plan,
        prepared.names,
        prepared.labels,
        precision=prepared.config.precision,
        scale=prepared.config.scale,
    )
    bad = {n: c for n, c in stats.nonfinite.items() if c}
    if bad:
        listing = ", ".join(f"modalities/{n}: {c}" for n, c in bad.items())
        raise DataValueError(
            f"NaN or infinite values in {ds.url!r} ({listing}): fix or impute them, or mark "
            "those rows missing with masks/<name> = False."
        )
    for name in prepared.names:
        # A constant modality would be predicted perfectly (R² = 1) from anything.
        moments = stats.moments([name], prepared.plan.final_groups)
        if moments.n and not np.any(moments.variance(ddof=0) > 0.0):
            raise DataValueError(
                f"modalities/{name}: every column is constant over the {moments.n} rows where "
                "it is present: nothing to learn from it; drop it from the pairs (--pair) or "
                "fix the data."
            )
    return stats


def fit_models(prepared: Prepared, stats: PassStatistics) -> FittedModels:
    """Every model of every split and the final ones, from the statistics.

    With ``solver="tsqr"`` the ridge maps are re-solved by TSQR in one more pass.
    """
    ds, config, plan = prepared.dataset, prepared.config, prepared.plan
    widths = ds.widths
    comps = {n: components_for(config, n, widths[n]) for n in prepared.names}

    modalities: dict[str, ModalityResult] = {}
    final = plan.final_groups  # the rows the final models are fitted on (None: all)
    for name in prepared.names:
        full = stats.moments([name], final)
        pca = StandardPCA(comps[name], scale=stats.layout.scaled(name)).fit_moments(full)
        modalities[name] = ModalityResult(
            name=name,
            rows=full.n,
            pca=pca,
            zero_variance_columns=pca.zero_variance_columns_,
        )

    # A PCA depends on which rows it sees: with no masks among a pair, every pair shares the
    # modality's PCA of that split, so fit it once.
    pca_cache: dict[tuple[int | None, str, frozenset[str]], StandardPCA] = {}

    def pca_for(split: int | None, name: str, pair: tuple[str, str], raw: Any) -> StandardPCA:
        key = (split, name, frozenset(n for n in pair if n in ds.masks))
        if key not in pca_cache:
            cols = (
                np.arange(widths[pair[0]])
                if name == pair[0]
                else np.arange(widths[pair[0]], raw.dim)
            )
            pca = StandardPCA(comps[name], scale=stats.layout.scaled(name))
            pca_cache[key] = pca.fit_moments(raw.take(cols))
        return pca_cache[key]

    def models_for(split: int | None, pair: tuple[str, str]) -> PairModels:
        groups = final if split is None else plan.splits[split][0]
        raw = stats.moments(list(pair), groups)
        if raw.n < 2:
            raise DataValueError(
                f"Pair {pair[0]}:{pair[1]} has {raw.n} training rows with both modalities "
                "present; check masks/ or use fewer folds."
            )
        try:
            return fit_pair(
                raw,
                widths[pair[0]],
                source_components=comps[pair[0]],
                target_components=comps[pair[1]],
                alphas=config.alphas,
                cca_reg=config.cca_reg,
                source_pca=pca_for(split, pair[0], pair, raw),
                target_pca=pca_for(split, pair[1], pair, raw),
            )
        except SingularCovariance as exc:
            rows = "every row" if split is None else f"the training rows of split {split}"
            raise singular_cca(pair, f"{exc.detail} on {rows}") from None

    split_models = {(s, p): models_for(s, p) for s in range(plan.n_splits) for p in prepared.pairs}
    final_models = {p: models_for(None, p) for p in prepared.pairs}
    if config.solver == "tsqr":
        from mmpipe.models.tsqr import ridge_path_from_r
        from mmpipe.stats.tsqr import training_r_factors

        jobs: list[tuple[str, str, int | None, PairModels]] = [
            (p[0], p[1], s, m) for (s, p), m in split_models.items()
        ]
        jobs += [(p[0], p[1], None, m) for p, m in final_models.items()]
        r_factors = training_r_factors(ds, plan, jobs)
        coefs = [
            ridge_path_from_r(r, m.k_source, config.alphas)
            for (_, _, _, m), r in zip(jobs, r_factors, strict=True)
        ]
        for (_, _, _, m), coef in zip(jobs, coefs, strict=True):
            m.ridge.coef_ = coef
            # Training scores are centered by construction, so the intercept is zero.
            m.ridge.intercept_ = np.zeros((coef.shape[0], coef.shape[2]))
    return FittedModels(modalities, split_models, final_models)


def evaluate(prepared: Prepared, stats: PassStatistics, models: FittedModels) -> list[PairResult]:
    """Validation metrics of every split, pair and α from the validation statistics."""
    plan = prepared.plan
    pairs: list[PairResult] = []
    for pair in prepared.pairs:
        scores: list[PairScores] = []
        for s in range(plan.n_splits):
            val = stats.moments(list(pair), plan.splits[s][1])
            scores.append(score_pair(models.split_models[(s, pair)], val))
        r2 = np.stack([sc.r2 for sc in scores])
        # The rows the final model saw; dropped: the final rows lacking one of the pair.
        rows = stats.rows_present(list(pair), plan.final_groups)
        final_rows = (
            stats.n_rows
            if plan.final_groups is None
            else int(np.isin(plan.assignment, plan.final_groups).sum())
        )
        try:
            cca, cca_index, final = choose_cca(scores, models.final_models[pair])
        except SingularCovariance as exc:
            raise singular_cca(pair, exc.detail) from None
        models.final_models[pair] = final  # with the chosen cca_reg's CCA
        regs = prepared.config.cca_reg
        pairs.append(
            PairResult(
                source=pair[0],
                target=pair[1],
                rows=rows,
                rows_dropped=final_rows - rows,
                alphas=np.asarray(prepared.config.alphas),
                r2=r2,
                mse=np.stack([sc.mse for sc in scores]),
                procrustes_r2=np.array([sc.procrustes_r2 for sc in scores]),
                procrustes_mse=np.array([sc.procrustes_mse for sc in scores]),
                cca_correlations=cca,
                alpha_index=int(np.argmax(r2.mean(axis=0))),
                models=final,
                r2_weighted=np.stack([np.asarray(sc.r2_weighted) for sc in scores]),
                cca_regs=np.atleast_1d(np.asarray(regs, dtype=np.float64)),
                cca_reg_index=cca_index,
            )
        )
    return pairs


def singular_cca(pair: tuple[str, str], detail: str) -> DataValueError:
    """The error of a pair whose CCA has no ridge term on a singular covariance."""
    return DataValueError(
        f"Pair {pair[0]}:{pair[1]}: textbook CCA (cca_reg 0) is undefined: {detail}. "
        "Set cca_reg to 1e-3 (or a path such as 0,1e-3,1e-2 to choose by validation), or "
        "keep fewer components."
    )


def task_context(
    prepared: Prepared, stats: PassStatistics, models: FittedModels, pairs: list[PairResult]
) -> TaskContext:
    """What the tasks of this fit see and share (see :mod:`mmpipe.tasks`)."""
    widths = prepared.dataset.widths
    comps = {n: components_for(prepared.config, n, widths[n]) for n in prepared.names}
    return TaskContext(prepared, stats, models, pairs, comps)


def scoring_pass(
    prepared: Prepared, stats: PassStatistics, models: FittedModels, pairs: list[PairResult]
) -> dict[str, list[Any]]:
    """Every active task's scorers and embedders (after the work a task does first, such as
    logistic regression's passes), then ONE scoring pass over the data for all of them;
    each task's results under its name."""
    running = tasks.scoring_tasks(prepared.config)
    if not running:
        return {}
    context = task_context(prepared, stats, models, pairs)
    requests = {task.name: task.score(context) for task in running}
    scored = run_scoring_pass(
        prepared.dataset,
        prepared.plan,
        context.label_codes,
        context.n_classes,
        [s for r in requests.values() for s in r.scorers],
        [e for r in requests.values() for e in r.embedders],
    )
    return {name: r.collect(scored) for name, r in requests.items()}


def task_pass(
    task: Task,
    prepared: Prepared,
    stats: PassStatistics,
    models: FittedModels,
    pairs: list[PairResult],
) -> list[Any]:
    """The results of a task with a pass of its own (random features), when it is asked."""
    if not task.active(prepared.config):
        return []
    return task.run(task_context(prepared, stats, models, pairs))


def fingerprint(ds: Dataset, stats: PassStatistics) -> str:
    """sha256 of the data a fit read: the layout of every stored modality (name, shape,
    dtype) and, for each modality the fit read (a sketched one: by its layout only), its
    present rows and column means rounded to 6 decimals. Fits that read the same modalities
    of the same data share it, whatever their other options; it is not a checksum of every
    value."""
    h = hashlib.sha256()
    for name, arr in sorted(ds.arrays.modalities.items()):  # as stored, not as reduced
        h.update(f"{name}:{arr.shape}:{arr.dtype}".encode())
    for name in sorted(stats.layout.names):
        if name in ds.arrays.reductions:
            continue  # its statistics are of the sketch coordinates, which depend on options
        moments = stats.moments([name])
        h.update(f"{name}:{moments.n}:".encode())
        h.update(np.array2string(moments.mean, precision=6, floatmode="maxprec").encode())
    return h.hexdigest()[:32]


def assemble(
    prepared: Prepared,
    stats: PassStatistics,
    models: FittedModels,
    pairs: list[PairResult],
    timings: dict[str, float],
    results: dict[str, list[Any]] | None = None,
) -> FitResult:
    """The FitResult with a fresh run id (not yet written); ``results``: each task's results
    under its name."""
    done = results or {}
    return FitResult(
        config=prepared.config,
        dataset=prepared.dataset.url,
        n_rows=prepared.dataset.n_rows,
        plan=prepared.plan,
        modalities=models.modalities,
        pairs=pairs,
        fingerprint=fingerprint(prepared.dataset, stats),
        timings=timings,
        run_id=new_run_id(),
        started=prepared.started,
        classes=stats.classes,
        tasks={task.name: done.get(task.name, []) for task in tasks.TASKS},
        reductions=dict(prepared.dataset.arrays.reductions),
    )
