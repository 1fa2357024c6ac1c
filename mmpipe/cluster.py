"""How a run gets its Dask client — the one place that decides.

Precedence: a client passed by the caller > a scheduler address or scheduler file (argument,
then the ``DASK_SCHEDULER_ADDRESS`` environment variable) > a LocalCluster started for the run
> for small inputs, threads in this process. Clusters that mmpipe starts are closed when the
run ends; clusters it connects to are left running. Dashboards are off unless asked for.

Small inputs: when nothing names a cluster (no address, no scheduler file, no worker count)
and the modalities hold less than :data:`SMALL_INPUT_BYTES`, starting worker processes costs
more than the work: each one imports NumPy, Dask and Zarr again before its first task. The mfeat
example (2,000 rows) fits in 3.9–4.4 s on threads and 5.8–7.2 s on a 2-worker LocalCluster.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mmpipe.errors import bad_parameter

ADDRESS_ENV = "DASK_SCHEDULER_ADDRESS"
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
"""glibc setting for the workers mmpipe starts. A chunk's decoded bytes (32 MiB and up) are
above glibc's largest mmap threshold, so every read maps fresh memory and the kernel faults it
in 4 KiB at a time. Asking for transparent huge pages on those maps (where the kernel offers
them on request, as most distributions do) faults in 2 MiB at a time: reading one 32 MiB zstd
chunk takes 62 ms instead of 125 ms on the benchmark machine. Freed memory still goes straight
back to the system, so Dask's memory limits keep working (keeping freed pages on the heap
instead was as fast but held RSS at its high-water mark, and a worker paused at 80% of its
limit never resumed)."""
SMALL_INPUT_BYTES = 256 * 2**20
"""Below this many bytes of modalities (in memory), an unnamed cluster means threads here."""


def worker_environ(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables for worker processes: GLIBC_TUNABLES with huge pages added to
    what ``environ`` (default: this process's) already sets."""
    current = (os.environ if environ is None else environ).get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb=" in current:
        return {"GLIBC_TUNABLES": current}  # the user's own choice stands
    return {"GLIBC_TUNABLES": ":".join(filter(None, [current, HUGE_PAGES_TUNABLE]))}


@dataclass(frozen=True)
class ClusterSpec:
    """Where a run computes."""

    address: str | None = None
    """Scheduler address of an existing cluster (tcp://host:port)."""
    scheduler_file: str | None = None
    """Scheduler file of an existing cluster (as written by `dask scheduler --scheduler-file`)."""
    workers: int | None = None
    """LocalCluster: worker processes (default: one per core)."""
    threads_per_worker: int = 1
    """LocalCluster: threads per worker (BLAS already uses the cores it is given)."""
    memory_limit: str | float | None = "auto"
    """LocalCluster: memory limit per worker ('auto', bytes, '4GiB', or None)."""
    processes: bool = True
    """LocalCluster: worker processes (True) or threads in this process (False)."""
    dashboard: bool = False
    """LocalCluster: serve the dashboard on a free port."""
    in_process: bool | None = None
    """No cluster at all: Dask's threaded scheduler in this process. None: only for small
    inputs when nothing names a cluster (see :func:`choose`)."""

    def describe(self) -> str:
        if self.address:
            return f"existing cluster at {self.address}"
        if self.scheduler_file:
            return f"existing cluster from {self.scheduler_file}"
        if self.in_process:
            return "threads in this process (no cluster)"
        return (
            f"LocalCluster ({self.workers or os.cpu_count()} workers × "
            f"{self.threads_per_worker} threads)"
        )


def resolve(spec: ClusterSpec | None = None) -> ClusterSpec:
    """Fill the address from ``DASK_SCHEDULER_ADDRESS`` when nothing else says where."""
    spec = spec or ClusterSpec()
    if spec.workers is not None and spec.workers < 1:
        raise bad_parameter("workers", "ClusterSpec", "an int >= 1", spec.workers)
    if spec.threads_per_worker < 1:
        raise bad_parameter(
            "threads_per_worker", "ClusterSpec", "an int >= 1", spec.threads_per_worker
        )
    if not spec.address and not spec.scheduler_file and os.environ.get(ADDRESS_ENV):
        from dataclasses import replace

        return replace(spec, address=os.environ[ADDRESS_ENV])
    return spec


def choose(spec: ClusterSpec | None = None, input_bytes: int | None = None) -> ClusterSpec:
    """:func:`resolve`, then settle ``in_process``: True only if asked, or if it was left to
    mmpipe (None), nothing names a cluster and the input is under SMALL_INPUT_BYTES."""
    from dataclasses import replace

    spec = resolve(spec)
    named = bool(spec.address or spec.scheduler_file or spec.workers is not None)
    if spec.in_process is None:
        small = input_bytes is not None and input_bytes < SMALL_INPUT_BYTES
        return replace(spec, in_process=small and not named)
    if spec.in_process and named:
        raise bad_parameter(
            "in_process", "ClusterSpec", "False when an address, scheduler file or worker "
            "count names a cluster", spec.in_process,
        )  # fmt: skip
    return spec


@contextmanager
def dask_client(
    spec: ClusterSpec | None = None,
    *,
    client: Any | None = None,
    input_bytes: int | None = None,
) -> Iterator[Any]:
    """Yield a ``distributed.Client`` for a run, or None for threads in this process (then
    computations use Dask's default scheduler); close what this call started.

    ``input_bytes`` (the modalities' size) lets small inputs run in process (:func:`choose`).
    """
    if client is not None:
        yield client
        return
    spec = choose(spec, input_bytes)
    if spec.in_process:
        yield None
        return
    from distributed import Client

    if spec.address or spec.scheduler_file:
        kwargs: dict[str, Any] = (
            {"address": spec.address} if spec.address else {"scheduler_file": spec.scheduler_file}
        )
        connected = Client(**kwargs, set_as_default=False)
        try:
            yield connected
        finally:
            connected.close()
        return
    cluster = start_local_cluster(spec)
    try:
        with Client(cluster, set_as_default=False) as local:
            yield local
    finally:
        cluster.close()


def start_local_cluster(spec: ClusterSpec | None = None) -> Any:
    """Start a LocalCluster on 127.0.0.1 as the spec says; the caller closes it."""
    import dask
    from distributed import LocalCluster

    spec = resolve(spec)
    # The nannies read their spawn environment when they are made, inside this call.
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **worker_environ()}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        return LocalCluster(
            n_workers=spec.workers or os.cpu_count() or 1,
            threads_per_worker=spec.threads_per_worker,
            memory_limit=spec.memory_limit,
            processes=spec.processes,
            dashboard_address=":0" if spec.dashboard else None,
            host="127.0.0.1",
        )
