"""A description of a dataset: what ``mmpipe inspect`` prints."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mmpipe.io.dataset import open_dataset
from mmpipe.io.storage import StorageOptions


def describe(
    url: str | os.PathLike[str], *, storage_options: StorageOptions | None = None
) -> dict[str, Any]:
    """Validate the dataset and describe it as a JSON-ready dict.

    Reads metadata, plus the labels, masks and split (1-D, small) for class counts, presence
    and the rows of each role of the split (its values checked).
    """
    ds = open_dataset(url, storage_options=storage_options)
    modalities = {}
    for name, arr in ds.arrays.modalities.items():
        modalities[name] = {
            "shape": list(arr.shape),
            "dtype": str(arr.dtype),
            "chunks": list(arr.chunks),
            "bytes": int(arr.nbytes),
            "stored_bytes": int(arr.nbytes_stored()),
        }
    out: dict[str, Any] = {
        "url": ds.url,
        "rows": ds.n_rows,
        "modalities": modalities,
        "labels": None,
        "ids": None,
        "masks": {},
        "split": None,
    }
    labels = ds.read_labels()
    if labels is not None:
        values, counts = np.unique(labels, return_counts=True)
        out["labels"] = {
            "dtype": str(labels.dtype),
            "classes": len(values),
            "counts": {str(v): int(c) for v, c in zip(values, counts, strict=True)},
        }
    if ds.id_array is not None:
        ids = ds.id_array
        out["ids"] = {"dtype": str(ids.dtype), "first": np.asarray(ids[:3]).tolist()}
    split = ds.read_split()
    if split is not None:
        roles = {"train": 0, "test": 1, "unused": -1}
        out["split"] = {
            "dtype": str(ds.split_array.dtype),  # type: ignore[union-attr]
            "counts": {role: int(np.count_nonzero(split == v)) for role, v in roles.items()},
        }
    for name, mask in ds.arrays.masks.items():
        present = int(np.count_nonzero(mask[:]))
        out["masks"][name] = {"present": present, "present_fraction": present / ds.n_rows}
    if "mmpipe_synth" in ds.attrs:
        out["synth"] = ds.attrs["mmpipe_synth"]
    return out
