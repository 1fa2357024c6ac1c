"""Linear maps between two modalities' PCA scores, from their joint statistics.

All functions take the Moments of u = [t_source | t_target] (scores side by side, k_s + k_t
columns) and never touch the rows. Conventions follow scikit-learn: ridge minimizes
‖T_t − T_s W − b‖² + α‖W‖² on raw sums (not means), with an unpenalized intercept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmpipe.errors import bad_parameter
from mmpipe.models.params import Params
from mmpipe.stats.moments import Moments


def _blocks(m: Moments, k_source: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = m.m2
    return g[:k_source, :k_source], g[:k_source, k_source:], g[k_source:, k_source:]


def check_alphas(alphas: Sequence[float], owner: str = "RidgeTransfer") -> np.ndarray:
    values = np.asarray(list(alphas), dtype=np.float64)
    if (
        values.ndim != 1
        or values.size == 0
        or not np.all(np.isfinite(values))
        or np.any(values < 0)
    ):
        raise bad_parameter(
            "alphas", owner, "a non-empty list of floats in the range [0, inf)", list(alphas)
        )
    return values


class RidgeTransfer(Params):
    """Ridge map source scores → target scores for a whole path of α at once.

    One eigendecomposition of the source Gram serves every α:
    W(α) = V diag(1 / (λ + α)) Vᵀ G_st. For α = 0 directions with λ ≈ 0 get no weight
    (the minimum-norm least-squares solution).
    """

    def __init__(self, alphas: Sequence[float] = (1.0,)) -> None:
        self.alphas = alphas

    def fit_moments(self, joint: Moments, k_source: int) -> RidgeTransfer:
        alphas = check_alphas(self.alphas)
        gss, gst, _ = _blocks(joint, k_source)
        values, vectors = np.linalg.eigh(gss)
        rotated = vectors.T @ gst
        tol = values.max(initial=0.0) * k_source * np.finfo(np.float64).eps
        coef = np.empty((alphas.size, k_source, joint.dim - k_source))
        for i, alpha in enumerate(alphas):
            denom = values + alpha
            inverse = np.where(denom > tol, 1.0 / np.where(denom > tol, denom, 1.0), 0.0)
            coef[i] = vectors @ (rotated * inverse[:, None])
        self.alphas_ = alphas
        self.coef_ = coef
        self.intercept_ = joint.mean[k_source:] - np.einsum(
            "s,ast->at", joint.mean[:k_source], coef
        )
        self.source_eigenvalues_ = values[::-1]
        return self

    def predict(self, source_scores: np.ndarray, index: int = 0) -> np.ndarray:
        return np.asarray(source_scores) @ self.coef_[index] + self.intercept_[index]


class ProcrustesTransfer(Params):
    """Orthogonal map R (RᵀR = I) minimizing ‖T_s R − T_t‖ — scipy's orthogonal_procrustes.

    When k_s ≠ k_t, R is the thin (partial isometry) solution from the same SVD.
    """

    def fit_moments(self, joint: Moments, k_source: int) -> ProcrustesTransfer:
        # orthogonal_procrustes works on the given (here centered) matrices: AᵀB = G_st.
        _, gst, _ = _blocks(joint, k_source)
        u, _, vt = np.linalg.svd(gst, full_matrices=False)
        self.coef_ = u @ vt
        self.intercept_ = joint.mean[k_source:] - joint.mean[:k_source] @ self.coef_
        return self

    def predict(self, source_scores: np.ndarray) -> np.ndarray:
        return np.asarray(source_scores) @ self.coef_ + self.intercept_


class CCA(Params):
    """Regularized canonical correlation analysis between source and target scores.

    Covariances C = G / (n − 1) + reg · I; weights whiten each side, the SVD of the whitened
    cross-covariance gives the canonical correlations (descending) and directions.
    """

    def __init__(self, reg: float = 0.0, n_components: int | None = None) -> None:
        self.reg = reg
        self.n_components = n_components

    def fit_moments(self, joint: Moments, k_source: int) -> CCA:
        """Raises :class:`SingularCovariance` when ``reg`` is 0 and a side's covariance is
        singular (textbook CCA is then undefined: a variate of zero variance)."""
        if not (isinstance(self.reg, float | int) and self.reg >= 0):
            raise bad_parameter("reg", "CCA", "a float in the range [0, inf)", self.reg)
        gss, gst, gtt = _blocks(joint, k_source)
        scale = max(joint.n - 1, 1)
        css = gss / scale + self.reg * np.eye(gss.shape[0])
        ctt = gtt / scale + self.reg * np.eye(gtt.shape[0])
        if self.reg == 0:
            for side, c in (("source", css), ("target", ctt)):
                rank = _rank(c)
                if rank < c.shape[0]:
                    raise SingularCovariance(
                        f"the {side} PCA scores' covariance is singular (rank {rank} of "
                        f"{c.shape[0]})"
                    )
        ws, wt = _inverse_sqrt(css), _inverse_sqrt(ctt)
        u, s, vt = np.linalg.svd(ws @ (gst / scale) @ wt, full_matrices=False)
        k = s.size if self.n_components is None else min(self.n_components, s.size)
        self.correlations_ = s[:k]
        self.source_weights_ = ws @ u[:, :k]
        self.target_weights_ = wt @ vt[:k].T
        # Deterministic signs: the largest |source weight| of each direction positive.
        idx = np.argmax(np.abs(self.source_weights_), axis=0)
        signs = np.sign(self.source_weights_[idx, np.arange(k)])
        signs[signs == 0] = 1.0
        self.source_weights_ *= signs
        self.target_weights_ *= signs
        self.source_mean_ = joint.mean[:k_source]
        self.target_mean_ = joint.mean[k_source:]
        return self

    def transform(
        self, source_scores: np.ndarray, target_scores: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        return (
            (np.asarray(source_scores) - self.source_mean_) @ self.source_weights_,
            (np.asarray(target_scores) - self.target_mean_) @ self.target_weights_,
        )


class SingularCovariance(ValueError):
    """A side's score covariance is singular and CCA has no ridge term (``reg`` = 0)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


