"""Passes over a dataset's row blocks, one Dask task per block that reads its own rows.

Every pass (statistics, scoring, random features, held scores) has the same shape: for each
row block, the rows of some modalities and their masks, the block's slice of a few per-row
arrays already in memory (fold groups, label codes, draws), and some objects shared by every
block (composed maps, jobs). :func:`map_row_blocks` builds that graph once for all of them.

The task reads its rows from the store itself rather than receiving them from separate
"getter" tasks: a getter may run on another worker than its consumer, and then the block
crosses between worker processes (pickled, sent, unpickled) before any arithmetic. Reading in
the task moves only the results.

Everything else a task needs is in the graph itself, so that losing a worker changes nothing:
the scheduler holds the graph and recomputes whatever the lost worker held, down to these
inputs. The store handle and each shared object are one data node each (one key, read by
every block, never copied into each task); a block's slices of the per-row arrays travel inside
its own task. Nothing is ``scatter``ed: scattered data lives only on the workers, and Dask
cannot recompute it when they die (scattered, one SIGKILLed worker ended every fit: issue 13).
``scatter(broadcast=True)``/``replicate`` do not fix that either: nothing re-creates a lost
replica, the active memory manager may drop the extra ones, and losing a worker during
replication hangs it (dask/distributed#6578, #5704). The price: the shared objects (tens of MB
for a wide modality's sketch basis) and the per-row arrays (fold groups 1 byte per row, label
codes 8, retrieval draws 8) go to the workers through the scheduler, once per pass, and the
scheduler keeps them while the pass runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed, delayed

from mmpipe.io.dataset import Dataset, StoreArrays


@dataclass(frozen=True, eq=False)
class RowBlock:
    """Rows [start, start + rows) of some modalities, as read from the store."""

    start: int
    """Position of the block's first row in the dataset."""
    values: dict[str, np.ndarray]
    """name -> (rows, d) values in the store's dtype."""
    masks: dict[str, np.ndarray | None]
    """name -> (rows,) bool presence, or None where the modality has no mask."""

    @property
    def rows(self) -> int:
        return int(next(iter(self.values.values())).shape[0]) if self.values else 0

    def present(self, names: Sequence[str]) -> np.ndarray:
        """Rows where every one of ``names`` is present."""
        here = np.ones(self.rows, dtype=bool)
        for name in names:
            mask = self.masks[name]
            if mask is not None:
                here &= np.asarray(mask, dtype=bool)
        return here


def _run_block(
    arrays: StoreArrays,
    names: tuple[str, ...],
    start: int,
    stop: int,
    fn: Callable[..., Any],
    per_row: tuple[np.ndarray | None, ...],
    shared: tuple[Any, ...],
) -> Any:
    block = RowBlock(
        start,
        {n: arrays.read(n, start, stop) for n in names},
        {n: arrays.read_mask(n, start, stop) for n in names},
    )
    return fn(block, *per_row, *shared)


def map_row_blocks(
    ds: Dataset,
    names: Sequence[str],
    fn: Callable[..., Any],
    *,
    per_row: Sequence[np.ndarray | None] = (),
    shared: Sequence[Any] = (),
    nout: int | None = None,
) -> list[Delayed]:
    """One lazy ``fn(block, *per_row_slices, *shared)`` per row block of ``ds``.

    ``block`` is a :class:`RowBlock` of ``names`` read inside the task; each array of
    ``per_row`` (n_rows long, or None) is sliced to the block's rows and embedded in that
    block's task; each object of ``shared`` is one data node of the graph, shipped to the
    cluster once, not embedded in every task. The graph holds all of it, so the scheduler can
    recompute anything a lost worker held (see the module docstring). Submit it with
    :func:`mmpipe.cluster.compute_pass`: the graph is the same wherever it runs.
    """
    starts = np.cumsum((0, *ds.row_chunks))
    arrays = delayed(ds.arrays, traverse=False)
    shared_keys = tuple(delayed(obj, traverse=False) for obj in shared)
    task = delayed(_run_block, nout=nout)
    label = getattr(fn, "__name__", "block").strip("_")
    parts: list[Delayed] = []
    for start, stop in itertools.pairwise(starts):
        rows = tuple(None if a is None else a[start:stop] for a in per_row)
        args = (arrays, tuple(names), int(start), int(stop), fn, rows, shared_keys)
        parts.append(task(*args, dask_key_name=f"{label}-{tokenize(ds.url, *args)}"))
    return parts
