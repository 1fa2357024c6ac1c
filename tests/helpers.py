"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import numpy as np
import zarr.storage


def make_views(
    n: int = 240, widths: tuple[int, ...] = (7, 5, 4), *, seed: int = 0, classes: int = 3
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Correlated views of n rows from shared latent factors, plus labels."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    views = {}
    for i, w in enumerate(widths):
        load = rng.standard_normal((3, w))
        views[f"m{i}"] = z @ load + 0.5 * rng.standard_normal((n, w)) + rng.normal(0, 3, w)
    labels = np.argmax(z @ rng.standard_normal((3, classes)), axis=1).astype(np.int64)
    return views, labels


class CountingStore(zarr.storage.WrapperStore[zarr.storage.LocalStore]):
    """Counts reads per key (threaded scheduler: the counter lives in this process)."""

    def __init__(self, store: zarr.storage.LocalStore) -> None:
        super().__init__(store)
        self.reads: Counter[str] = Counter()
        self._lock = threading.Lock()

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        with self._lock:
            self.reads[key] += 1
        return await self._store.get(key, prototype, byte_range)


def one_error_line(result: Any, code: int) -> str:
    """A CLI result's stderr, checked to be exactly one 'error: …' line (no traceback) with
    exit ``code``; returns the line."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return str(lines[0])


def predefined_split(plan: Any) -> Any:
    """scikit-learn's PredefinedSplit over the validation groups of a K-fold FoldPlan: split s
    validates on ``plan.validation_mask(s)`` and trains on every other row (checked)."""
    from sklearn.model_selection import PredefinedSplit

    test_fold = np.full(plan.assignment.size, -1)
    for split in range(plan.n_splits):
        validation = plan.validation_mask(split)
        np.testing.assert_array_equal(plan.train_mask(split), ~validation)
        test_fold[validation] = split
    return PredefinedSplit(test_fold)


def _target_scores_r2(estimator: Any, x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import r2_score

    return float(r2_score(estimator.transformer_.transform(y), estimator.regressor_.predict(x)))


def _target_scores_mse(estimator: Any, x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import mean_squared_error

    t = estimator.transformer_.transform(y)
    return float(mean_squared_error(t, estimator.regressor_.predict(x)))


def ridge_search(
    source: np.ndarray,
    target: np.ndarray,
    k_source: int,
    k_target: int,
    alphas: Any,
    plan: Any,
) -> Any:
    """GridSearchCV over a fit's K-fold plan of what mmpipe scores for a pair: Ridge from the
    source's first ``k_source`` PCA scores to the target's first ``k_target`` PCA scores, both
    scalers and PCAs fitted on each split's training rows.

    mmpipe's R² and MSE compare predicted and true target *PCA scores*. A Pipeline(scaler,
    PCA, Ridge) on the raw target columns would score another quantity, so the target goes
    through a TransformedTargetRegressor (its scaler and PCA fitted on the training rows'
    targets only) and the scorers compare in that PCA's coordinates, never inverse-
    transforming back. ``cv_results_`` holds "r2" and "mse" per split and α (the MSE as is,
    not negated: only R² chooses); ``best_index_`` is the α of best mean R²."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    estimator = TransformedTargetRegressor(
        regressor=make_pipeline(
            StandardScaler(), PCA(k_source, svd_solver="covariance_eigh"), Ridge(solver="svd")
        ),
        transformer=make_pipeline(StandardScaler(), PCA(k_target, svd_solver="covariance_eigh")),
        check_inverse=False,  # a PCA of fewer components has no exact inverse
    )
    return GridSearchCV(
        estimator,
        {"regressor__ridge__alpha": [float(a) for a in alphas]},
        scoring={"r2": _target_scores_r2, "mse": _target_scores_mse},
        refit="r2",
        cv=predefined_split(plan),
    ).fit(source, target)
