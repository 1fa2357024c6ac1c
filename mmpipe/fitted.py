"""A fitted run, loaded back from its results store: the models a fit learned, ready to use.

    run = mmpipe.open_run("results.zarr")          # the latest complete run
    run.transform(x_image, "image")                # PCA scores (n, k)
    run.map(x_image, "image", "text")              # image mapped through W into text's scores
    run.predict({"image": x_image, "text": x_text}, "image+text")
    run.to_sklearn()["pairs/image--text"]          # a scikit-learn Pipeline, same outputs

Every method takes NumPy arrays (rows × columns, as stored in the dataset) or Dask arrays
(then it returns a Dask array computed block by block: rows as chunked, columns whole).
``mmpipe.apply`` (mmpipe/apply.py) calls the same methods on every row block of a dataset.

A row with a non-finite value (NaN, inf) in a modality a method needs gives a NaN row out;
it is never an error. Data of the wrong width is a :class:`~mmpipe.errors.ConfigError`
naming the modality, before anything is computed.

Which model does what (see docs/fitted-models.md):

- ``transform``: the modality's scaler + PCA (``modalities/<name>/``), fitted on every row
  where the modality is present;
- ``map``, ``cca``, ``impute``: the pair's own scaler + PCA of each side (``pairs/<s>--<t>/
  source_*``, ``target_*``: fitted on the rows where both are present, so they differ from
  the modality's when masks exist) and its ridge map at the chosen α;
- ``predict``, ``predict_proba``: the final classifier's own scaler + PCA of each feature
  modality (``classify/<a+b>/pcas/<name>/``), its ridge classifier at the chosen α, and the
  logistic model of the same set (on the same scores).

A wide modality reduced by a sketch (``sketches/<name>/``) goes through its reduction
u = ((x − offset) / scale) @ basis before any of its PCAs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import zarr

from mmpipe.errors import ConfigError, ResultsError, StoreNotFoundError
from mmpipe.io.reduction import Reduction
from mmpipe.io.runs import read_run
from mmpipe.io.storage import StorageOptions
from mmpipe.models.classify import RidgeClassifierPath
from mmpipe.models.pca import StandardPCA
from mmpipe.models.rff import RandomFourierFeatures
from mmpipe.models.transfer import CCA, ProcrustesTransfer, RidgeTransfer
from mmpipe.options import FitConfig, feature_set

Array = Any
"""A NumPy array, or a Dask array (rows chunked, columns whole)."""


@dataclass(frozen=True, eq=False)
class FittedPair:
    """A directed pair's final models: both sides' scaler + PCA and the maps between them."""

    source: str
    target: str
    source_pca: StandardPCA
    target_pca: StandardPCA
    ridge: RidgeTransfer
    """Every α of the path; ``alpha_index`` is the chosen one."""
    alpha_index: int
    procrustes: ProcrustesTransfer
    cca: CCA
    r2: float
    """Mean cross-validated R² of the ridge map at the chosen α (how ``impute`` ranks)."""
    rows: int

    @property
    def alpha(self) -> float:
        return float(self.ridge.alphas_[self.alpha_index])


@dataclass(frozen=True, eq=False)
class FittedClassifier:
    """The final ridge classifier of a feature set (every α), on its own PCAs' scores."""

    features: tuple[str, ...]
    pcas: tuple[StandardPCA, ...]
    model: RidgeClassifierPath
    alpha_index: int
    classes: np.ndarray

    @property
    def alpha(self) -> float:
        return float(self.model.alphas_[self.alpha_index])


@dataclass(frozen=True, eq=False)
class FittedLogistic:
    """The final multinomial logistic model of a feature set, on its classifier's scores."""

    features: tuple[str, ...]
    coef: np.ndarray
    """(k, C)."""
    intercept: np.ndarray
    """(C,)."""
    C: float
    classes: np.ndarray


@dataclass(frozen=True, eq=False)
class FittedRandomFeatures:
    """A pair's non-linear map: ridge on random Fourier features of its source PCA scores."""

    source: str
    target: str
    features: RandomFourierFeatures
    ridge: RidgeTransfer
    alpha_index: int


