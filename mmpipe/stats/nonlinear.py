"""The random-feature pass: statistics of [φ(source scores) | target scores] per split.

Random features are non-linear in the source scores, and each split has its own PCA, so their
statistics cannot come from the first pass. This pass reads each pair's two modalities once
more. For every model (each split, then the final one) it returns the Moments of
u = [φ(t_source) | t_target] per fold group. A split's training and validation statistics are
merges of its groups, and the ridge path and its validation metrics then come from them as
for linear maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmpipe.cluster import compute_pass
from mmpipe.io.dataset import Dataset
from mmpipe.models.rff import RandomFourierFeatures
from mmpipe.stats.blocked import tree_reduce
from mmpipe.stats.folds import FoldPlan
from mmpipe.stats.moments import Moments, merge, merge_all
from mmpipe.stats.rowblocks import RowBlock, map_row_blocks

Key = tuple[str, int, int]  # (job, model, fold group)


@dataclass(frozen=True, eq=False)
class FeatureJob:
    """One pair's random-feature regression, for every model (splits, then final)."""

    name: str
    source: str
    target: str
    source_offsets: list[np.ndarray]
    """Per model: (d_source,) scaler means."""
    source_bases: list[np.ndarray]
    """Per model: (d_source, k) with scores = (x − offset) @ basis."""
    target_offsets: list[np.ndarray]
    target_bases: list[np.ndarray]
    features: RandomFourierFeatures
    """Fitted for the largest k_source; a model with fewer components uses the first rows of
    Ω (as if its missing scores were 0). The same Ω and b for every model."""


def feature_block(
    block: RowBlock, fold_groups: np.ndarray, jobs: Sequence[FeatureJob]
) -> dict[Key, Moments]:
    out: dict[Key, Moments] = {}
    for job in jobs:
        present = block.present([job.source, job.target])
        xs = np.asarray(block.values[job.source][present], dtype=np.float64)
        xt = np.asarray(block.values[job.target][present], dtype=np.float64)
        groups = fold_groups[present]
        for m in range(len(job.source_bases)):
            phi = job.features.transform((xs - job.source_offsets[m]) @ job.source_bases[m])
            target = (xt - job.target_offsets[m]) @ job.target_bases[m]
            u = np.concatenate([phi, target], axis=1)
            for g in np.unique(groups):
                out[(job.name, m, int(g))] = Moments.from_rows(u[groups == g])
    return out


def _merge(*parts: dict[Key, Moments]) -> dict[Key, Moments]:
    total: dict[Key, Moments] = {}
    for part in parts:
        for key, m in part.items():
            total[key] = merge(total[key], m) if key in total else m
    return total


def feature_statistics(
    ds: Dataset, plan: FoldPlan, jobs: Sequence[FeatureJob]
) -> dict[Key, Moments]:
    """Run the pass: Moments of [φ | target scores] per (job, model, fold group)."""
    names = sorted({n for j in jobs for n in (j.source, j.target)})
    parts = map_row_blocks(
        ds,
        names,
        feature_block,
        per_row=(plan.assignment,),
        shared=(list(jobs),),
    )
    result: dict[Key, Moments] = compute_pass(
        tree_reduce(parts, _merge, 8), "random features", rows=ds.n_rows
    )
    return result


def merged(
    stats: dict[Key, Moments], job: str, model: int, groups: Sequence[int], dim: int
) -> Moments:
    """Moments of one job and model over the rows of ``groups``."""
    wanted = set(groups)
    return merge_all(
        (m for (j, mi, g), m in sorted(stats.items()) if j == job and mi == model and g in wanted),
        dim=dim,
    )
