"""Guard rail: a fit of a dataset several times larger than a worker's memory limit runs in
bounded worker memory (no timing is checked)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import mmpipe
from mmpipe.cluster import ClusterSpec, dask_client
from mmpipe.io.synth import SynthSpec, synthesize

pytestmark = pytest.mark.slow

LIMIT = 500 * 2**20  # per worker


def worker_rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def test_fit_larger_than_worker_memory(tmp_path: Path) -> None:
    url = synthesize(
        tmp_path / "big.zarr",
        SynthSpec(rows=1_200_000, modalities={"a": 192, "b": 192}, chunk_rows=16_384),
    )
    data_bytes = 1_200_000 * 384 * 4
    assert data_bytes > 3 * LIMIT  # 1.8 GB against 500 MiB per worker

    peaks: dict[str, int] = {}
    stop = threading.Event()
    with dask_client(ClusterSpec(workers=2, memory_limit=LIMIT)) as client:

        def sample() -> None:
            while not stop.is_set():
                for address, rss in client.run(worker_rss).items():
                    peaks[address] = max(peaks.get(address, 0), rss)
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            result = mmpipe.fit(url, components=16, folds=5, chunk_rows=16_384, client=client)
        finally:
            stop.set()
            sampler.join()
        # No worker was restarted for memory: the same two processes did the whole pass.
        assert len(client.scheduler_info()["workers"]) == 2
    assert result.n_rows == 1_200_000
    assert len(peaks) == 2
    assert max(peaks.values()) < LIMIT, {a: v / 2**20 for a, v in peaks.items()}
