"""The one blocked pass: per-group sufficient statistics of every modality side by side.

Every row block (a Dask task) builds z = [x_mod1 | x_mod2 | … | one-hot labels] in float64 and
returns, for each (fold group, presence pattern) present in the block, the count, the means
and the centered Gram. Blocks are merged in a tree with Chan's formulas. Everything linear the
pipeline fits — per fold, per pair, per α — is then derived from this one result.

The presence pattern of a row is the bit set of the modalities present in it (masks); a pair's
statistics merge only the patterns where both of its modalities are present, which is exactly
the statistics of the rows where neither is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from dask.delayed import Delayed, delayed

from mmpipe.cluster import compute_pass
from mmpipe.io.dataset import Dataset
from mmpipe.stats.folds import FoldPlan
from mmpipe.stats.moments import Moments, gram, merge, merge_all
from mmpipe.stats.rowblocks import RowBlock, map_row_blocks

GroupKey = tuple[int, int]  # (fold group, presence bit pattern)

PRECISIONS: dict[str, type[np.floating]] = {"float64": np.float64, "float32": np.float32}
"""Dtypes a block's Gram can be computed in. float64 (the default) agrees with an in-memory
float64 reference to rounding; float32 halves the Gram's arithmetic and agrees to about 1e-6
relative on the statistics (the mmpipe32 peer of benchmarks/run.py measures the fit)."""


@dataclass(frozen=True)
class Layout:
    """Where each modality (and the one-hot labels) sits in the joint vector z."""

    names: tuple[str, ...]
    """Modalities in z, in order."""
    widths: tuple[int, ...]
    """Their column counts."""
    n_classes: int = 0
    """Number of one-hot label columns at the end of z (0 without labels)."""
    sketched: frozenset[str] = frozenset()
    """Modalities read as sketch coordinates (already standardized: PCA only centers them)."""
    scale: bool = True
    """Whether PCAs standardize their columns at all (the fit's ``scale``; False: center only)."""

    def scaled(self, name: str) -> bool:
        """Whether a PCA of ``name`` standardizes its columns."""
        return self.scale and name not in self.sketched

    @property
    def dim(self) -> int:
        return sum(self.widths) + self.n_classes

    def columns(self, name: str) -> np.ndarray:
        i = self.names.index(name)
        start = sum(self.widths[:i])
        return np.arange(start, start + self.widths[i])

    def label_columns(self) -> np.ndarray:
        start = sum(self.widths)
        return np.arange(start, start + self.n_classes)

    def bit(self, name: str) -> int:
        return 1 << self.names.index(name)


@dataclass(frozen=True)
class BlockResult:
    """What one block (or a merge of blocks) contributes."""

    groups: dict[GroupKey, Moments]
    nonfinite: np.ndarray  # (n_modalities,) count of NaN/inf among present values
    rows: int


@dataclass(frozen=True, eq=False)
class PassStatistics:
    """The result of the pass: statistics per (fold group, presence pattern)."""

    layout: Layout
    """Column layout of z."""
    classes: np.ndarray | None
    """Label values of the one-hot columns, in order (None without labels)."""
    groups: dict[GroupKey, Moments]
    """(fold group, presence pattern) -> Moments over z."""
    nonfinite: dict[str, int]
    """Per modality: NaN/inf values among rows where it is present (replaced by 0 in z)."""
    n_rows: int
    """Rows read."""

    def moments(
        self,
        names: Sequence[str],
        fold_groups: Iterable[int] | None = None,
        *,
        labels: bool = False,
    ) -> Moments:
        """Statistics of the columns of ``names`` (then the labels, if asked) over the rows of
        ``fold_groups`` (all rows if None) where every one of ``names`` is present."""
        need = sum(self.layout.bit(n) for n in names)
        wanted = None if fold_groups is None else set(fold_groups)
        parts = [
            m
            for (group, pattern), m in sorted(self.groups.items())
            if (wanted is None or group in wanted) and (pattern & need) == need
        ]
        index = [self.layout.columns(n) for n in names]
        if labels:
            index.append(self.layout.label_columns())
        columns = np.concatenate(index)
        return merge_all((p.take(columns) for p in parts), dim=columns.size)

    def rows_present(self, names: Sequence[str], fold_groups: Iterable[int] | None = None) -> int:
        """How many rows (of ``fold_groups``, all if None) have every one of ``names`` present;
        a count, without merging any statistics."""
        need = sum(self.layout.bit(n) for n in names)
        wanted = None if fold_groups is None else set(fold_groups)
        return sum(
            m.n
            for (group, pattern), m in self.groups.items()
            if (pattern & need) == need and (wanted is None or group in wanted)
        )


def block_statistics(
    block: RowBlock,
    label_codes: np.ndarray | None,
    fold_groups: np.ndarray,
    names: Sequence[str],
    n_classes: int,
    precision: str = "float64",
) -> BlockResult:
    """Per-group statistics of one row block. Pure NumPy; runs inside a Dask task.

    ``label_codes`` are class indices in [0, n_classes) (None: no label columns).
    ``precision`` is the dtype each group's Gram is computed in (see :data:`PRECISIONS`);
    merges across blocks are float64 either way.
    """
    dtype = PRECISIONS[precision]
    rows = int(fold_groups.shape[0])
    widths = [block.values[n].shape[1] for n in names]
    dim = sum(widths) + n_classes
    present = [block.present([n]) for n in names]
    pattern = np.zeros(rows, dtype=np.int64)
    for i, here in enumerate(present):
        pattern |= here.astype(np.int64) << i

    # Rows sorted by group, so that each group's rows are one contiguous slice: the per-group
    # Grams then partition the rows and cost one Gram of the block in total. Each value is
    # written once, already shifted by a point near its column's mean (for precision), and a
    # last column of ones makes every group's count and sums come out of its Gram: no separate
    # passes to find the means and center.
    key = fold_groups.astype(np.int64) * (1 << len(names)) + pattern
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    in_order = bool(np.all(order[1:] > order[:-1]))
    z = np.empty((rows, dim + 1), dtype=dtype)
    shift = np.zeros(dim)
    nonfinite = np.zeros(len(names), dtype=np.int64)
    start = 0
    for i, name in enumerate(names):
        values = np.asarray(block.values[name])
        columns = slice(start, start + widths[i])
        shift[columns] = _shift_point(values, present[i])
        part = z[:, columns]
        np.subtract(values if in_order else values[order], shift[columns], out=part)
        here = present[i] if in_order else present[i][order]
        if not np.isfinite(values).all():  # rare: count the bad present values, make them 0
            bad = ~np.isfinite(part)
            nonfinite[i] = int(bad[here].sum())
            np.copyto(part, -shift[columns].astype(dtype), where=bad)
        if block.masks[name] is not None:
            part[~here] = 0.0  # absent values never enter a statistic that is used
        start += widths[i]
    if label_codes is not None:
        z[:, start:dim] = 0.0
        codes = label_codes if in_order else np.asarray(label_codes)[order]
        z[np.arange(rows), start + codes] = 1.0
    z[:, dim] = 1.0

    bounds = np.flatnonzero(np.diff(sorted_key)) + 1
    starts = np.concatenate([[0], bounds])
    stops = np.concatenate([bounds, [rows]])
    # Absent values are 0 in z itself, not in shifted z: a group undoes the shift only on the
    # columns of the modalities present in its rows.
    column_bits = np.repeat([1 << i for i in range(len(names))] + [0], [*widths, n_classes])
    groups: dict[GroupKey, Moments] = {}
    for lo, hi in zip(starts, stops, strict=True):
        k = int(sorted_key[lo])
        group, present_bits = k >> len(names), k & ((1 << len(names)) - 1)
        own_shift = np.where(column_bits & present_bits, shift, 0.0)
        groups[(group, present_bits)] = Moments.from_shifted_gram(
            gram(z[lo:hi]), int(hi - lo), own_shift
        )
    return BlockResult(groups, nonfinite, rows)


def _shift_point(values: np.ndarray, present: np.ndarray, sample: int = 256) -> np.ndarray:
    """Per column, the float64 mean of the finite present values among about ``sample`` rows
    spread over the block (0 where there are none): close enough to the mean that the shifted
    Gram loses no precision to large offsets, and cheap."""
    stride = max(1, values.shape[0] // sample)
    picked = np.asarray(values[::stride][present[::stride]], dtype=np.float64)
    finite = np.isfinite(picked)
    counts = finite.sum(axis=0)
    return np.where(finite, picked, 0.0).sum(axis=0) / np.maximum(counts, 1)


def merge_results(*parts: BlockResult) -> BlockResult:
    groups: dict[GroupKey, Moments] = {}
    for part in parts:
        for key, m in part.groups.items():
            groups[key] = merge(groups[key], m) if key in groups else m
    nonfinite = np.sum([p.nonfinite for p in parts], axis=0)
    return BlockResult(groups, nonfinite, sum(p.rows for p in parts))


def statistics_graph(
    ds: Dataset,
    plan: FoldPlan,
    names: Sequence[str],
    label_codes: np.ndarray | None = None,
    n_classes: int = 0,
    *,
    precision: str = "float64",
    split_every: int = 8,
) -> Delayed:
    """The lazy pass: one task per row block, then a tree of merges (fan-in ``split_every``).

    Fold groups and label codes come from memory (the plan already read the labels), so the
    store's label chunks are not read a second time.
    """
    parts = map_row_blocks(
        ds,
        names,
        block_statistics,
        per_row=(label_codes, plan.assignment),
        shared=(tuple(names), n_classes, precision),
    )
    return tree_reduce(parts, merge_results, split_every)


def tree_reduce(parts: list[Delayed], combine: Any, split_every: int) -> Delayed:
    """Combine per-block results in a tree of fan-in ``split_every`` (bounded memory per task)."""
    step = delayed(combine, pure=True)
    while len(parts) > 1:
        parts = [step(*parts[i : i + split_every]) for i in range(0, len(parts), split_every)]
    return parts[0]


def compute_statistics(
    ds: Dataset,
    plan: FoldPlan,
    names: Sequence[str],
    labels: np.ndarray | None = None,
    *,
    precision: str = "float64",
    scale: bool = True,
) -> PassStatistics:
    """Run the pass on the run's client (:func:`mmpipe.cluster.compute_pass`).

    ``labels`` are the dataset's labels already in memory (None: no label columns); ``scale``
    False: every PCA fitted from these statistics only centers (:meth:`Layout.scaled`).
    """
    classes = None if labels is None else np.unique(labels)
    codes = None if labels is None else np.searchsorted(classes, labels)  # type: ignore[arg-type]
    n_classes = 0 if classes is None else classes.size
    graph = statistics_graph(ds, plan, names, codes, n_classes, precision=precision)
    result: BlockResult = compute_pass(graph, "statistics", rows=ds.n_rows)
    layout = Layout(
        tuple(names),
        tuple(ds.widths[n] for n in names),
        0 if classes is None else int(classes.size),
        frozenset(ds.arrays.reductions),
        scale,
    )
    return PassStatistics(
        layout=layout,
        classes=classes,
        groups=result.groups,
        nonfinite={n: int(c) for n, c in zip(names, result.nonfinite, strict=True)},
        n_rows=result.rows,
    )
