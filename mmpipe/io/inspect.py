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

    Reads metadata, plus the labels and masks (1-D, small) for class counts and presence.
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
    for name, mask in ds.arrays.masks.items():
        present = int(np.count_nonzero(mask[:]))
        out["masks"][name] = {"present": present, "present_fraction": present / ds.n_rows}
    if "mmpipe_synth" in ds.attrs:
        out["synth"] = ds.attrs["mmpipe_synth"]
    return out