@dataclass(frozen=True, eq=False)
class FittedRun:
    """The models of one complete run (see :func:`open_run`)."""

    run_id: str
    results: str
    """Where the run was read from (the results store's location)."""
    dataset: str
    """The dataset the run was fitted on."""
    fingerprint: str
    config: FitConfig
    widths: dict[str, int]
    """Columns of each modality as stored in the dataset it was fitted on (before any sketch):
    data given to this run must have these widths."""
    classes: np.ndarray | None
    """The label classes (None: the run learned no labels)."""
    modality_models: dict[str, StandardPCA] = field(default_factory=dict, repr=False)
    """Each modality's scaler + PCA (on its sketch coordinates when sketched)."""
    pair_models: dict[tuple[str, str], FittedPair] = field(default_factory=dict, repr=False)
    classifiers: dict[tuple[str, ...], FittedClassifier] = field(default_factory=dict, repr=False)
    logistic: dict[tuple[str, ...], FittedLogistic] = field(default_factory=dict, repr=False)
    random_features: dict[tuple[str, str], FittedRandomFeatures] = field(
        default_factory=dict, repr=False
    )
    reductions: dict[str, Reduction] = field(default_factory=dict, repr=False)
    """The sketch of each wide modality: applied to its raw rows before any of its PCAs."""

    # -- what the run can do ---------------------------------------------------------------
    @property
    def modalities(self) -> list[str]:
        """Modalities with a fitted scaler + PCA (transform, embed)."""
        return list(self.modality_models)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Directed pairs with a fitted map (map, cca, impute)."""
        return list(self.pair_models)

    @property
    def feature_sets(self) -> list[tuple[str, ...]]:
        """Feature sets with a fitted classifier (predict)."""
        return list(self.classifiers)

    def imputable(self) -> list[str]:
        """Modalities some pair maps into (impute can fill them in)."""
        return list(dict.fromkeys(t for _, t in self.pair_models))

    def sources(self, target: str) -> list[str]:
        """The sources of the pairs into ``target``, best cross-validated R² first (the order
        in which :meth:`impute` tries them)."""
        self._modality(target)
        into = [p for p in self.pair_models.values() if p.target == target]
        return [p.source for p in sorted(into, key=lambda p: -p.r2)]

    # -- checks ------------------------------------------------------------------------------
    def _modality(self, name: str) -> None:
        if name not in self.widths:
            known = ", ".join(self.widths) or "none"
            raise ConfigError(
                f"Run {self.run_id!r} has no model of modality {name!r} (it fitted: {known})."
            )

    def _pair(self, source: str, target: str) -> FittedPair:
        self._modality(source)
        self._modality(target)
        if (source, target) not in self.pair_models:
            known = ", ".join(f"{s}:{t}" for s, t in self.pair_models) or "none"
            raise ConfigError(
                f"Run {self.run_id!r} fitted no map {source}:{target} (its pairs: {known})."
            )
        return self.pair_models[(source, target)]

    def _set(self, features: str | Sequence[str]) -> tuple[str, ...]:
        names = feature_set(features)
        for name in names:
            self._modality(name)
        return names

    def _classifier(self, features: str | Sequence[str]) -> FittedClassifier:
        names = self._set(features)
        if names not in self.classifiers:
            known = ", ".join("+".join(f) for f in self.classifiers) or "none"
            raise ConfigError(
                f"Run {self.run_id!r} fitted no classifier of {'+'.join(names)!r} "
                f"(its classify sets: {known})."
            )
        return self.classifiers[names]

    def check_width(self, x: Array, modality: str) -> None:
        """ConfigError unless ``x`` is (rows, d) with d the width ``modality`` was fitted on."""
        self._modality(modality)
        shape = getattr(x, "shape", None)
        if shape is None or len(shape) != 2:
            raise ConfigError(
                f"Rows of modality {modality!r} must be a 2-D array (rows, "
                f"{self.widths[modality]}); got shape {shape}."
            )
        if shape[1] != self.widths[modality]:
            raise ConfigError(
                f"Modality {modality!r} has {shape[1]} columns, but run {self.run_id!r} was "
                f"fitted on {self.widths[modality]}: give the same columns as the dataset "
                f"{self.dataset!r}."
            )

    def _features_of(self, target: str) -> None:
        if target in self.reductions:
            raise ConfigError(
                f"Feature units are not available for the sketched modality {target!r}: its "
                "models act on its sketch coordinates; map into its PCA scores instead "
                "(features=False)."
            )

    # -- the block functions (NumPy in, NumPy out) ------------------------------------------
    def _scores_block(self, x: np.ndarray, modality: str, pca: StandardPCA) -> np.ndarray:
        x, bad = _finite_rows(x)
        reduction = self.reductions.get(modality)
        t = pca.transform(reduction.apply(x) if reduction is not None else x)
        t[bad] = np.nan
        return t

    def _map_block(self, x: np.ndarray, pair: FittedPair, features: bool) -> np.ndarray:
        t = self._scores_block(x, pair.source, pair.source_pca)
        y = pair.ridge.predict(t, pair.alpha_index)
        return pair.target_pca.inverse_transform(y) if features else y

    def _fused_block(self, blocks: Sequence[np.ndarray], model: FittedClassifier) -> np.ndarray:
        return np.concatenate(
            [
                self._scores_block(b, name, pca)
                for b, name, pca in zip(blocks, model.features, model.pcas, strict=True)
            ],
            axis=1,
        )

    def _decision_block(self, *blocks: np.ndarray, model: FittedClassifier) -> np.ndarray:
        return model.model.decision_function(self._fused_block(blocks, model), model.alpha_index)

    def _predict_block(self, *blocks: np.ndarray, model: FittedClassifier) -> np.ndarray:
        decision = self._decision_block(*blocks, model=model)
        bad = ~np.isfinite(decision).all(axis=1)
        codes = np.argmax(np.where(bad[:, None], 0.0, decision), axis=1)
        labels = model.classes[codes].astype(np.float64)
        labels[bad] = np.nan
        return labels

    def _proba_block(
        self, *blocks: np.ndarray, model: FittedClassifier, logistic: FittedLogistic
    ) -> np.ndarray:
        scores = self._fused_block(blocks, model)
        logits = scores @ logistic.coef + logistic.intercept
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits

    def _impute_block(
        self, *blocks: np.ndarray, sources: list[str], target: str, n_present: int
    ) -> np.ndarray:
        """[values | imputed as 0/1] of one row block: ``blocks`` are the sources' rows, then
        the masks of the sources and of the target (``n_present`` masks)."""
        xs, masks = blocks[: len(sources)], blocks[len(sources) :]
        target_present = np.asarray(masks[-1], dtype=bool)
        n = target_present.shape[0]
        d = self.widths[target]
        out = np.full((n, d + 1), np.nan)
        out[:, d] = 0.0
        todo = ~target_present
        for source, x, present in zip(sources, xs, masks[:-1], strict=True):
            rows = todo & np.asarray(present, dtype=bool) & np.isfinite(x).all(axis=1)
            if not rows.any():
                continue
            pair = self.pair_models[(source, target)]
            # The whole block, then its rows: a row's values do not depend on which other
            # rows share its block (a matrix product's rounding can).
            out[rows, :d] = self._map_block(x, pair, features=True)[rows]
            out[rows, d] = 1.0
            todo &= ~rows
        return out

    # -- applying it (NumPy or Dask arrays in, the same kind out) ---------------------------
    def transform(self, x: Array, modality: str) -> Array:
        """(n, d) raw rows of ``modality`` -> (n, k) PCA scores of the modality's model
        (scikit-learn's StandardScaler + PCA, svd_flip signs)."""
        self.check_width(x, modality)
        pca = self.modality_models[modality]
        return _blockwise(
            lambda b: self._scores_block(b, modality, pca), [x], pca.n_components_, np.float64
        )

    def map(self, x: Array, source: str, target: str, *, features: bool = False) -> Array:
        """(n, d_source) raw rows of ``source`` -> (n, k_target) the pair's ridge map at its
        chosen α, in the target's PCA space of that pair; ``features=True``: (n, d_target) in
        the target's original feature units (inverse PCA, then unscaled)."""
        pair = self._pair(source, target)
        self.check_width(x, source)
        if features:
            self._features_of(target)
        width = self.widths[target] if features else pair.target_pca.n_components_
        return _blockwise(lambda b: self._map_block(b, pair, features), [x], width, np.float64)

    def cca(self, x: Array, source: str, target: str, side: Literal["source", "target"]) -> Array:
        """Rows of the pair's ``side`` modality -> (n, c) that side's canonical variates."""
        pair = self._pair(source, target)
        if side not in ("source", "target"):
            raise ConfigError(f"cca side must be 'source' or 'target', not {side!r}.")
        name = source if side == "source" else target
        self.check_width(x, name)
        pca = pair.source_pca if side == "source" else pair.target_pca
        cca = pair.cca
        mean = cca.source_mean_ if side == "source" else cca.target_mean_
        weights = cca.source_weights_ if side == "source" else cca.target_weights_

        def block(b: np.ndarray) -> np.ndarray:
            out: np.ndarray = (self._scores_block(b, name, pca) - mean) @ weights
            return out

        return _blockwise(block, [x], weights.shape[1], np.float64)

    def _inputs(self, xs: Mapping[str, Array], names: Sequence[str]) -> list[Array]:
        missing = [n for n in names if n not in xs]
        if missing:
            raise ConfigError(
                f"Feature set {'+'.join(names)!r} needs the rows of {', '.join(missing)}; "
                f"given: {', '.join(xs) or 'none'}."
            )
        for name in names:
            self.check_width(xs[name], name)
        return [xs[n] for n in names]

    def decision_function(self, xs: Mapping[str, Array], features: str | Sequence[str]) -> Array:
        """(n, C) the ridge classifier's decision values at its chosen α (argmax: the class)."""
        model = self._classifier(features)
        inputs = self._inputs(xs, model.features)

        def block(*b: np.ndarray) -> np.ndarray:
            return self._decision_block(*b, model=model)

        return _blockwise(block, inputs, model.classes.size, np.float64)

    def predict(self, xs: Mapping[str, Array], features: str | Sequence[str]) -> Array:
        """{modality: raw rows} -> (n,) predicted class labels of the run's ridge classifier
        of ``features`` ('a+b' or ('a', 'b')) at its chosen α. The labels are float64 (the
        classes' values), NaN for a row with a non-finite value."""
        model = self._classifier(features)
        inputs = self._inputs(xs, model.features)

        def block(*b: np.ndarray) -> np.ndarray:
            return self._predict_block(*b, model=model)

        return _blockwise(block, inputs, None, np.float64)

    def predict_proba(self, xs: Mapping[str, Array], features: str | Sequence[str]) -> Array:
        """(n, C) class probabilities of the run's logistic model of ``features``
        (ConfigError when the run fitted none for that set)."""
        names = self._set(features)
        if names not in self.logistic:
            raise ConfigError(
                f"Run {self.run_id!r} fitted no logistic model of {'+'.join(names)!r}: fit "
                "with logistic=True (--logistic) to have class probabilities."
            )
        model, logistic = self.classifiers[names], self.logistic[names]
        inputs = self._inputs(xs, names)

        def block(*b: np.ndarray) -> np.ndarray:
            return self._proba_block(*b, model=model, logistic=logistic)

        return _blockwise(block, inputs, logistic.classes.size, np.float64)

    def impute(
        self, xs: Mapping[str, Array], present: Mapping[str, Array], target: str
    ) -> tuple[Array, Array]:
        """Fill in ``target`` where ``present[target]`` is False from a modality the row has:
        among the pairs SOURCE -> target whose source is present in that row, the one with the
        best cross-validated R². Returns (values (n, d_target) in feature units — NaN where
        the target was present or no source was —, imputed (n,) bool).

        A modality missing from ``present`` counts as present in every row (the target: in
        none); a source row with a non-finite value counts as absent."""
        order = self.sources(target)
        if not order:
            raise ConfigError(
                f"Run {self.run_id!r} has no pair into {target!r} to impute it from "
                f"(imputable: {', '.join(self.imputable()) or 'none'})."
            )
        self._features_of(target)
        sources = [s for s in order if s in xs]
        if not sources:
            raise ConfigError(
                f"Imputing {target!r} needs the rows of one of {', '.join(order)}; given: "
                f"{', '.join(xs) or 'none'}."
            )
        inputs = self._inputs(xs, sources)
        n = inputs[0].shape[0]
        masks = [present.get(s) for s in sources] + [present.get(target)]
        filled = [
            np.full(n, fill, dtype=bool) if m is None else m
            for m, fill in zip(masks, [True] * len(sources) + [False], strict=True)
        ]
        d = self.widths[target]

        def block(*b: np.ndarray) -> np.ndarray:
            return self._impute_block(*b, sources=sources, target=target, n_present=len(filled))

        out = _blockwise(block, [*inputs, *filled], d + 1, np.float64)
        return out[:, :d], out[:, d] > 0.5

    # -- export -----------------------------------------------------------------------------
    def to_sklearn(self) -> dict[str, Any]:
        """Real scikit-learn objects with the learned attributes set, same outputs to 1e-10:
        ``modalities/<name>`` Pipeline(StandardScaler, PCA); ``pairs/<s>--<t>`` Pipeline(
        StandardScaler, PCA, Ridge); ``classify/<a+b>`` and ``logistic/<a+b>`` estimators on
        the concatenated raw columns of the set.

        Also ``pairs/<s>--<t>/target`` (the pair's target scaler + PCA: its
        ``inverse_transform`` takes mapped scores to feature units), ``pairs/<s>--<t>/
        procrustes`` (LinearRegression) and ``random_features/<s>--<t>`` (RBFSampler +
        Ridge). See docs/fitted-models.md."""
        return _export_run(self)


def _finite_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x as float64 with non-finite rows zeroed, which rows those were)."""
    x = np.asarray(x)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        x = np.array(x, dtype=np.float64)
        x[bad] = 0.0
    return x, bad


def _is_dask(x: Any) -> bool:
    return type(x).__module__.startswith("dask.")


def _blockwise(
    fn: Callable[..., np.ndarray], inputs: Sequence[Array], width: int | None, dtype: Any
) -> Array:
    """``fn`` over row blocks: on NumPy arrays, called once; when any input is a Dask array,
    a Dask array (n, width) (or (n,) for ``width=None``) computed block by block, every input
    rechunked to the row chunks of the first Dask one with its columns whole."""
    rows = {x.shape[0] for x in inputs if not np.isnan(x.shape[0])}
    if len(rows) > 1:
        raise ConfigError(f"The arrays given have different numbers of rows: {sorted(rows)}.")
    if not any(_is_dask(x) for x in inputs):
        return fn(*inputs)
    import dask.array as da

    first = next(x for x in inputs if _is_dask(x))
    chunks = first.chunks[0]
    args: list[Any] = []
    for i, x in enumerate(inputs):
        x = da.asarray(x) if _is_dask(x) else da.from_array(np.asarray(x), chunks=-1)
        if x.ndim == 2:
            args += [x.rechunk((chunks, -1)), f"r{i}"]
        else:
            args += [x.rechunk((chunks,)), "r"]
    # One index for the rows, one of its own for each input's columns (contracted away:
    # each block gets its columns whole), one for the output's columns.
    letters = "abcdefghjklmnopqrstuvwxy"  # neither the rows' i nor the output's z
    names = {"r": "i"} | {f"r{i}": "i" + letters[i] for i in range(len(inputs))}
    args = [names[a] if isinstance(a, str) else a for a in args]
    if width is None:
        return da.blockwise(fn, "i", *args, dtype=dtype, concatenate=True)
    return da.blockwise(fn, "iz", *args, new_axes={"z": width}, dtype=dtype, concatenate=True)


# -- loading ---------------------------------------------------------------------------------


def _array(group: zarr.Group, name: str) -> np.ndarray:
    node = group[name]
    if not isinstance(node, zarr.Array):
        raise ResultsError(f"{group.path}/{name} is not an array: the run is damaged.")
    return np.asarray(node[...])


def _attrs(group: zarr.Group) -> dict[str, Any]:
    return dict(group.attrs)


def _has(group: zarr.Group, name: str) -> bool:
    return name in dict(group.members())


def _read_pca(group: zarr.Group, prefix: str, rows: int, scaled: bool) -> StandardPCA:
    """A StandardPCA with its learned attributes from ``<prefix>mean``, ``scale``, ...
    (``var`` where the run stored it; scale² otherwise)."""
    components = _array(group, f"{prefix}components")
    k = components.shape[0]
    pca = StandardPCA(k, scale=scaled)
    pca.mean_ = _array(group, f"{prefix}mean")
    pca.scale_ = _array(group, f"{prefix}scale")
    pca.components_ = components
    pca.explained_variance_ = _array(group, f"{prefix}explained_variance")
    pca.explained_variance_ratio_ = _array(group, f"{prefix}explained_variance_ratio")
    pca.n_components_ = k
    pca.n_samples_ = rows
    pca.n_features_in_ = pca.mean_.size
    pca.var_ = _array(group, f"{prefix}var") if _has(group, f"{prefix}var") else pca.scale_**2
    pca.zero_variance_columns_ = np.flatnonzero(pca.var_ == 0.0)
    return pca


def _alpha_index(alphas: np.ndarray, alpha: float) -> int:
    return int(np.argmin(np.abs(alphas - alpha)))


def _groups(run: zarr.Group, name: str) -> dict[str, zarr.Group]:
    node = dict(run.members()).get(name)
    if not isinstance(node, zarr.Group):
        return {}
    return {k: v for k, v in sorted(node.members()) if isinstance(v, zarr.Group)}


def open_run(
    results: str | os.PathLike[str],
    run_id: str | None = None,
    *,
    storage_options: StorageOptions | None = None,
) -> FittedRun:
    """The models of ``run_id`` (default: the latest complete run) of a results store.
    An incomplete run, or a location that is not a results store, is a clear error."""
    text = os.fspath(results)
    try:
        run = read_run(text, run_id, storage_options=storage_options)
    except StoreNotFoundError as exc:
        if str(exc).startswith("No "):  # the store is there, the run is not
            raise ResultsError(str(exc)) from exc
        raise
    attrs = _attrs(run)
    config = FitConfig.parse(attrs.get("config") or {}, f"config of run {run.basename!r}")
    classes = None if attrs.get("classes") is None else np.asarray(attrs["classes"])

    reductions = {
        name: Reduction(_array(g, "offset"), _array(g, "scale"), _array(g, "basis"))
        for name, g in _groups(run, "sketches").items()
    }
    modality_models, widths = {}, {}
    for name, g in _groups(run, "modalities").items():
        a = _attrs(g)
        sketched = name in reductions
        pca = _read_pca(g, "", int(a.get("rows", 0)), bool(a.get("scaled", not sketched)))
        modality_models[name] = pca
        widths[name] = int(
            a.get("width", reductions[name].offset.size if sketched else pca.mean_.size)
        )

    pair_models = {}
    summaries = {
        (p["source"], p["target"]): p for p in (attrs.get("summary") or {}).get("pairs", [])
    }
    for g in _groups(run, "pairs").values():
        a = _attrs(g)
        source, target, rows = str(a["source"]), str(a["target"]), int(a["rows"])
        alphas = _array(g, "alphas")
        ridge = RidgeTransfer(tuple(alphas.tolist()))
        ridge.alphas_, ridge.coef_, ridge.intercept_ = (
            alphas,
            _array(g, "coef"),
            _array(g, "intercept"),
        )
        index = _alpha_index(alphas, float(a["alpha"]))
        spca = _read_pca(g, "source_", rows, source not in reductions)
        tpca = _read_pca(g, "target_", rows, target not in reductions)
        procrustes = ProcrustesTransfer()
        procrustes.coef_ = _array(g, "procrustes")
        procrustes.intercept_ = (
            _array(g, "procrustes_intercept")
            if _has(g, "procrustes_intercept")
            else np.zeros(procrustes.coef_.shape[1])
        )
        cca = CCA(float(config.cca_reg))
        cca.correlations_ = _array(g, "cca_correlations")
        cca.source_weights_ = _array(g, "cca_source_weights")
        cca.target_weights_ = _array(g, "cca_target_weights")
        # Scores of the PCA fitted on the same rows are centered: zero where not stored.
        cca.source_mean_ = (
            _array(g, "cca_source_mean")
            if _has(g, "cca_source_mean")
            else np.zeros(spca.n_components_)
        )
        cca.target_mean_ = (
            _array(g, "cca_target_mean")
            if _has(g, "cca_target_mean")
            else np.zeros(tpca.n_components_)
        )
        summary = summaries.get((source, target))
        r2 = (
            float(summary["cv"]["r2"])
            if summary is not None
            else float(_array(g, "r2")[:, index].mean())
        )
        pair_models[(source, target)] = FittedPair(
            source, target, spca, tpca, ridge, index, procrustes, cca, r2, rows
        )

    classifiers = {}
    for g in _groups(run, "classify").values():
        a = _attrs(g)
        features = tuple(str(f) for f in a["features"])
        if not _has(g, "pcas"):
            raise ResultsError(
                f"Run {run.basename!r} in {text!r} was written before classifiers stored their "
                f"own PCAs (classify/{'+'.join(features)}/pcas): fit again to use its classifier."
            )
        pcas_group = g["pcas"]
        assert isinstance(pcas_group, zarr.Group)
        pcas = []
        for name in features:
            pg = pcas_group[name]
            assert isinstance(pg, zarr.Group)
            pa = _attrs(pg)
            pcas.append(_read_pca(pg, "", int(pa["rows"]), bool(pa["scaled"])))
        alphas = _array(g, "alphas")
        model = RidgeClassifierPath(tuple(alphas.tolist()))
        model.alphas_, model.coef_, model.intercept_ = (
            alphas,
            _array(g, "coef"),
            _array(g, "intercept"),
        )
        model.n_classes_ = model.coef_.shape[2]
        classifiers[features] = FittedClassifier(
            features, tuple(pcas), model, _alpha_index(alphas, float(a["alpha"])),
            _array(g, "classes"),
        )  # fmt: skip

    logistic = {}
    for g in _groups(run, "logistic").values():
        a = _attrs(g)
        features = tuple(str(f) for f in a["features"])
        logistic[features] = FittedLogistic(
            features, _array(g, "coef"), _array(g, "intercept"), float(a["C"]),
            _array(g, "classes"),
        )  # fmt: skip

    random_features = {}
    for key, g in _groups(run, "random_features").items():
        a = _attrs(g)
        source, target = str(a["source"]), str(a["target"])
        rff = RandomFourierFeatures(int(a["features"]), float(a["gamma"]), int(config.seed))
        rff.weights_, rff.offsets_ = _array(g, "weights"), _array(g, "offsets")
        alphas = _array(g, "alphas")
        ridge = RidgeTransfer(tuple(alphas.tolist()))
        ridge.alphas_, ridge.coef_, ridge.intercept_ = (
            alphas,
            _array(g, "coef"),
            _array(g, "intercept"),
        )
        random_features[(source, target)] = FittedRandomFeatures(
            source, target, rff, ridge, _alpha_index(alphas, float(a["alpha"]))
        )
        del key

    return FittedRun(
        run_id=run.basename,
        results=text,
        dataset=str(attrs.get("dataset", "")),
        fingerprint=str(attrs.get("fingerprint", "")),
        config=config,
        widths=widths,
        classes=classes,
        modality_models=modality_models,
        pair_models=pair_models,
        classifiers=classifiers,
        logistic=logistic,
        random_features=random_features,
        reductions=reductions,
    )


# -- export to scikit-learn ------------------------------------------------------------------
# Each estimator is first fitted on a few rows of noise — which sets every piece of
# scikit-learn's own bookkeeping (n_features_in_, a classifier's label binarizer, a column
# transformer's column lists) the way its version expects — and then given the run's
# learned attributes, which are all that its transform/predict read.


def _noise(rows: int, cols: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((rows, cols))


def _sk_scaler(mean: np.ndarray, scale: np.ndarray, var: np.ndarray, rows: int) -> Any:
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(_noise(3, mean.size))
    scaler.mean_, scaler.scale_, scaler.var_ = mean.copy(), scale.copy(), var.copy()
    scaler.n_samples_seen_ = rows
    return scaler


def _sk_pca(components: np.ndarray, variance: np.ndarray, ratio: np.ndarray, rows: int) -> Any:
    """A fitted PCA(svd_solver="covariance_eigh") whose input is already centered (mean_ 0)."""
    from sklearn.decomposition import PCA

    k, d = components.shape
    pca = PCA(n_components=k, svd_solver="covariance_eigh").fit(_noise(k + d + 1, d))
    pca.components_ = components.copy()
    pca.mean_ = np.zeros(d)
    pca.explained_variance_ = variance.copy()
    pca.explained_variance_ratio_ = ratio.copy()
    pca.singular_values_ = np.sqrt(variance * max(rows - 1, 1))
    pca.n_samples_ = rows
    pca.noise_variance_ = 0.0
    return pca


def _sk_steps(run: FittedRun, name: str, pca: StandardPCA) -> list[tuple[str, Any]]:
    """[(sketch steps), scaler, pca] of one modality's raw columns to ``pca``'s scores."""
    steps: list[tuple[str, Any]] = []
    reduction = run.reductions.get(name)
    if reduction is not None:
        # u = ((x − offset) / scale) @ basis: a StandardScaler, then a PCA object used as the
        # fitted linear map x @ basis (components_ = basisᵀ, mean_ = 0).
        q = reduction.basis.shape[1]
        steps.append(
            ("sketch_scaler", _sk_scaler(reduction.offset, reduction.scale, reduction.scale**2, 0))
        )
        sketch = _sk_pca(reduction.basis.T, np.ones(q), np.full(q, 1.0 / q), 0)
        steps.append(("sketch", sketch))
    steps.append(("scaler", _sk_scaler(pca.mean_, pca.scale_, pca.var_, pca.n_samples_)))
    steps.append(
        (
            "pca",
            _sk_pca(
                pca.components_,
                pca.explained_variance_,
                pca.explained_variance_ratio_,
                pca.n_samples_,
            ),
        )
    )
    return steps


def _sk_fused(run: FittedRun, model: FittedClassifier) -> Any:
    """ColumnTransformer over the set's raw columns side by side (in the set's order):
    each modality's columns through its scaler + PCA, scores concatenated."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    parts, start = [], 0
    for name, pca in zip(model.features, model.pcas, strict=True):
        width = run.widths[name]
        parts.append((name, Pipeline(_sk_steps(run, name, pca)), list(range(start, start + width))))
        start += width
    fused = ColumnTransformer(parts, remainder="drop")
    fused.fit(_noise(start + 2, start))
    for name, pipeline, _ in parts:
        fused.named_transformers_[name].steps[:] = pipeline.steps
    return fused


