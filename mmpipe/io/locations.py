"""Where an input and a results store are, and whether one lies in, on or around the other.

Inputs are read-only to mmpipe: a results location that is the dataset, lies inside it,
contains it, or is itself a dataset is refused before any computation. A results store marks
itself with a root attribute (:data:`RESULTS_MARK`), so that a results store is never read as
a dataset and a dataset never receives runs.

Locations are compared after normalization: local paths are made absolute with symlinks
resolved; fsspec URLs by protocol, endpoint (``storage_options["endpoint_url"]``, where two
object stores with the same bucket names may live) and normalized path.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmpipe.errors import ResultsError

RESULTS_MARK = "mmpipe_results"
"""Root attribute of every results store mmpipe writes: ``{"format": 1}``."""
RESULTS_FORMAT = 1
DATASET_MEMBER = "modalities"
"""A group holding this member is a dataset (see :mod:`mmpipe.io.dataset`)."""
_PROTOCOL_ALIASES = {"s3a": "s3", "gcs": "gs", "abfs": "az", "file": "file", "local": "file"}


@dataclass(frozen=True)
class Location:
    """A store location reduced to what identifies it."""

    protocol: str
    """``file`` for local paths, else the fsspec protocol (aliases folded: s3a → s3)."""
    endpoint: str
    """The object store endpoint (empty: the protocol's default)."""
    path: str
    """Absolute, normalized, no trailing slash (bucket/key for object stores)."""

    def contains(self, other: Location) -> bool:
        """True when ``other`` is this location or lies below it."""
        if (self.protocol, self.endpoint) != (other.protocol, other.endpoint):
            return False
        return other.path == self.path or other.path.startswith(self.path.rstrip("/") + "/")


def locate(
    url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> Location:
    """Normalize ``url`` (a path or an fsspec URL) to a :class:`Location`."""
    text = os.fspath(url)
    if "://" in text:
        protocol, rest = text.split("://", 1)
        protocol = _PROTOCOL_ALIASES.get(protocol.lower(), protocol.lower())
    else:
        protocol, rest = "file", text
    if protocol == "file":
        return Location("file", "", os.path.realpath(os.path.abspath(rest)))
    options = storage_options or {}
    endpoint = str(
        options.get("endpoint_url") or options.get("client_kwargs", {}).get("endpoint_url", "")
    )
    path = posixpath.normpath("/" + rest.strip("/"))
    return Location(protocol, endpoint.rstrip("/"), path)


def is_results_attrs(attrs: Mapping[str, Any]) -> bool:
    """Whether a group's attributes mark it as a results store."""
    return RESULTS_MARK in attrs


def check_results_location(
    out: str | os.PathLike[str],
    dataset: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    results_storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Refuse a results location that is, lies inside, or contains the input dataset."""
    target = locate(out, results_storage_options)
    source = locate(dataset, storage_options)
    shown_out, shown_in = os.fspath(out), os.fspath(dataset)
    if target == source:
        raise ResultsError(
            f"Results location {shown_out!r} is the input dataset: inputs are read-only to "
            "mmpipe; give a separate results path, e.g. next to the dataset."
        )
    if source.contains(target):
        raise ResultsError(
            f"Results location {shown_out!r} lies inside the input dataset {shown_in!r}: "
            "inputs are read-only to mmpipe; give a path outside the dataset."
        )
    if target.contains(source):
        raise ResultsError(
            f"Results location {shown_out!r} contains the input dataset {shown_in!r}: "
            "results would be written around the input; give a path that does not hold it."
        )
