"""Random Fourier features: a seeded approximation of the RBF kernel (Rahimi & Recht).

φ(t) = sqrt(2 / D) · cos(t Ω + b), with Ω ~ N(0, 2γ) entrywise and b ~ U(0, 2π): the same
construction and scaling as scikit-learn's RBFSampler, so the same Ω and b give the same
features. A ridge map on φ(source scores) is a non-linear map between modalities, fitted by
the same ridge machinery as the linear one.
"""

from __future__ import annotations

import numpy as np

from mmpipe.errors import bad_parameter
from mmpipe.models.params import Params


class RandomFourierFeatures(Params):
    """RBF random features of a k-dimensional input.

    Parameters
    ----------
    n_features : int
        D, the number of random features.
    gamma : float
        RBF kernel exp(−γ‖x − y‖²).
    seed : int
        Seed of Ω and b.
    """

    def __init__(self, n_features: int = 256, gamma: float = 1.0, seed: int = 0) -> None:
        self.n_features = n_features
        self.gamma = gamma
        self.seed = seed

    def fit(self, n_inputs: int) -> RandomFourierFeatures:
        if not isinstance(self.n_features, int) or self.n_features < 1:
            raise bad_parameter(
                "n_features", "RandomFourierFeatures", "an int >= 1", self.n_features
            )
        if not self.gamma > 0:
            raise bad_parameter("gamma", "RandomFourierFeatures", "a float > 0", self.gamma)
        rng = np.random.default_rng([self.seed, 0xFF])
        self.weights_ = np.sqrt(2.0 * self.gamma) * rng.standard_normal((n_inputs, self.n_features))
        self.offsets_ = rng.uniform(0.0, 2.0 * np.pi, self.n_features)
        return self

    def transform(self, inputs: np.ndarray) -> np.ndarray:
        """φ of rows with k ≤ the fitted inputs (missing trailing inputs count as zeros)."""
        inputs = np.asarray(inputs, dtype=np.float64)
        projection = inputs @ self.weights_[: inputs.shape[1]] + self.offsets_
        return np.cos(projection) * np.sqrt(2.0 / self.n_features)


def median_gamma(points: np.ndarray) -> float:
    """γ = 1 / (2·m²), m the median pairwise Euclidean distance among ``points``."""
    from scipy.spatial.distance import pdist

    distances = pdist(np.asarray(points, dtype=np.float64))
    median = float(np.median(distances[distances > 0])) if np.any(distances > 0) else 1.0
    return 1.0 / (2.0 * median**2)
