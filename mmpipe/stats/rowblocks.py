"""Passes over a dataset's row blocks, one Dask task per block that reads its own rows.

Every pass (statistics, scoring, random features, held scores) has the same shape: for each
row block, the rows of some modalities and their masks, the block's slice of a few per-row
arrays already in memory (fold groups, label codes, draws), and some objects shared by every
block (composed maps, jobs). :func:`map_row_blocks` builds that graph once for all of them.

The task reads its rows from the store itself rather than receiving them from separate
"getter" tasks: a getter may run on another worker than its consumer, and then the block
crosses between worker processes (pickled, sent, unpickled) before any arithmetic. Reading in
the task moves only the results.
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


def _default_client() -> Any | None:
    """The distributed client that ``dask.compute`` would use, if any."""
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def map_row_blocks(
    ds: Dataset,
    names: Sequence[str],
    fn: Callable[..., Any],
    *,
    per_row: Sequence[np.ndarray | None] = (),
    shared: Sequence[Any] = (),
    nout: int | None = None,
    client: Any | None = None,
) -> list[Delayed]:
    """One lazy ``fn(block, *per_row_slices, *shared)`` per row block of ``ds``.

    ``block`` is a :class:`RowBlock` of ``names`` read inside the task; each array of
    ``per_row`` (n_rows long, or None) is sliced to the block's rows; each object of
    ``shared`` is shipped to the cluster once, as one key, not embedded in every task.
    With a distributed ``client`` (given, or the default one), the shared objects and the
    row slices are scattered to the workers first, so the graph sent to the scheduler stays
    small (composed maps and sketch bases can weigh tens of MB).
    """
    client = client if client is not None else _default_client()
    starts = np.cumsum((0, *ds.row_chunks))
    slices = [
        tuple(None if a is None else a[lo:hi] for a in per_row)
        for lo, hi in itertools.pairwise(starts)
    ]
    if client is not None:
        arrays, *shared_keys = client.scatter([ds.arrays, *shared], hash=False)
        slices = client.scatter(slices, hash=False) if per_row else slices
    else:
        arrays = delayed(ds.arrays, traverse=False)
        shared_keys = [delayed(obj, traverse=False) for obj in shared]
    task = delayed(_run_block, nout=nout)
    label = getattr(fn, "__name__", "block").strip("_")
    parts: list[Delayed] = []
    for i, (start, stop) in enumerate(itertools.pairwise(starts)):
        args = (arrays, tuple(names), int(start), int(stop), fn, slices[i], tuple(shared_keys))
        parts.append(task(*args, dask_key_name=f"{label}-{tokenize(ds.url, *args)}"))
    return parts
