"""The engine behind ``mmpipe.fit``: one pass of statistics, every model and metric, written out.

Data flows one way: dataset → fold plan → statistics pass → per split and pair: models from the
training statistics, metrics from the validation statistics → chosen α → final models on all
rows → results store.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

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
from mmpipe.defaults import DEFAULT_ALPHAS, DEFAULT_COMPONENTS
from mmpipe.errors import ConfigError, DataValueError, bad_parameter
from mmpipe.io.dataset import Dataset, check_folds, open_dataset
from mmpipe.io.locations import check_results_location
from mmpipe.io.reduction import Reduction
from mmpipe.io.results import check_writable, new_run_id
from mmpipe.io.storage import StorageOptions
from mmpipe.models.logistic import LogisticFit, fit_stacked_logistic
from mmpipe.models.pair import PairModels, PairScores, fit_pair, score_pair
from mmpipe.models.pca import StandardPCA
from mmpipe.models.transfer import check_alphas
from mmpipe.nonlinear import RandomFeatureResult, fit_random_features
from mmpipe.stats.blocked import PRECISIONS, PassStatistics, compute_statistics
from mmpipe.stats.folds import FoldPlan, holdout_plan, kfold_plan
from mmpipe.stats.held import hold_scores
from mmpipe.stats.scoring import Embedder, LinearScorer, run_scoring_pass
from mmpipe.stats.sketch import reduce_wide

Components = int | float | None | Mapping[str, int | float | None]


@dataclass(frozen=True)
class FitConfig:
    """Every choice of a fit; stored with the results as provenance."""

    pairs: tuple[tuple[str, str], ...] | None = None
    """Directed (source, target) pairs; None = every ordered pair of modalities."""
    components: int | float | dict[str, int | float | None] | None = DEFAULT_COMPONENTS
    """PCA components per modality: a count (capped at the width), a variance fraction in (0, 1),
    None for all, or a dict per modality name."""
    folds: int = 5
    """K for K-fold cross-validation (ignored when ``holdout`` is set)."""
    holdout: float | None = None
    """Fraction of rows held out for validation, instead of K-fold."""
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    """Ridge penalties to evaluate; the best mean validation R² is chosen."""
    seed: int = 0
    """Seed of the fold assignment."""
    solver: Literal["normal", "tsqr"] = "normal"
    """'normal': from the statistics; 'tsqr': second pass, QR of the scores (ill-conditioned)."""
    cca_reg: float = 1e-3
    """Ridge term added to each side's score covariance in CCA."""
    chunk_rows: int | None = None
    """Dask row block size; None lets open_dataset choose from the store chunks."""
    sketch_above: int | None = 4096
    """Modalities wider than this many columns are first reduced by a randomized sketch of
    their standardized columns (mmpipe.models.sketch); None: never."""
    sketch_columns: int | None = None
    """Sketch width q of a reduced modality; None: min(d, 4·k + 64) for k components."""
    sketch_power: int = 1
    """Power iterations of the sketch (one more pass over the wide modality each)."""
    precision: Literal["float64", "float32"] = "float64"
    """dtype of each row block's Gram in the statistics pass; merges are float64 either way.
    float32 makes each block's Gram about 40% faster (README, Performance) at about 1e-6
    relative error."""
    classify: tuple[tuple[str, ...], ...] = ()
    """Feature sets to classify the labels from, each one or more modalities (fused scores)."""
    transfer: bool = False
    """For every pair source → target: the target's classifier on source rows mapped by W."""
    retrieval: bool = False
    """For every pair: rank the target's validation rows for each mapped source row."""
    retrieval_rows: int | None = 5000
    """Validation rows per split and pair ranked in retrieval (a seeded subset); None: all."""
    logistic: bool = False
    """Also fit multinomial logistic regression (L-BFGS on the workers) per classify set."""
    logistic_c: float = 1.0
    """Inverse l2 strength of the logistic regression (scikit-learn's C)."""
    random_features: int = 0
    """D random Fourier features for a non-linear map per pair (0: linear maps only)."""
    rff_gamma: float | None = None
    """RBF γ of the random features; None: 1 / (2·median pairwise distance²) of source scores."""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["pairs"] = None if self.pairs is None else [list(p) for p in self.pairs]
        out["alphas"] = list(self.alphas)
        out["classify"] = [list(f) for f in self.classify]
        return out

    @property
    def scoring(self) -> bool:
        """Whether the fit needs the scoring pass."""
        return bool(self.classify) or self.transfer or self.retrieval


