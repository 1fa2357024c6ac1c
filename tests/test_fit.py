"""mmpipe.fit against scikit-learn/SciPy/NumPy on small data, and its invariances."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.linalg
from helpers import ridge_search
from sklearn.cross_decomposition import CCA
from sklearn.datasets import load_linnerud
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.preprocessing import StandardScaler

import mmpipe
from mmpipe.errors import ConfigError, DataValueError
from mmpipe.io.dataset import write_dataset
from mmpipe.result import FitResult
from mmpipe.stats.folds import FoldPlan

Views = tuple[dict[str, np.ndarray], np.ndarray]
ALPHAS = (0.0, 0.5, 5.0, 50.0)


def sk_scores(x_train: np.ndarray, others: list[np.ndarray], k: int) -> tuple[Any, Any, list]:
    scaler = StandardScaler().fit(x_train)
    pca = PCA(n_components=k, svd_solver="covariance_eigh").fit(scaler.transform(x_train))
    return scaler, pca, [pca.transform(scaler.transform(o)) for o in [x_train, *others]]


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(b)), 1e-300))


@pytest.fixture
def fitted(small_store: str) -> FitResult:
    return mmpipe.fit(
        small_store, components={"m0": 4, "m1": 3, "m2": 3}, alphas=ALPHAS, folds=5, seed=11
    )


def test_oracle_every_fold_pair_alpha(fitted: FitResult, small_views: Views) -> None:
    views, _ = small_views
    k = {"m0": 4, "m1": 3, "m2": 3}
    assert len(fitted.pairs) == 6  # every directed pair of 3 modalities
    for pair in fitted.pairs:
        xs, xt = views[pair.source], views[pair.target]
        for split in range(fitted.plan.n_splits):
            tr, va = fitted.plan.train_mask(split), fitted.plan.validation_mask(split)
            _, _, (ts_tr, ts_va) = sk_scores(xs[tr], [xs[va]], k[pair.source])
            _, _, (tt_tr, tt_va) = sk_scores(xt[tr], [xt[va]], k[pair.target])
            for a, alpha in enumerate(ALPHAS):
                pred = Ridge(alpha=alpha, solver="svd").fit(ts_tr, tt_tr).predict(ts_va)
                assert pair.r2[split, a] == pytest.approx(r2_score(tt_va, pred), rel=1e-6)
                assert pair.mse[split, a] == pytest.approx(
                    mean_squared_error(tt_va, pred), rel=1e-6
                )


def test_oracle_final_models(fitted: FitResult, small_views: Views) -> None:
    views, _ = small_views
    pair = fitted.pair("m0", "m1")
    scaler, pca, (ts,) = sk_scores(views["m0"], [], 4)
    _, _, (tt,) = sk_scores(views["m1"], [], 3)
    models = pair.models
    np.testing.assert_allclose(models.source_pca.mean_, scaler.mean_, rtol=1e-10)
    np.testing.assert_allclose(models.source_pca.scale_, scaler.scale_, rtol=1e-10)
    assert rel(models.source_pca.components_, pca.components_) < 1e-6
    assert rel(models.source_pca.explained_variance_, pca.explained_variance_) < 1e-8
    assert rel(models.source_pca.explained_variance_ratio_, pca.explained_variance_ratio_) < 1e-8
    np.testing.assert_allclose(models.source_pca.transform(views["m0"]), ts, atol=1e-8)
    for a, alpha in enumerate(ALPHAS):
        ridge = Ridge(alpha=alpha, solver="svd").fit(ts, tt)
        assert rel(models.ridge.coef_[a], ridge.coef_.T) < 1e-6
        np.testing.assert_allclose(models.ridge.intercept_[a], ridge.intercept_, atol=1e-9)
    assert fitted.modalities["m0"].pca.n_components_ == 4


def test_alpha_choice_equals_gridsearchcv(fitted: FitResult, small_views: Views) -> None:
    """mmpipe picks α by the best mean validation R² of the target's PCA scores (its scaler and
    PCA refitted on each training split): GridSearchCV + PredefinedSplit over the same folds,
    scoring that same quantity (see helpers.ridge_search for why not the raw targets)."""
    views, _ = small_views
    k = {"m0": 4, "m1": 3, "m2": 3}
    chosen = set()
    for pair in fitted.pairs:
        search = ridge_search(
            views[pair.source], views[pair.target], k[pair.source], k[pair.target], ALPHAS,
            fitted.plan,
        )  # fmt: skip
        assert pair.alpha_index == search.best_index_, (pair.source, pair.target)
        assert pair.alpha == ALPHAS[search.best_index_]
        np.testing.assert_allclose(
            pair.r2.mean(axis=0), search.cv_results_["mean_test_r2"], rtol=1e-6
        )
        np.testing.assert_allclose(
            pair.mse.mean(axis=0), search.cv_results_["mean_test_mse"], rtol=1e-6
        )
        chosen.add(pair.alpha_index)
    # The grid has an inside optimum: neither the first nor the last α everywhere.
    assert chosen - {0, len(ALPHAS) - 1}


def test_procrustes_matches_scipy(small_store: str, small_views: Views) -> None:
    views, _ = small_views
    result = mmpipe.fit(small_store, pairs=["m1:m2"], components=3, alphas=(1.0,))
    _, _, (ts,) = sk_scores(views["m1"], [], 3)
    _, _, (tt,) = sk_scores(views["m2"], [], 3)
    r, _ = scipy.linalg.orthogonal_procrustes(ts, tt)
    np.testing.assert_allclose(result.pairs[0].models.procrustes.coef_, r, atol=1e-8)


# R's cancor(linnerud exercise, physiological), as published to four decimals.
LINNERUD_CANCOR = (0.7956, 0.2006, 0.0726)


def test_cca_on_linnerud_equals_published_values_and_sklearn(tmp_path: Path) -> None:
    exercise, physiological = load_linnerud(return_X_y=True)
    url = write_dataset(tmp_path / "l.zarr", {"exercise": exercise, "physiological": physiological})
    # Every component kept: CCA of the PCA scores is CCA of the columns (an invertible map).
    result = mmpipe.fit(
        url, pairs=["exercise:physiological"], components=3, alphas=(1.0,), folds=4, cca_reg=0.0
    )
    models = result.pairs[0].models
    cca = models.cca
    np.testing.assert_allclose(cca.correlations_, LINNERUD_CANCOR, atol=5e-5)
    # scikit-learn's CCA (iterated NIPALS with deflation, not an SVD) finds the same
    # correlations and, up to scale and sign, the same canonical variates.
    reference = CCA(n_components=3, max_iter=10_000, tol=1e-14).fit(exercise, physiological)
    x_ref, y_ref = reference.transform(exercise, physiological)
    u_s, u_t = cca.transform(
        models.source_pca.transform(exercise), models.target_pca.transform(physiological)
    )
    for j in range(3):
        assert cca.correlations_[j] == pytest.approx(
            np.corrcoef(x_ref[:, j], y_ref[:, j])[0, 1], rel=1e-6
        )
        assert abs(np.corrcoef(u_s[:, j], x_ref[:, j])[0, 1]) == pytest.approx(1, abs=1e-8)
        assert abs(np.corrcoef(u_t[:, j], y_ref[:, j])[0, 1]) == pytest.approx(1, abs=1e-8)
    # The definition: variates of unit variance, uncorrelated but for each pair (j, j).
    joint = np.cov(np.hstack([u_s, u_t]), rowvar=False)
    expected = np.block(
        [[np.eye(3), np.diag(cca.correlations_)], [np.diag(cca.correlations_), np.eye(3)]]
    )
    np.testing.assert_allclose(joint, expected, atol=1e-8)


def test_regularized_cca_equals_generalized_eigenproblem(
    small_store: str, small_views: Views
) -> None:
    """With C = G / (n − 1) + reg · I on each side, the source weights a solve
    Cst Ctt⁻¹ Cts a = ρ² Css a with aᵀ Css a = 1, and b = Ctt⁻¹ Cts a / ρ: solved by
    scipy.linalg.eigh as a generalized symmetric eigenproblem, no whitening, no SVD."""
    views, _ = small_views
    reg = 0.01
    result = mmpipe.fit(
        small_store, pairs=["m0:m1"], components={"m0": 4, "m1": 3}, alphas=(1.0,), cca_reg=reg
    )
    cca = result.pairs[0].models.cca
    _, _, (ts,) = sk_scores(views["m0"], [], 4)
    _, _, (tt,) = sk_scores(views["m1"], [], 3)
    joint = np.cov(np.hstack([ts, tt]), rowvar=False)
    css = joint[:4, :4] + reg * np.eye(4)
    ctt = joint[4:, 4:] + reg * np.eye(3)
    cst = joint[:4, 4:]
    values, vectors = scipy.linalg.eigh(cst @ np.linalg.solve(ctt, cst.T), css)
    order = np.argsort(values)[::-1][:3]  # 4 source directions, only 3 with ρ > 0
    rho = np.sqrt(values[order])
    a = vectors[:, order]
    b = np.linalg.solve(ctt, cst.T @ a) / rho
    np.testing.assert_allclose(cca.correlations_, rho, rtol=1e-8)
    signs = np.sign(np.sum(a * cca.source_weights_, axis=0))
    np.testing.assert_allclose(cca.source_weights_, a * signs, atol=1e-8)
    np.testing.assert_allclose(cca.target_weights_, b * signs, atol=1e-8)
    # The canonical variates have exactly those (regularized) correlations on the training rows.
    ts, tt = ts - ts.mean(0), tt - tt.mean(0)
    u_s, u_t = cca.transform(ts + cca.source_mean_, tt + cca.target_mean_)
    corr = [np.corrcoef(u_s[:, j], u_t[:, j])[0, 1] for j in range(3)]
    assert np.all(np.asarray(corr) >= cca.correlations_ - 1e-6)


def test_variance_fraction_components(small_store: str, small_views: Views) -> None:
    views, _ = small_views
    result = mmpipe.fit(small_store, pairs=["m0:m1"], components=0.8, alphas=(1.0,))
    sk = PCA(n_components=0.8, svd_solver="covariance_eigh").fit(
        StandardScaler().fit_transform(views["m0"])
    )
    assert result.modalities["m0"].pca.n_components_ == sk.n_components_


def summary_numbers(result: FitResult) -> np.ndarray:
    parts = []
    for p in result.pairs:
        parts += [
            p.r2.ravel(),
            p.mse.ravel(),
            p.models.ridge.coef_.ravel(),
            p.procrustes_r2,
            np.nan_to_num(p.cca_correlations.ravel()),
            p.models.cca.correlations_,
        ]
    return np.concatenate(parts)


@pytest.mark.parametrize("chunk_rows", [17, 64, 240])
def test_independent_of_chunking(small_store: str, chunk_rows: int) -> None:
    ref = summary_numbers(mmpipe.fit(small_store, components=3, alphas=ALPHAS, chunk_rows=240))
    got = summary_numbers(
        mmpipe.fit(small_store, components=3, alphas=ALPHAS, chunk_rows=chunk_rows)
    )
    assert rel(got, ref) < 1e-10


@pytest.mark.slow
def test_independent_of_worker_count(small_store: str, local_client: Any) -> None:
    ref = summary_numbers(mmpipe.fit(small_store, components=3, alphas=ALPHAS, chunk_rows=30))
    got = summary_numbers(
        mmpipe.fit(small_store, components=3, alphas=ALPHAS, chunk_rows=30, client=local_client)
    )
    assert rel(got, ref) < 1e-10


def test_masked_rows_equal_dropped_rows(tmp_path: Path, small_views: Views) -> None:
    views, labels = small_views
    rng = np.random.default_rng(5)
    present = rng.random(labels.size) > 0.25
    garbage = {k: v.copy() for k, v in views.items()}
    garbage["m1"][~present] = np.nan  # absent values must never be read into a statistic
    masked = write_dataset(tmp_path / "masked.zarr", garbage, masks={"m1": present}, chunk_rows=40)
    dropped = write_dataset(
        tmp_path / "dropped.zarr", {k: v[present] for k, v in views.items()}, chunk_rows=40
    )
    plan = mmpipe.stats.kfold_plan(labels.size, 4, seed=2)
    sub = FoldPlan(
        plan.kind, plan.assignment[present], plan.n_groups, plan.splits, plan.seed, plan.stratified
    )
    kw: dict[str, Any] = dict(pairs=["m0:m1", "m2:m1"], components=3, alphas=ALPHAS)
    a = mmpipe.fit(masked, plan=plan, **kw)
    b = mmpipe.fit(dropped, plan=sub, **kw)
    assert rel(summary_numbers(a), summary_numbers(b)) < 1e-10
    assert a.pairs[0].rows == present.sum()
    assert a.pairs[0].rows_dropped == (~present).sum()
    assert a.modalities["m0"].rows == labels.size  # m0 alone keeps every row


def test_tsqr_agrees_with_normal_equations(small_store: str) -> None:
    kw: dict[str, Any] = dict(components=3, alphas=ALPHAS, chunk_rows=60)
    normal = mmpipe.fit(small_store, **kw)
    tsqr = mmpipe.fit(small_store, solver="tsqr", **kw)
    for p, q in zip(normal.pairs, tsqr.pairs, strict=True):
        assert rel(q.models.ridge.coef_, p.models.ridge.coef_) < 1e-8
        assert rel(q.r2, p.r2) < 1e-8


def test_nonfinite_values_stop_the_run(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((30, 3))
    x[3, 1] = np.nan
    x[7, 0] = np.inf
    url = write_dataset(tmp_path / "d.zarr", {"a": x, "b": np.ones((30, 2))})
    with pytest.raises(DataValueError, match="modalities/a: 2"):
        mmpipe.fit(url, folds=3, out=tmp_path / "r.zarr")
    # The run existed from the start (status running); it ends failed, with the reason, and
    # nothing of it looks complete.
    (run,) = mmpipe.list_runs(tmp_path / "r.zarr")
    assert run["status"] == "failed"
    assert "modalities/a: 2" in run["error"]
    with pytest.raises(mmpipe.MmpipeError, match="No complete run"):
        mmpipe.read_run(tmp_path / "r.zarr")


def test_zero_variance_columns_reported_and_scaled_by_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((60, 4))
    a[:, 2] = 3.0
    url = write_dataset(tmp_path / "d.zarr", {"a": a, "b": rng.standard_normal((60, 2))})
    result = mmpipe.fit(url, folds=3, components=2)
    assert result.modalities["a"].zero_variance_columns.tolist() == [2]
    assert result.modalities["a"].pca.scale_[2] == 1.0
    assert result.summary()["modalities"]["a"]["zero_variance_columns"] == [2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pairs": ["m0:zz"]}, "names modality 'zz'"),
        ({"pairs": ["m0"]}, "must be written SOURCE:TARGET"),
        ({"pairs": ["m0:m0"]}, "onto itself"),
        ({"alphas": [-1.0]}, "alphas.0: Input should be greater than or equal to 0"),
        ({"folds": 1}, "folds: Input should be greater than or equal to 2"),
        ({"holdout": 1.5}, "holdout: Input should be less than 1"),
        ({"components": {"zz": 3}}, "unknown modalities"),
        ({"components": 99}, None),  # capped at the width: allowed
        ({"components": -2}, "components: must be a count >= 1"),
        ({"solver": "magic"}, "solver: Input should be 'normal' or 'tsqr'"),
    ],
)
def test_bad_parameters(small_store: str, kwargs: dict[str, Any], message: str | None) -> None:
    if message is None:
        assert mmpipe.fit(small_store, folds=3, **kwargs).pairs
        return
    with pytest.raises(ConfigError, match=message):
        mmpipe.fit(small_store, **kwargs)


def test_holdout(small_store: str, small_views: Views) -> None:
    views, _ = small_views
    result = mmpipe.fit(small_store, pairs=["m0:m1"], holdout=0.25, components=3, alphas=(1.0,))
    assert result.plan.n_splits == 1
    tr, va = result.plan.train_mask(0), result.plan.validation_mask(0)
    _, _, (ts_tr, ts_va) = sk_scores(views["m0"][tr], [views["m0"][va]], 3)
    _, _, (tt_tr, tt_va) = sk_scores(views["m1"][tr], [views["m1"][va]], 3)
    pred = Ridge(alpha=1.0).fit(ts_tr, tt_tr).predict(ts_va)
    assert result.pairs[0].r2[0, 0] == pytest.approx(r2_score(tt_va, pred), rel=1e-6)


def test_fingerprint_names_the_data_not_the_options(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    views = {"a": rng.standard_normal((90, 4)), "b": rng.standard_normal((90, 3))}
    url = write_dataset(tmp_path / "d.zarr", views)
    one = mmpipe.fit(url, pairs=["a:b"], folds=3, components=2)
    other = mmpipe.fit(url, pairs=["b:a"], folds=4, components=3, alphas=[1.0])
    assert one.fingerprint == other.fingerprint  # same modalities of the same data
    views["b"][7, 1] += 1e-3  # one value moves a column mean past the 6th decimal
    changed = write_dataset(tmp_path / "e.zarr", views)
    assert mmpipe.fit(changed, pairs=["a:b"], folds=3, components=2).fingerprint != one.fingerprint
