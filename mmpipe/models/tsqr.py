"""A second, independent solver for the ridge maps: TSQR on the PCA scores (one more pass).

The normal equations square the condition number of the source scores; TSQR never forms the
Gram. One tall-skinny QR of [T_s | T_t] over the training rows gives
R = [[R_ss, R_st], [0, R_tt]] with R_ss the R factor of T_s and R_st = Q_sᵀ T_t, so for every
α:  W(α) = argmin ‖[R_ss; √α I] W − [R_st; 0]‖, a small dense least-squares problem.
The pass that computes R is mmpipe.stats.tsqr; this module only solves from it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def ridge_path_from_r(r: np.ndarray, k_source: int, alphas: Sequence[float]) -> np.ndarray:
    """Ridge coefficients (n_alpha, k_s, k_t) from the R factor of [T_s | T_t]."""
    r_ss, r_st = r[:k_source, :k_source], r[:k_source, k_source:]
    coefs = []
    for alpha in alphas:
        a = np.vstack([r_ss, np.sqrt(alpha) * np.eye(k_source)])
        b = np.vstack([r_st, np.zeros((k_source, r_st.shape[1]))])
        coefs.append(np.linalg.lstsq(a, b, rcond=None)[0])
    return np.stack(coefs)