@dataclass(frozen=True, eq=False)
class ModalityResult:
    """A modality's scaler and PCA fitted on every row where it is present."""

    name: str
    rows: int
    """Rows where the modality is present."""
    pca: StandardPCA
    zero_variance_columns: np.ndarray
    """Indices of columns with zero variance (scaled by 1, as scikit-learn)."""


@dataclass(frozen=True, eq=False)
class PairResult:
    """A directed pair: cross-validated metrics and final models refitted on all its rows."""

    source: str
    target: str
    rows: int
    """Rows where both modalities are present (the rows this pair is fitted on)."""
    rows_dropped: int
    """Rows left out because one of the two is missing."""
    alphas: np.ndarray
    """(n_alpha,) the α path."""
    r2: np.ndarray
    """(n_splits, n_alpha) validation R² of the ridge map."""
    mse: np.ndarray
    """(n_splits, n_alpha) validation MSE of the ridge map."""
    procrustes_r2: np.ndarray
    """(n_splits,) validation R² of the orthogonal map."""
    procrustes_mse: np.ndarray
    cca_correlations: np.ndarray
    """(n_splits, n_canonical) validation canonical correlations (NaN-padded)."""
    alpha_index: int
    """Index of the chosen α (best mean validation R²)."""
    models: PairModels
    """Final models on all rows of the pair; ridge coefficients for every α."""

    @property
    def alpha(self) -> float:
        return float(self.alphas[self.alpha_index])

    @property
    def coef(self) -> np.ndarray:
        """(k_source, k_target) ridge map at the chosen α."""
        return np.asarray(self.models.ridge.coef_[self.alpha_index])

    def summary(self) -> dict[str, Any]:
        i = self.alpha_index
        return {
            "source": self.source,
            "target": self.target,
            "rows": self.rows,
            "rows_dropped": self.rows_dropped,
            "alpha": self.alpha,
            "components": [
                self.models.source_pca.n_components_,
                self.models.target_pca.n_components_,
            ],
            "cv": {
                "r2": float(self.r2[:, i].mean()),
                "mse": float(self.mse[:, i].mean()),
                "r2_folds": self.r2[:, i].tolist(),
                "mse_folds": self.mse[:, i].tolist(),
            },
            "r2_by_alpha": self.r2.mean(axis=0).tolist(),
            "procrustes": {
                "r2": float(self.procrustes_r2.mean()),
                "mse": float(self.procrustes_mse.mean()),
            },
            "cca": self.models.cca.correlations_.tolist(),
            "cca_validation": np.nanmean(self.cca_correlations, axis=0).tolist(),
        }


