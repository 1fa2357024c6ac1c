"""The protocol options (issue 16): textbook CCA by default and a cca_reg path, scale=False,
the variance-weighted R², logistic knowledge transfer, the pair's CCA figures. Every number
is checked against NumPy or scikit-learn (or published values), never against mmpipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_linnerud
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import confusion_matrix, r2_score
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

import mmpipe
from mmpipe.cli import app
from mmpipe.errors import DataValueError
from mmpipe.io.dataset import write_dataset

Views = tuple[dict[str, np.ndarray], np.ndarray]
ALPHAS = (0.0, 0.5, 5.0, 50.0)
# R's cancor(linnerud exercise, physiological), as published to four decimals.
LINNERUD_CANCOR = (0.7956, 0.2006, 0.0726)


def scores(train: np.ndarray, others: list[np.ndarray], k: int, scale: bool = True) -> list:
    """scikit-learn's StandardScaler (with_std=scale) + PCA(covariance_eigh), fitted on
    ``train``: the scores of train and of each of ``others``."""
    scaler = StandardScaler(with_std=scale).fit(train)
    pca = PCA(k, svd_solver="covariance_eigh").fit(scaler.transform(train))
    return [pca.transform(scaler.transform(x)) for x in [train, *others]]


def numpy_cca(a: np.ndarray, b: np.ndarray, reg: float) -> tuple[np.ndarray, Any, Any]:
    """Canonical correlations and weights by the SVD of the whitened cross-covariance
    (C + reg·I)^(-1/2) C_ab (C + reg·I)^(-1/2), in NumPy."""
    c = np.cov(np.hstack([a, b]), rowvar=False)
    k = a.shape[1]

    def inv_sqrt(m: np.ndarray) -> np.ndarray:
        values, vectors = np.linalg.eigh(m)
        return (vectors / np.sqrt(values)) @ vectors.T

    wa = inv_sqrt(c[:k, :k] + reg * np.eye(k))
    wb = inv_sqrt(c[k:, k:] + reg * np.eye(c.shape[0] - k))
    u, s, vt = np.linalg.svd(wa @ c[:k, k:] @ wb, full_matrices=False)
    return s, wa @ u, wb @ vt.T


def test_default_cca_is_textbook_cancor(tmp_path: Path) -> None:
    exercise, physiological = load_linnerud(return_X_y=True)
    url = write_dataset(tmp_path / "l.zarr", {"exercise": exercise, "physiological": physiological})
    # Every component kept: CCA of the PCA scores is CCA of the columns. No cca_reg given.
    result = mmpipe.fit(url, pairs=["exercise:physiological"], components=3, alphas=(1.0,), folds=4)
    cca = result.pairs[0].models.cca
    assert cca.reg == 0.0
    np.testing.assert_allclose(cca.correlations_, LINNERUD_CANCOR, atol=5e-5)
    rho, _, _ = numpy_cca(exercise, physiological, 0.0)
    np.testing.assert_allclose(cca.correlations_, rho, rtol=1e-10)
    summary = result.pairs[0].summary()
    assert summary["cca"] == pytest.approx(rho.tolist(), rel=1e-10)
    assert "cca_reg" not in summary  # no path, nothing chosen


def test_singular_covariance_names_the_pair_and_a_value(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((60, 3))
    a = np.hstack([a, a[:, :1] + a[:, 1:2]])  # rank 3 of 4
    url = write_dataset(tmp_path / "d.zarr", {"a": a, "b": rng.standard_normal((60, 2))})
    with pytest.raises(DataValueError, match=r"Pair a:b: .*singular.*Set cca_reg to 1e-3"):
        mmpipe.fit(url, pairs=["a:b"], components="all", folds=3)
    # A ridge term makes it defined; in a path, the singular value is never chosen.
    assert mmpipe.fit(url, pairs=["a:b"], components="all", folds=3, cca_reg=1e-3).pairs
    path = mmpipe.fit(url, pairs=["a:b"], components="all", folds=3, cca_reg=[0, 1e-3, 1e-2])
    assert path.pairs[0].cca_reg in (1e-3, 1e-2)


def test_cca_reg_path_equals_brute_force(small_store: str, small_views: Views) -> None:
    """The chosen value: the best mean over splits of the sum of the validation canonical
    correlations, computed here for every split and value with scikit-learn's scaler + PCA
    and NumPy's CCA."""
    views, _ = small_views
    regs = (0.0, 0.05, 0.5, 5.0)
    k = {"m0": 4, "m1": 3, "m2": 3}
    result = mmpipe.fit(
        small_store, components=k, alphas=(1.0,), folds=5, seed=4, cca_reg=",".join(map(str, regs))
    )
    chosen = set()
    for pair in result.pairs:
        xs, xt = views[pair.source], views[pair.target]
        totals = np.zeros((result.plan.n_splits, len(regs)))
        per_component = {}
        for split in range(result.plan.n_splits):
            tr, va = result.plan.train_mask(split), result.plan.validation_mask(split)
            ts_tr, ts_va = scores(xs[tr], [xs[va]], k[pair.source])
            tt_tr, tt_va = scores(xt[tr], [xt[va]], k[pair.target])
            for j, reg in enumerate(regs):
                _, wa, wb = numpy_cca(ts_tr, tt_tr, reg)
                u, v = ts_va @ wa, tt_va @ wb
                rho = [np.corrcoef(u[:, c], v[:, c])[0, 1] for c in range(wa.shape[1])]
                totals[split, j] = np.sum(rho)
                per_component[(split, j)] = rho
        best = int(np.argmax(totals.mean(axis=0)))
        assert pair.cca_reg == regs[best]
        chosen.add(best)
        summary = pair.summary()
        assert summary["cca_reg"] == regs[best]
        assert summary["cca_validation_total"] == pytest.approx(totals[:, best].mean(), rel=1e-8)
        expected = np.mean([per_component[(s, best)] for s in range(totals.shape[0])], axis=0)
        np.testing.assert_allclose(summary["cca_validation"], expected, rtol=1e-8)
        # The final CCA: every row, the chosen value.
        ts, tt = scores(xs, [], k[pair.source])[0], scores(xt, [], k[pair.target])[0]
        rho, _, _ = numpy_cca(ts, tt, regs[best])
        np.testing.assert_allclose(pair.models.cca.correlations_, rho, rtol=1e-8)
    assert len(chosen) > 1 or chosen - {0}  # the data choose, not the first value


