"""Partial least squares between two blocks of columns, from their joint statistics alone.

Both models take the :class:`~mmpipe.stats.moments.Moments` of u = [x | y] (k_x + k_y columns:
in a fit, a pair's source and target PCA scores) and never touch the rows.

- :class:`PLSSVD`: the SVD of the cross-covariance X'Y / (n − 1) of the centered blocks, as
  scikit-learn's ``PLSSVD(scale=False)``: ``x_weights_`` and ``y_weights_`` are its left and
  right singular vectors, signs as scikit-learn's ``svd_flip`` (the largest |x weight| of each
  component positive), and ``singular_values_`` the covariances of the paired scores.
- :class:`PLSRegression`: PLS regression (PLS2, "regression" deflation) as scikit-learn's
  ``PLSRegression(scale=False)``, for every number of components 1..n at once. NIPALS on the
  rows deflates X ← X − t pᵀ and Y ← Y − t cᵀ with t = X w; on the Gram matrices
  S = XᵀX and C = XᵀY the same step is

      w = the first left singular vector of C (what the NIPALS inner loop converges to),
      p = S w / (wᵀ S w),   c = Cᵀ w / (wᵀ S w),
      S ← S − (wᵀ S w) p pᵀ,   C ← C − (wᵀ S w) p cᵀ,

  (Xᵀt_j = 0 for the earlier scores, so the deflated XᵀY is also the deflated XᵀY_k), and
  the map with a components is B_a = W_a (P_aᵀ W_a)⁻¹ C_aᵀ, with the intercept that makes
  the mean of x predict the mean of y.
"""

from __future__ import annotations

import numpy as np

from mmpipe.errors import bad_parameter
from mmpipe.models.params import Params
from mmpipe.stats.moments import Moments

RESIDUAL_TOL = 1e-12
"""A deflated cross-covariance (or score variance) below this fraction of the first one is
zero: the components found so far explain what X can say about Y, and further components add
nothing (their maps repeat the last one)."""


def _check_components(n_components: object, owner: str) -> int:
    if isinstance(n_components, bool) or not isinstance(n_components, int | np.integer):
        raise bad_parameter("n_components", owner, "an int >= 1", n_components)
    if n_components < 1:
        raise bad_parameter("n_components", owner, "an int >= 1", n_components)
    return int(n_components)


def _flip(weights: np.ndarray, other: np.ndarray) -> None:
    """scikit-learn's svd_flip (u-based), in place: the largest |entry| of each column of
    ``weights`` positive, ``other``'s columns flipped alike."""
    cols = np.arange(weights.shape[1])
    signs = np.sign(weights[np.argmax(np.abs(weights), axis=0), cols])
    signs[signs == 0] = 1.0
    weights *= signs
    other *= signs


class PLSSVD(Params):
    """PLS-SVD: the singular directions of the cross-covariance of x and y.

    Parameters
    ----------
    n_components : int
        Components to keep (at most min(k_x, k_y); fewer are kept when there are fewer).
    """

    def __init__(self, n_components: int = 2) -> None:
        self.n_components = n_components

    def fit_moments(self, joint: Moments, k_x: int) -> PLSSVD:
        wanted = _check_components(self.n_components, "PLSSVD")
        cross = joint.m2[:k_x, k_x:]
        u, s, vt = np.linalg.svd(cross, full_matrices=False)
        k = min(wanted, s.size)
        x_weights, y_weights = u[:, :k].copy(), vt[:k].T.copy()
        _flip(x_weights, y_weights)
        self.n_components_ = k
        self.x_weights_ = x_weights
        self.y_weights_ = y_weights
        self.singular_values_ = s[:k] / max(joint.n - 1, 1)
        self.x_mean_ = joint.mean[:k_x]
        self.y_mean_ = joint.mean[k_x:]
        return self

    def transform(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The x and y scores (centered by the fitted means; scikit-learn's transform)."""
        return (
            (np.asarray(x) - self.x_mean_) @ self.x_weights_,
            (np.asarray(y) - self.y_mean_) @ self.y_weights_,
        )


class PLSRegression(Params):
    """PLS regression y ≈ x B + b for every number of components 1..``n_components``.

    Parameters
    ----------
    n_components : int
        The largest number of components (at most k_x).

    Attributes
    ----------
    coef_ : (n_components_, k_x, k_y)
        ``coef_[a - 1]`` is the map with a components (scikit-learn's ``coef_.T``).
    intercept_ : (n_components_, k_y)
    x_weights_, x_loadings_ : (k_x, n_components_)
    y_loadings_ : (k_y, n_components_)
    n_effective_ : int
        Components with a non-zero deflated cross-covariance; later maps repeat the last one.
    """

    def __init__(self, n_components: int = 2) -> None:
        self.n_components = n_components

    def fit_moments(self, joint: Moments, k_x: int) -> PLSRegression:
        wanted = _check_components(self.n_components, "PLSRegression")
        n_comp = min(wanted, k_x)
        k_y = joint.dim - k_x
        gram = joint.m2[:k_x, :k_x].copy()
        cross = joint.m2[:k_x, k_x:].copy()
        weights = np.zeros((k_x, n_comp))
        x_loadings = np.zeros((k_x, n_comp))
        y_loadings = np.zeros((k_y, n_comp))
        first_cross = first_var = 0.0
        effective = 0
        for a in range(n_comp):
            u, s, _ = np.linalg.svd(cross, full_matrices=False)
            if s.size == 0:
                break
            w = u[:, 0].copy()
            w *= np.sign(w[np.argmax(np.abs(w))]) or 1.0  # scikit-learn's _svd_flip_1d
            var = float(w @ gram @ w)  # tᵀt
            if a == 0:
                first_cross, first_var = float(s[0]), var
            if s[0] <= RESIDUAL_TOL * first_cross or var <= RESIDUAL_TOL * first_var or var <= 0:
                break
            p = gram @ w / var
            c = cross.T @ w / var
            gram -= var * np.outer(p, p)
            cross -= var * np.outer(p, c)
            weights[:, a], x_loadings[:, a], y_loadings[:, a] = w, p, c
            effective = a + 1
        coef = np.zeros((n_comp, k_x, k_y))
        for a in range(1, effective + 1):
            w_a = weights[:, :a]
            rotations = w_a @ np.linalg.inv(x_loadings[:, :a].T @ w_a)
            coef[a - 1] = rotations @ y_loadings[:, :a].T
        coef[effective:] = coef[effective - 1] if effective else 0.0
        self.n_components_ = n_comp
        self.n_effective_ = effective
        self.x_weights_ = weights
        self.x_loadings_ = x_loadings
        self.y_loadings_ = y_loadings
        self.coef_ = coef
        self.intercept_ = joint.mean[k_x:] - np.einsum("s,ast->at", joint.mean[:k_x], coef)
        return self

    def predict(self, x: np.ndarray, n_components: int | None = None) -> np.ndarray:
        """Predictions with ``n_components`` components (default: all fitted)."""
        a = self.n_components_ if n_components is None else n_components
        return np.asarray(x) @ self.coef_[a - 1] + self.intercept_[a - 1]
