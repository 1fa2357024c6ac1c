"""Classification from fused modalities and cross-modal transfer, against scikit-learn."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.stats
import zarr.storage
from helpers import CountingStore, make_views, predefined_split
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge, RidgeClassifier
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    make_scorer,
)
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

import mmpipe
from mmpipe.errors import ConfigError
from mmpipe.io.synth import SynthSpec, synthesize
from mmpipe.models.classify import RidgeClassifierPath, classification_metrics
from mmpipe.result import FitResult
from mmpipe.stats.moments import Moments

Views = tuple[dict[str, np.ndarray], np.ndarray]
ALPHAS = (0.01, 1.0, 100.0)
K = {"m0": 4, "m1": 3, "m2": 3}


def sk_scores(train: np.ndarray, other: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scaler = StandardScaler().fit(train)
    pca = PCA(n_components=k, svd_solver="covariance_eigh").fit(scaler.transform(train))
    return pca.transform(scaler.transform(train)), pca.transform(scaler.transform(other))


@pytest.mark.parametrize("n_classes", [2, 4])
def test_ridge_classifier_path_equals_sklearn(n_classes: int) -> None:
    rng = np.random.default_rng(n_classes)
    x = rng.standard_normal((300, 5)) + rng.normal(0, 2, 5)
    y = np.argmax(
        x @ rng.standard_normal((5, n_classes)) + rng.standard_normal((300, n_classes)), 1
    )
    onehot = np.eye(n_classes)[y]
    path = RidgeClassifierPath(ALPHAS).fit_moments(Moments.from_rows(np.hstack([x, onehot])), 5)
    for i, alpha in enumerate(ALPHAS):
        reference = RidgeClassifier(alpha=alpha).fit(x, y)
        np.testing.assert_array_equal(path.predict_codes(x, i), reference.predict(x))
        ours = path.decision_function(x, i)
        theirs = reference.decision_function(x)
        if n_classes == 2:
            np.testing.assert_allclose(ours[:, 1], theirs, rtol=1e-8, atol=1e-10)
            np.testing.assert_allclose(ours[:, 0], -theirs, rtol=1e-8, atol=1e-10)
        else:
            np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-10)


def test_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 5, 200)
    predicted = np.where(rng.random(200) < 0.6, truth, rng.integers(0, 4, 200))  # 4 never guessed
    confusion = confusion_matrix(truth, predicted, labels=range(5))
    got = classification_metrics(confusion)
    assert got["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(truth, predicted))
    assert got["macro_f1"] == pytest.approx(
        f1_score(truth, predicted, average="macro", zero_division=0)
    )
    assert got["chance"] == pytest.approx(np.bincount(truth).max() / truth.size)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> tuple[FitResult, Views]:
    views, labels = make_views(n=300, classes=4, seed=4)
    store = mmpipe.write_dataset(
        tmp_path_factory.mktemp("tasks") / "d.zarr", views, labels=labels, chunk_rows=64
    )
    result = mmpipe.fit(
        store, pairs=["m1:m0", "m0:m2"], components=K, alphas=ALPHAS, folds=4, seed=2,
        classify=["m0", "m1+m2"], transfer=True,
    )  # fmt: skip
    return result, (views, labels)


def test_classify_every_fold_and_alpha_equals_sklearn(tasks: tuple[FitResult, Views]) -> None:
    result, (views, labels) = tasks
    assert [c.features for c in result.classify] == [("m0",), ("m1", "m2")]
    for task in result.classify:
        for split in range(result.plan.n_splits):
            tr, va = result.plan.train_mask(split), result.plan.validation_mask(split)
            parts = [sk_scores(views[n][tr], views[n][va], K[n]) for n in task.features]
            f_tr = np.hstack([p[0] for p in parts])
            f_va = np.hstack([p[1] for p in parts])
            for a, alpha in enumerate(ALPHAS):
                predicted = RidgeClassifier(alpha=alpha).fit(f_tr, labels[tr]).predict(f_va)
                expected = confusion_matrix(labels[va], predicted, labels=range(4))
                np.testing.assert_array_equal(task.confusion[split, a], expected)


def fused_scores(
    features: tuple[str, ...], views: dict[str, np.ndarray], k: dict[str, int] = K
) -> Any:
    """The columns of ``features`` side by side, and a ColumnTransformer that scales each
    modality and keeps its first K PCA scores (refitted on whatever rows it is fitted on)."""
    widths = [views[n].shape[1] for n in features]
    starts = np.cumsum([0, *widths])
    scores = ColumnTransformer(
        [
            (n, make_pipeline(StandardScaler(), PCA(k[n], svd_solver="covariance_eigh")),
             list(range(starts[i], starts[i + 1])))
            for i, n in enumerate(features)
        ]
    )  # fmt: skip
    return np.hstack([views[n] for n in features]), scores


def classifier_search(
    features: tuple[str, ...],
    views: dict[str, np.ndarray],
    labels: np.ndarray,
    plan: Any,
    k: dict[str, int] = K,
    alphas: Sequence[float] = ALPHAS,
) -> GridSearchCV:
    """GridSearchCV over the fit's own folds: per-modality scaler and PCA, then
    RidgeClassifier, each α scored by accuracy, balanced accuracy and macro F1."""
    x, scores = fused_scores(features, views, k)
    return GridSearchCV(
        Pipeline([("scores", scores), ("ridge", RidgeClassifier())]),
        {"ridge__alpha": [float(a) for a in alphas]},
        scoring={
            "accuracy": "accuracy",
            "balanced_accuracy": "balanced_accuracy",
            "macro_f1": make_scorer(f1_score, average="macro", zero_division=0),
        },
        refit="accuracy",
        cv=predefined_split(plan),
    ).fit(x, labels)


def test_classify_alpha_choice_and_summary_equal_gridsearchcv(
    tasks: tuple[FitResult, Views],
) -> None:
    result, (views, labels) = tasks
    for task in result.classify:
        search = classifier_search(task.features, views, labels, result.plan)
        best = search.best_index_
        # The chosen α: the best mean validation accuracy (the first of equals).
        assert task.alpha_index == best, task.features
        assert task.alpha == ALPHAS[best]
        summary = task.summary()
        np.testing.assert_allclose(
            summary["accuracy_by_alpha"], search.cv_results_["mean_test_accuracy"], rtol=1e-12
        )
        for metric in ("accuracy", "balanced_accuracy", "macro_f1"):
            assert summary["cv"][metric] == pytest.approx(
                search.cv_results_[f"mean_test_{metric}"][best], rel=1e-12
            ), metric
        assert summary["cv"]["accuracy_folds"] == pytest.approx(
            [search.cv_results_[f"split{s}_test_accuracy"][best] for s in range(4)], rel=1e-12
        )
        # The final classifier is refitted on every row at that α, as GridSearchCV refits.
        x, _ = fused_scores(task.features, views)
        ours = task.model.scores([views[n] for n in task.features])
        np.testing.assert_array_equal(
            task.model.model.predict_codes(ours, task.alpha_index),
            search.best_estimator_.predict(x),
        )
    assert {t.alpha_index for t in result.classify} == {0, 1}  # the choice is not trivial


def test_transfer_equals_sklearn(tasks: tuple[FitResult, Views]) -> None:
    result, (views, labels) = tasks
    for moved in result.transfer:
        pair = result.pair(moved.source, moved.target)
        assert moved.map_alpha == pair.alpha
        xs, xt = views[moved.source], views[moved.target]
        moved_accuracy = np.empty((result.plan.n_splits, len(ALPHAS)))
        for split in range(result.plan.n_splits):
            tr, va = result.plan.train_mask(split), result.plan.validation_mask(split)
            s_tr, s_va = sk_scores(xs[tr], xs[va], K[moved.source])
            t_tr, t_va = sk_scores(xt[tr], xt[va], K[moved.target])
            mapped = Ridge(alpha=pair.alpha).fit(s_tr, t_tr).predict(s_va)
            for a, alpha in enumerate(ALPHAS):
                classifier = RidgeClassifier(alpha=alpha).fit(t_tr, labels[tr])
                np.testing.assert_array_equal(
                    moved.confusion[split, a],
                    confusion_matrix(labels[va], classifier.predict(mapped), labels=range(4)),
                )
                np.testing.assert_array_equal(
                    moved.target_confusion[split, a],
                    confusion_matrix(labels[va], classifier.predict(t_va), labels=range(4)),
                )
                moved_accuracy[split, a] = accuracy_score(labels[va], classifier.predict(mapped))
        # The classifier's α is chosen on the target's own validation rows, never on the
        # transferred ones: GridSearchCV of the target alone over the same folds.
        own = classifier_search((moved.target,), views, labels, result.plan)
        assert moved.alpha_index == own.best_index_
        best = own.best_index_
        assert moved.summary()["target_cv"]["accuracy"] == pytest.approx(
            own.cv_results_["mean_test_accuracy"][best], rel=1e-12
        )
        assert moved.summary()["cv"]["accuracy_folds"] == pytest.approx(
            moved_accuracy[:, best].tolist(), rel=1e-12
        )
        assert moved.summary()["cv"]["accuracy"] == pytest.approx(
            moved_accuracy[:, best].mean(), rel=1e-12
        )
    summary = result.summary()
    assert {t["source"] for t in summary["transfer"]} == {"m1", "m0"}
    assert set(summary["transfer"][0]["cv"]) >= {"accuracy", "balanced_accuracy", "macro_f1"}


def test_transfer_alpha_is_chosen_on_the_targets_own_rows(
    tasks: tuple[FitResult, Views], tmp_path: Path
) -> None:
    _, (views, labels) = tasks
    store = mmpipe.write_dataset(tmp_path / "t.zarr", views, labels=labels, chunk_rows=64)
    result = mmpipe.fit(
        store, pairs=["m2:m0"], components=K, alphas=ALPHAS, folds=4, seed=2, transfer=True
    )
    (moved,) = result.transfer
    own = classifier_search(("m0",), views, labels, result.plan)
    assert moved.alpha_index == own.best_index_ == 0
    # On these rows the transferred accuracy would choose another α (the largest).
    transferred = np.trace(moved.confusion, axis1=2, axis2=3) / moved.confusion.sum(axis=(2, 3))
    assert int(np.argmax(transferred.mean(axis=0))) == 2


def test_final_classifier_equals_sklearn_on_all_rows(tasks: tuple[FitResult, Views]) -> None:
    result, (views, labels) = tasks
    task = result.classify[1]
    parts = [sk_scores(views[n], views[n], K[n])[0] for n in task.features]
    reference = RidgeClassifier(alpha=task.alpha).fit(np.hstack(parts), labels)
    ours = task.model.scores([views[n] for n in task.features])
    np.testing.assert_array_equal(
        task.model.model.predict_codes(ours, task.alpha_index), reference.predict(np.hstack(parts))
    )


def confusions(result: FitResult) -> list[np.ndarray]:
    return (
        [c.confusion for c in result.classify]
        + [t.confusion for t in result.transfer]
        + [g.confusion for g in result.logistic]
    )


@pytest.mark.slow
def test_independent_of_chunking_and_workers(small_store: str, local_client: Any) -> None:
    settings: dict[str, Any] = {
        "pairs": ["m0:m1"], "components": 3, "folds": 3, "classify": ["m0+m2"], "transfer": True,
        "logistic": True, "retrieval": True, "retrieval_rows": 50, "random_features": 16,
    }  # fmt: skip
    first = mmpipe.fit(small_store, **settings)
    base = confusions(first)
    for other in (
        mmpipe.fit(small_store, chunk_rows=37, **settings),
        mmpipe.fit(small_store, client=local_client, **settings),
    ):
        for a, b in zip(base, confusions(other), strict=True):
            np.testing.assert_array_equal(a, b)
        # L-BFGS sums block gradients in another order: equal to its tolerance.
        np.testing.assert_allclose(other.logistic[0].coef, first.logistic[0].coef, rtol=1e-5)
        for a_rank, b_rank in zip(first.retrieval[0].ranks, other.retrieval[0].ranks, strict=True):
            np.testing.assert_array_equal(a_rank.rows, b_rank.rows)
            np.testing.assert_array_equal(a_rank.forward, b_rank.forward)
            np.testing.assert_array_equal(a_rank.backward, b_rank.backward)
        np.testing.assert_allclose(
            other.random_features[0].r2, first.random_features[0].r2, rtol=1e-10
        )


def test_masked_rows_are_not_scored(tmp_path: Path) -> None:
    url = synthesize(
        tmp_path / "m.zarr",
        SynthSpec(rows=600, modalities={"a": 6, "b": 5}, classes=3, missing_fraction=0.2),
    )
    result = mmpipe.fit(url, components=3, folds=3, classify=["a", "a+b"], transfer=True)
    ds = mmpipe.open_dataset(url)
    a = np.asarray(ds.masks["a"].compute())
    b = np.asarray(ds.masks["b"].compute())
    assert result.classify[0].confusion[:, 0].sum() == a.sum()
    assert result.classify[1].confusion[:, 0].sum() == (a & b).sum()
    assert result.transfer[0].confusion[:, 0].sum() == (a & b).sum()


def test_scoring_is_one_more_pass(tmp_path: Path) -> None:
    url = synthesize(
        tmp_path / "d.zarr", SynthSpec(rows=1200, modalities={"a": 6, "b": 5}, classes=3,
                                      chunk_rows=200),
    )  # fmt: skip
    store = CountingStore(zarr.storage.LocalStore(url, read_only=True))
    mmpipe.fit(store, folds=4, components=3, classify=["a", "a+b"], transfer=True, retrieval=True)
    chunk_reads = {k: v for k, v in store.reads.items() if "/c/" in k}
    data = {k: v for k, v in chunk_reads.items() if k.startswith("modalities/")}
    assert len(data) == 2 * 6
    assert set(data.values()) == {2}  # the statistics pass and the scoring pass
    assert set(v for k, v in chunk_reads.items() if k.startswith("labels/")) == {1}

    # Logistic regression reads its feature modalities once more, to hold their scores.
    store = CountingStore(zarr.storage.LocalStore(url, read_only=True))
    mmpipe.fit(store, folds=4, components=3, classify=["a"], logistic=True, transfer=True)
    data = {k: v for k, v in store.reads.items() if k.startswith("modalities/") and "/c/" in k}
    assert {v for k, v in data.items() if k.startswith("modalities/a/")} == {3}
    assert {v for k, v in data.items() if k.startswith("modalities/b/")} == {2}


def test_tasks_need_labels(tmp_path: Path) -> None:
    views, _ = make_views(n=60)
    store = mmpipe.write_dataset(tmp_path / "nolabels.zarr", views)
    with pytest.raises(ConfigError, match="classify needs labels"):
        mmpipe.fit(store, classify=["m0"], folds=3, components=2)
    with pytest.raises(ConfigError, match="names modality 'zz'"):
        mmpipe.fit(store, classify=["m0+zz"], folds=3, components=2)


def test_written_to_the_results_store(small_store: str, tmp_path: Path) -> None:
    import xarray as xr

    out = tmp_path / "r.zarr"
    result = mmpipe.fit(
        small_store, pairs=["m0:m1"], components=3, folds=3, classify=["m0+m2"], transfer=True,
        retrieval=True, random_features=8, out=out,
    )  # fmt: skip
    run = mmpipe.read_run(out)
    np.testing.assert_array_equal(
        run["classify/m0+m2/confusion"][...],
        result.classify[0].confusion,  # type: ignore[index]
    )
    np.testing.assert_array_equal(
        run["transfer/m0--m1/target_confusion"][...],  # type: ignore[index]
        result.transfer[0].target_confusion,
    )
    np.testing.assert_array_equal(
        run["random_features/m0--m1/r2"][...],
        result.random_features[0].r2,  # type: ignore[index]
    )
    ds = xr.open_zarr(out, group=f"runs/{result.run_id}/classify/m0+m2", consolidated=False)
    assert ds["confusion"].dims == ("split", "alpha", "true_class", "predicted_class")
    assert dict(run.attrs)["summary"]["classify"][0]["features"] == ["m0", "m2"]
    np.testing.assert_array_equal(
        run["retrieval/m0--m1/split_1/forward_rank"][...],  # type: ignore[index]
        result.retrieval[0].ranks[1].forward,
    )


def test_cli_and_config(small_store: str, small_views: Views, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from mmpipe.cli import app
    from mmpipe.config import load_config

    args = ["fit", small_store, "--in-process", "--components", "2", "--folds", "3",
            "--pair", "m0:m1", "--classify", "m0", "--classify", "m1+m2", "--transfer",
            "--retrieve", "--retrieval-rows", "40", "--logistic",
            "--random-features", "16"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert [c["features"] for c in info["classify"]] == [["m0"], ["m1", "m2"]]
    assert len(info["classify"][0]["cv"]["accuracy_folds"]) == 3
    assert info["transfer"][0]["source"] == "m0"
    assert "target_cv" in info["transfer"][0]
    # The flags are the same fit as the Python API's keywords: every task's numbers equal.
    api = mmpipe.fit(
        small_store, components=2, folds=3, pairs=["m0:m1"], classify=["m0", "m1+m2"],
        transfer=True, retrieval=True, retrieval_rows=40, logistic=True, random_features=16,
    )  # fmt: skip
    expected = json.loads(json.dumps(api.summary(), default=lambda v: v.tolist()))
    for task in ("pairs", "classify", "transfer", "retrieval", "logistic", "random_features"):
        assert info[task] == expected[task], task
    # ... and the classification numbers are scikit-learn's on the same folds.
    views, labels = small_views
    for task, found in zip(api.classify, info["classify"], strict=True):
        search = classifier_search(
            task.features, views, labels, api.plan, dict.fromkeys(views, 2), task.alphas
        )
        assert found["alpha"] == task.alphas[search.best_index_]
        assert found["cv"]["accuracy_folds"] == pytest.approx(
            [search.cv_results_[f"split{s}_test_accuracy"][search.best_index_] for s in range(3)],
            rel=1e-12,
        )
    table = CliRunner().invoke(app, args)
    assert "Classification" in table.stdout
    assert "Transfer" in table.stdout
    assert "Retrieval" in table.stdout
    assert "(logistic)" in table.stdout
    assert "random Fourier" in table.stdout
    assert info["random_features"][0]["features"] == 16
    assert [g["features"] for g in info["logistic"]] == [["m0"], ["m1", "m2"]]
    assert info["retrieval"][0]["target_to_source"]["recall@1"] >= 0
    config = load_config({"dataset": small_store, "classify": ["m0", "m1+m2"], "transfer": True})
    assert config.fit_config().classify == (("m0",), ("m1", "m2"))
    bad = CliRunner().invoke(app, ["fit", small_store, "--in-process", "--classify", "m0+q"])
    assert bad.exit_code == 2
    assert "names modality 'q'" in bad.stderr


def brute_force_ranks(queries: np.ndarray, candidates: np.ndarray) -> tuple[Any, Any]:
    from sklearn.metrics.pairwise import cosine_similarity

    sim = cosine_similarity(queries, candidates)
    true = np.diag(sim)
    return 1 + (sim > true[:, None] + 1e-9).sum(axis=1), 1 + (sim > true[None, :] + 1e-9).sum(
        axis=0
    )


def test_match_ranks_tiles_equal_brute_force() -> None:
    from mmpipe.stats.retrieval import match_ranks, rank_metrics

    rng = np.random.default_rng(0)
    candidates = rng.standard_normal((53, 4))
    queries = candidates + rng.standard_normal((53, 4))
    expected = brute_force_ranks(queries, candidates)
    for tile in (1, 7, 53, 4096):
        forward, backward = match_ranks(queries, candidates, tile=tile)
        np.testing.assert_array_equal(forward, expected[0])
        np.testing.assert_array_equal(backward, expected[1])
    metrics = rank_metrics(expected[0])
    assert metrics["recall@1"] == pytest.approx(np.mean(expected[0] == 1))
    assert metrics["median_rank"] == np.median(expected[0])


def test_retrieval_equals_brute_force_sklearn(small_store: str, small_views: Views) -> None:
    views, _ = small_views
    result = mmpipe.fit(
        small_store, pairs=["m0:m1"], components=3, folds=3, retrieval=True,
        retrieval_rows=None,
    )  # fmt: skip
    (found,) = result.retrieval
    pair = result.pair("m0", "m1")
    expected: dict[str, list[np.ndarray]] = {"forward": [], "backward": []}
    for split, ranks in enumerate(found.ranks):
        tr, va = result.plan.train_mask(split), result.plan.validation_mask(split)
        np.testing.assert_array_equal(ranks.rows, np.flatnonzero(va))
        s_tr, s_va = sk_scores(views["m0"][tr], views["m0"][va], 3)
        t_tr, t_va = sk_scores(views["m1"][tr], views["m1"][va], 3)
        mapped = Ridge(alpha=pair.alpha).fit(s_tr, t_tr).predict(s_va)
        forward, backward = brute_force_ranks(mapped, t_va)
        np.testing.assert_array_equal(ranks.forward, forward)
        np.testing.assert_array_equal(ranks.backward, backward)
        expected["forward"].append(forward)
        expected["backward"].append(backward)
    summary = result.summary()["retrieval"][0]
    assert set(summary["source_to_target"]) == {"recall@1", "recall@5", "recall@10", "median_rank"}
    # Each metric is the mean over the splits of that split's metric of the brute-force ranks.
    for key, direction in (("source_to_target", "forward"), ("target_to_source", "backward")):
        per_split = expected[direction]
        for k in (1, 5, 10):
            assert summary[key][f"recall@{k}"] == pytest.approx(
                np.mean([np.mean(r <= k) for r in per_split]), rel=1e-12
            )
        assert summary[key]["median_rank"] == pytest.approx(
            np.mean([np.median(r) for r in per_split]), rel=1e-12
        )
    assert summary["rows_per_split"] == [int(v.size) for v in (r.rows for r in found.ranks)]


def test_retrieval_subset_is_seeded_and_independent_of_chunking(small_store: str) -> None:
    settings: dict[str, Any] = {
        "pairs": ["m2:m0"], "components": 3, "folds": 3, "retrieval": True, "retrieval_rows": 30
    }  # fmt: skip
    first = mmpipe.fit(small_store, **settings).retrieval[0]
    again = mmpipe.fit(small_store, chunk_rows=41, **settings).retrieval[0]
    for a, b in zip(first.ranks, again.ranks, strict=True):
        np.testing.assert_array_equal(a.rows, b.rows)
        np.testing.assert_array_equal(a.forward, b.forward)
    sizes = [r.rows.size for r in first.ranks]
    assert all(10 <= size <= 60 for size in sizes), sizes  # about 30 of 80 validation rows


def test_logistic_equals_sklearn(tasks: tuple[FitResult, Views], tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    _, (views, labels) = tasks
    store = mmpipe.write_dataset(tmp_path / "l.zarr", views, labels=labels, chunk_rows=64)
    result = mmpipe.fit(
        store, pairs=["m0:m1"], components=K, folds=3, seed=2, classify=["m1+m2"],
        logistic=True, logistic_c=0.5,
    )  # fmt: skip
    (fitted,) = result.logistic
    assert fitted.converged
    features = fitted.features
    for split in range(result.plan.n_splits):
        tr, va = result.plan.train_mask(split), result.plan.validation_mask(split)
        parts = [sk_scores(views[n][tr], views[n][va], K[n]) for n in features]
        reference = LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(
            np.hstack([p[0] for p in parts]), labels[tr]
        )
        predicted = reference.predict(np.hstack([p[1] for p in parts]))
        expected = confusion_matrix(labels[va], predicted, labels=range(4))
        # To the solvers' tolerance: at most one borderline row may differ.
        assert np.abs(fitted.confusion[split] - expected).sum() <= 2
    whole = np.hstack([sk_scores(views[n], views[n], K[n])[0] for n in features])
    reference = LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(whole, labels)
    # To the tolerance of our L-BFGS (gradient max-norm 1e-6 on the mean loss).
    np.testing.assert_allclose(fitted.coef, reference.coef_.T, rtol=1e-3, atol=2e-4)
    np.testing.assert_allclose(fitted.intercept, reference.intercept_, rtol=1e-3, atol=2e-4)
    assert fitted.passes >= fitted.iterations
    assert result.summary()["logistic"][0]["cv"]["accuracy"] > 0.25


def test_random_features_equal_sklearn_rbfsampler(small_store: str, small_views: Views) -> None:
    from sklearn.kernel_approximation import RBFSampler
    from sklearn.metrics import mean_squared_error, r2_score

    views, _ = small_views
    result = mmpipe.fit(
        small_store, pairs=["m0:m1"], components=K, alphas=ALPHAS, folds=3, random_features=48
    )
    (found,) = result.random_features
    assert found.features.weights_.shape == (K["m0"], 48)
    # The features are drawn from RBFSampler's laws: weights N(0, 2γ), offsets U(0, 2π)
    # (Kolmogorov-Smirnov; the draw is seeded, so this is no flaky test). 192 draws catch a
    # wrong scale or range, not another law of the same variance.
    gamma = found.features.gamma
    weights = found.features.weights_.ravel()
    assert scipy.stats.kstest(weights, "norm", args=(0, np.sqrt(2 * gamma))).pvalue > 1e-3
    # 192 draws: their variance is 2γ to within about ±10 % (one standard deviation).
    assert 0.7 < np.mean(weights**2) / (2 * gamma) < 1.4
    offsets = found.features.offsets_
    assert scipy.stats.kstest(offsets, "uniform", args=(0, 2 * np.pi)).pvalue > 1e-3
    for split in range(result.plan.n_splits):
        tr, va = result.plan.train_mask(split), result.plan.validation_mask(split)
        s_tr, s_va = sk_scores(views["m0"][tr], views["m0"][va], K["m0"])
        t_tr, t_va = sk_scores(views["m1"][tr], views["m1"][va], K["m1"])
        sampler = RBFSampler(gamma=found.features.gamma, n_components=48).fit(s_tr)
        sampler.random_weights_ = found.features.weights_  # the same random features
        sampler.random_offset_ = found.features.offsets_
        phi_tr, phi_va = sampler.transform(s_tr), sampler.transform(s_va)
        for a, alpha in enumerate(ALPHAS):
            predicted = Ridge(alpha=alpha).fit(phi_tr, t_tr).predict(phi_va)
            assert found.r2[split, a] == pytest.approx(r2_score(t_va, predicted), rel=1e-6)
            assert found.mse[split, a] == pytest.approx(
                mean_squared_error(t_va, predicted), rel=1e-6
            )
    # The default bandwidth: the median heuristic on the first rows' final-PCA scores.
    from scipy.spatial.distance import pdist

    scores = result.pair("m0", "m1").models.source_pca.transform(views["m0"])
    assert found.features.gamma == pytest.approx(1 / (2 * np.median(pdist(scores)) ** 2))
    assert result.summary()["random_features"][0]["features"] == 48


def test_random_features_capture_a_nonlinear_map(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    z = rng.uniform(-2, 2, (1500, 2))
    views = {"a": z + 0.05 * rng.standard_normal(z.shape), "b": np.c_[np.sin(2 * z), z[:, :1] ** 2]}
    store = mmpipe.write_dataset(tmp_path / "nl.zarr", views, chunk_rows=300)
    result = mmpipe.fit(
        store, pairs=["a:b"], components=None, folds=3, random_features=200,
        alphas=(1e-3, 1e-2, 0.1, 1.0),
    )  # fmt: skip
    linear = result.pair("a", "b").summary()["cv"]["r2"]
    nonlinear = result.random_features[0].summary()["cv"]["r2"]
    assert nonlinear > 0.9
    assert nonlinear > linear + 0.3


def test_pairs_sharing_a_target_share_its_own_classifier(
    small_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mmpipe.tasks.classifier

    calls: list[tuple[str, ...]] = []
    real = mmpipe.tasks.classifier.fit_classifier

    def counting(stats: Any, features: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(tuple(features))
        return real(stats, features, *args, **kwargs)

    monkeypatch.setattr(mmpipe.tasks.classifier, "fit_classifier", counting)
    result = mmpipe.fit(small_store, components=2, folds=3, transfer=True)
    assert len(result.transfer) == 6  # every ordered pair of 3 modalities
    # No masks: one classifier per target and split (3 × 3), not one per pair (6 × 3).
    assert sorted(calls) == sorted([(m,) for m in ("m0", "m1", "m2") for _ in range(3)])
    by_target: dict[str, list[Any]] = {}
    for t in result.transfer:
        by_target.setdefault(t.target, []).append(t.target_confusion)
    for matrices in by_target.values():
        assert all(np.array_equal(matrices[0], m) for m in matrices[1:])