SINGULAR_TOLERANCE = 1e-10
"""Relative to the largest eigenvalue: a covariance with an eigenvalue below it is singular
for CCA (its whitening would blow up a direction of no variance)."""


def _rank(c: np.ndarray) -> int:
    values = np.linalg.eigvalsh(c)
    return int(np.sum(values > values.max(initial=0.0) * SINGULAR_TOLERANCE))


def _inverse_sqrt(c: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(c)
    floor = values.max(initial=0.0) * c.shape[0] * np.finfo(np.float64).eps
    inv = np.where(values > floor, 1.0 / np.sqrt(np.where(values > floor, values, 1.0)), 0.0)
    return (vectors * inv) @ vectors.T


def regression_metrics(
    validation: Moments, k_source: int, coef: np.ndarray, intercept: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """R² (uniform average over targets, as scikit-learn) and MSE of t_t ≈ t_s W + b.

    ``coef`` is (n_alpha, k_s, k_t), ``intercept`` (n_alpha, k_t); returns two (n_alpha,)
    arrays computed from the validation rows' statistics alone:
        SS_res_j = (Cᵀ M C)_jj + n (μᵀC − b)_j²  with C = [−W; I].
    """
    ss_res_all, ss_tot = residual_sums(validation, k_source, coef, intercept)
    n = validation.n
    k_target = validation.dim - k_source
    r2 = np.empty(coef.shape[0])
    mse = np.empty(coef.shape[0])
    for i, ss_res in enumerate(ss_res_all):
        with np.errstate(divide="ignore", invalid="ignore"):
            per_target = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.where(ss_res > 0, 0.0, 1.0))
        r2[i] = per_target.mean()
        mse[i] = ss_res.sum() / (n * k_target)
    return r2, mse


def residual_sums(
    validation: Moments, k_source: int, coef: np.ndarray, intercept: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """SS_res (n_alpha, k_t) of t_t ≈ t_s W + b and SS_tot (k_t,) of the validation rows."""
    s = validation.m2
    mean = validation.mean
    n = validation.n
    k_target = validation.dim - k_source
    ss_res_all = np.empty((coef.shape[0], k_target))
    for i in range(coef.shape[0]):
        c = np.vstack([-coef[i], np.eye(k_target)])
        bias = mean @ c - intercept[i]
        ss_res = np.einsum("dj,de,ej->j", c, s, c) + n * bias**2
        ss_res_all[i] = np.clip(ss_res, 0.0, None)
    return ss_res_all, np.diag(s)[k_source:]


def weighted_r2(
    validation: Moments, k_source: int, coef: np.ndarray, intercept: np.ndarray
) -> np.ndarray:
    """(n_alpha,) variance-weighted R² over the target components, 1 − ΣSS_res / ΣSS_tot
    (scikit-learn's ``r2_score(..., multioutput="variance_weighted")``: a component of no
    validation variance has weight 0)."""
    ss_res, ss_tot = residual_sums(validation, k_source, coef, intercept)
    total = ss_tot.sum()
    if total > 0:
        return np.asarray(1.0 - ss_res[:, ss_tot > 0].sum(axis=1) / total)
    return np.where(ss_res.sum(axis=1) > 0, 0.0, 1.0)


def canonical_correlations(validation: Moments, k_source: int, model: CCA) -> np.ndarray:
    """Correlation of each pair of canonical variates on the validation rows."""
    s = validation.m2
    a, b = model.source_weights_, model.target_weights_
    cross = np.einsum("dk,de,ek->k", a, s[:k_source, k_source:], b)
    var_s = np.einsum("dk,de,ek->k", a, s[:k_source, :k_source], a)
    var_t = np.einsum("dk,de,ek->k", b, s[k_source:, k_source:], b)
    with np.errstate(divide="ignore", invalid="ignore"):
        out: np.ndarray = np.where((var_s > 0) & (var_t > 0), cross / np.sqrt(var_s * var_t), 0.0)
    return out
