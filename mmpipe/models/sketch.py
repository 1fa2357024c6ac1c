"""Wide modalities seen through a randomized sketch of their standardized columns.

A modality of d columns costs a d × d Gram per fold group in the statistics pass: 3.2 GB at
d = 20,000, times every fold, and an eigendecomposition of O(d³) per split. Above a width
threshold mmpipe first finds q ≪ d orthonormal directions V that capture the top of the
spectrum of the standardized columns (a randomized range finder, Halko, Martinsson & Tropp
2011, with power iterations), then treats the modality as its q coordinates

    u = ((x − μ) / σ) V

everywhere after: per-fold PCA, transfer maps, classifiers, scoring. The reduction itself is
not cross-validated: μ, σ and V come from all rows where the modality is present (of a given
split, its train rows: the rows of the final models). That is
unsupervised (no labels, no other modality) and is the price of not holding d × d matrices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mmpipe.io.reduction import APPLY_ROWS, Reduction

__all__ = ["RangeSketch", "Reduction", "column_scale", "merge_sketches", "orthonormal"]


def rademacher(rows: np.ndarray, q: int, seed: int) -> np.ndarray:
    """(len(rows), q) random ±1 that depend only on each row's global position and the
    seed, never on how the rows are blocked (a splitmix64 hash of (seed, row, column))."""
    u = np.uint64
    with np.errstate(over="ignore"):
        index = rows.astype(u)[:, None] * u(q) + np.arange(q, dtype=u)
        h: np.ndarray[Any, np.dtype[np.uint64]] = np.asarray(
            index * u(0x9E3779B97F4A7C15) + u(seed) * u(0xD1B54A32D192ED03), dtype=u
        )
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return np.where(h >> np.uint64(63), 1.0, -1.0)


@dataclass(frozen=True, eq=False)
class RangeSketch:
    """Ωᵀ (X − μ) over some rows, with what is needed to merge it (Ω: random ±1 per row)."""

    n: int
    """Rows."""
    mean: np.ndarray
    """(d,) column means."""
    sq: np.ndarray
    """(d,) Σ (x − μ)² per column."""
    sketch: np.ndarray
    """(q, d) Ωᵀ (X − μ), centered at these rows' own mean."""
    weights: np.ndarray
    """(q,) Ωᵀ 1."""

    @classmethod
    def from_rows(cls, x: np.ndarray, rows: np.ndarray, q: int, seed: int) -> RangeSketch:
        """Sketch of the rows ``x`` whose global positions are ``rows``."""
        d = x.shape[1]
        if x.shape[0] == 0:
            return cls(0, np.zeros(d), np.zeros(d), np.zeros((q, d)), np.zeros(q))
        mean = x.mean(axis=0, dtype=np.float64)
        sq = np.zeros(d)
        sketch = np.zeros((q, d))
        weights = np.zeros(q)
        for lo in range(0, x.shape[0], APPLY_ROWS):
            centered = np.asarray(x[lo : lo + APPLY_ROWS], dtype=np.float64) - mean
            omega = rademacher(rows[lo : lo + APPLY_ROWS], q, seed)
            sq += np.einsum("ij,ij->j", centered, centered)
            sketch += omega.T @ centered
            weights += omega.sum(axis=0)
        return cls(int(x.shape[0]), mean, sq, sketch, weights)


def merge_sketches(*parts: RangeSketch) -> RangeSketch:
    """Exact merge: both sketches re-centered at the merged mean (Chan's update for sq)."""
    total = parts[0]
    for b in parts[1:]:
        a = total
        if a.n == 0:
            total = b
            continue
        if b.n == 0:
            continue
        n = a.n + b.n
        delta = b.mean - a.mean
        mean = a.mean + delta * (b.n / n)
        sketch = (
            a.sketch
            + np.outer(a.weights, a.mean - mean)
            + b.sketch
            + np.outer(b.weights, b.mean - mean)
        )
        sq = a.sq + b.sq + delta**2 * (a.n * b.n / n)
        total = RangeSketch(n, mean, sq, sketch, a.weights + b.weights)
    return total


def column_scale(n: int, mean: np.ndarray, sq: np.ndarray) -> np.ndarray:
    """Population standard deviation per column, 1 where it is (near) zero (as the PCA)."""
    var = sq / max(n, 1)
    eps = np.finfo(np.float64).eps
    scale = np.sqrt(var)
    scale[var <= n * eps * var + (n * mean * eps) ** 2] = 1.0
    return scale


def power_block(
    x: np.ndarray, offset: np.ndarray, scale: np.ndarray, basis: np.ndarray
) -> np.ndarray:
    """Xₛᵀ (Xₛ V) for standardized rows Xₛ = (x − offset) / scale: one power iteration's
    share of these rows, (d, q)."""
    out = np.zeros(basis.shape)
    for lo in range(0, x.shape[0], APPLY_ROWS):
        part = (np.asarray(x[lo : lo + APPLY_ROWS], dtype=np.float64) - offset) / scale
        out += part.T @ (part @ basis)
    return out


def orthonormal(matrix: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the columns of ``matrix`` (d, q) → (d, q)."""
    q, _ = np.linalg.qr(matrix)
    return np.asarray(q)
