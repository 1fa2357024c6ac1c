"""Loading a fitted run back from its results store: :func:`open_run`."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import zarr

from mmpipe.errors import ResultsError, StoreNotFoundError
from mmpipe.fitted import (
    FittedClassifier,
    FittedLogistic,
    FittedPair,
    FittedRandomFeatures,
    FittedRun,
)
from mmpipe.io.reduction import Reduction
from mmpipe.io.runs import read_run
from mmpipe.io.storage import StorageOptions
from mmpipe.models.classify import RidgeClassifierPath
from mmpipe.models.mcca import MultiviewModel
from mmpipe.models.pca import StandardPCA
from mmpipe.models.rff import RandomFourierFeatures
from mmpipe.models.transfer import CCA, ProcrustesTransfer, RidgeTransfer
from mmpipe.options import FitConfig


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
        spca = _read_pca(g, "source_", rows, config.scale and source not in reductions)
        tpca = _read_pca(g, "target_", rows, config.scale and target not in reductions)
        procrustes = ProcrustesTransfer()
        procrustes.coef_ = _array(g, "procrustes")
        procrustes.intercept_ = (
            _array(g, "procrustes_intercept")
            if _has(g, "procrustes_intercept")
            else np.zeros(procrustes.coef_.shape[1])
        )
        # The pair's own ridge term (chosen from a path); older runs: the config's one value.
        reg = config.cca_reg if isinstance(config.cca_reg, float) else config.cca_reg[0]
        cca = CCA(float(a.get("cca_reg", reg)))
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

    multiview = None
    mg = dict(run.members()).get("multiview")
    if isinstance(mg, zarr.Group):  # the final MCCA: weights on each modality's PCA scores
        views = tuple(str(v) for v in _attrs(mg)["modalities"])
        weights = {v: _array(_groups(mg, "views")[v], "weights") for v in views}
        c = next(iter(weights.values())).shape[1]
        multiview = MultiviewModel(views, weights, _array(mg, "eigenvalues")[:c])

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
        multiview=multiview,
    )
