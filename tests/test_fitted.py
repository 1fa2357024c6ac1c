"""mmpipe.open_run: a run's models loaded back, checked against scikit-learn fitted on the same
rows (not against mmpipe's own fit), on NumPy and Dask inputs, and its errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
import zarr
from helpers import make_views
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
from sklearn.preprocessing import StandardScaler

import mmpipe
from mmpipe.errors import ConfigError, ResultsError
from mmpipe.fitted import FittedRun
from mmpipe.io.dataset import write_dataset
from mmpipe.io.results import RunWriter
from mmpipe.loading import open_run
from mmpipe.models.classify import RidgeClassifierPath
from mmpipe.models.pca import StandardPCA
from mmpipe.models.rff import RandomFourierFeatures
from mmpipe.models.transfer import CCA, ProcrustesTransfer, RidgeTransfer

K = 3
PAIRS = ["m0:m1", "m1:m0", "m2:m1"]
ATOL = 1e-10


def _fit(url: str, out: Path, **options: Any) -> FittedRun:
    kwargs: dict[str, Any] = {
        "pairs": PAIRS,
        "components": K,
        "folds": 3,
        "alphas": [0.1, 10.0, 1000.0],
        "classify": ["m0", "m0+m1"],
        "logistic": True,
        "random_features": 8,
        "out": str(out),
    }
    mmpipe.fit(url, **(kwargs | options))
    return mmpipe.open_run(str(out))


def _scaler_pca(x: np.ndarray, k: int = K) -> tuple[StandardScaler, PCA]:
    scaler = StandardScaler().fit(x)
    return scaler, PCA(k, svd_solver="covariance_eigh").fit(scaler.transform(x))


def _scores(x: np.ndarray, fitted: tuple[StandardScaler, PCA], rows: np.ndarray) -> np.ndarray:
    scaler, pca = fitted
    return np.asarray(pca.transform(scaler.transform(x[rows])))


@pytest.fixture(scope="module")
def plain(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[FittedRun, dict[str, np.ndarray], np.ndarray]:
    tmp = tmp_path_factory.mktemp("plain")
    views, labels = make_views()
    url = write_dataset(tmp / "d.zarr", views, labels=labels, chunk_rows=50)
    return _fit(url, tmp / "r.zarr"), views, labels


def _masked_views() -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    views, labels = make_views(n=300, seed=1)
    rows = np.arange(300)
    masks = {"m0": rows % 4 != 1, "m1": rows % 5 != 2, "m2": rows % 3 != 0}
    return views, labels, masks


@pytest.fixture(scope="module")
def masked(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[FittedRun, dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    tmp = tmp_path_factory.mktemp("masked")
    views, labels, masks = _masked_views()
    stored = {n: np.where(masks[n][:, None], v, np.nan) for n, v in views.items()}
    url = write_dataset(tmp / "d.zarr", stored, labels=labels, masks=masks, chunk_rows=40)
    return _fit(url, tmp / "r.zarr"), views, labels, masks


def test_properties_and_widths(plain: Any) -> None:
    run, views, _ = plain
    assert isinstance(run, FittedRun)
    assert run.modalities == ["m0", "m1", "m2"]
    assert run.pairs == [("m0", "m1"), ("m1", "m0"), ("m2", "m1")]
    assert run.feature_sets == [("m0",), ("m0", "m1")]
    assert sorted(run.imputable()) == ["m0", "m1"]
    assert run.widths == {n: v.shape[1] for n, v in views.items()}
    assert run.classes is not None
    assert run.classes.tolist() == [0, 1, 2]
    assert run.config.components == K


@pytest.mark.parametrize("which", ["plain", "masked"])
def test_against_scikit_learn_on_the_same_rows(which: str, request: pytest.FixtureRequest) -> None:
    fixture = request.getfixturevalue(which)
    run, views, labels = fixture[:3]
    n = labels.size
    masks = fixture[3] if which == "masked" else {m: np.ones(n, bool) for m in views}
    everywhere = np.ones(n, bool)

    # transform: the modality's scaler + PCA on every row where it is present.
    for name, x in views.items():
        ref = _scaler_pca(x[masks[name]])
        np.testing.assert_allclose(
            run.transform(x, name), _scores(x, ref, everywhere), atol=ATOL, rtol=0
        )

    # map: the pair's own PCAs (rows where both are present), Ridge at the chosen α.
    for source, target in run.pairs:
        both = masks[source] & masks[target]
        s_ref, t_ref = _scaler_pca(views[source][both]), _scaler_pca(views[target][both])
        ts, tt = _scores(views[source], s_ref, both), _scores(views[target], t_ref, both)
        alpha = run.pair_models[(source, target)].alpha
        ridge = Ridge(alpha=alpha).fit(ts, tt)
        every_source = _scores(views[source], s_ref, everywhere)
        mapped = ridge.predict(every_source)
        np.testing.assert_allclose(run.map(views[source], source, target), mapped, atol=1e-8)
        scaler, pca = t_ref
        features = scaler.inverse_transform(pca.inverse_transform(mapped))
        np.testing.assert_allclose(
            run.map(views[source], source, target, features=True), features, atol=1e-8
        )
        # cca: the pair's canonical variates are correlated as the run says on its own rows.
        u = run.cca(views[source][both], source, target, "source")
        v = run.cca(views[target][both], source, target, "target")
        corr = [np.corrcoef(u[:, j], v[:, j])[0, 1] for j in range(u.shape[1])]
        np.testing.assert_allclose(
            corr, run.pair_models[(source, target)].cca.correlations_, atol=1e-2
        )

    # predict / predict_proba: each set's own PCAs, on the rows where all of it is present.
    for features in run.feature_sets:
        rows = np.logical_and.reduce([masks[f] for f in features])
        fused = np.hstack(
            [_scores(views[f], _scaler_pca(views[f][rows]), everywhere) for f in features]
        )
        model = run.classifiers[features]
        classifier = RidgeClassifier(alpha=model.alpha).fit(fused[rows], labels[rows])
        xs = {f: views[f] for f in features}
        predicted = run.predict(xs, features)
        assert predicted.dtype == np.float64
        np.testing.assert_array_equal(predicted, classifier.predict(fused))
        logistic = LogisticRegression(C=run.config.logistic_c, tol=1e-10, max_iter=10_000)
        logistic.fit(fused[rows], labels[rows])
        np.testing.assert_allclose(
            run.predict_proba(xs, features), logistic.predict_proba(fused), atol=1e-4
        )


def _raw(xs: dict[str, np.ndarray], features: tuple[str, ...]) -> np.ndarray:
    return np.hstack([xs[f] for f in features])


@pytest.mark.parametrize("which", ["plain", "masked"])
def test_to_sklearn_gives_the_same_outputs(which: str, request: pytest.FixtureRequest) -> None:
    run, views = request.getfixturevalue(which)[:2]
    exported = run.to_sklearn()
    for name in run.modalities:
        got = exported[f"modalities/{name}"].transform(views[name])
        np.testing.assert_allclose(got, run.transform(views[name], name), atol=ATOL, rtol=0)
    for s, t in run.pairs:
        key = f"pairs/{s}--{t}"
        mapped = exported[key].predict(views[s])
        np.testing.assert_allclose(mapped, run.map(views[s], s, t), atol=ATOL, rtol=0)
        np.testing.assert_allclose(
            exported[f"{key}/target"].inverse_transform(mapped),
            run.map(views[s], s, t, features=True),
            atol=ATOL,
            rtol=0,
        )
        pair = run.pair_models[(s, t)]
        own = pair.procrustes.predict(pair.source_pca.transform(views[s]))
        np.testing.assert_allclose(exported[f"{key}/procrustes"].predict(views[s]), own, atol=ATOL)
        rf = run.random_features[(s, t)]
        own = rf.ridge.predict(
            rf.features.transform(pair.source_pca.transform(views[s])), rf.alpha_index
        )
        got = exported[f"random_features/{s}--{t}"].predict(views[s])
        np.testing.assert_allclose(got, own, atol=ATOL, rtol=0)
    for features in run.feature_sets:
        key = "+".join(features)
        xs = {f: views[f] for f in features}
        np.testing.assert_array_equal(
            exported[f"classify/{key}"].predict(_raw(xs, features)), run.predict(xs, features)
        )
        np.testing.assert_allclose(
            exported[f"classify/{key}"].decision_function(_raw(xs, features)),
            run.decision_function(xs, features),
            atol=ATOL,
            rtol=0,
        )
        np.testing.assert_allclose(
            exported[f"logistic/{key}"].predict_proba(_raw(xs, features)),
            run.predict_proba(xs, features),
            atol=ATOL,
            rtol=0,
        )


def test_two_classes_export_keeps_one_column(tmp_path: Path) -> None:
    views, labels = make_views(classes=2, seed=4)
    url = write_dataset(tmp_path / "d.zarr", views, labels=labels, chunk_rows=60)
    run = _fit(url, tmp_path / "r.zarr", random_features=0)
    exported = run.to_sklearn()
    xs = {"m0": views["m0"], "m1": views["m1"]}
    raw = _raw(xs, ("m0", "m1"))
    assert exported["classify/m0+m1"][-1].coef_.shape == (1, 2 * K)
    np.testing.assert_array_equal(exported["classify/m0+m1"].predict(raw), run.predict(xs, "m0+m1"))
    np.testing.assert_allclose(
        exported["logistic/m0+m1"].predict_proba(raw), run.predict_proba(xs, "m0+m1"), atol=ATOL
    )


def test_sketched_modality(tmp_path: Path) -> None:
    views, labels = make_views(widths=(12, 5, 4), seed=2)
    url = write_dataset(tmp_path / "d.zarr", views, labels=labels, chunk_rows=60)
    run = _fit(url, tmp_path / "r.zarr", sketch_above=8, random_features=0)
    assert set(run.reductions) == {"m0"}
    assert run.widths["m0"] == 12
    g = zarr.open_group(str(tmp_path / "r.zarr"), mode="r")[f"runs/{run.run_id}/sketches/m0"]
    offset, scale, basis = (np.asarray(g[a][...]) for a in ("offset", "scale", "basis"))
    u = ((views["m0"] - offset) / scale) @ basis
    # The sketch coordinates are centered, not scaled, before their PCA.
    ref = PCA(K, svd_solver="covariance_eigh").fit(u).transform(u)
    np.testing.assert_allclose(run.transform(views["m0"], "m0"), ref, atol=1e-8)
    exported = run.to_sklearn()
    np.testing.assert_allclose(
        exported["modalities/m0"].transform(views["m0"]),
        run.transform(views["m0"], "m0"),
        atol=ATOL,
    )
    np.testing.assert_allclose(
        exported["pairs/m0--m1"].predict(views["m0"]), run.map(views["m0"], "m0", "m1"), atol=ATOL
    )
    run.map(views["m1"], "m1", "m0")  # into its scores: fine
    with pytest.raises(ConfigError, match="not available for the sketched modality 'm0'"):
        run.map(views["m1"], "m1", "m0", features=True)


def test_numpy_and_dask_agree_whatever_the_chunks(masked: Any) -> None:
    run, views, _, masks = masked
    for chunks in (37, 100, 300):
        d = {n: da.from_array(v, chunks=(chunks, -1)) for n, v in views.items()}
        m = {n: da.from_array(v, chunks=chunks) for n, v in masks.items()}
        mixed = {"m0": d["m0"], "m1": views["m1"]}  # a Dask and a NumPy input together
        pairs = [
            (run.transform(d["m0"], "m0"), run.transform(views["m0"], "m0")),
            (
                run.map(d["m0"], "m0", "m1", features=True),
                run.map(views["m0"], "m0", "m1", features=True),
            ),
            (run.cca(d["m1"], "m0", "m1", "target"), run.cca(views["m1"], "m0", "m1", "target")),
            (run.predict(mixed, "m0+m1"), run.predict(views, "m0+m1")),
            (run.predict_proba(d, "m0"), run.predict_proba(views, "m0")),
        ]
        for lazy, eager in pairs:
            assert isinstance(lazy, da.Array)
            np.testing.assert_array_equal(lazy.compute(), eager)
        values, imputed = run.impute(d, m, "m1")
        eager_values, eager_imputed = run.impute(views, masks, "m1")
        assert isinstance(values, da.Array)
        np.testing.assert_array_equal(values.compute(), eager_values)
        np.testing.assert_array_equal(imputed.compute(), eager_imputed)


def test_impute_picks_the_best_present_source_per_row(masked: Any) -> None:
    run, views, _, masks = masked
    order = run.sources("m1")
    assert sorted(order) == ["m0", "m2"]
    r2 = {s: run.pair_models[(s, "m1")].r2 for s in order}
    assert r2[order[0]] >= r2[order[1]]
    best, second = order
    values, imputed = run.impute(views, masks, "m1")
    by_best = run.map(views[best], best, "m1", features=True)
    by_second = run.map(views[second], second, "m1", features=True)
    want_best = ~masks["m1"] & masks[best]
    want_second = ~masks["m1"] & ~masks[best] & masks[second]
    assert want_best.any()
    assert want_second.any()
    np.testing.assert_array_equal(values[want_best], by_best[want_best])
    np.testing.assert_array_equal(values[want_second], by_second[want_second])
    np.testing.assert_array_equal(imputed, want_best | want_second)
    assert np.isnan(values[~imputed]).all()
    # Non-finite source values count as absent, never as an error.
    broken = {n: v.copy() for n, v in views.items()}
    broken[best][want_best] = np.nan
    values, imputed = run.impute(broken, masks, "m1")
    rows = want_best & masks[second]
    np.testing.assert_array_equal(values[rows], by_second[rows])
    assert not imputed[want_best & ~masks[second]].any()


def test_non_finite_rows_give_nan_rows(plain: Any) -> None:
    run, views, _ = plain
    x = views["m0"].copy()
    x[[3, 7], 1] = [np.nan, np.inf]
    for out in (
        run.transform(x, "m0"),
        run.map(x, "m0", "m1", features=True),
        run.predict({"m0": x}, "m0")[:, None],
        run.predict_proba({"m0": x}, "m0"),
    ):
        assert np.isnan(out[[3, 7]]).all()
        assert np.isfinite(np.delete(out, [3, 7], axis=0)).all()


def test_models_follow_scikit_learn_conventions(plain: Any) -> None:
    run, _, _ = plain
    pair = run.pair_models[("m0", "m1")]
    models = [
        run.modality_models["m0"],
        pair.ridge,
        pair.procrustes,
        pair.cca,
        run.classifiers[("m0",)].model,
        run.random_features[("m0", "m1")].features,
    ]
    for model in models:
        copy = clone(model)
        assert type(copy) is type(model)
        assert copy.get_params() == model.get_params()
        assert not any(k.endswith("_") and not k.startswith("_") for k in vars(copy))
    assert StandardPCA(2, scale=False).get_params() == {"n_components": 2, "scale": False}
    assert RidgeTransfer().set_params(alphas=(2.0,)).alphas == (2.0,)
    assert CCA(reg=0.5).get_params(deep=False) == {"n_components": None, "reg": 0.5}
    assert ProcrustesTransfer().get_params() == {}
    assert RidgeClassifierPath((1.0,)).get_params() == {"alphas": (1.0,)}
    assert RandomFourierFeatures(4).get_params()["n_features"] == 4
    with pytest.raises(ValueError, match="Invalid parameter 'bogus'"):
        StandardPCA().set_params(bogus=1)
    pca = run.modality_models["m0"]
    assert pca.components_.shape == (K, 7)
    assert pca.n_features_in_ == 7


def test_errors_name_the_thing(plain: Any, tmp_path: Path, small_store: str) -> None:
    run, views, _ = plain
    with pytest.raises(ConfigError, match="no model of modality 'zz'"):
        run.transform(views["m0"], "zz")
    with pytest.raises(ConfigError, match=r"'m0' has 5 columns.*fitted on 7"):
        run.transform(views["m1"], "m0")
    with pytest.raises(ConfigError, match="no map m1:m2"):
        run.map(views["m1"], "m1", "m2")
    with pytest.raises(ConfigError, match="no classifier of 'm1'"):
        run.predict({"m1": views["m1"]}, "m1")
    with pytest.raises(ConfigError, match=r"needs the rows of m1"):
        run.predict({"m0": views["m0"]}, "m0+m1")
    with pytest.raises(ConfigError, match="no pair into 'm2'"):
        run.impute(views, {}, "m2")
    with pytest.raises(ConfigError, match="different numbers of rows"):
        run.predict({"m0": views["m0"], "m1": views["m1"][:10]}, "m0+m1")

    results = tmp_path / "r.zarr"
    no_logistic = _fit(small_store, results, logistic=False, random_features=0)
    with pytest.raises(ConfigError, match="no logistic model of 'm0'"):
        no_logistic.predict_proba({"m0": views["m0"]}, "m0")
    with pytest.raises(ResultsError, match="No run 'nope'"):
        open_run(results, "nope")
    with pytest.raises(ResultsError, match="is a dataset, not a results store"):
        open_run(small_store)
    writer = RunWriter.begin(results, dataset=small_store, heartbeat_seconds=0)
    try:
        with pytest.raises(ResultsError, match=f"Run '{writer.run_id}'.*'running', not complete"):
            open_run(results, writer.run_id)
    finally:
        writer.close()
    # The latest complete run is still the default.
    assert open_run(results).run_id == no_logistic.run_id


def test_lazy_exports() -> None:
    assert mmpipe.open_run is open_run
    assert mmpipe.FittedRun is FittedRun
