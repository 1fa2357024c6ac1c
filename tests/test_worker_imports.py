"""Start-up guard rail: a fit's tasks do not make worker processes import dask.array.

Importing dask.array costs over a second per process here (it pulls in xarray, sparse and
numba when they are installed). The passes only need Zarr and NumPy on the workers, so a
Dask array graph sent to them (labels computed on the cluster, say) costs every run that
second on every worker. This checks the imports themselves, not a timing.

The same cluster checks that mmpipe's workers run with its allocator setting (huge pages for
chunk buffers; see HUGE_PAGES_TUNABLE).
"""

from __future__ import annotations

import os
import sys

import pytest

import mmpipe
from mmpipe.cluster import ClusterSpec, dask_client, worker_environ


def _loaded(names: tuple[str, ...]) -> list[str]:
    return [name for name in names if name in sys.modules]


def _environ(names: tuple[str, ...]) -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in names}


@pytest.mark.slow
def test_fit_tasks_do_not_import_dask_array_on_workers(small_store: str) -> None:
    # A cluster of its own: the shared test cluster's workers may have run anything.
    spec = ClusterSpec(workers=1, threads_per_worker=1, memory_limit="1GiB")
    with dask_client(spec) as client:
        mmpipe.fit(
            small_store,
            components=3,
            folds=3,
            classify=["m0+m1"],
            transfer=True,
            retrieval=True,
            random_features=16,
            logistic=True,
            sketch_above=6,  # m0 (7 columns) goes through the sketch passes
            client=client,
        )
        loaded = client.run(_loaded, ("dask.array", "zarr"))
        environ = client.run(_environ, ("GLIBC_TUNABLES",))
    for worker, modules in loaded.items():
        assert "zarr" in modules, f"{worker} ran no read: the check would prove nothing"
        assert "dask.array" not in modules, f"{worker} imported dask.array during the fit"
    for worker, values in environ.items():
        assert values == worker_environ(), f"{worker} runs without mmpipe's allocator setting"


def test_worker_environ_keeps_the_users_tunables() -> None:
    assert worker_environ({}) == {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    mine = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    assert worker_environ(mine) == {
        "GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    }
    assert worker_environ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}) == {
        "GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"
    }
