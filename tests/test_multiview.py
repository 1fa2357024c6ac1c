"""Multi-view common space (MCCA) against references written from the formula (scikit-learn's
StandardScaler + PCA scores, SciPy's generalized eigh), mvlearn's MCCA and scikit-learn's
RidgeClassifier; chunking and workers change nothing; apply equals the in-memory embedding."""

from __future__ import annotations

import json
import sys
import types
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.linalg
import zarr
from helpers import make_views
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

import mmpipe
from mmpipe.cli.app import app
from mmpipe.errors import ConfigError
from mmpipe.io.dataset import write_dataset

K = 3
VIEWS = ("m0", "m1", "m2")


def pca_scores(x: np.ndarray, fit_rows: np.ndarray) -> np.ndarray:
    """Scores of every row of x from StandardScaler + PCA(K) fitted on ``fit_rows``."""
    model = make_pipeline(StandardScaler(), PCA(K, svd_solver="full"))
    model.fit(x[fit_rows])
    return np.asarray(model.transform(x))


def reference_mcca(
    scores: list[np.ndarray], present: list[np.ndarray], reg: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(eigenvalues descending, eigenvectors) of C v = λ D v from available-case covariances:
    block (i, j) over the rows where both views are present, (i, i) where view i is."""
    m = len(scores)
    blocks: list[list[Any]] = [[None] * m for _ in range(m)]
    for i in range(m):
        blocks[i][i] = np.cov(scores[i][present[i]], rowvar=False)
    for i, j in combinations(range(m), 2):
        both = present[i] & present[j]
        cov = np.cov(np.hstack([scores[i][both], scores[j][both]]), rowvar=False)
        blocks[i][j] = cov[:K, K:]
        blocks[j][i] = cov[:K, K:].T
    c = np.block(blocks)
    d = scipy.linalg.block_diag(*[blocks[i][i] + reg * np.eye(K) for i in range(m)])
    values, vectors = scipy.linalg.eigh(c, d)
    return values[::-1], vectors[:, ::-1]


@pytest.fixture
def data() -> tuple[dict[str, np.ndarray], np.ndarray]:
    return make_views(300, (7, 5, 4), seed=3)


@pytest.fixture
def store(tmp_path: Path, data: tuple[dict[str, np.ndarray], np.ndarray]) -> str:
    views, labels = data
    return write_dataset(tmp_path / "mv.zarr", views, labels=labels, chunk_rows=70)


@pytest.mark.parametrize("reg", [0.0, 0.1])
def test_eigenvalues_and_validation_match_the_formula(
    store: str, data: tuple[dict[str, np.ndarray], np.ndarray], reg: float
) -> None:
    views, _ = data
    result = mmpipe.fit(store, multiview="all", components=K, folds=3, cca_reg=reg)
    (mv,) = result.multiview
    assert mv.modalities == VIEWS
    c = mv.n_components
    n = next(iter(views.values())).shape[0]
    every = np.ones(n, dtype=bool)
    scores = [pca_scores(views[v], every) for v in VIEWS]
    values, _ = reference_mcca(scores, [every] * 3, reg)
    np.testing.assert_allclose(mv.eigenvalues, values[:c], rtol=1e-9)
    for s in range(result.plan.n_splits):
        train, val = result.plan.train_mask(s), result.plan.validation_mask(s)
        scores = [pca_scores(views[v], train) for v in VIEWS]
        values, vectors = reference_mcca([x[train] for x in scores], [every[train]] * 3, reg)
        np.testing.assert_allclose(mv.eigenvalues_folds[s], values[:c], rtol=1e-9)
        # Validation: correlations of the views' projections on the held-out rows.
        projections = [x[val] @ vectors[i * K : (i + 1) * K, :c] for i, x in enumerate(scores)]
        for p, (i, j) in enumerate(combinations(range(3), 2)):
            expected = [
                np.corrcoef(projections[i][:, k], projections[j][:, k])[0, 1] for k in range(c)
            ]
            np.testing.assert_allclose(mv.validation_correlations[s, p], expected, atol=1e-9)
    summary = json.loads(json.dumps(result.summary()))["multiview"]
    assert set(summary) >= {"modalities", "eigenvalues", "eigenvalues_folds", "validation"}
    assert summary["modalities"] == list(VIEWS)


def test_eigenvalues_match_mvlearn(store: str, data: tuple[dict[str, np.ndarray], np.ndarray]):
    # mvlearn's package __init__ imports its plotting module (seaborn), which MCCA never uses.
    sys.modules.setdefault("seaborn", types.ModuleType("seaborn"))
    # pip install --no-deps mvlearn==0.5.0. Its MCCA.fit solves the eigenproblem with these
    # two calls (mvlearn/embed/mcca.py, _mcca_gevp), then splits the loadings with a
    # transformer that today's scikit-learn refuses (no __sklearn_tags__): call them directly.
    from mvlearn.embed.mcca import _construct_mcca_gevp
    from mvlearn.utils import eigh_wrapper

    views, _ = data
    (mv,) = mmpipe.fit(store, multiview="m0,m1,m2", components=K, folds=3, cca_reg=0).multiview
    every = np.ones(300, dtype=bool)
    scores = [pca_scores(views[v], every) for v in VIEWS]
    centered = [x - x.mean(axis=0) for x in scores]  # what MCCA(center=True) does first
    lhs, rhs = _construct_mcca_gevp(centered, regs=None)
    evals, _ = eigh_wrapper(A=lhs, B=rhs, rank=mv.n_components)
    np.testing.assert_allclose(mv.eigenvalues, evals, rtol=1e-9)


def test_missing_views_use_available_case_covariances(
    tmp_path: Path, data: tuple[dict[str, np.ndarray], np.ndarray]
) -> None:
    views, labels = data
    rng = np.random.default_rng(7)
    masks = {"m1": rng.random(300) > 0.2, "m2": rng.random(300) > 0.3}
    url = write_dataset(tmp_path / "m.zarr", views, labels=labels, masks=masks, chunk_rows=70)
    result = mmpipe.fit(url, multiview="all", components=K, folds=3, cca_reg=0)
    (mv,) = result.multiview
    present = [np.ones(300, dtype=bool), masks["m1"], masks["m2"]]
    scores = [pca_scores(views[v], here) for v, here in zip(VIEWS, present, strict=True)]
    values, _ = reference_mcca(scores, present)
    np.testing.assert_allclose(mv.eigenvalues, values[: mv.n_components], rtol=1e-9)
    for s in range(result.plan.n_splits):
        train = result.plan.train_mask(s)
        scores = [
            pca_scores(views[v], here & train) for v, here in zip(VIEWS, present, strict=True)
        ]
        values, _ = reference_mcca([x[train] for x in scores], [h[train] for h in present])
        np.testing.assert_allclose(mv.eigenvalues_folds[s], values[: mv.n_components], rtol=1e-9)
    # Classification keeps the rows with every view.
    assert mv.accuracy.rows == int((masks["m1"] & masks["m2"]).sum())


def test_accuracy_matches_ridge_classifier_on_the_embedding(
    store: str, data: tuple[dict[str, np.ndarray], np.ndarray]
) -> None:
    views, labels = data
    alphas = (0.1, 10.0)
    result = mmpipe.fit(store, multiview="all", components=K, folds=3, alphas=alphas, cca_reg=0)
    (mv,) = result.multiview
    c = mv.n_components
    names = list(mv.accuracy.names)
    assert names == [*VIEWS, "concatenation", "multiview"]
    for s in range(result.plan.n_splits):
        train, val = result.plan.train_mask(s), result.plan.validation_mask(s)
        scores = [pca_scores(views[v], train) for v in VIEWS]
        _, vectors = reference_mcca([x[train] for x in scores], [train[train]] * 3)
        embedding = sum(x @ vectors[i * K : (i + 1) * K, :c] for i, x in enumerate(scores)) / 3
        features = {
            **{v: scores[i] for i, v in enumerate(VIEWS)},
            "concatenation": np.hstack(scores),
            "multiview": embedding,
        }
        for index, name in enumerate(names):
            x = features[name]
            for a, alpha in enumerate(alphas):
                model = RidgeClassifier(alpha=alpha).fit(x[train], labels[train])
                expected = float(np.mean(model.predict(x[val]) == labels[val]))
                assert mv.accuracy.accuracy(index)[s, a] == pytest.approx(expected, abs=1e-12)


def test_options_and_checks(store: str) -> None:
    with pytest.raises(ConfigError, match="multiview needs two or more distinct"):
        mmpipe.fit(store, multiview="m0")
    with pytest.raises(ConfigError, match="modality 'zz'"):
        mmpipe.fit(store, multiview=["m0", "zz"])
    result = CliRunner().invoke(
        app, ["fit", store, "--multiview", "m0,m2", "--components", "2", "--pairs", "m0:m1"]
    )
    assert result.exit_code == 0, result.output
    # The views are read by the one statistics pass even when no pair names them.
    (mv,) = mmpipe.fit(store, multiview="all", components=2, pairs=["m0:m1"]).multiview
    assert mv.modalities == VIEWS
    assert mmpipe.fit(store, components=2, pairs=["m0:m1"]).summary()["multiview"] is None


def test_apply_writes_the_in_memory_embedding(
    tmp_path: Path, data: tuple[dict[str, np.ndarray], np.ndarray]
) -> None:
    views, labels = data
    rng = np.random.default_rng(2)
    masks = {v: rng.random(300) > 0.4 for v in VIEWS}
    url = write_dataset(tmp_path / "a.zarr", views, labels=labels, masks=masks, chunk_rows=70)
    mmpipe.fit(url, out=tmp_path / "res.zarr", multiview="all", components=K, folds=3)
    mmpipe.apply(tmp_path / "res.zarr", url, tmp_path / "out.zarr", space="multiview")
    written = zarr.open_group(str(tmp_path / "out.zarr"))["multiview/embedding"][...]
    run = mmpipe.open_run(tmp_path / "res.zarr")
    expected = run.embed_multiview(views, masks)
    np.testing.assert_array_equal(written, expected)
    # By hand: the mean of the projections of the views each row has; NaN with none.
    model = run.multiview
    assert model is not None
    projections = [run.transform(views[v], v) @ model.weights[v] for v in VIEWS]
    here = np.stack([masks[v] for v in VIEWS])
    total = sum(np.where(here[i][:, None], p, 0.0) for i, p in enumerate(projections))
    with np.errstate(invalid="ignore"):
        by_hand = total / here.sum(axis=0)[:, None]
    np.testing.assert_allclose(written, by_hand, rtol=1e-12, atol=1e-12, equal_nan=True)
    assert np.isnan(written[~here.any(axis=0)]).all()
    with pytest.raises(ConfigError, match="space multiview takes no map"):
        mmpipe.apply(tmp_path / "res.zarr", url, tmp_path / "o2.zarr", space="multiview",
                     map=["m0:m1"])  # fmt: skip


def multiview_numbers(result: Any) -> tuple[np.ndarray, ...]:
    (mv,) = result.multiview
    return (
        mv.final.eigenvalues,
        mv.eigenvalues_folds,
        mv.validation_correlations,
        mv.validation_eigenvalues,
        *mv.final.weights,
    )


def test_independent_of_chunking(store: str) -> None:
    settings: dict[str, Any] = {"multiview": "all", "components": K, "folds": 3}
    first = mmpipe.fit(store, **settings)
    other = mmpipe.fit(store, chunk_rows=37, **settings)
    for a, b in zip(multiview_numbers(first), multiview_numbers(other), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(
        first.multiview[0].accuracy.confusion, other.multiview[0].accuracy.confusion
    )


@pytest.mark.slow
def test_independent_of_workers(store: str, local_client: Any) -> None:
    settings: dict[str, Any] = {"multiview": "all", "components": K, "folds": 3}
    first = mmpipe.fit(store, **settings)
    other = mmpipe.fit(store, client=local_client, **settings)
    for a, b in zip(multiview_numbers(first), multiview_numbers(other), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(
        first.multiview[0].accuracy.confusion, other.multiview[0].accuracy.confusion
    )