def test_no_scale_equals_centering_pipeline(
    small_store: str, small_views: Views, tmp_path: Path
) -> None:
    views, _ = small_views
    k = {"m0": 4, "m1": 3, "m2": 3}
    result = mmpipe.fit(
        small_store, pairs=["m0:m1", "m2:m0"], components=k, alphas=ALPHAS, folds=4, seed=1,
        scale=False, out=tmp_path / "r.zarr",
    )  # fmt: skip
    for pair in result.pairs:
        xs, xt = views[pair.source], views[pair.target]
        for split in range(result.plan.n_splits):
            tr, va = result.plan.train_mask(split), result.plan.validation_mask(split)
            ts_tr, ts_va = scores(xs[tr], [xs[va]], k[pair.source], scale=False)
            tt_tr, tt_va = scores(xt[tr], [xt[va]], k[pair.target], scale=False)
            for a, alpha in enumerate(ALPHAS):
                pred = Ridge(alpha=alpha, solver="svd").fit(ts_tr, tt_tr).predict(ts_va)
                assert pair.r2[split, a] == pytest.approx(r2_score(tt_va, pred), rel=1e-6)
    m0 = result.modalities["m0"].pca
    assert not m0.scale
    np.testing.assert_array_equal(m0.scale_, np.ones(7))
    np.testing.assert_allclose(
        m0.transform(views["m0"]), scores(views["m0"], [], 4, scale=False)[0], atol=1e-8
    )
    # A loaded run applies the same centering only, for modalities and pairs alike.
    run = mmpipe.open_run(tmp_path / "r.zarr")
    assert not run.modality_models["m0"].scale
    assert not run.pair_models[("m0", "m1")].source_pca.scale
    np.testing.assert_allclose(
        run.transform(views["m0"], "m0"), scores(views["m0"], [], 4, scale=False)[0], atol=1e-8
    )


def test_r2_weighted_equals_sklearn_fold_by_fold(small_store: str, small_views: Views) -> None:
    views, _ = small_views
    k = {"m0": 4, "m1": 3, "m2": 3}
    result = mmpipe.fit(small_store, components=k, alphas=ALPHAS, folds=5, seed=11)
    for pair in result.pairs:
        assert pair.r2_weighted is not None
        xs, xt = views[pair.source], views[pair.target]
        for split in range(result.plan.n_splits):
            tr, va = result.plan.train_mask(split), result.plan.validation_mask(split)
            ts_tr, ts_va = scores(xs[tr], [xs[va]], k[pair.source])
            tt_tr, tt_va = scores(xt[tr], [xt[va]], k[pair.target])
            for a, alpha in enumerate(ALPHAS):
                pred = Ridge(alpha=alpha, solver="svd").fit(ts_tr, tt_tr).predict(ts_va)
                expected = r2_score(tt_va, pred, multioutput="variance_weighted")
                assert pair.r2_weighted[split, a] == pytest.approx(expected, rel=1e-6)
                # cv.r2 stays the uniform average.
                assert pair.r2[split, a] == pytest.approx(r2_score(tt_va, pred), rel=1e-6)
        summary = pair.summary()
        i = pair.alpha_index
        assert summary["cv"]["r2_weighted"] == pytest.approx(pair.r2_weighted[:, i].mean())
        assert summary["cv"]["r2_weighted_folds"] == pair.r2_weighted[:, i].tolist()
        assert len(summary["r2_weighted_by_alpha"]) == len(ALPHAS)


