"""Fused PCA scores held in distributed memory, for models that iterate (logistic regression).

One pass reads the feature modalities and keeps, per row block on the workers, each model's
scores side by side (one model per split plus the final one), the label codes, and which rows
train or validate each model. Iterative solvers then make their passes over these scores,
never over the store; a block that a lost worker held is read again from the store. Their
validation predictions are made in the scoring pass, with the other tasks'
(mmpipe.stats.scoring).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from dask.delayed import delayed

from mmpipe.cluster import compute_pass, persist_pass
from mmpipe.io.dataset import Dataset
from mmpipe.models.logistic import block_loss_grad
from mmpipe.stats.blocked import tree_reduce
from mmpipe.stats.folds import FoldPlan
from mmpipe.stats.rowblocks import RowBlock, map_row_blocks


def _block_scores(
    block: RowBlock,
    fold_groups: np.ndarray,
    codes: np.ndarray,
    features: Sequence[str],
    offsets: np.ndarray,
    bases: np.ndarray,
    train_groups: list[np.ndarray],
    final_groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    present = block.present(features)
    x = np.concatenate([np.asarray(block.values[n], dtype=np.float64) for n in features], axis=1)
    x[~present] = 0.0  # absent rows hold NaN in the store; they train and validate nothing
    # (rows, n_models·k): each model's scores (x − offset_m) @ basis_m side by side.
    scores = np.concatenate([(x - o) @ b for o, b in zip(offsets, bases, strict=True)], axis=1)
    final = present if final_groups is None else np.isin(fold_groups, final_groups) & present
    train = np.stack([np.isin(fold_groups, g) & present for g in train_groups] + [final], axis=1)
    return scores, codes, train


@dataclass(frozen=True, eq=False)
class HeldScores:
    """Per block, persisted on the cluster: (scores, codes, train)."""

    blocks: list[tuple[Any, Any, Any]]
    n_models: int
    k: int
    n_train: np.ndarray
    """(n_models,) training rows per model."""

    def loss_and_gradient(self, theta: np.ndarray, n_classes: int) -> np.ndarray:
        """The stacked logistic models' loss and gradient at ``theta``, summed over every
        block: one pass over the held scores (mmpipe.models.logistic.block_loss_grad)."""
        task = delayed(block_loss_grad, pure=True)
        parts = [task(s, c, t, theta, self.n_models, self.k, n_classes) for s, c, t in self.blocks]
        total: np.ndarray = compute_pass(tree_reduce(parts, _total, 8), "logistic iteration")
        return total


def hold_scores(
    ds: Dataset,
    plan: FoldPlan,
    features: Sequence[str],
    codes: np.ndarray,
    offsets: np.ndarray,
    bases: np.ndarray,
) -> HeldScores:
    """Read ``features`` once and persist every model's scores (models: splits, then final;
    the final model trains on ``plan.final_groups``, all rows when None).

    ``offsets`` (n_models, d) and ``bases`` (n_models, d, k) map raw columns to scores.
    """
    train = [np.asarray(t) for t, _ in plan.splits]
    final = None if plan.final_groups is None else np.asarray(plan.final_groups)
    parts = map_row_blocks(
        ds,
        features,
        _block_scores,
        per_row=(plan.assignment, codes),
        shared=(tuple(features), offsets, bases, train, final),
        nout=3,
    )
    # Persisted, the blocks keep their whole graph on the scheduler: a worker lost between or
    # during the solver's passes only costs recomputing (re-reading) the blocks it held.
    held = persist_pass(parts, "held scores")
    blocks = [(p[0], p[1], p[2]) for p in held]
    counts = compute_pass(
        tree_reduce([delayed(_count)(p[2]) for p in held], _total, 8), "held scores"
    )
    return HeldScores(blocks, bases.shape[0], bases.shape[2], counts)


def _count(train: np.ndarray) -> np.ndarray:
    return train.sum(axis=0)


def _total(*parts: np.ndarray) -> np.ndarray:
    return np.sum(parts, axis=0)
