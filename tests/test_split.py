"""Explicit train/test splits (the dataset's ``split`` array, ``split=True``), against
scikit-learn fitted on the train rows only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from helpers import make_views, one_error_line
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge, RidgeClassifier
from sklearn.metrics import accuracy_score, confusion_matrix, mean_squared_error, r2_score
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

import mmpipe
from mmpipe.cli.app import app
from mmpipe.config import load_config
from mmpipe.errors import ConfigError, DatasetError, DataValueError
from mmpipe.io.dataset import write_dataset
from mmpipe.io.inspect import describe
from mmpipe.result import FitResult

Views = tuple[dict[str, np.ndarray], np.ndarray]
ALPHAS = (0.01, 1.0, 30.0, 1000.0)
K = {"m0": 4, "m1": 3, "m2": 3}
N = 300
SETTINGS: dict[str, Any] = {
    "pairs": ["m0:m1", "m2:m0"],
    "components": K,
    "alphas": ALPHAS,
    "classify": ["m0+m1"],
}


def make_split(n: int = N, seed: int = 5) -> np.ndarray:
    """About 55% train, 25% test, 20% unused, in no particular order."""
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([0, 1, -1], dtype=np.int8), size=n, p=[0.55, 0.25, 0.2])


def sk_scores(train: np.ndarray, test: np.ndarray, k: int) -> tuple[Any, Any, np.ndarray, Any]:
    """StandardScaler + PCA fitted on ``train``: (scaler, pca, train scores, test scores)."""
    scaler = StandardScaler().fit(train)
    pca = PCA(n_components=k, svd_solver="covariance_eigh").fit(scaler.transform(train))
    return (
        scaler,
        pca,
        pca.transform(scaler.transform(train)),
        pca.transform(scaler.transform(test)),
    )


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(b)), 1e-300))


@pytest.fixture(scope="module")
def data() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    views, labels = make_views(N, seed=4)
    return views, labels, make_split()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, data: Any) -> str:
    views, labels, split = data
    path = tmp_path_factory.mktemp("split") / "d.zarr"
    return write_dataset(path, views, labels=labels, split=split, chunk_rows=64)


@pytest.fixture(scope="module")
def fitted(store: str) -> FitResult:
    return mmpipe.fit(store, split=True, **SETTINGS)


def test_the_plan_is_the_datasets_split(fitted: FitResult, data: Any) -> None:
    _, _, split = data
    plan = fitted.plan
    assert plan.kind == "given"
    assert plan.n_splits == 1
    np.testing.assert_array_equal(plan.train_mask(0), split == 0)
    np.testing.assert_array_equal(plan.validation_mask(0), split == 1)
    assert plan.final_groups == (0,)
    counts = {"train": int((split == 0).sum()), "test": int((split == 1).sum())}
    counts["unused"] = int((split == -1).sum())
    described = fitted.summary()["plan"]
    assert described["kind"] == "given"
    assert described["rows"] == counts
    for pair in fitted.summary()["pairs"]:
        assert pair["rows"] == counts["train"]  # the rows its final model saw
        assert pair["rows_dropped"] == 0


def test_pairs_equal_sklearn_fitted_on_the_train_rows(fitted: FitResult, data: Any) -> None:
    views, _, split = data
    train, test = split == 0, split == 1
    for pair in fitted.pairs:
        xs, xt = views[pair.source], views[pair.target]
        scaler, _, ts_tr, ts_te = sk_scores(xs[train], xs[test], K[pair.source])
        _, _, tt_tr, tt_te = sk_scores(xt[train], xt[test], K[pair.target])
        r2 = []
        for a, alpha in enumerate(ALPHAS):
            ridge = Ridge(alpha=alpha, solver="svd").fit(ts_tr, tt_tr)
            predicted = ridge.predict(ts_te)
            r2.append(r2_score(tt_te, predicted))
            # Every metric is on the test rows: the one split's validation.
            assert pair.r2[0, a] == pytest.approx(r2[-1], rel=1e-8, abs=1e-10)
            assert pair.mse[0, a] == pytest.approx(mean_squared_error(tt_te, predicted), rel=1e-8)
            # The final models are fitted on the train rows only, every α.
            assert rel(pair.models.ridge.coef_[a], ridge.coef_.T) < 1e-8
            np.testing.assert_allclose(
                pair.models.ridge.intercept_[a], ridge.intercept_, atol=1e-10
            )
        assert pair.alpha_index == int(np.argmax(r2))
        np.testing.assert_allclose(pair.models.source_pca.mean_, scaler.mean_, rtol=1e-12)
        np.testing.assert_allclose(pair.models.source_pca.scale_, scaler.scale_, rtol=1e-12)
        chosen = Ridge(alpha=pair.alpha, solver="svd").fit(ts_tr, tt_tr)
        assert rel(pair.coef, chosen.coef_.T) < 1e-8
    # The modalities' own PCAs are the train rows' too.
    _, pca, _, _ = sk_scores(views["m0"][train], views["m0"][test], K["m0"])
    assert fitted.modalities["m0"].rows == int(train.sum())
    assert rel(fitted.modalities["m0"].pca.components_, pca.components_) < 1e-8


def test_classifier_equals_sklearn_fitted_on_the_train_rows(fitted: FitResult, data: Any) -> None:
    views, labels, split = data
    train, test = split == 0, split == 1
    (task,) = fitted.classify
    parts = [sk_scores(views[n][train], views[n][test], K[n]) for n in task.features]
    f_tr = np.hstack([p[2] for p in parts])
    f_te = np.hstack([p[3] for p in parts])
    classes = np.unique(labels)
    accuracy = []
    for a, alpha in enumerate(ALPHAS):
        reference = RidgeClassifier(alpha=alpha).fit(f_tr, labels[train])
        predicted = reference.predict(f_te)
        expected = confusion_matrix(labels[test], predicted, labels=classes)
        np.testing.assert_array_equal(task.confusion[0, a], expected)
        accuracy.append(accuracy_score(labels[test], predicted))
        # The final classifier: fitted on the train rows only.
        assert rel(task.model.model.coef_[a], reference.coef_.T) < 1e-8
        np.testing.assert_allclose(task.model.model.intercept_[a], reference.intercept_, atol=1e-10)
    summary = task.summary()
    assert summary["cv"]["accuracy"] == pytest.approx(max(accuracy), rel=1e-12)
    assert task.alpha == ALPHAS[int(np.argmax(accuracy))]
    final = RidgeClassifier(alpha=task.alpha).fit(f_tr, labels[train])
    ours = task.model.scores([views[n][test] for n in task.features])
    np.testing.assert_array_equal(
        task.model.model.predict_codes(ours, task.alpha_index), final.predict(f_te)
    )


def numbers(result: FitResult) -> dict[str, np.ndarray]:
    """Every number of a fit by name (pairs, classifiers, transfer, logistic, random features,
    the modalities' PCAs)."""
    out: dict[str, np.ndarray] = {}
    for p in result.pairs:
        key = f"{p.source}-{p.target}"
        out |= {
            f"{key}/r2": p.r2, f"{key}/mse": p.mse, f"{key}/coef": p.models.ridge.coef_,
            f"{key}/cca": p.cca_correlations, f"{key}/proc": p.procrustes_r2,
            f"{key}/cca_final": p.models.cca.correlations_,
        }  # fmt: skip
    for c in result.classify:
        out[f"classify/{c.name}"] = c.confusion
        out[f"classify/{c.name}/coef"] = c.model.model.coef_
    for t in result.transfer:
        out[f"transfer/{t.source}-{t.target}"] = t.confusion
    for g in result.logistic:
        out[f"logistic/{g.name}"] = g.confusion
        out[f"logistic/{g.name}/coef"] = g.coef
    for rf in result.random_features:
        out[f"rf/{rf.source}-{rf.target}"] = rf.r2
        out[f"rf/{rf.source}-{rf.target}/coef"] = rf.ridge.coef_
    for name, m in result.modalities.items():
        out[f"pca/{name}"] = m.pca.components_
    return out


def assert_same(a: FitResult, b: FitResult, rtol: float = 1e-9) -> None:
    first, second = numbers(a), numbers(b)
    assert first.keys() == second.keys()
    for key, value in first.items():
        if np.issubdtype(value.dtype, np.integer):
            np.testing.assert_array_equal(second[key], value, err_msg=key)
        else:
            np.testing.assert_allclose(second[key], value, rtol=rtol, atol=1e-12, err_msg=key)


EVERYTHING: dict[str, Any] = {
    **SETTINGS,
    "transfer": True,
    "retrieval": True,
    "logistic": True,
    "random_features": 12,
}


def test_unused_rows_change_nothing(tmp_path: Path, data: Any) -> None:
    """Rows with split −1 are used nowhere: other (finite) values in them, and wide modalities
    sketched from the train rows, give the same results."""
    views, labels, split = data
    rng = np.random.default_rng(9)
    wide = views["m0"] @ rng.standard_normal((7, 40)) + 0.1 * rng.standard_normal((N, 40))
    base = {**views, "wide": wide}
    garbage = {n: v.copy() for n, v in base.items()}
    for v in garbage.values():
        v[split == -1] = rng.normal(50.0, 1e3, size=(int((split == -1).sum()), v.shape[1]))
    settings = {**EVERYTHING, "pairs": [*SETTINGS["pairs"], "wide:m1"], "sketch_above": 20}
    settings["components"] = {**K, "wide": 3}
    results = [
        mmpipe.fit(
            write_dataset(tmp_path / f"{i}.zarr", v, labels=labels, split=split, chunk_rows=64),
            split=True,
            **settings,
        )
        for i, v in enumerate((base, garbage))
    ]
    assert results[0].reductions
    assert results[1].reductions
    np.testing.assert_allclose(
        results[0].reductions["wide"].basis, results[1].reductions["wide"].basis, rtol=1e-9
    )
    # Not bitwise: each row block's shift point (a numerical device) samples all its rows.
    assert_same(*results)


def test_split_and_the_solvers_and_options(store: str, fitted: FitResult) -> None:
    """TSQR re-solves the final maps on the train rows too; everything else still runs."""
    tsqr = mmpipe.fit(store, split=True, solver="tsqr", **SETTINGS)
    for a, b in zip(fitted.pairs, tsqr.pairs, strict=True):
        np.testing.assert_allclose(b.models.ridge.coef_, a.models.ridge.coef_, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(b.r2, a.r2, rtol=1e-7)
    everything = mmpipe.fit(store, split=True, **EVERYTHING)
    assert everything.logistic[0].confusion.shape[0] == 1
    assert everything.random_features[0].r2.shape == (1, len(ALPHAS))
    assert len(everything.retrieval) == 2


def test_independent_of_chunking(store: str, fitted: FitResult) -> None:
    everything = mmpipe.fit(store, split=True, **EVERYTHING)
    rechunked = mmpipe.fit(store, split=True, chunk_rows=37, **EVERYTHING)
    assert_same(everything, rechunked)
    assert_same(fitted, mmpipe.fit(store, split=True, chunk_rows=23, **SETTINGS))


@pytest.mark.slow
def test_independent_of_worker_count(store: str, local_client: Any) -> None:
    here = mmpipe.fit(store, split=True, **EVERYTHING)
    assert_same(here, mmpipe.fit(store, split=True, client=local_client, **EVERYTHING))


def test_a_split_array_changes_nothing_without_split(tmp_path: Path, data: Any) -> None:
    views, labels, split = data
    with_split = write_dataset(tmp_path / "s.zarr", views, labels=labels, split=split)
    without = write_dataset(tmp_path / "n.zarr", views, labels=labels)
    a, b = mmpipe.fit(with_split, **SETTINGS), mmpipe.fit(without, **SETTINGS)
    assert a.plan.kind == "kfold"
    assert a.plan.final_groups is None
    for key, value in numbers(a).items():
        np.testing.assert_array_equal(numbers(b)[key], value, err_msg=key)


def test_cli_and_run_config_equal_the_api(store: str, fitted: FitResult, tmp_path: Path) -> None:
    expected = json.loads(json.dumps(fitted.summary()["pairs"]))
    args = ["fit", store, "--split", "--in-process", "--json", "--classify", "m0+m1"]
    args += ["--pair", "m0:m1", "--pair", "m2:m0", "--components", "m0=4,m1=3,m2=3"]
    args += ["--alphas", ",".join(map(str, ALPHAS))]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    from_cli = json.loads(result.stdout)
    assert from_cli["plan"]["kind"] == "given"
    assert from_cli["pairs"] == expected
    assert from_cli["classify"] == json.loads(json.dumps(fitted.summary()["classify"]))

    config = load_config({"dataset": store, "split": True, **SETTINGS})
    assert config.split
    from_config = mmpipe.fit(store, config.fit_config(), out=tmp_path / "r.zarr")
    assert from_config.summary()["pairs"] == fitted.summary()["pairs"]
    # The results store says how the rows were used.
    (run,) = mmpipe.list_runs(tmp_path / "r.zarr")
    attrs = dict(mmpipe.read_run(tmp_path / "r.zarr", run["run_id"]).attrs)
    plan = attrs["plan"]
    assert attrs["summary"]["plan"] == plan
    assert plan["kind"] == "given"
    assert plan["rows"] == fitted.summary()["plan"]["rows"]


def test_inspect_counts_the_roles(store: str, data: Any) -> None:
    _, _, split = data
    info = describe(store)["split"]
    assert info["dtype"] == "int8"
    assert info["counts"] == {
        "train": int((split == 0).sum()),
        "test": int((split == 1).sum()),
        "unused": int((split == -1).sum()),
    }
    result = CliRunner().invoke(app, ["inspect", store])
    assert result.exit_code == 0, result.output
    assert f"split: train {info['counts']['train']}, test {info['counts']['test']}" in result.stdout


def write_with_split(tmp_path: Path, split: np.ndarray, name: str = "bad.zarr") -> str:
    views, labels = make_views(40)
    path = write_dataset(tmp_path / name, views, labels=labels)
    zarr.open_group(path, mode="a").create_array(
        "split", data=split, chunks=(16, *split.shape[1:]), config={"write_empty_chunks": True}
    )
    return path


def int8(*parts: Any) -> np.ndarray:
    return np.concatenate([np.atleast_1d(p) for p in parts]).astype(np.int8)


VALUES = r"split: values must be 0 \(train\), 1 \(test\) or -1 \(unused\), found 2 at row 39"
BAD_SPLITS = [
    (np.zeros(40, np.float32), DatasetError, "'split' has dtype float32; the split must be integ"),
    (int8(np.zeros(30), np.ones(9), 2), DataValueError, VALUES),
    (np.zeros(39, np.int8), DatasetError, "'split' has 39 rows but the modalities have 40"),
    (int8(np.zeros(30), -np.ones(10)), DataValueError, r"split: 30 train rows \(0\) and 0 test"),
    (int8(np.ones(39), 0), DataValueError, r"split: 1 train rows \(0\) and 39 test rows"),
    (np.zeros((40, 2), np.int8), DatasetError, "'split' has shape"),
]


@pytest.mark.parametrize(("split", "error", "message"), BAD_SPLITS)
def test_bad_split_arrays_are_clear_errors(
    tmp_path: Path, split: np.ndarray, error: type[Exception], message: str
) -> None:
    path = write_with_split(tmp_path, split)
    with pytest.raises(error, match=message):
        mmpipe.fit(path, split=True, components=2)
    line = one_error_line(CliRunner().invoke(app, ["fit", path, "--split", "--in-process"]), 2)
    assert "split" in line
    line = one_error_line(CliRunner().invoke(app, ["validate", path]), 2)
    assert "split" in line


def test_split_needs_a_split_array_and_no_holdout(small_store: str) -> None:
    with pytest.raises(ConfigError, match=rf"split: {small_store!r} has no split array"):
        mmpipe.fit(small_store, split=True)
    with pytest.raises(ConfigError, match="split and holdout both choose the validation rows"):
        mmpipe.fit(small_store, split=True, holdout=0.2)
    with pytest.raises(ConfigError, match="split and holdout"):
        load_config({"dataset": small_store, "split": True, "holdout": 0.2})
    result = CliRunner().invoke(app, ["fit", small_store, "--split", "--holdout", "0.2"])
    assert "split and holdout" in one_error_line(result, 2)


def test_a_class_on_one_side_only_is_an_error_when_learned(tmp_path: Path) -> None:
    views, labels = make_views(60, classes=3)
    split = np.where(labels == 2, 0, np.arange(60) % 2).astype(np.int8)  # class 2: train only
    path = write_dataset(tmp_path / "d.zarr", views, labels=labels, split=split)
    with pytest.raises(DataValueError, match=r"split: class 2 .* only in training or only in test"):
        mmpipe.fit(path, split=True, components=2, classify=["m0"])
    # Labels that only balance the plan: the plan notes the class, and the fit runs.
    result = mmpipe.fit(path, split=True, components=2)
    assert result.plan.rare_classes == {2: int((labels == 2).sum())}
