"""The dataset contract: a Zarr v3 group of modalities of the same rows.

    dataset.zarr/
      modalities/<name>   numeric (n, d_name), row-chunked; every modality has the same n
      labels              optional (n,) integer classes
      ids                 optional (n,) sample ids (any dtype)
      masks/<name>        optional (n,) bool: modality <name> present in that row
      split               optional (n,) int8 train/test split: 0 train, 1 test, −1 unused

:func:`open_dataset` checks the layout from metadata alone (no data is read) and returns a
:class:`Dataset`: the store's arrays, the row blocks every pass uses, and row-aligned Dask
views built on first use. Problems in the values (NaN/inf, zero variance) are found during the
statistics pass.

Every array is read through :func:`mmpipe.io.integrity.guard`: a chunk absent from the store
or truncated is a :class:`~mmpipe.errors.DatasetError` naming the array and its rows, never the
fill value; :meth:`Dataset.check_chunks` finds absent chunks before any computation by listing
the store.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
import zarr.abc.store
import zarr.errors

from mmpipe.errors import DatasetError, DataValueError, MmpipeError
from mmpipe.io.integrity import check_chunks, guard, read_rows
from mmpipe.io.locations import is_results_attrs
from mmpipe.io.output import check_new_dataset, dataset_mark
from mmpipe.io.reduction import Reduction
from mmpipe.io.storage import (
    MODALITY_COMPRESSORS,
    StorageOptions,
    describe_location,
    make_store,
    open_group,
)

if TYPE_CHECKING:
    import dask.array as da
    from zarr.core.array_spec import ArrayConfigParams  # a TypedDict, for the checker only

MODALITIES = "modalities"
LABELS = "labels"
IDS = "ids"
MASKS = "masks"
SPLIT = "split"
SPLIT_VALUES = (-1, 0, 1)
"""The values of ``split``: −1 unused, 0 train, 1 test."""
# Dask row blocks are grown to about this many bytes (as float64, all modalities side by side)
# so that per-task overhead stays small next to the arithmetic.
TARGET_BLOCK_BYTES = 64 * 2**20
WRITE_EVERY_CHUNK: ArrayConfigParams = {"write_empty_chunks": True}
"""Array config of every array mmpipe writes: a chunk equal to the fill value is written too,
so that an absent chunk always means a lost one (docs/dataset.md)."""


@dataclass(frozen=True, eq=False)
class StoreArrays:
    """The store's modality and mask arrays themselves: small to ship, read where they run."""

    modalities: dict[str, zarr.Array]
    masks: dict[str, zarr.Array] = field(default_factory=dict)
    reductions: dict[str, Reduction] = field(default_factory=dict)
    """Wide modalities seen through their sketch coordinates (mmpipe.models.sketch)."""

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of modality ``name``: in the store's dtype, or as float64
        sketch coordinates for a reduced modality."""
        values = read_rows(self.modalities[name], f"{MODALITIES}/{name}", start, stop)
        return self.reductions[name].apply(values) if name in self.reductions else values

    def read_mask(self, name: str, start: int, stop: int) -> np.ndarray | None:
        """Rows [start, stop) of the mask of ``name`` (None if it has none)."""
        if name not in self.masks:
            return None
        return np.asarray(read_rows(self.masks[name], f"{MASKS}/{name}", start, stop), dtype=bool)


@dataclass(frozen=True, eq=False)
class Dataset:
    """One dataset's store arrays, its row blocks, and row-aligned Dask views of them.

    Passes over the rows read blocks straight from ``arrays`` inside their tasks
    (:mod:`mmpipe.stats.rowblocks`); the Dask views (``modalities``, ``labels``, ``ids``,
    ``masks``) serve everything else. They are built on first use: a fit on a cluster never
    needs them, and importing ``dask.array`` costs about a second per process.
    """

    url: str
    """Where the dataset was opened from (path or fsspec URL)."""
    arrays: StoreArrays
    """The modality and mask arrays in the store."""
    row_chunks: tuple[int, ...]
    """Rows per block; every view and every pass over the rows uses these blocks."""
    label_array: zarr.Array | None = None
    """The store's (n,) integer class labels, if the dataset has them."""
    id_array: zarr.Array | None = None
    """The store's (n,) sample ids, if present."""
    split_array: zarr.Array | None = None
    """The store's (n,) integer train/test split (0 train, 1 test, −1 unused), if present."""
    storage_options: StorageOptions | None = None
    """fsspec options used to open the store."""
    attrs: dict[str, Any] = field(default_factory=dict)
    """The group's JSON attributes (e.g. synth ground truth)."""

    @property
    def n_rows(self) -> int:
        return int(next(iter(self.arrays.modalities.values())).shape[0])

    @property
    def names(self) -> list[str]:
        return list(self.arrays.modalities)

    @property
    def widths(self) -> dict[str, int]:
        """Columns of each modality as the passes see it (q for a sketched one)."""
        reductions = self.arrays.reductions
        return {
            name: reductions[name].width if name in reductions else int(arr.shape[1])
            for name, arr in self.arrays.modalities.items()
        }

    @property
    def nbytes(self) -> int:
        """Bytes of all modalities in memory, in the store's dtypes (float64 if sketched)."""
        widths = self.widths
        return sum(self.n_rows * widths[name] * self.dtype(name).itemsize for name in self.names)

    def dtype(self, name: str) -> np.dtype[Any]:
        """The dtype rows of ``name`` are read in (float64 for a sketched modality)."""
        if name in self.arrays.reductions:
            return np.dtype(np.float64)
        return np.dtype(self.arrays.modalities[name].dtype)

    @cached_property
    def modalities(self) -> dict[str, da.Array]:
        """name -> (n, d) Dask array in the store's dtype, chunked by rows only ((n, q) float64
        sketch coordinates for a modality in ``arrays.reductions``)."""
        import dask.array as da

        def view(name: str, arr: zarr.Array) -> da.Array:
            rows = self._rows_only(arr)
            if name not in self.arrays.reductions:
                return rows
            r = self.arrays.reductions[name]
            return da.map_blocks(r.apply, rows, chunks=(self.row_chunks, r.width), dtype=np.float64)

        return {name: view(name, arr) for name, arr in self.arrays.modalities.items()}

    @cached_property
    def labels(self) -> da.Array | None:
        """(n,) integer class labels, if the dataset has them."""
        return None if self.label_array is None else self._rows_only(self.label_array)

    @cached_property
    def ids(self) -> da.Array | None:
        """(n,) sample ids, if present."""
        return None if self.id_array is None else self._rows_only(self.id_array)

    @cached_property
    def masks(self) -> dict[str, da.Array]:
        """name -> (n,) bool presence mask, for the modalities that have one."""
        return {name: self._rows_only(arr) for name, arr in self.arrays.masks.items()}

    def _rows_only(self, arr: zarr.Array) -> da.Array:
        # Each Dask chunk reads its own rows from the store (no rechunk layer, whose pieces
        # would be gathered from other tasks and maybe other workers).
        import dask.array as da  # not at module level: workers import this module

        return da.from_zarr(arr, chunks=(self.row_chunks, *arr.shape[1:]))

    def read_labels(self) -> np.ndarray | None:
        """The labels in memory, read straight from the store (None without labels)."""
        if self.label_array is None:
            return None
        return read_rows(self.label_array, LABELS, 0, self.n_rows)

    def read_ids(self) -> np.ndarray | None:
        """The ids in memory, read straight from the store (None without ids)."""
        return None if self.id_array is None else read_rows(self.id_array, IDS, 0, self.n_rows)

    def read_split(self) -> np.ndarray | None:
        """The split in memory (None without one), checked: values only in {−1, 0, 1}, at
        least 2 train rows (0) and 1 test row (1); else DataValueError naming ``split``."""
        if self.split_array is None:
            return None
        split = np.asarray(read_rows(self.split_array, SPLIT, 0, self.n_rows))
        bad = ~np.isin(split, SPLIT_VALUES)
        if bad.any():
            rows = np.flatnonzero(bad)
            listing = ", ".join(f"{split[r].item()} at row {r}" for r in rows[:3])
            more = f" ({rows.size} rows in all)" if rows.size > 3 else ""
            raise DataValueError(
                f"{SPLIT}: values must be 0 (train), 1 (test) or -1 (unused), found "
                f"{listing}{more}: fix the split array."
            )
        train, test = int(np.count_nonzero(split == 0)), int(np.count_nonzero(split == 1))
        if train < 2 or test < 1:
            raise DataValueError(
                f"{SPLIT}: {train} train rows (0) and {test} test rows (1); a split needs at "
                "least 2 train rows and 1 test row: fix the split array."
            )
        return split.astype(np.int8)

    def stored_arrays(self, names: Sequence[str] | None = None) -> dict[str, zarr.Array]:
        """path -> store array of every array a fit of ``names`` reads (default: all of them):
        those modalities, their masks, the labels, the ids and the split."""
        names = self.names if names is None else list(names)
        out = {f"{MODALITIES}/{n}": self.arrays.modalities[n] for n in names}
        out |= {f"{MASKS}/{n}": self.arrays.masks[n] for n in names if n in self.arrays.masks}
        if self.label_array is not None:
            out[LABELS] = self.label_array
        if self.id_array is not None:
            out[IDS] = self.id_array
        if self.split_array is not None:
            out[SPLIT] = self.split_array
        return out

    def check_chunks(self, names: Sequence[str] | None = None) -> None:
        """Raise DatasetError naming the first array that lacks a chunk (one listing of the
        store per array; see :mod:`mmpipe.io.integrity`)."""
        check_chunks(self.stored_arrays(names))

    def check_ids(self) -> None:
        """Raise DataValueError naming the first duplicated ids and their rows."""
        ids = self.read_ids()
        if ids is not None:
            message = duplicate_ids(ids)
            if message:
                raise DataValueError(message)

    def reduced(self, reductions: Mapping[str, Reduction]) -> Dataset:
        """The same dataset with some modalities seen through their sketch coordinates:
        every later pass reads q columns for them instead of d."""
        arrays = replace(self.arrays, reductions={**self.arrays.reductions, **reductions})
        return replace(self, arrays=arrays)

    def rechunk(self, chunk_rows: int) -> Dataset:
        """The same dataset with row blocks of ``chunk_rows`` rows (columns never split)."""
        return replace(self, row_chunks=_regular_chunks(self.n_rows, chunk_rows))


