"""A fitted run as scikit-learn objects: :meth:`mmpipe.fitted.FittedRun.to_sklearn`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mmpipe.models.pca import StandardPCA

if TYPE_CHECKING:
    from mmpipe.fitted import FittedClassifier, FittedRun


# Each estimator is first fitted on a few rows of noise — which sets every piece of
# scikit-learn's own bookkeeping (n_features_in_, a classifier's label binarizer, a column
# transformer's column lists) the way its version expects — and then given the run's
# learned attributes, which are all that its transform/predict read.


def _noise(rows: int, cols: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((rows, cols))


def _sk_scaler(mean: np.ndarray, scale: np.ndarray, var: np.ndarray, rows: int) -> Any:
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(_noise(3, mean.size))
    scaler.mean_, scaler.scale_, scaler.var_ = mean.copy(), scale.copy(), var.copy()
    scaler.n_samples_seen_ = rows
    return scaler


def _sk_pca(components: np.ndarray, variance: np.ndarray, ratio: np.ndarray, rows: int) -> Any:
    """A fitted PCA(svd_solver="covariance_eigh") whose input is already centered (mean_ 0)."""
    from sklearn.decomposition import PCA

    k, d = components.shape
    pca = PCA(n_components=k, svd_solver="covariance_eigh").fit(_noise(k + d + 1, d))
    pca.components_ = components.copy()
    pca.mean_ = np.zeros(d)
    pca.explained_variance_ = variance.copy()
    pca.explained_variance_ratio_ = ratio.copy()
    pca.singular_values_ = np.sqrt(variance * max(rows - 1, 1))
    pca.n_samples_ = rows
    pca.noise_variance_ = 0.0
    return pca


def _sk_steps(run: FittedRun, name: str, pca: StandardPCA) -> list[tuple[str, Any]]:
    """[(sketch steps), scaler, pca] of one modality's raw columns to ``pca``'s scores."""
    steps: list[tuple[str, Any]] = []
    reduction = run.reductions.get(name)
    if reduction is not None:
        # u = ((x − offset) / scale) @ basis: a StandardScaler, then a PCA object used as the
        # fitted linear map x @ basis (components_ = basisᵀ, mean_ = 0).
        q = reduction.basis.shape[1]
        steps.append(
            ("sketch_scaler", _sk_scaler(reduction.offset, reduction.scale, reduction.scale**2, 0))
        )
        sketch = _sk_pca(reduction.basis.T, np.ones(q), np.full(q, 1.0 / q), 0)
        steps.append(("sketch", sketch))
    steps.append(("scaler", _sk_scaler(pca.mean_, pca.scale_, pca.var_, pca.n_samples_)))
    steps.append(
        (
            "pca",
            _sk_pca(
                pca.components_,
                pca.explained_variance_,
                pca.explained_variance_ratio_,
                pca.n_samples_,
            ),
        )
    )
    return steps


def _sk_fused(run: FittedRun, model: FittedClassifier) -> Any:
    """ColumnTransformer over the set's raw columns side by side (in the set's order):
    each modality's columns through its scaler + PCA, scores concatenated."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    parts, start = [], 0
    for name, pca in zip(model.features, model.pcas, strict=True):
        width = run.widths[name]
        parts.append((name, Pipeline(_sk_steps(run, name, pca)), list(range(start, start + width))))
        start += width
    fused = ColumnTransformer(parts, remainder="drop")
    fused.fit(_noise(start + 2, start))
    for name, pipeline, _ in parts:
        fused.named_transformers_[name].steps[:] = pipeline.steps
    return fused


def _sk_classifier(estimator: Any, k: int, classes: np.ndarray) -> Any:
    """``estimator`` fitted on noise with every class, so that ``classes_`` and its label
    bookkeeping are set."""
    rows = max(2 * classes.size, k + 2)
    labels = classes[np.arange(rows) % classes.size]
    return estimator.fit(_noise(rows, k), labels)


