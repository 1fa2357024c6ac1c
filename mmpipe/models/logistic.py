"""Multinomial logistic regression trained across Dask workers with L-BFGS.

The PCA scores stay in distributed memory. Each L-BFGS iteration is one Dask pass over them:
every block returns its share of the loss and gradient, and the driver sums them. Several
models (one per split plus the final one) are stacked into one parameter vector. Their
objectives are separable, so one optimization fits them all, and each iteration costs one
pass for all splits.

The objective per model is scikit-learn's LogisticRegression (lbfgs, l2) divided by the number
of training rows: mean cross-entropy + ‖W‖² / (2·C·n), with an unpenalized intercept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mmpipe.errors import bad_parameter


def block_loss_grad(
    scores: np.ndarray,
    codes: np.ndarray,
    train: np.ndarray,
    theta: np.ndarray,
    n_models: int,
    k: int,
    n_classes: int,
) -> np.ndarray:
    """Unscaled loss and gradient of every stacked model on one block: [loss_m..., grad...].

    ``scores`` (rows, n_models·k) holds each model's features side by side; ``train`` (rows,
    n_models) says which rows train which model.
    """
    params = theta.reshape(n_models, k + 1, n_classes)
    losses = np.zeros(n_models)
    grads = np.zeros_like(params)
    for m in range(n_models):
        rows = train[:, m]
        if not rows.any():
            continue
        z = scores[:, m * k : (m + 1) * k]
        y = codes
        if not rows.all():
            z, y = z[rows], y[rows]
        logits = z @ params[m, :k] + params[m, k]
        picked = logits[np.arange(y.size), y]
        # log-sum-exp with the row maximum taken out, in place (scipy's is slower here).
        top = logits.max(axis=1)
        logits -= top[:, None]
        np.exp(logits, out=logits)
        total = logits.sum(axis=1)
        losses[m] = float(np.sum(np.log(total) + top - picked))
        logits /= total[:, None]  # now the softmax probabilities
        logits[np.arange(y.size), y] -= 1.0
        grads[m, :k] = z.T @ logits
        grads[m, k] = logits.sum(axis=0)
    return np.concatenate([losses, grads.ravel()])


@dataclass(frozen=True)
class LogisticFit:
    """Stacked models: coef_ (n_models, k, C), intercept_ (n_models, C)."""

    coef: np.ndarray
    intercept: np.ndarray
    iterations: int
    converged: bool
    passes: int
    """Dask passes over the scores (one per loss-and-gradient evaluation)."""


def fit_stacked_logistic(
    loss_and_gradient: Callable[[np.ndarray], np.ndarray],
    n_models: int,
    k: int,
    n_classes: int,
    n_train: np.ndarray,
    *,
    C: float = 1.0,
    tol: float = 1e-6,
    max_iter: int = 500,
) -> LogisticFit:
    """L-BFGS on the stacked models' objective.

    ``loss_and_gradient(theta)`` returns :func:`block_loss_grad` summed over every block of
    the training data: on a cluster, one pass over the held scores
    (:meth:`mmpipe.stats.held.HeldScores.loss_and_gradient`).
    """
    if not C > 0:
        raise bad_parameter("C", "logistic", "a float > 0", C)
    size = n_models * (k + 1) * n_classes
    scale = 1.0 / np.maximum(n_train, 1).astype(np.float64)
    penalty_mask = np.zeros((n_models, k + 1, n_classes))
    penalty_mask[:, :k] = 1.0
    passes = 0

    def evaluate(theta: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal passes
        passes += 1
        total = loss_and_gradient(theta)
        losses, grad = total[:n_models], total[n_models:].reshape(n_models, k + 1, n_classes)
        params = theta.reshape(n_models, k + 1, n_classes)
        ridge = penalty_mask * params / C
        value = float(np.sum(scale * (losses + 0.5 * np.sum(ridge * params, axis=(1, 2)))))
        gradient = (grad + ridge) * scale[:, None, None]
        return value, gradient.ravel()

    # Imported here: it costs 0.3 s, and only this fit needs it.
    from scipy.optimize import minimize

    result = minimize(
        evaluate,
        np.zeros(size),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": tol, "ftol": 64 * np.finfo(float).eps},
    )
    params = result.x.reshape(n_models, k + 1, n_classes)
    return LogisticFit(
        coef=params[:, :k].copy(),
        intercept=params[:, k].copy(),
        iterations=int(result.nit),
        converged=bool(result.success),
        passes=passes,
    )