def _regular_chunks(n: int, size: int) -> tuple[int, ...]:
    size = max(1, min(size, n))
    full, rest = divmod(n, size)
    return (size,) * full + ((rest,) if rest else ())


def _is_numeric(dtype: np.dtype[Any]) -> bool:
    return dtype.kind in "fiu"


def _check_vector(arr: zarr.Array, path: str, n: int, *, kinds: str | None, what: str) -> None:
    if arr.ndim != 1:
        raise DatasetError(
            f"{path!r} has shape {arr.shape}; it must be 1-D with one entry per row."
        )
    if arr.shape[0] != n:
        raise DatasetError(
            f"{path!r} has {arr.shape[0]} rows but the modalities have {n}: "
            "every array of a dataset must describe the same rows in the same order."
        )
    if kinds is not None and np.dtype(arr.dtype).kind not in kinds:
        raise DatasetError(f"{path!r} has dtype {arr.dtype}; {what}.")


def _default_row_chunk(store_rows: list[int], width: int, n: int) -> int:
    """A row block that is a multiple of every store chunk (no chunk read twice) when cheap."""
    lcm = math.lcm(*store_rows)
    base = lcm if lcm <= 8 * max(store_rows) else max(store_rows)
    grow = max(1, TARGET_BLOCK_BYTES // max(1, base * width * 8))
    return min(n, base * grow)


def open_dataset(
    url: str | os.PathLike[str] | Dataset | zarr.abc.store.Store,
    *,
    storage_options: StorageOptions | None = None,
    chunk_rows: int | None = None,
) -> Dataset:
    """Open and validate a dataset from its metadata (no data is read, nothing is computed).

    ``chunk_rows`` sets the Dask row block; by default a multiple of the store's row chunks
    of about 64 MiB. Each block's task reads its own rows, so a store chunk cut by a block
    boundary is read (and decompressed) by both blocks: give a multiple of the store's row
    chunk to read every chunk once. Raises :class:`~mmpipe.errors.DatasetError` naming the
    array at fault, or the metadata file (``zarr.json``) that cannot be parsed.
    """
    if isinstance(url, Dataset):
        return url if chunk_rows is None else url.rechunk(chunk_rows)
    try:
        return _open_dataset(url, storage_options=storage_options, chunk_rows=chunk_rows)
    except MmpipeError:
        raise
    except (ValueError, TypeError, KeyError) as exc:  # zarr parsing a damaged zarr.json
        raise _metadata_error(url, storage_options, exc) from exc


def _open_dataset(
    url: str | os.PathLike[str] | Dataset | zarr.abc.store.Store,
    *,
    storage_options: StorageOptions | None = None,
    chunk_rows: int | None = None,
) -> Dataset:
    """:func:`open_dataset` without the diagnosis of damaged metadata."""
    if isinstance(url, Dataset):
        return url if chunk_rows is None else url.rechunk(chunk_rows)
    text = describe_location(url)
    group = open_group(url, mode="r", storage_options=storage_options)
    if is_results_attrs(dict(group.attrs)):
        raise DatasetError(
            f"{text!r} is an mmpipe results store, not a dataset: give the dataset's path "
            "(the group holding modalities/)."
        )
    members = dict(_members(group))

    if MODALITIES not in members or not isinstance(members[MODALITIES], zarr.Group):
        raise DatasetError(
            f"{text!r} has no {MODALITIES!r} group: store each modality as a 2-D array "
            f"{MODALITIES}/<name> (rows × features)."
        )
    raw: dict[str, zarr.Array] = {}
    modality_group = members[MODALITIES]
    assert isinstance(modality_group, zarr.Group)
    for name, node in _members(modality_group):
        path = f"{MODALITIES}/{name}"
        if not isinstance(node, zarr.Array):
            raise DatasetError(f"{path!r} is a group; each modality must be a 2-D array.")
        if node.ndim != 2:
            raise DatasetError(
                f"{path!r} has shape {node.shape}; each modality must be 2-D (rows × features). "
                "Reshape it, e.g. flatten images to one row per sample."
            )
        if not _is_numeric(np.dtype(node.dtype)):
            raise DatasetError(
                f"{path!r} has dtype {node.dtype}, which is not numeric: "
                "convert it to float32 or float64."
            )
        if node.shape[1] == 0:
            raise DatasetError(f"{path!r} has no columns.")
        raw[name] = node
    if len(raw) < 2:
        raise DatasetError(
            f"{text!r} has {len(raw)} modalit{'y' if len(raw) == 1 else 'ies'} "
            f"({', '.join(raw) or 'none'}); mmpipe needs at least two under {MODALITIES}/."
        )
    counts = {name: arr.shape[0] for name, arr in raw.items()}
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{MODALITIES}/{k}: {v}" for k, v in counts.items())
        raise DatasetError(
            f"Modalities of {text!r} have different row counts ({listing}): "
            "every modality must have one row per sample, in the same order."
        )
    n = next(iter(counts.values()))
    if n == 0:
        raise DatasetError(f"{text!r} has modalities with 0 rows.")

    labels = members.get(LABELS)
    if labels is not None:
        if not isinstance(labels, zarr.Array):
            raise DatasetError(f"{LABELS!r} in {text!r} must be an array, not a group.")
        _check_vector(
            labels,
            LABELS,
            n,
            kinds="iu",
            what="labels must be integer class indices: store them as int32 or int64",
        )
    ids = members.get(IDS)
    if ids is not None:
        if not isinstance(ids, zarr.Array):
            raise DatasetError(f"{IDS!r} in {text!r} must be an array, not a group.")
        _check_vector(ids, IDS, n, kinds=None, what="")
    split = members.get(SPLIT)
    if split is not None:
        if not isinstance(split, zarr.Array):
            raise DatasetError(f"{SPLIT!r} in {text!r} must be an array, not a group.")
        _check_vector(
            split,
            SPLIT,
            n,
            kinds="iu",
            what="the split must be integers, 0 train, 1 test, -1 unused: store it as int8",
        )
    masks: dict[str, zarr.Array] = {}
    if MASKS in members:
        mask_group = members[MASKS]
        if not isinstance(mask_group, zarr.Group):
            raise DatasetError(f"{MASKS!r} in {text!r} must be a group of 1-D bool arrays.")
        for name, node in _members(mask_group):
            path = f"{MASKS}/{name}"
            if name not in raw:
                raise DatasetError(
                    f"{path!r} names no modality (modalities: {', '.join(raw)}): "
                    "a mask must have the name of the modality it covers."
                )
            if not isinstance(node, zarr.Array):
                raise DatasetError(f"{path!r} must be an array.")
            _check_vector(
                node,
                path,
                n,
                kinds="b",
                what="a mask must be boolean (True where the modality is present)",
            )
            masks[name] = node

    width = sum(arr.shape[1] for arr in raw.values())
    store_rows = [arr.chunks[0] for arr in raw.values()]
    rows = _regular_chunks(n, chunk_rows or _default_row_chunk(store_rows, width, n))
    return Dataset(
        url=text,
        arrays=StoreArrays(
            {name: guard(arr, f"{MODALITIES}/{name}") for name, arr in raw.items()},
            {name: guard(arr, f"{MASKS}/{name}") for name, arr in masks.items()},
        ),
        row_chunks=rows,
        label_array=None if labels is None else guard(labels, LABELS),
        id_array=None if ids is None else guard(ids, IDS),
        split_array=None if split is None else guard(split, SPLIT),
        storage_options=storage_options,
        attrs=dict(group.attrs),
    )


class _SkippedMember(ValueError):
    """zarr skipped a member of a group because it could not parse its zarr.json."""


def _members(group: zarr.Group) -> list[tuple[str, zarr.Array | zarr.Group]]:
    """The members of ``group``, sorted by name; raises _SkippedMember where zarr would only
    warn and leave out a member whose zarr.json it cannot parse (labels that vanish, a
    modality that is silently not fitted)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", zarr.errors.ZarrUserWarning)
        members = sorted(group.members())
    for w in caught:
        if issubclass(w.category, zarr.errors.ZarrUserWarning) and "not recognized" in str(
            w.message
        ):
            raise _SkippedMember(str(w.message))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return members


def _metadata_error(
    url: str | os.PathLike[str] | zarr.abc.store.Store,
    storage_options: StorageOptions | None,
    exc: BaseException,
) -> DatasetError:
    """A DatasetError naming the ``zarr.json`` that zarr could not parse (``exc``)."""
    text = describe_location(url)
    where = f"The Zarr metadata of {text!r}"
    try:
        store = (
            url
            if isinstance(url, zarr.abc.store.Store)
            else make_store(os.fspath(url), mode="r", storage_options=storage_options)
        )
        assert isinstance(store, zarr.abc.store.Store)
        bad = _damaged_metadata(store)
    except Exception:  # the diagnosis must never hide the error it explains
        bad = None
    if bad is not None:
        key, problem = bad
        where = f"{text.rstrip('/')}/{key}"
        return DatasetError(
            f"{where!r} cannot be read ({problem}): the metadata of "
            f"{key.rsplit('/', 1)[0] if '/' in key else 'the dataset group'} is damaged; "
            "restore the file from the source or rewrite the dataset."
        )
    return DatasetError(
        f"{where} cannot be read ({type(exc).__name__}: {exc}): restore the damaged "
        "zarr.json from the source or rewrite the dataset."
    )


def _damaged_metadata(store: zarr.abc.store.Store) -> tuple[str, str] | None:
    """(key, problem) of the first zarr.json of the dataset's layout that does not parse."""
    from zarr.buffer import default_buffer_prototype

    from mmpipe.io.zarr_private import metadata_problem
    from mmpipe.io.zarr_private import run_sync as sync

    async def children(prefix: str) -> list[str]:
        return sorted([key async for key in store.list_dir(prefix)])

    def problem(key: str) -> str | None:
        buf = sync(store.get(key, prototype=default_buffer_prototype()))
        if buf is None:
            return None
        try:
            doc = json.loads(buf.to_bytes())
        except (ValueError, UnicodeDecodeError) as err:
            return f"not valid JSON: {err}"
        return metadata_problem(doc)

    keys = ["zarr.json"]
    for child in sync(children("")):
        if child == "zarr.json":
            continue
        keys.append(f"{child}/zarr.json")
        if child in (MODALITIES, MASKS):
            keys += [
                f"{child}/{name}/zarr.json" for name in sync(children(child)) if name != "zarr.json"
            ]
    for key in keys:
        found = problem(key)
        if found:
            return key, found
    return None


def duplicate_ids(ids: np.ndarray) -> str | None:
    """The message naming the first duplicated ids and their rows (None if all differ)."""
    ids = np.asarray(ids)
    if ids.size < 2:
        return None
    if ids.dtype.kind in "iuf" and bool(np.all(ids[1:] > ids[:-1])):
        return None  # increasing ids, the usual case: no sort needed
    ordered = np.sort(ids)  # about twice as fast as argsort; the rows are found only on failure
    if not np.any(ordered[1:] == ordered[:-1]):
        return None
    order = np.argsort(ids, kind="stable")
    ordered = ids[order]
    same = ordered[1:] == ordered[:-1]
    repeated = np.zeros(ids.size, dtype=bool)
    repeated[1:] |= same
    repeated[:-1] |= same
    rows = order[repeated]
    groups: dict[object, list[int]] = {}
    for row in np.sort(rows):
        groups.setdefault(ids[row].item() if hasattr(ids[row], "item") else ids[row], []).append(
            int(row)
        )
    shown = list(itertools.islice(groups.items(), 3))
    listing = "; ".join(
        f"{value!r} at rows {', '.join(map(str, where[:5]))}{', …' if len(where) > 5 else ''}"
        for value, where in shown
    )
    more = f" ({len(groups)} ids in all)" if len(groups) > len(shown) else ""
    return (
        f"{IDS}: ids occur more than once, {listing}{more}: every row must have its own id; "
        "drop the repeated rows or fix the ids."
    )


def check_folds(ds: Dataset, folds: int) -> None:
    """Raise when the dataset has fewer rows than the requested folds."""
    if ds.n_rows < folds:
        raise DatasetError(
            f"{ds.url!r} has {ds.n_rows} rows, fewer than the {folds} folds asked for: "
            "use fewer folds (--folds) or a hold-out split."
        )


def write_dataset(
    url: str | os.PathLike[str],
    modalities: Mapping[str, np.ndarray],
    *,
    labels: np.ndarray | None = None,
    ids: np.ndarray | None = None,
    masks: Mapping[str, np.ndarray] | None = None,
    split: np.ndarray | None = None,
    chunk_rows: int = 10_000,
    attrs: Mapping[str, Any] | None = None,
    storage_options: StorageOptions | None = None,
    overwrite: bool = False,
) -> str:
    """Write in-memory arrays as a dataset (for examples and tests); returns the URL.

    An existing non-empty ``url`` is refused unless ``overwrite``, and then only when it is a
    dataset mmpipe wrote (:func:`mmpipe.io.output.check_new_dataset`).

    ``split`` (0 train, 1 test, −1 unused) is stored as given (int8 recommended).
    Every chunk is written, also one equal to the fill value (see ``WRITE_EVERY_CHUNK``)."""
    check_new_dataset(url, overwrite=overwrite, storage_options=storage_options)
    group = open_group(url, mode="w", storage_options=storage_options)
    group.attrs.update({**dataset_mark(), **dict(attrs or {})})
    mods = group.create_group(MODALITIES)
    for name, values in modalities.items():
        arr = np.asarray(values)
        mods.create_array(
            name,
            data=arr,
            chunks=(min(chunk_rows, arr.shape[0]), arr.shape[1]),
            dimension_names=["row", f"{name}_feature"],
            compressors=MODALITY_COMPRESSORS,
            config=WRITE_EVERY_CHUNK,
        )

    def vector(parent: zarr.Group, name: str, values: np.ndarray) -> None:
        arr = np.asarray(values)
        parent.create_array(
            name,
            data=arr,
            chunks=(min(chunk_rows, arr.shape[0]),),
            dimension_names=["row"],
            config=WRITE_EVERY_CHUNK,
        )

    if labels is not None:
        vector(group, LABELS, labels)
    if ids is not None:
        vector(group, IDS, ids)
    if split is not None:
        vector(group, SPLIT, split)
    if masks:
        mask_group = group.create_group(MASKS)
        for name, values in masks.items():
            vector(mask_group, name, np.asarray(values, dtype=bool))
    return os.fspath(url)