def test_logistic_transfer_equals_sklearn(small_store: str, small_views: Views) -> None:
    """The target's LogisticRegression, fitted on its training-fold PCA scores, applied to
    the source's validation rows mapped into those scores by Ridge (the pair's chosen α)."""
    views, labels = small_views
    k = {"m0": 4, "m1": 3}
    c = 0.5
    result = mmpipe.fit(
        small_store, pairs=["m0:m1", "m1:m0"], components=k, alphas=ALPHAS, folds=4, seed=2,
        transfer=True, transfer_classifier="logistic", logistic_c=c,
    )  # fmt: skip
    assert not result.logistic  # neither was asked
    assert not result.classify
    classes = np.unique(labels)
    for moved, pair in zip(result.transfer, result.pairs, strict=True):
        assert moved.classifier == "logistic"
        xs, xt = views[pair.source], views[pair.target]
        for split in range(result.plan.n_splits):
            tr, va = result.plan.train_mask(split), result.plan.validation_mask(split)
            ts_tr, ts_va = scores(xs[tr], [xs[va]], k[pair.source])
            tt_tr, tt_va = scores(xt[tr], [xt[va]], k[pair.target])
            model = LogisticRegression(C=c, tol=1e-10, max_iter=10_000).fit(tt_tr, labels[tr])
            mapped = Ridge(alpha=pair.alpha, solver="svd").fit(ts_tr, tt_tr).predict(ts_va)
            for got, rows in ((moved.confusion, mapped), (moved.target_confusion, tt_va)):
                want = confusion_matrix(labels[va], model.predict(rows), labels=classes)
                # L-BFGS to a tolerance: at most one row may fall on the other side.
                assert np.abs(got[split, 0] - want).sum() <= 2, (split, got[split, 0], want)
        summary = moved.summary()
        assert summary["classifier"] == "logistic"
        assert summary["C"] == c


def numbers(result: mmpipe.FitResult) -> np.ndarray:
    parts = []
    for p in result.pairs:
        assert p.r2_weighted is not None
        parts += [p.r2_weighted.ravel(), p.r2.ravel(), np.nan_to_num(p.cca_correlations.ravel())]
        parts += [p.models.cca.correlations_, [p.cca_reg]]
    parts += [t.confusion.ravel() for t in result.transfer]
    return np.concatenate(parts)


def test_independent_of_chunking(small_store: str) -> None:
    kw: dict[str, Any] = dict(
        pairs=["m0:m1", "m2:m1"], components=3, alphas=ALPHAS, folds=4, cca_reg="0,0.1,1",
        scale=False, transfer=True, transfer_classifier="logistic",
    )  # fmt: skip
    ref = numbers(mmpipe.fit(small_store, chunk_rows=240, **kw))
    got = numbers(mmpipe.fit(small_store, chunk_rows=17, **kw))
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


def test_cli_and_json(small_store: str, tmp_path: Path) -> None:
    out = CliRunner().invoke(
        app,
        ["fit", small_store, "--pair", "m0:m1", "--components", "3", "--folds", "3",
         "--cca-reg", "0,0.01,0.1", "--no-scale", "--transfer",
         "--transfer-classifier", "logistic", "--json", "--in-process"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["config"]["scale"] is False
    assert summary["config"]["cca_reg"] == [0.0, 0.01, 0.1]
    assert summary["config"]["transfer_classifier"] == "logistic"
    (p,) = summary["pairs"]
    assert p["cca_reg"] in (0.0, 0.01, 0.1)
    assert len(p["cca"]) == len(p["cca_validation"]) == 3
    assert p["cca_validation_total"] == pytest.approx(sum(p["cca_validation"]))
    assert {"r2_weighted", "r2_weighted_folds"} <= set(p["cv"])
    assert summary["transfer"][0]["classifier"] == "logistic"
