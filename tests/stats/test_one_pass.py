"""A whole fit (K folds, an α path, every pair) reads each input chunk exactly once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr.storage
from helpers import CountingStore

import mmpipe
from mmpipe.io.synth import SynthSpec, synthesize


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
    # Every chunk of every modality, mask, the labels and the ids (checked for duplicates
    # before the pass): 12 row chunks each.
    expected = {
        f"{p}/c/{i}/0" for p in ("modalities/a", "modalities/b", "modalities/c") for i in range(12)
    }
    expected |= {
        f"{p}/c/{i}" for p in ("masks/a", "masks/b", "masks/c", "labels", "ids") for i in range(12)
    }
    assert set(chunk_reads) == expected
    assert set(chunk_reads.values()) == {1}, {k: v for k, v in chunk_reads.items() if v != 1}
    assert np.isfinite(result.pairs[0].r2).all()


def test_a_sketched_modality_is_read_once_per_sketch_pass_and_once_more(tmp_path: Path) -> None:
    url = synthesize(
        tmp_path / "w.zarr",
        SynthSpec(rows=1200, modalities={"wide": 300, "b": 8}, chunk_rows=200),
    )
    store = CountingStore(zarr.storage.LocalStore(url, read_only=True))
    result = mmpipe.fit(store, folds=3, components=4, sketch_above=100, sketch_power=2)
    assert result.reductions["wide"].width == 4 * 4 + 64
    reads = {k: v for k, v in store.reads.items() if "/c/" in k}
    # 1 sketch pass + 2 power iterations + the statistics pass for the wide modality; the
    # narrow one is read by the statistics pass only.
    assert {v for k, v in reads.items() if k.startswith("modalities/wide/")} == {4}
    assert {v for k, v in reads.items() if k.startswith("modalities/b/")} == {1}
    assert len([k for k in reads if k.startswith("modalities/wide/")]) == 6
