"""Where a new dataset goes: never over something that is there, unless asked, and never over
anything mmpipe did not write.

:func:`check_new_dataset` runs before :func:`mmpipe.io.dataset.write_dataset`,
:func:`mmpipe.io.synth.synthesize` and the examples open their output with ``mode="w"`` (which
deletes everything under it): an existing non-empty location is refused unless
``overwrite=True``, and even then only an mmpipe dataset (a Zarr group carrying
:data:`DATASET_MARK`, holding nothing but a dataset's members) is replaced.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import zarr

from mmpipe.errors import ConfigError, StoreNotFoundError
from mmpipe.io.locations import is_results_attrs
from mmpipe.io.secrets import resolve_references
from mmpipe.io.storage import StorageOptions, is_remote, open_group

DATASET_MARK = "mmpipe_dataset"
"""Root attribute of every dataset mmpipe writes: ``{"format": 1}``."""
_LEGACY_MARKS = ("mmpipe_synth", "example")
"""Attributes that marked mmpipe's datasets before :data:`DATASET_MARK` existed."""
DATASET_ENTRIES = frozenset({"zarr.json", "modalities", "masks", "labels", "ids", "split", "truth"})
"""The top-level entries a dataset written by mmpipe may hold."""


def dataset_mark() -> dict[str, Any]:
    """The root attributes that say "written by mmpipe"."""
    return {DATASET_MARK: {"format": 1}}


def is_mmpipe_dataset(attrs: Mapping[str, Any]) -> bool:
    return not is_results_attrs(attrs) and any(
        key in attrs for key in (DATASET_MARK, *_LEGACY_MARKS)
    )


def _entries(url: str, storage_options: StorageOptions | None) -> list[str] | None:
    """The top-level entries at ``url`` (None: nothing there)."""
    if not is_remote(url):
        path = url.removeprefix("file://")
        if not os.path.exists(path):
            return None
        if not os.path.isdir(path):
            return [os.path.basename(path)]
        return sorted(os.listdir(path))
    # fsspec's own listing of the prefix: a zarr store's list_dir("") on an object store
    # prefix also sees sibling keys that merely start with the same name.
    import fsspec

    options = resolve_references(storage_options or {})
    fs, path = fsspec.core.url_to_fs(url, skip_instance_cache=True, **options)
    path = path.rstrip("/")
    try:
        listed = fs.ls(path, detail=False, refresh=True)
    except FileNotFoundError:
        return None
    names = sorted({str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in listed})
    return [n for n in names if n and f"{path}/{n}" != path] or None


def check_new_dataset(
    url: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    storage_options: StorageOptions | None = None,
) -> None:
    """Refuse to write a dataset at ``url`` when something is there, unless ``overwrite`` and
    it is an mmpipe dataset (then the caller's ``mode="w"`` replaces it)."""
    if isinstance(url, zarr.abc.store.Store):
        return  # a store object given by code: its owner decides
    text = os.fspath(url)
    entries = _entries(text, storage_options)
    if not entries:
        return
    if not overwrite:
        raise ConfigError(
            f"{text!r} already exists and is not empty: choose a new path, or pass "
            "--overwrite (overwrite=True in Python) to replace the mmpipe dataset there."
        )
    if not is_remote(text) and not os.path.isdir(text.removeprefix("file://")):
        raise ConfigError(
            f"{text!r} is a file, not an mmpipe dataset: --overwrite never deletes it."
        )
    try:
        attrs = dict(open_group(text, mode="r", storage_options=storage_options).attrs)
    except StoreNotFoundError:
        attrs = {}
    if not is_mmpipe_dataset(attrs):
        what = (
            "an mmpipe results store" if is_results_attrs(attrs) else "not a dataset mmpipe wrote"
        )
        raise ConfigError(
            f"{text!r} is {what}: --overwrite only replaces a dataset written by mmpipe and "
            "never deletes other files; choose a new path."
        )
    foreign = sorted(set(entries) - DATASET_ENTRIES)
    if foreign:
        raise ConfigError(
            f"{text!r} holds files that are not part of its dataset ({', '.join(foreign[:5])}): "
            "--overwrite never deletes them; move them away or choose a new path."
        )
