"""Sufficient statistics of a set of rows: count, column means, centered Gram.

Moments merge exactly (up to rounding) with the pairwise formulas of Chan, Golub & LeVeque:
    n = n_a + n_b,  δ = μ_b − μ_a,  μ = μ_a + δ n_b / n,
    M = M_a + M_b + (n_a n_b / n) δ δᵀ
so any partition of the rows, merged in any tree, gives the statistics of the whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Moments:
    """Statistics of ``n`` rows of a vector z ∈ ℝ^D (float64)."""

    n: int
    """Number of rows."""
    mean: np.ndarray
    """(D,) column means (zeros when n == 0)."""
    m2: np.ndarray
    """(D, D) centered Gram Σ (z − μ)(z − μ)ᵀ; symmetric."""

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def empty(cls, dim: int) -> Moments:
        return cls(0, np.zeros(dim), np.zeros((dim, dim)))

    @classmethod
    def from_rows(cls, z: np.ndarray, *, dtype: type[np.floating] = np.float64) -> Moments:
        """Moments of the rows of ``z`` (rows × D), computed with a symmetric rank-k update.

        ``dtype`` is the precision of the centered rows and their Gram: float32 halves the
        arithmetic and loses about 1e-6 relative (the result is stored as float64 either way).
        """
        z = np.asarray(z)
        n, dim = z.shape
        if n == 0:
            return cls.empty(dim)
        mean = z.mean(axis=0, dtype=np.float64)
        centered = np.subtract(z, mean.astype(dtype), dtype=dtype)
        return cls(n, mean, gram(centered))

    @classmethod
    def from_shifted_gram(cls, shifted_gram: np.ndarray, n: int, shift: np.ndarray) -> Moments:
        """Moments of n rows z from the Gram of [z − shift | 1] over them: the last column
        holds the sums of z − shift, and the centered Gram follows exactly. ``shift`` near the
        mean keeps the subtraction free of cancellation."""
        dim = shift.size
        offset = shifted_gram[:dim, dim] / n  # mean − shift
        m2 = shifted_gram[:dim, :dim] - n * np.outer(offset, offset)
        return cls(n, shift + offset, m2)

    def covariance(self, ddof: int = 1) -> np.ndarray:
        return self.m2 / max(self.n - ddof, 1)

    def variance(self, ddof: int = 0) -> np.ndarray:
        return np.diag(self.m2) / max(self.n - ddof, 1)

    def take(self, index: np.ndarray) -> Moments:
        """The statistics of a subset of the columns."""
        return Moments(self.n, self.mean[index], self.m2[np.ix_(index, index)])

    def project(self, offset: np.ndarray, basis: np.ndarray) -> Moments:
        """Statistics of u = (z − offset) @ basis, from those of z (no pass over the rows)."""
        return Moments(self.n, (self.mean - offset) @ basis, basis.T @ self.m2 @ basis)


def gram(centered: np.ndarray) -> np.ndarray:
    """zᵀz as float64. NumPy sees that the operands are one buffer and its transpose and calls
    BLAS syrk (half the flops of a GEMM), in z's own precision."""
    z = np.ascontiguousarray(centered)
    return np.asarray(z.T @ z, dtype=np.float64)


def merge(a: Moments, b: Moments) -> Moments:
    """Chan, Golub & LeVeque pairwise merge."""
    if a.n == 0:
        return b
    if b.n == 0:
        return a
    n = a.n + b.n
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.n / n)
    m2 = a.m2 + b.m2 + np.outer(delta, delta) * (a.n * b.n / n)
    return Moments(n, mean, m2)


def merge_all(parts: Iterable[Moments], dim: int | None = None) -> Moments:
    """Merge any number of Moments pairwise, as a balanced tree (rounding grows as log n)."""
    items = [p for p in parts if p.n > 0]
    if not items:
        if dim is None:
            raise ValueError("merge_all of no statistics needs the dimension")
        return Moments.empty(dim)
    while len(items) > 1:
        paired = [merge(items[i], items[i + 1]) for i in range(0, len(items) - 1, 2)]
        if len(items) % 2:
            paired.append(items[-1])
        items = paired
    return items[0]