def _sk_classifier(estimator: Any, k: int, classes: np.ndarray) -> Any:
    """``estimator`` fitted on noise with every class, so that ``classes_`` and its label
    bookkeeping are set."""
    rows = max(2 * classes.size, k + 2)
    labels = classes[np.arange(rows) % classes.size]
    return estimator.fit(_noise(rows, k), labels)


def _export_run(run: FittedRun) -> dict[str, Any]:
    from sklearn.kernel_approximation import RBFSampler
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, RidgeClassifier
    from sklearn.pipeline import Pipeline

    out: dict[str, Any] = {}
    for name, pca in run.modality_models.items():
        out[f"modalities/{name}"] = Pipeline(_sk_steps(run, name, pca))
    for (s, t), pair in run.pair_models.items():
        key = f"pairs/{s}--{t}"
        k_s, k_t = pair.source_pca.n_components_, pair.target_pca.n_components_
        ridge = Ridge(alpha=pair.alpha).fit(_noise(k_s + 2, k_s), _noise(k_s + 2, k_t))
        ridge.coef_ = pair.ridge.coef_[pair.alpha_index].T.copy()
        ridge.intercept_ = pair.ridge.intercept_[pair.alpha_index].copy()
        out[key] = Pipeline([*_sk_steps(run, s, pair.source_pca), ("ridge", ridge)])
        out[f"{key}/target"] = Pipeline(_sk_steps(run, t, pair.target_pca))
        linear = LinearRegression().fit(_noise(k_s + 2, k_s), _noise(k_s + 2, k_t))
        linear.coef_ = pair.procrustes.coef_.T.copy()
        linear.intercept_ = pair.procrustes.intercept_.copy()
        out[f"{key}/procrustes"] = Pipeline(
            [*_sk_steps(run, s, pair.source_pca), ("procrustes", linear)]
        )
    for (s, t), rf in run.random_features.items():
        pair = run.pair_models[(s, t)]
        k_s, k_t = pair.source_pca.n_components_, pair.target_pca.n_components_
        n_features = rf.features.n_features
        sampler = RBFSampler(gamma=rf.features.gamma, n_components=n_features).fit(_noise(2, k_s))
        sampler.random_weights_ = rf.features.weights_[:k_s].copy()
        sampler.random_offset_ = rf.features.offsets_.copy()
        ridge = Ridge(alpha=float(rf.ridge.alphas_[rf.alpha_index]))
        ridge.fit(_noise(n_features + 2, n_features), _noise(n_features + 2, k_t))
        ridge.coef_ = rf.ridge.coef_[rf.alpha_index].T.copy()
        ridge.intercept_ = rf.ridge.intercept_[rf.alpha_index].copy()
        out[f"random_features/{s}--{t}"] = Pipeline(
            [*_sk_steps(run, s, pair.source_pca), ("features", sampler), ("ridge", ridge)]
        )
    for features, model in run.classifiers.items():
        key = "+".join(features)
        classes = model.classes
        coef = model.model.coef_[model.alpha_index]  # (k, C)
        intercept = model.model.intercept_[model.alpha_index]
        k = coef.shape[0]
        ridge_classifier = _sk_classifier(RidgeClassifier(alpha=model.alpha), k, classes)
        if classes.size == 2:  # scikit-learn keeps one column: class 1 where it is > 0
            ridge_classifier.coef_ = coef[:, 1][None, :].copy()
            ridge_classifier.intercept_ = intercept[1:].copy()
        else:
            ridge_classifier.coef_, ridge_classifier.intercept_ = coef.T.copy(), intercept.copy()
        out[f"classify/{key}"] = Pipeline(
            [("features", _sk_fused(run, model)), ("classifier", ridge_classifier)]
        )
        if features in run.logistic:
            lr = run.logistic[features]
            logistic = _sk_classifier(LogisticRegression(C=lr.C), k, classes)
            if classes.size == 2:  # softmax of two logits = sigmoid of their difference
                logistic.coef_ = (lr.coef[:, 1] - lr.coef[:, 0])[None, :]
                logistic.intercept_ = np.array([lr.intercept[1] - lr.intercept[0]])
            else:
                logistic.coef_, logistic.intercept_ = lr.coef.T.copy(), lr.intercept.copy()
            out[f"logistic/{key}"] = Pipeline(
                [("features", _sk_fused(run, model)), ("classifier", logistic)]
            )
    return out
