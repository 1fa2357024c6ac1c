"""A whole fit (K folds, an α path, every pair) reads each input chunk exactly once."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import zarr.storage

import mmpipe
from mmpipe.io.synth import SynthSpec, synthesize


class CountingStore(zarr.storage.WrapperStore[zarr.storage.LocalStore]):
    """Counts reads per key (threaded scheduler: the counter lives in this process)."""

    def __init__(self, store: zarr.storage.LocalStore) -> None:
        super().__init__(store)
        self.reads: Counter[str] = Counter()
        self._lock = threading.Lock()

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        with self._lock:
            self.reads[key] += 1
        return await self._store.get(key, prototype, byte_range)


def test_fit_reads_every_chunk_once(tmp_path: Path) -> None:
    url = synthesize(
        tmp_path / "d.zarr",
        SynthSpec(
            rows=3000,
            modalities={"a": 12, "b": 8, "c": 5},
            classes=3,
            chunk_rows=250,
            missing_fraction=0.1,
        ),
    )
    store = CountingStore(zarr.storage.LocalStore(url, read_only=True))
    result = mmpipe.fit(store, folds=5, alphas=(0.1, 1.0, 10.0, 100.0), components=4)
    assert len(result.pairs) == 6
    metadata = ("zarr.json", ".zattrs", ".zgroup", ".zarray", ".zmetadata")
    chunk_reads = {k: v for k, v in store.reads.items() if not k.endswith(metadata)}
    # Every chunk of every modality, mask and the labels: 12 row chunks each.
    expected = {
        f"{p}/c/{i}/0" for p in ("modalities/a", "modalities/b", "modalities/c") for i in range(12)
    }
    expected |= {
        f"{p}/c/{i}" for p in ("masks/a", "masks/b", "masks/c", "labels") for i in range(12)
    }
    assert set(chunk_reads) == expected
    assert set(chunk_reads.values()) == {1}, {k: v for k, v in chunk_reads.items() if v != 1}
    # ids are never needed by a fit.
    assert not any(k.startswith("ids/c/") for k in store.reads)
    assert np.isfinite(result.pairs[0].r2).all()
