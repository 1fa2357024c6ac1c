"""Standardization and PCA fitted from sufficient statistics (no pass over the rows).

Matches scikit-learn's StandardScaler (population std; zero-variance columns keep scale 1)
followed by PCA(svd_solver="covariance_eigh") (covariance with ddof=1, svd_flip signs).
"""

from __future__ import annotations

import numpy as np

from mmpipe.errors import bad_parameter
from mmpipe.models.params import Params
from mmpipe.stats.moments import Moments


def standard_scale(moments: Moments) -> np.ndarray:
    """Population standard deviation per column; 1 where it is zero (as scikit-learn)."""
    var = moments.variance(ddof=0)
    scale = np.sqrt(var)
    # scikit-learn's _is_constant_feature: variance within rounding of zero counts as constant.
    eps = np.finfo(np.float64).eps
    n = moments.n
    constant = var <= n * eps * var + (n * moments.mean * eps) ** 2
    scale[constant] = 1.0
    return scale


def resolve_components(
    n_components: int | float | None,
    n_features: int,
    n_samples: int,
    ratios: np.ndarray,
    owner: str = "StandardPCA",
) -> int:
    """Number of components for a count, a fraction of variance, or None (all)."""
    limit = min(n_features, max(n_samples, 1))
    if n_components is None:
        return limit
    if isinstance(n_components, bool):
        raise bad_parameter("n_components", owner, "an int >= 1 or a float in (0, 1)", n_components)
    if isinstance(n_components, int | np.integer):
        if not 1 <= n_components <= limit:
            raise bad_parameter(
                "n_components",
                owner,
                f"an int in the range [1, {limit}] (min of columns and rows)",
                n_components,
            )
        return int(n_components)
    if isinstance(n_components, float) and 0.0 < n_components < 1.0:
        # scikit-learn: smallest k whose cumulative ratio exceeds the fraction.
        k = int(np.searchsorted(np.cumsum(ratios), n_components, side="right")) + 1
        return min(k, limit)
    raise bad_parameter("n_components", owner, "an int >= 1 or a float in (0, 1)", n_components)


def flip_signs(components: np.ndarray) -> np.ndarray:
    """scikit-learn's svd_flip (u_based_decision=False): largest |entry| of each row positive."""
    rows = np.arange(components.shape[0])
    signs = np.sign(components[rows, np.argmax(np.abs(components), axis=1)])
    signs[signs == 0] = 1.0
    return components * signs[:, None]


class StandardPCA(Params):
    """Standard scaling then PCA, fitted from the statistics of one modality's columns.

    Parameters
    ----------
    n_components : int, float in (0, 1), or None
        Components to keep: a count, the fraction of variance to explain, or all.
    scale : bool
        Standardize the columns first (True). False for columns that are already on a common
        scale, such as a wide modality's sketch coordinates: only centered, so that the
        directions of large variance stay large.
    """

    def __init__(self, n_components: int | float | None = None, *, scale: bool = True) -> None:
        self.n_components = n_components
        self.scale = scale

    def fit_moments(self, moments: Moments) -> StandardPCA:
        """Fit from (n, μ, M) of the raw columns; returns self."""
        if moments.n < 2:
            raise bad_parameter(
                "moments", "StandardPCA", "statistics of at least 2 rows", moments.n
            )
        self.n_samples_ = moments.n
        self.n_features_in_ = moments.dim
        self.mean_ = moments.mean.copy()
        self.scale_ = standard_scale(moments) if self.scale else np.ones(moments.dim)
        cov = moments.covariance(ddof=1) / np.outer(self.scale_, self.scale_)
        values, vectors = np.linalg.eigh(cov)
        order = np.argsort(values)[::-1]
        values = np.clip(values[order], 0.0, None)
        vectors = vectors[:, order]
        total = values.sum()
        ratios = values / total if total > 0 else np.zeros_like(values)
        k = resolve_components(self.n_components, moments.dim, moments.n, ratios)
        self.n_components_ = k
        self.components_ = flip_signs(vectors[:, :k].T)
        self.explained_variance_ = values[:k]
        self.explained_variance_ratio_ = ratios[:k]
        self.var_ = moments.variance(ddof=0)
        self.zero_variance_columns_ = np.flatnonzero(self.var_ == 0.0)
        return self

    @property
    def basis_(self) -> np.ndarray:
        """(d, k) map from centered raw columns to scores: scores = (x − mean_) @ basis_."""
        return self.components_.T / self.scale_[:, None]

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Scores of raw rows x (n × d) → (n × k)."""
        return (np.asarray(x, dtype=np.float64) - self.mean_) @ self.basis_

    def inverse_transform(self, scores: np.ndarray) -> np.ndarray:
        """Raw rows (n × d) whose scores are ``scores`` (n × k), within the kept components
        (scikit-learn's PCA then StandardScaler ``inverse_transform``)."""
        return (np.asarray(scores, dtype=np.float64) @ self.components_) * self.scale_ + self.mean_
