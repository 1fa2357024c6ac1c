"""The engine behind ``mmpipe.fit``: one pass of statistics, every model and metric, written out.

Data flows one way: dataset → fold plan → statistics pass → per split and pair: models from the
training statistics, metrics from the validation statistics → chosen α → final models on all
rows → results store.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mmpipe.crossmodal import (
    Classifier,
    ClassifyResult,
    LogisticResult,
    RetrievalResult,
    TransferResult,
    classify_scorer,
    fit_classifier,
    logistic_scorer,
    retrieval_embedder,
    stacked_affine,
    transfer_scorer,
)
from mmpipe.errors import ConfigError, DataValueError
from mmpipe.io.dataset import Dataset
from mmpipe.io.results import new_run_id
from mmpipe.models.logistic import LogisticFit, fit_stacked_logistic
from mmpipe.models.pair import PairModels, PairScores, fit_pair, score_pair
from mmpipe.models.pca import StandardPCA
from mmpipe.nonlinear import RandomFeatureResult, fit_random_features
from mmpipe.prepare import Prepared, components_for, parse_feature_sets, wide_modalities
from mmpipe.result import FitResult, ModalityResult, PairResult
from mmpipe.stats.blocked import PassStatistics, compute_statistics
from mmpipe.stats.held import hold_scores
from mmpipe.stats.scoring import Embedder, LinearScorer, run_scoring_pass
from mmpipe.stats.sketch import reduce_wide


@dataclass(frozen=True, eq=False)
class FittedModels:
    """Models of every split and the final ones, before evaluation."""

    modalities: dict[str, ModalityResult]
    split_models: dict[tuple[int, tuple[str, str]], PairModels]
    final_models: dict[tuple[str, str], PairModels]


def sketch_pass(prepared: Prepared) -> Prepared:
    """Reduce the wide modalities to their sketch coordinates (1 + sketch_power passes over
    them); every later step sees q columns for each."""
    reductions = reduce_wide(
        prepared.dataset,
        wide_modalities(prepared),
        power_iterations=prepared.config.sketch_power,
        seed=prepared.config.seed,
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
        moments = stats.moments([name])
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
    for name in prepared.names:
        full = stats.moments([name])
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
        groups = None if split is None else plan.splits[split][0]
        raw = stats.moments(list(pair), groups)
        if raw.n < 2:
            raise DataValueError(
                f"Pair {pair[0]}:{pair[1]} has {raw.n} training rows with both modalities "
                "present; check masks/ or use fewer folds."
            )
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

    split_models = {(s, p): models_for(s, p) for s in range(plan.n_splits) for p in prepared.pairs}
    final_models = {p: models_for(None, p) for p in prepared.pairs}
    if config.solver == "tsqr":
        from mmpipe.models.tsqr import tsqr_ridge

        jobs: list[tuple[str, str, int | None, PairModels]] = [
            (p[0], p[1], s, m) for (s, p), m in split_models.items()
        ]
        jobs += [(p[0], p[1], None, m) for p, m in final_models.items()]
        coefs = tsqr_ridge(ds, plan, jobs, config.alphas)
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
        rows = stats.rows_present(list(pair))
        width = max(sc.cca_correlations.size for sc in scores)
        cca = np.full((len(scores), width), np.nan)
        for i, sc in enumerate(scores):
            cca[i, : sc.cca_correlations.size] = sc.cca_correlations
        pairs.append(
            PairResult(
                source=pair[0],
                target=pair[1],
                rows=rows,
                rows_dropped=stats.n_rows - rows,
                alphas=np.asarray(prepared.config.alphas),
                r2=r2,
                mse=np.stack([sc.mse for sc in scores]),
                procrustes_r2=np.array([sc.procrustes_r2 for sc in scores]),
                procrustes_mse=np.array([sc.procrustes_mse for sc in scores]),
                cca_correlations=cca,
                alpha_index=int(np.argmax(r2.mean(axis=0))),
                models=models.final_models[pair],
            )
        )
    return pairs


@dataclass(frozen=True, eq=False)
class CrossModal:
    """Results of the cross-modal tasks (empty when none was asked)."""

    classify: list[ClassifyResult] = field(default_factory=list)
    transfer: list[TransferResult] = field(default_factory=list)
    retrieval: list[RetrievalResult] = field(default_factory=list)
    logistic: list[LogisticResult] = field(default_factory=list)


def cross_modal(
    prepared: Prepared,
    stats: PassStatistics,
    models: FittedModels,
    pairs: list[PairResult],
) -> CrossModal:
    """Classifiers from the statistics (and logistic regression on held scores), then one
    scoring pass for every prediction of every task, split and α."""
    config, plan = prepared.config, prepared.plan
    if not config.scoring:
        return CrossModal()
    labelled = prepared.labels is not None and stats.classes is not None
    if (config.classify or config.transfer) and not labelled:
        raise ConfigError("classify and transfer need labels in the dataset.")
    widths = prepared.dataset.widths
    comps = {n: components_for(config, n, widths[n]) for n in prepared.names}
    train = [plan.splits[s][0] for s in range(plan.n_splits)]
    codes = None
    if labelled:
        codes = np.searchsorted(stats.classes, prepared.labels)  # type: ignore[arg-type]
    n_classes = 0 if stats.classes is None else stats.classes.size

    scorers: list[LinearScorer] = []
    # Per feature set: a classifier per split, then the final one (all rows).
    classifiers: dict[tuple[str, ...], list[Classifier]] = {}
    for features in parse_feature_sets(config.classify, prepared.dataset.names):
        fitted = [fit_classifier(stats, features, g, comps, config.alphas) for g in [*train, None]]
        classifiers[features] = fitted
        scorers.append(classify_scorer("classify:" + "+".join(features), fitted[:-1]))
    logistic_fits: dict[tuple[str, ...], LogisticFit] = {}
    if config.logistic and codes is not None:
        for features, fitted in classifiers.items():
            offsets, bases = stacked_affine(fitted)
            held = hold_scores(prepared.dataset, plan, features, codes, offsets, bases)
            logistic_fits[features] = fit_stacked_logistic(
                held.blocks, held.n_models, held.k, n_classes, held.n_train,
                C=config.logistic_c,
            )  # fmt: skip
            scorers.append(
                logistic_scorer(
                    "logistic:" + "+".join(features), features, offsets[:-1], bases[:-1],
                    logistic_fits[features],
                )
            )  # fmt: skip
    # The target's own accuracy depends only on the target and its per-split PCAs: pairs that
    # share both (no masks among them) share one classifier and one "own" scorer.
    own_scorer: dict[tuple[str, str], str] = {}
    if config.transfer:
        own_targets: dict[tuple[str, tuple[int, ...]], tuple[str, list[Classifier]]] = {}
        for pair in pairs:
            key = (pair.source, pair.target)
            split_pairs = [models.split_models[(s, key)] for s in range(plan.n_splits)]
            shared = (pair.target, tuple(id(m.target_pca) for m in split_pairs))
            if shared not in own_targets:
                fitted_targets = [
                    fit_classifier(
                        stats, [pair.target], groups, comps, config.alphas, pcas=[m.target_pca]
                    )
                    for groups, m in zip(train, split_pairs, strict=True)
                ]
                own_name = f"own:{pair.target}#{len(own_targets)}"
                own_targets[shared] = (own_name, fitted_targets)
                scorers.append(classify_scorer(own_name, fitted_targets))
            own_scorer[key], targets = own_targets[shared]
            name = f"{pair.source}--{pair.target}"
            scorers.append(
                transfer_scorer("transfer:" + name, split_pairs, targets, pair.alpha_index, *key)
            )
    embedders: list[Embedder] = []
    if config.retrieval:
        for pair in pairs:
            key = (pair.source, pair.target)
            eligible = [stats.rows_present(key, val) for _, val in plan.splits]
            wanted = config.retrieval_rows
            fractions = [1.0 if wanted is None else min(1.0, wanted / max(n, 1)) for n in eligible]
            embedders.append(
                retrieval_embedder(
                    f"{pair.source}--{pair.target}",
                    [models.split_models[(s, key)] for s in range(plan.n_splits)],
                    pair.alpha_index,
                    fractions,
                    *key,
                )
            )

    scored = run_scoring_pass(prepared.dataset, plan, codes, n_classes, scorers, embedders)
    confusion = scored.confusions
    alphas = np.asarray(config.alphas)

    def best(matrices: np.ndarray) -> int:
        correct = np.trace(matrices, axis1=2, axis2=3) / matrices.sum(axis=(2, 3))
        return int(np.argmax(correct.mean(axis=0)))

    classify = []
    for features, fitted in classifiers.items():
        matrices = confusion["classify:" + "+".join(features)]
        classify.append(
            ClassifyResult(
                features,
                alphas,
                stats.classes,  # type: ignore[arg-type]
                matrices,
                best(matrices),
                fitted[-1],
            )
        )
    transfer = []
    if config.transfer:
        for pair in pairs:
            name = f"{pair.source}--{pair.target}"
            own = confusion[own_scorer[(pair.source, pair.target)]]
            transfer.append(
                TransferResult(
                    source=pair.source,
                    target=pair.target,
                    alphas=alphas,
                    map_alpha=pair.alpha,
                    confusion=confusion["transfer:" + name],
                    target_confusion=own,
                    alpha_index=best(own),
                )
            )
    retrieval = [
        RetrievalResult(
            source=pair.source,
            target=pair.target,
            map_alpha=pair.alpha,
            ranks=[
                scored.ranks[(f"{pair.source}--{pair.target}", s)] for s in range(plan.n_splits)
            ],
        )
        for pair in pairs
        if config.retrieval
    ]
    logistic = [
        LogisticResult(
            features=features,
            C=config.logistic_c,
            classes=stats.classes,  # type: ignore[arg-type]
            confusion=confusion["logistic:" + "+".join(features)][:, 0],
            coef=fit.coef[-1][: classifiers[features][-1].model.coef_.shape[1]],
            intercept=fit.intercept[-1],
            iterations=fit.iterations,
            passes=fit.passes,
            converged=fit.converged,
        )
        for features, fit in logistic_fits.items()
    ]
    return CrossModal(classify, transfer, retrieval, logistic)


def random_feature_maps(prepared: Prepared, models: FittedModels) -> list[RandomFeatureResult]:
    """Ridge on random Fourier features of the source scores, every pair (when asked)."""
    config = prepared.config
    if not config.random_features:
        return []
    return fit_random_features(
        prepared.dataset,
        prepared.plan,
        models.split_models,
        models.final_models,
        prepared.pairs,
        n_features=config.random_features,
        gamma=config.rff_gamma,
        alphas=config.alphas,
        seed=config.seed,
    )


def fingerprint(ds: Dataset, stats: PassStatistics) -> str:
    """sha256 of the dataset's layout and a content summary (row counts, rounded means)."""
    h = hashlib.sha256()
    for name, arr in sorted(ds.arrays.modalities.items()):  # as stored, not as reduced
        h.update(f"{name}:{arr.shape}:{arr.dtype}".encode())
    full = stats.moments(list(stats.layout.names), None)
    h.update(np.array2string(full.mean, precision=6, floatmode="maxprec").encode())
    h.update(str(full.n).encode())
    return h.hexdigest()[:32]


def assemble(
    prepared: Prepared,
    stats: PassStatistics,
    models: FittedModels,
    pairs: list[PairResult],
    timings: dict[str, float],
    tasks: CrossModal | None = None,
    nonlinear: list[RandomFeatureResult] | None = None,
) -> FitResult:
    """The FitResult with a fresh run id (not yet written)."""
    tasks = tasks or CrossModal()
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
        classify=tasks.classify,
        transfer=tasks.transfer,
        retrieval=tasks.retrieval,
        logistic=tasks.logistic,
        random_features=nonlinear or [],
        reductions=dict(prepared.dataset.arrays.reductions),
    )
