"""The sketch passes that reduce wide modalities before the statistics pass.

Pass 1 reads each wide modality once and returns, merged over all its present rows (of the
final models' rows: a given split's train rows), the
column means and variances and a random-sign sketch Ωᵀ(X − μ) of q rows. Scaled by σ, the
sketch's rows span (approximately) the top of the standardized columns' row space. Each
power iteration is one more pass: V ← orth(Xₛᵀ Xₛ V), sharpening V towards the top
eigenvectors when the spectrum decays slowly. See :mod:`mmpipe.models.sketch`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mmpipe.cluster import compute_pass
from mmpipe.io.dataset import Dataset
from mmpipe.models.sketch import (
    RangeSketch,
    Reduction,
    column_scale,
    merge_sketches,
    orthonormal,
    power_block,
)
from mmpipe.stats.blocked import tree_reduce
from mmpipe.stats.rowblocks import RowBlock, map_row_blocks


def _sketch_block(
    block: RowBlock,
    keep: np.ndarray | None,
    names: Sequence[str],
    widths: Mapping[str, int],
    seed: int,
) -> dict[str, RangeSketch]:
    out = {}
    for name in names:
        present = block.present([name]) if keep is None else block.present([name]) & keep
        rows = block.start + np.flatnonzero(present)
        x = block.values[name] if present.all() else block.values[name][present]
        out[name] = RangeSketch.from_rows(x, rows, widths[name], seed)
    return out


def _power_block(
    block: RowBlock,
    keep: np.ndarray | None,
    names: Sequence[str],
    reductions: Mapping[str, Reduction],
) -> dict[str, np.ndarray]:
    out = {}
    for name in names:
        present = block.present([name]) if keep is None else block.present([name]) & keep
        x = block.values[name] if present.all() else block.values[name][present]
        r = reductions[name]
        out[name] = power_block(x, r.offset, r.scale, r.basis)
    return out


def _merge_sketch_parts(*parts: dict[str, RangeSketch]) -> dict[str, RangeSketch]:
    return {name: merge_sketches(*(p[name] for p in parts)) for name in parts[0]}


def _sum_parts(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.sum([p[name] for p in parts], axis=0) for name in parts[0]}


def sketch_wide(
    ds: Dataset,
    widths: Mapping[str, int],
    *,
    power_iterations: int = 1,
    seed: int = 0,
    rows: np.ndarray | None = None,
    scale: bool = True,
) -> dict[str, Reduction]:
    """A :class:`Reduction` to ``widths[name]`` sketch columns for each named modality, in
    1 + ``power_iterations`` passes over those modalities; from the rows where ``rows``
    (an (n,) bool, the final models' rows) is True, all rows if None. ``scale`` False: of the
    centered columns, not standardized (the fit's ``scale``)."""
    names = sorted(widths)
    if not names:
        return {}
    parts = map_row_blocks(
        ds, names, _sketch_block, per_row=(rows,), shared=(names, dict(widths), seed)
    )
    sketches: dict[str, RangeSketch] = compute_pass(
        tree_reduce(parts, _merge_sketch_parts, 8), "sketch", rows=ds.n_rows
    )
    reductions = {}
    for name, sk in sketches.items():
        by = column_scale(sk.n, sk.mean, sk.sq) if scale else np.ones(sk.mean.size)
        reductions[name] = Reduction(sk.mean, by, orthonormal((sk.sketch / by).T))
    for _ in range(power_iterations):
        parts = map_row_blocks(
            ds, names, _power_block, per_row=(rows,), shared=(names, reductions)
        )
        products: dict[str, np.ndarray] = compute_pass(
            tree_reduce(parts, _sum_parts, 8), "sketch power iteration", rows=ds.n_rows
        )
        reductions = {
            name: Reduction(r.offset, r.scale, orthonormal(products[name]))
            for name, r in reductions.items()
        }
    return reductions