def export_run(run: FittedRun) -> dict[str, Any]:
    from sklearn.kernel_approximation import RBFSampler
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, RidgeClassifier
    from sklearn.pipeline import Pipeline

    out: dict[str, Any] = {}
    for name, pca in run.modality_models.items():
        out[f"modalities/{name}"] = Pipeline(_sk_steps(run, name, pca))
    for (s, t), pair in run.pair_models.items():
        key = f"pairs/{s}--{t}"
        k_s, k_t = pair.source_pca.n_components_, pair.target_pca.n_components_
        ridge = Ridge(alpha=pair.alpha).fit(_noise(k_s + 2, k_s), _noise(k_s + 2, k_t))
        ridge.coef_ = pair.ridge.coef_[pair.alpha_index].T.copy()
        ridge.intercept_ = pair.ridge.intercept_[pair.alpha_index].copy()
        out[key] = Pipeline([*_sk_steps(run, s, pair.source_pca), ("ridge", ridge)])
        out[f"{key}/target"] = Pipeline(_sk_steps(run, t, pair.target_pca))
        linear = LinearRegression().fit(_noise(k_s + 2, k_s), _noise(k_s + 2, k_t))
        linear.coef_ = pair.procrustes.coef_.T.copy()
        linear.intercept_ = pair.procrustes.intercept_.copy()
        out[f"{key}/procrustes"] = Pipeline(
            [*_sk_steps(run, s, pair.source_pca), ("procrustes", linear)]
        )
    for (s, t), rf in run.random_features.items():
        pair = run.pair_models[(s, t)]
        k_s, k_t = pair.source_pca.n_components_, pair.target_pca.n_components_
        n_features = rf.features.n_features
        sampler = RBFSampler(gamma=rf.features.gamma, n_components=n_features).fit(_noise(2, k_s))
        sampler.random_weights_ = rf.features.weights_[:k_s].copy()
        sampler.random_offset_ = rf.features.offsets_.copy()
        ridge = Ridge(alpha=float(rf.ridge.alphas_[rf.alpha_index]))
        ridge.fit(_noise(n_features + 2, n_features), _noise(n_features + 2, k_t))
        ridge.coef_ = rf.ridge.coef_[rf.alpha_index].T.copy()
        ridge.intercept_ = rf.ridge.intercept_[rf.alpha_index].copy()
        out[f"random_features/{s}--{t}"] = Pipeline(
            [*_sk_steps(run, s, pair.source_pca), ("features", sampler), ("ridge", ridge)]
        )
    for features, model in run.classifiers.items():
        key = "+".join(features)
        classes = model.classes
        coef = model.model.coef_[model.alpha_index]  # (k, C)
        intercept = model.model.intercept_[model.alpha_index]
        k = coef.shape[0]
        ridge_classifier = _sk_classifier(RidgeClassifier(alpha=model.alpha), k, classes)
        if classes.size == 2:  # scikit-learn keeps one column: class 1 where it is > 0
            ridge_classifier.coef_ = coef[:, 1][None, :].copy()
            ridge_classifier.intercept_ = intercept[1:].copy()
        else:
            ridge_classifier.coef_, ridge_classifier.intercept_ = coef.T.copy(), intercept.copy()
        out[f"classify/{key}"] = Pipeline(
            [("features", _sk_fused(run, model)), ("classifier", ridge_classifier)]
        )
        if features in run.logistic:
            lr = run.logistic[features]
            logistic = _sk_classifier(LogisticRegression(C=lr.C), k, classes)
            if classes.size == 2:  # softmax of two logits = sigmoid of their difference
                logistic.coef_ = (lr.coef[:, 1] - lr.coef[:, 0])[None, :]
                logistic.intercept_ = np.array([lr.intercept[1] - lr.intercept[0]])
            else:
                logistic.coef_, logistic.intercept_ = lr.coef.T.copy(), lr.intercept.copy()
            out[f"logistic/{key}"] = Pipeline(
                [("features", _sk_fused(run, model)), ("classifier", logistic)]
            )
    return out