@dataclass(frozen=True, eq=False)
class FitResult:
    """What ``fit`` returns: models, metrics and provenance."""

    config: FitConfig
    dataset: str
    n_rows: int
    plan: FoldPlan
    modalities: dict[str, ModalityResult]
    pairs: list[PairResult]
    fingerprint: str
    timings: dict[str, float]
    run_id: str
    results: str | None = None
    """Where the run was written (None if not written)."""
    started: str = ""
    classes: np.ndarray | None = None
    classify: list[ClassifyResult] = field(default_factory=list)
    """Classification from (fused) modalities, in the order asked."""
    transfer: list[TransferResult] = field(default_factory=list)
    """Cross-modal transfer, one per pair (when asked)."""
    retrieval: list[RetrievalResult] = field(default_factory=list)
    """Cross-modal retrieval, one per pair (when asked)."""
    logistic: list[LogisticResult] = field(default_factory=list)
    """Multinomial logistic regression per classify set (when asked)."""
    random_features: list[RandomFeatureResult] = field(default_factory=list)
    """Non-linear (random Fourier feature) maps, one per pair (when asked)."""
    reductions: dict[str, Reduction] = field(default_factory=dict)
    """Wide modalities' sketches: their PCA and maps work on u = reduction.apply(x)."""

    def pair(self, source: str, target: str) -> PairResult:
        for p in self.pairs:
            if (p.source, p.target) == (source, target):
                return p
        raise KeyError(f"no pair {source}->{target} in this fit")

    def summary(self) -> dict[str, Any]:
        """The JSON printed by ``mmpipe fit --json``."""
        return {
            "run_id": self.run_id,
            "results": self.results,
            "dataset": self.dataset,
            "rows": self.n_rows,
            "plan": self.plan.describe(),
            "modalities": {
                name: {
                    "rows": m.rows,
                    "components": m.pca.n_components_,
                    "explained_variance_ratio": float(m.pca.explained_variance_ratio_.sum()),
                    "zero_variance_columns": m.zero_variance_columns.tolist(),
                }
                for name, m in self.modalities.items()
            },
            "pairs": [p.summary() for p in self.pairs],
            "classify": [c.summary() for c in self.classify],
            "transfer": [t.summary() for t in self.transfer],
            "retrieval": [r.summary() for r in self.retrieval],
            "logistic": [g.summary() for g in self.logistic],
            "random_features": [r.summary() for r in self.random_features],
            "timings": self.timings,
            "fingerprint": self.fingerprint,
            "config": self.config.to_json(),
            "sketched": {
                name: {"columns": int(r.offset.size), "sketch_columns": r.width}
                for name, r in self.reductions.items()
            },
        }


def parse_pairs(
    pairs: Iterable[str | Sequence[str]] | None, names: Sequence[str]
) -> tuple[tuple[str, str], ...]:
    """Normalize 'source:target' strings or 2-tuples; None means every ordered pair."""
    if pairs is None:
        return tuple(itertools.permutations(names, 2))
    out: list[tuple[str, str]] = []
    for item in pairs:
        parts = pair_of(item)
        if len(parts) != 2:
            raise ConfigError(f"Pair {item!r} must be written SOURCE:TARGET, e.g. image:text.")
        source, target = str(parts[0]).strip(), str(parts[1]).strip()
        for name in (source, target):
            if name not in names:
                raise ConfigError(
                    f"Pair {source}:{target} names modality {name!r}, which the dataset does "
                    f"not have (modalities: {', '.join(names)})."
                )
        if source == target:
            raise ConfigError(f"Pair {source}:{target} maps a modality onto itself.")
        if (source, target) not in out:
            out.append((source, target))
    if not out:
        raise ConfigError("No pairs given: name at least one SOURCE:TARGET or leave pairs unset.")
    return tuple(out)


def pair_of(item: str | Sequence[str]) -> tuple[str, ...]:
    """'image:text' or ('image', 'text') -> ('image', 'text'); parse_pairs checks the rest."""
    parts = item.split(":") if isinstance(item, str) else item
    return tuple(str(p).strip() for p in parts)


def feature_set(item: str | Sequence[str]) -> tuple[str, ...]:
    """'image+text' or ('image', 'text') -> ('image', 'text')."""
    parts = item.split("+") if isinstance(item, str) else item
    return tuple(str(p).strip() for p in parts)


def parse_feature_sets(
    sets: Iterable[str | Sequence[str]] | None, names: Sequence[str]
) -> tuple[tuple[str, ...], ...]:
    """Normalize 'a+b' strings or sequences of modality names; checks every name."""
    out: list[tuple[str, ...]] = []
    for item in sets or ():
        features = feature_set(item)
        for name in features:
            if name not in names:
                raise ConfigError(
                    f"classify feature set {'+'.join(features)!r} names modality {name!r}, "
                    f"which the dataset does not have (modalities: {', '.join(names)})."
                )
        if len(set(features)) != len(features) or not features:
            raise ConfigError(f"classify feature set {item!r} repeats a modality or is empty.")
        if features not in out:
            out.append(features)
    return tuple(out)


