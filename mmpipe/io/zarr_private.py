"""The few parts of zarr's private API mmpipe needs, in one place a zarr upgrade checks.

zarr 3.1 has no public way to run a Store's coroutines from synchronous code (the chunk
listing of mmpipe.io.integrity, the metadata diagnosis of mmpipe.io.dataset), nor to parse one
zarr.json document without opening the node. Everything else mmpipe does goes through
zarr's public API.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a zarr Store coroutine on zarr's own event loop, from synchronous code."""
    from zarr.core.sync import sync

    return sync(coroutine)


def metadata_problem(doc: dict[str, Any]) -> str | None:
    """Why a parsed zarr.json document is not valid Zarr v3 metadata (None if it is)."""
    from zarr.core.group import GroupMetadata
    from zarr.core.metadata import ArrayV3Metadata

    try:
        if doc.get("node_type") == "array":
            ArrayV3Metadata.from_dict(doc)
        else:
            GroupMetadata.from_dict(doc)
    except Exception as err:
        return f"not valid Zarr v3 metadata: {type(err).__name__}: {err}"
    return None
