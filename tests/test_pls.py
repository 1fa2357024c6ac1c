"""Partial least squares per pair (``pls=n``), from the fit's statistics, against scikit-learn's
``PLSSVD`` / ``PLSRegression`` and a NIPALS written here on the rows.

The inputs are each pair's PCA scores (the scores the ridge map uses): the final PCAs' scores
of all rows for the final models; for the cross-validation check, scikit-learn's
StandardScaler + PCA fitted on each split's training rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import make_views
from sklearn.cross_decomposition import PLSSVD, PLSRegression
from sklearn.decomposition import PCA
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mmpipe
import mmpipe.stats.scoring
from mmpipe import report
from mmpipe.io.dataset import write_dataset
from mmpipe.io.runs import read_run

TOL = 1e-8


def nipals(x: np.ndarray, y: np.ndarray, n_components: int) -> list[np.ndarray]:
    """Textbook PLS2 (NIPALS on the rows, regression deflation, no scaling): the coefficient
    matrix of every number of components 1..n_components, y ≈ (x − x̄) B + ȳ."""
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    ws, ps, cs = [], [], []
    coefs = []
    for _ in range(n_components):
        u = y[:, np.argmax((y**2).sum(axis=0))]
        t_old = np.zeros(x.shape[0])
        for _ in range(100_000):
            w = x.T @ u
            w /= np.linalg.norm(w)
            t = x @ w
            c = y.T @ t / (t @ t)
            u = y @ c / (c @ c)
            if np.linalg.norm(t - t_old) <= 1e-15 * np.linalg.norm(t):
                break
            t_old = t
        p = x.T @ t / (t @ t)
        x = x - np.outer(t, p)
        y = y - np.outer(t, c)
        ws.append(w)
        ps.append(p)
        cs.append(c)
        w_, p_, c_ = np.array(ws).T, np.array(ps).T, np.array(cs).T
        coefs.append(w_ @ np.linalg.solve(p_.T @ w_, c_.T))
    return coefs


def _present(n: int = 300) -> np.ndarray:
    """Rows where m1 is present in the masked variant of the data."""
    return np.random.default_rng(9).random(n) > 0.2


def _store(
    tmp_path: Path, name: str = "d.zarr", chunk_rows: int = 50, n: int = 300, masked: bool = False
) -> str:
    views, labels = make_views(n, (7, 5, 4), seed=4)
    masks = {"m1": _present(n)} if masked else None
    return write_dataset(tmp_path / name, views, labels=labels, masks=masks, chunk_rows=chunk_rows)


def _views(n: int = 300) -> dict[str, np.ndarray]:
    return make_views(n, (7, 5, 4), seed=4)[0]


def _pair(result: Any, source: str, target: str) -> tuple[Any, Any]:
    pls = next(r for r in result.pls if (r.source, r.target) == (source, target))
    pair = next(p for p in result.pairs if (p.source, p.target) == (source, target))
    return pls, pair


def _scale(a: np.ndarray) -> float:
    return max(float(np.abs(a).max()), 1.0)


def test_pls_svd_matches_scikit_learn(tmp_path: Path) -> None:
    result = mmpipe.fit(_store(tmp_path), components=4, folds=3, pls=3)
    views = _views()
    assert len(result.pls) == 6
    for pls, pair in (_pair(result, s, t) for s, t in [("m0", "m1"), ("m2", "m0")]):
        xs = pair.models.source_pca.transform(views[pls.source])
        ys = pair.models.target_pca.transform(views[pls.target])
        ref = PLSSVD(n_components=3, scale=False).fit(xs, ys)
        # Signs as scikit-learn's svd_flip: the largest |x weight| of each component positive.
        np.testing.assert_allclose(pls.svd.x_weights_, ref.x_weights_, rtol=0, atol=TOL)
        np.testing.assert_allclose(pls.svd.y_weights_, ref.y_weights_, rtol=0, atol=TOL)
        # The singular values are the covariances of the paired PLS scores.
        tx, ty = ref.transform(xs, ys)
        covariances = (tx * ty).sum(axis=0) / (xs.shape[0] - 1)
        np.testing.assert_allclose(pls.svd.singular_values_, covariances, rtol=TOL, atol=0)
        assert pls.summary()["singular_values"] == pytest.approx(covariances.tolist(), rel=TOL)


def test_pls_regression_single_target_matches_scikit_learn(tmp_path: Path) -> None:
    # One target component: NIPALS needs no inner iterations, scikit-learn's fit is exact.
    result = mmpipe.fit(
        _store(tmp_path), components={"m0": 6, "m1": 1, "m2": 3}, folds=3, pls=5, pairs=["m0:m1"]
    )
    (pls,) = result.pls
    pair = result.pairs[0]
    views = _views()
    xs = pair.models.source_pca.transform(views["m0"])
    ys = pair.models.target_pca.transform(views["m1"])
    assert pls.regression.coef_.shape == (5, 6, 1)
    for a in range(1, 6):
        ref = PLSRegression(n_components=a, scale=False).fit(xs, ys)
        coef = pls.regression.coef_[a - 1]
        np.testing.assert_allclose(coef, ref.coef_.T, rtol=0, atol=TOL * _scale(ref.coef_))
        predicted = pls.regression.predict(xs, a)
        expected = ref.predict(xs).reshape(-1, 1)
        np.testing.assert_allclose(predicted, expected, rtol=0, atol=TOL * _scale(expected))
    chosen = PLSRegression(n_components=pls.n_components, scale=False).fit(xs, ys)
    np.testing.assert_allclose(
        xs @ pls.coef + pls.intercept, chosen.predict(xs).reshape(-1, 1), rtol=0, atol=1e-7
    )


def test_pls_regression_several_targets_matches_nipals_on_rows(tmp_path: Path) -> None:
    result = mmpipe.fit(_store(tmp_path), components={"m0": 6, "m1": 4}, folds=3, pls=6,
                        pairs=["m0:m1", "m1:m0"])  # fmt: skip
    views = _views()
    for pls, pair in (_pair(result, "m0", "m1"), _pair(result, "m1", "m0")):
        xs = pair.models.source_pca.transform(views[pls.source])
        ys = pair.models.target_pca.transform(views[pls.target])
        n = pls.regression.n_components_
        assert n == min(6, xs.shape[1])
        for a, ref in enumerate(nipals(xs, ys, n), start=1):
            coef = pls.regression.coef_[a - 1]
            np.testing.assert_allclose(coef, ref, rtol=0, atol=TOL * _scale(ref))
            expected = (xs - xs.mean(axis=0)) @ ref + ys.mean(axis=0)
            np.testing.assert_allclose(
                pls.regression.predict(xs, a), expected, rtol=0, atol=TOL * _scale(expected)
            )


def test_cv_choice_matches_a_loop_of_scikit_learn_fits(tmp_path: Path) -> None:
    comps = {"m0": 7, "m2": 1}
    result = mmpipe.fit(_store(tmp_path), components=comps, folds=4, pls=7, pairs=["m0:m2"])
    (pls,) = result.pls
    views = _views()
    plan = result.plan
    r2 = np.empty((plan.n_splits, 7))
    mse = np.empty((plan.n_splits, 7))
    for s in range(plan.n_splits):
        train, val = plan.train_mask(s), plan.validation_mask(s)
        spca = make_pipeline(StandardScaler(), PCA(7, svd_solver="covariance_eigh"))
        tpca = make_pipeline(StandardScaler(), PCA(1, svd_solver="covariance_eigh"))
        spca.fit(views["m0"][train])
        tpca.fit(views["m2"][train])
        x_train, y_train = spca.transform(views["m0"][train]), tpca.transform(views["m2"][train])
        x_val, y_val = spca.transform(views["m0"][val]), tpca.transform(views["m2"][val])
        for a in range(1, 8):
            ref = PLSRegression(n_components=a, scale=False).fit(x_train, y_train)
            predicted = ref.predict(x_val).reshape(-1, 1)
            r2[s, a - 1] = r2_score(y_val, predicted)
            mse[s, a - 1] = mean_squared_error(y_val, predicted)
    np.testing.assert_allclose(pls.r2, r2, rtol=0, atol=TOL)
    np.testing.assert_allclose(pls.mse, mse, rtol=TOL, atol=0)
    assert pls.n_components == int(np.argmax(r2.mean(axis=0))) + 1
    summary = pls.summary()
    assert summary["n_components"] == pls.n_components
    assert summary["cv"]["r2"] == pytest.approx(r2.mean(axis=0).max(), abs=TOL)
    assert summary["r2_by_components"] == pytest.approx(r2.mean(axis=0).tolist(), abs=TOL)


def test_missing_rows_use_the_rows_where_both_are_present(tmp_path: Path) -> None:
    result = mmpipe.fit(_store(tmp_path, masked=True), components=4, folds=3, pls=4,
                        pairs=["m0:m1", "m1:m2"])  # fmt: skip
    views, present = _views(), _present()
    for pls, pair in (_pair(result, "m0", "m1"), _pair(result, "m1", "m2")):
        xs = pair.models.source_pca.transform(views[pls.source][present])
        ys = pair.models.target_pca.transform(views[pls.target][present])
        ref = PLSSVD(n_components=4, scale=False).fit(xs, ys)
        np.testing.assert_allclose(pls.svd.x_weights_, ref.x_weights_, rtol=0, atol=TOL)
        np.testing.assert_allclose(pls.svd.y_weights_, ref.y_weights_, rtol=0, atol=TOL)
        for a, coef in enumerate(nipals(xs, ys, 4), start=1):
            np.testing.assert_allclose(
                pls.regression.coef_[a - 1], coef, rtol=0, atol=TOL * _scale(coef)
            )


@pytest.mark.parametrize("masked", [False, True])
def test_same_answer_for_every_chunking(tmp_path: Path, masked: bool) -> None:
    fits = [
        mmpipe.fit(
            _store(tmp_path, f"{store}.zarr", store, masked=masked),
            components=4,
            folds=3,
            pls=4,
            chunk_rows=block,
        )
        for store, block in [(300, 300), (16, 37), (45, 90)]
    ]
    first = fits[0].summary()["pls"]
    for other in fits[1:]:
        again = other.summary()["pls"]
        assert [r["n_components"] for r in again] == [r["n_components"] for r in first]
        for a, b in zip(first, again, strict=True):
            np.testing.assert_allclose(a["singular_values"], b["singular_values"], rtol=1e-10)
            np.testing.assert_allclose(a["r2_splits"], b["r2_splits"], rtol=0, atol=1e-10)
        for a, b in zip(fits[0].pls, other.pls, strict=True):
            np.testing.assert_allclose(a.regression.coef_, b.regression.coef_, atol=1e-10)


def test_results_store_summary_report(tmp_path: Path) -> None:
    out = tmp_path / "runs.zarr"

    def no_scoring_pass(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("PLS alone needs no scoring pass")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mmpipe.stats.scoring, "scoring_graph", no_scoring_pass)
        result = mmpipe.fit(_store(tmp_path), out=out, components=3, folds=3, pls=2)
    summary = result.summary()
    assert [(r["source"], r["target"]) for r in summary["pls"]] == [
        (p.source, p.target) for p in result.pairs
    ]
    titles = [t.title for t in report.task_tables(summary)]
    assert "Partial least squares (on the pairs' PCA scores)" in titles
    assert report.line("pls", summary["pls"][0]).startswith("PLS m0 → m1: CV R² ")
    stored = read_run(out)
    first = result.pls[0]
    for name, value in [
        ("singular_values", first.svd.singular_values_),
        ("x_weights", first.svd.x_weights_),
        ("coef", first.regression.coef_),
        ("intercept", first.regression.intercept_),
        ("r2", first.r2),
    ]:
        np.testing.assert_array_equal(stored[f"pls/m0--m1/{name}"][...], value)  # type: ignore[index]
    group = stored["pls/m0--m1"]
    assert group.attrs["n_components"] == first.n_components
    assert stored.attrs["summary"]["pls"] == summary["pls"]  # type: ignore[index, call-overload]
    assert group.attrs["pcas"] == "pairs/m0--m1"


def test_off_by_default(tmp_path: Path) -> None:
    result = mmpipe.fit(_store(tmp_path), components=3, folds=3)
    assert result.pls == []
    assert result.summary()["pls"] == []
    assert "scoring_pass" not in result.timings


def test_components_beyond_the_rank_repeat_the_last_map() -> None:
    from mmpipe.models.pls import PLSRegression as MomentsPLS
    from mmpipe.stats.moments import Moments

    rng = np.random.default_rng(3)
    base = rng.standard_normal((80, 4)) * [3.0, 2.0, 1.0, 0.5]
    x = np.hstack([base, base[:, :2]])  # six columns of rank four
    y = base @ rng.standard_normal((4, 1)) + rng.standard_normal((80, 1))
    fitted = MomentsPLS(6).fit_moments(Moments.from_rows(np.hstack([x, y])), 6)
    assert fitted.n_effective_ == 4
    ref = PLSRegression(n_components=4, scale=False).fit(x, y)
    for a in (4, 5, 6):
        np.testing.assert_allclose(fitted.coef_[a - 1], ref.coef_.T, rtol=0, atol=TOL)
