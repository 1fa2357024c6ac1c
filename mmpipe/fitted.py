"""A fitted run, loaded back from its results store: the models a fit learned, ready to use.

    run = mmpipe.open_run("results.zarr")          # the latest complete run
    run.transform(x_image, "image")                # PCA scores (n, k)
    run.map(x_image, "image", "text")              # image mapped through W into text's scores
    run.predict({"image": x_image, "text": x_text}, "image+text")
    run.to_sklearn()["pairs/image--text"]          # a scikit-learn Pipeline, same outputs

Every method takes NumPy arrays (rows × columns, as stored in the dataset) or Dask arrays
(then it returns a Dask array computed block by block: rows as chunked, columns whole).
``mmpipe.apply`` (mmpipe/applying.py) calls the same methods on every row block of a dataset;
:func:`mmpipe.loading.open_run` builds a run from its store, :mod:`mmpipe.export` exports it.

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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mmpipe.errors import ConfigError
from mmpipe.io.reduction import Reduction
from mmpipe.models.classify import RidgeClassifierPath
from mmpipe.models.mcca import MultiviewModel, shared_embedding
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
    multiview: MultiviewModel | None = field(default=None, repr=False)
    """The final MCCA of several modalities (``multiview/``), when the run fitted one."""

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

    def embed_multiview(
        self, xs: Mapping[str, Array], present: Mapping[str, Array] | None = None
    ) -> Array:
        """(n, c) every row's shared embedding: the mean of the MCCA projections (each view's
        scores of ``modalities/<name>`` times its weights) of the views the row has. A view
        not in ``xs``, False in ``present`` or with a non-finite value in a row is absent from
        it; a row with no view gets NaN."""
        model = self.multiview
        if model is None:
            raise ConfigError(
                f"Run {self.run_id!r} has no multiview model: fit with multiview (names or "
                "'all') to embed rows in a common space of several modalities."
            )
        views = [v for v in model.modalities if v in xs]
        if not views:
            raise ConfigError(
                f"The multiview embedding needs the rows of one of "
                f"{', '.join(model.modalities)}; given: {', '.join(xs) or 'none'}."
            )
        for v in views:
            self.check_width(xs[v], v)
        n = xs[views[0]].shape[0]
        masks = [
            np.ones(n, dtype=bool) if present is None or present.get(v) is None else present[v]
            for v in views
        ]

        def block(*b: np.ndarray) -> np.ndarray:
            projections, here = [], []
            for v, x, m in zip(views, b[: len(views)], b[len(views) :], strict=True):
                scores = self._scores_block(x, v, self.modality_models[v])
                ok = np.asarray(m, dtype=bool) & np.isfinite(scores).all(axis=1)
                projections.append(np.where(ok[:, None], scores, 0.0) @ model.weights[v])
                here.append(ok)
            return shared_embedding(projections, here)

        return _blockwise(block, [*(xs[v] for v in views), *masks], model.n_components, np.float64)

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
        from mmpipe.export import export_run  # scikit-learn costs seconds to import

        return export_run(self)


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