def _components_for(config: FitConfig, name: str, width: int) -> int | float | None:
    spec = config.components
    if isinstance(spec, Mapping):
        if name not in spec:
            return min(DEFAULT_COMPONENTS, width)
        spec = spec[name]
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec < 1:
            raise bad_parameter("components", "fit", "an int >= 1, a float in (0, 1) or None", spec)
        return min(spec, width)
    return spec


def make_plan(ds: Dataset, config: FitConfig, labels: np.ndarray | None) -> FoldPlan:
    """The fold plan, stratified by ``labels`` when the dataset has them."""
    # A class too small for the folds is an error when a task learns the labels; when they
    # only balance the folds, the plan records it (plan.rare_classes, in the results).
    rare: Literal["raise", "note"] = "raise" if config.classify or config.transfer else "note"
    if config.holdout is not None:
        plan = holdout_plan(ds.n_rows, config.holdout, labels=labels, seed=config.seed, rare=rare)
    else:
        check_folds(ds, config.folds)
        plan = kfold_plan(ds.n_rows, config.folds, labels=labels, seed=config.seed, rare=rare)
    return plan


def check_plan(ds: Dataset, plan: FoldPlan) -> None:
    if plan.assignment.shape != (ds.n_rows,):
        raise ConfigError(
            f"The fold plan assigns {plan.assignment.shape[0]} rows but {ds.url!r} has "
            f"{ds.n_rows}: build it for this dataset."
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


def check_config(ds: Dataset, config: FitConfig) -> tuple[tuple[str, str], ...]:
    """Validate every parameter against the dataset before any data is read."""
    if not isinstance(config.folds, int) or isinstance(config.folds, bool) or config.folds < 2:
        raise bad_parameter("folds", "fit", "an int >= 2", config.folds)
    check_alphas(config.alphas, owner="fit")
    if config.solver not in ("normal", "tsqr"):
        raise bad_parameter("solver", "fit", "'normal' or 'tsqr'", config.solver)
    if config.sketch_above is not None and (
        not isinstance(config.sketch_above, int) or config.sketch_above < 1
    ):
        raise bad_parameter("sketch_above", "fit", "an int >= 1 or None", config.sketch_above)
    if config.sketch_columns is not None and (
        not isinstance(config.sketch_columns, int) or config.sketch_columns < 2
    ):
        raise bad_parameter("sketch_columns", "fit", "an int >= 2 or None", config.sketch_columns)
    if not isinstance(config.sketch_power, int) or config.sketch_power < 0:
        raise bad_parameter("sketch_power", "fit", "an int >= 0", config.sketch_power)
    if config.precision not in PRECISIONS:
        raise bad_parameter("precision", "fit", "'float64' or 'float32'", config.precision)
    if config.holdout is not None and not 0.0 < config.holdout < 1.0:
        raise bad_parameter("holdout", "fit", "a float in the range (0, 1)", config.holdout)
    if isinstance(config.components, Mapping):
        unknown = set(config.components) - set(ds.names)
        if unknown:
            raise ConfigError(
                f"components names unknown modalities {sorted(unknown)} "
                f"(modalities: {', '.join(ds.names)})."
            )
    for name, width in ds.widths.items():
        spec = _components_for(config, name, width)
        if (
            spec is not None
            and not isinstance(spec, int)
            and not (isinstance(spec, float) and 0.0 < spec < 1.0)
        ):
            raise bad_parameter("components", "fit", "an int >= 1, a float in (0, 1) or None", spec)
    parse_feature_sets(config.classify, ds.names)
    if config.retrieval_rows is not None and (
        not isinstance(config.retrieval_rows, int) or config.retrieval_rows < 2
    ):
        raise bad_parameter("retrieval_rows", "fit", "an int >= 2 or None", config.retrieval_rows)
    if config.logistic and not config.classify:
        raise ConfigError("logistic needs at least one classify feature set (e.g. image+text).")
    if not isinstance(config.random_features, int) or config.random_features < 0:
        raise bad_parameter("random_features", "fit", "an int >= 0", config.random_features)
    if config.rff_gamma is not None and not config.rff_gamma > 0:
        raise bad_parameter("rff_gamma", "fit", "a float > 0 or None", config.rff_gamma)
    if not (isinstance(config.logistic_c, int | float) and config.logistic_c > 0):
        raise bad_parameter("logistic_c", "fit", "a float > 0", config.logistic_c)
    if (config.classify or config.transfer) and ds.label_array is None:
        asked = "classify" if config.classify else "transfer"
        raise ConfigError(
            f"{asked} needs labels, but {ds.url!r} has no 'labels' array: add labels (n,) "
            "integer classes to the dataset, or drop the classification options."
        )
    return parse_pairs(config.pairs, ds.names)


def check_output(
    dataset: str | os.PathLike[str] | Dataset | object,
    out: str | os.PathLike[str],
    storage_options: StorageOptions | None = None,
    results_storage_options: StorageOptions | None = None,
) -> None:
    """Refuse, before anything is read or computed, a results location that is the input,
    lies inside it or contains it, or that cannot hold results (a dataset, a file...)."""
    source = dataset.url if isinstance(dataset, Dataset) else dataset
    if isinstance(source, str | os.PathLike):
        check_results_location(
            out,
            source,
            storage_options=storage_options,
            results_storage_options=results_storage_options,
        )
    check_writable(out, storage_options=results_storage_options)


@dataclass(frozen=True, eq=False)
class Prepared:
    """A validated dataset and config with its fold plan: everything known before the pass."""

    dataset: Dataset
    config: FitConfig
    pairs: tuple[tuple[str, str], ...]
    """The directed pairs to fit."""
    names: list[str]
    """Modalities that appear in a pair (the only columns the pass reads)."""
    labels: np.ndarray | None
    """The labels in memory (read once, for stratification and the one-hot columns)."""
    plan: FoldPlan
    started: str
    """UTC start time, ISO 8601."""


@dataclass(frozen=True, eq=False)
class FittedModels:
    """Models of every split and the final ones, before evaluation."""

    modalities: dict[str, ModalityResult]
    split_models: dict[tuple[int, tuple[str, str]], PairModels]
    final_models: dict[tuple[str, str], PairModels]


def prepare(
    dataset: str | os.PathLike[str] | Dataset,
    config: FitConfig,
    *,
    storage_options: StorageOptions | None = None,
    plan: FoldPlan | None = None,
    out: str | os.PathLike[str] | None = None,
    results_storage_options: StorageOptions | None = None,
) -> Prepared:
    """Check the results location, open and validate the dataset and config, make the plan.

    Everything that can be wrong with the input or the output location fails here, before
    anything is computed or written.
    """
    started = datetime.now(UTC).isoformat(timespec="seconds")
    if out is not None:  # first of all: the input is never harmed, whatever else is wrong
        check_output(dataset, out, storage_options, results_storage_options)
    ds = open_dataset(dataset, storage_options=storage_options, chunk_rows=config.chunk_rows)
    pair_list = check_config(ds, config)
    used = {n for p in pair_list for n in p} | {n for f in config.classify for n in f}
    names = [n for n in ds.names if n in used]
    # Before anything is computed or written: every chunk the fit reads is in the store (one
    # listing per array) and the ids are unique.
    ds.check_chunks(names)
    ds.check_ids()
    labels = ds.read_labels()
    if plan is None:
        plan = make_plan(ds, config, labels)
    check_plan(ds, plan)
    return Prepared(ds, config, pair_list, names, labels, plan, started)


def wide_modalities(prepared: Prepared) -> dict[str, int]:
    """Modalities to reduce before the statistics pass -> their sketch width q."""
    config, widths = prepared.config, prepared.dataset.widths
    if config.sketch_above is None:
        return {}
    out = {}
    for name in prepared.names:
        d = widths[name]
        if d <= config.sketch_above or name in prepared.dataset.arrays.reductions:
            continue
        k = _components_for(config, name, d)
        k = k if isinstance(k, int) else DEFAULT_COMPONENTS
        out[name] = min(d, prepared.dataset.n_rows, config.sketch_columns or 4 * k + 64)
    return out


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
    comps = {n: _components_for(config, n, widths[n]) for n in prepared.names}

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
    comps = {n: _components_for(config, n, widths[n]) for n in prepared.names}
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
