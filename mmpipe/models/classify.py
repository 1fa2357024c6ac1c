"""Classification from PCA scores, fitted from statistics, and its metrics.

The ridge classifier is scikit-learn's RidgeClassifier: one-vs-all least squares on targets
coded ±1, with an intercept. Its coefficients for a whole α path come from the joint
statistics of [scores | one-hot labels], with no pass over the rows. Predictions (argmax) are
not linear, so accuracy needs the scoring pass (mmpipe.stats.scoring), which accumulates
confusion matrices. Every metric below is computed from a confusion matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmpipe.models.linalg import block_diagonal
from mmpipe.models.params import Params
from mmpipe.models.transfer import RidgeTransfer
from mmpipe.stats.moments import Moments


class RidgeClassifierPath(Params):
    """One-vs-all ridge classifier on ±1 targets for every α at once.

    ``fit_moments`` takes the Moments of [features (k columns) | one-hot labels (C columns)].
    Learned: ``coef_`` (n_alpha, k, C), ``intercept_`` (n_alpha, C). For two classes the two
    columns are negatives of each other, so the argmax equals scikit-learn's sign rule.
    """

    def __init__(self, alphas: Sequence[float] = (1.0,)) -> None:
        self.alphas = alphas

    def fit_moments(self, joint: Moments, k: int) -> RidgeClassifierPath:
        n_classes = joint.dim - k
        # y = 2·onehot − 1 = (onehot − 0.5)·2: an affine map of the statistics.
        offset = np.concatenate([np.zeros(k), np.full(n_classes, 0.5)])
        basis = block_diagonal(np.eye(k), 2.0 * np.eye(n_classes))
        ridge = RidgeTransfer(self.alphas).fit_moments(joint.project(offset, basis), k)
        self.alphas_ = ridge.alphas_
        self.coef_ = ridge.coef_
        self.intercept_ = ridge.intercept_
        self.n_classes_ = n_classes
        return self

    def decision_function(self, features: np.ndarray, index: int = 0) -> np.ndarray:
        return np.asarray(features) @ self.coef_[index] + self.intercept_[index]

    def predict_codes(self, features: np.ndarray, index: int = 0) -> np.ndarray:
        """Class codes (0..C-1) of each row."""
        return np.argmax(self.decision_function(features, index), axis=1)

    def predict(self, features: np.ndarray, index: int = 0) -> np.ndarray:
        """Class codes (0..C-1) of each row at the ``index``-th α (``classes[codes]``: labels)."""
        return self.predict_codes(features, index)


def accuracy(confusion: np.ndarray) -> float:
    """Fraction of rows on the diagonal of a (true × predicted) confusion matrix."""
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else float("nan")


def balanced_accuracy(confusion: np.ndarray) -> float:
    """Mean recall over the classes present among the true labels (scikit-learn's default)."""
    support = confusion.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan")
    return float(np.mean(np.diag(confusion)[present] / support[present]))


def macro_f1(confusion: np.ndarray) -> float:
    """Unweighted mean F1 over the classes true or predicted at least once (zero_division=0)."""
    tp = np.diag(confusion).astype(np.float64)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    seen = (confusion.sum(axis=0) + confusion.sum(axis=1)) > 0
    if not seen.any():
        return float("nan")
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1[seen].mean())


def majority_accuracy(confusion: np.ndarray) -> float:
    """Chance level: accuracy of always predicting the most frequent true class."""
    support = confusion.sum(axis=1)
    total = support.sum()
    return float(support.max() / total) if total else float("nan")


def classification_metrics(confusion: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": accuracy(confusion),
        "balanced_accuracy": balanced_accuracy(confusion),
        "macro_f1": macro_f1(confusion),
        "chance": majority_accuracy(confusion),
    }
