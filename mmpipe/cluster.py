"""How a run gets its Dask client — the one place that decides.

Precedence: a client passed by the caller > a scheduler address or scheduler file (argument,
then the ``DASK_SCHEDULER_ADDRESS`` environment variable) > a LocalCluster started for the run
> for small inputs, threads in this process. Clusters that mmpipe starts are closed when the
run ends; clusters it connects to are left running. Dashboards are off unless asked for.

Bounded waits: reaching an existing scheduler gives up after ``connect_timeout`` seconds, and a
pass (:func:`result`) gives up when the scheduler has not answered, or has had no worker, for
``scheduler_timeout`` seconds. Either ends in :class:`~mmpipe.errors.ClusterError` naming the
address, never in a hang. Losing a worker is not an error: every pass's graph holds all the
data it needs (mmpipe.stats.rowblocks), so the scheduler recomputes what the worker held.

Small inputs: when nothing names a cluster (no address, no scheduler file, no worker count)
and the modalities hold less than :data:`SMALL_INPUT_BYTES`, starting worker processes costs
more than the work: each one imports NumPy, Dask and Zarr again before its first task. The mfeat
example (2,000 rows) fits in 3.9–4.4 s on threads and 5.8–7.2 s on a 2-worker LocalCluster.
"""

from __future__ import annotations

import os
import sys
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from typing import Annotated, Any

from pydantic import Field

from mmpipe import progress
from mmpipe.errors import ClusterError, ConfigError
from mmpipe.options import Flag, Options

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
DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds to reach an existing scheduler before giving up (distributed's own default: 30)."""
DEFAULT_SCHEDULER_TIMEOUT = 60.0
"""Seconds a pass waits on a scheduler that does not answer, or has no worker, before it gives
up. Long enough for a busy scheduler (taking in a large graph, a worker joining); a frozen or
unreachable one fails the run within this bound plus one check interval. Clusters whose
workers take longer to start (batch queues, autoscaling from zero) need a larger value."""
CHECK_INTERVAL = 5.0
"""Longest time between two checks that the scheduler answers, while a pass runs."""


def worker_environ(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables for worker processes: GLIBC_TUNABLES with huge pages added to
    what ``environ`` (default: this process's) already sets."""
    current = (os.environ if environ is None else environ).get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb=" in current:
        return {"GLIBC_TUNABLES": current}  # the user's own choice stands
    return {"GLIBC_TUNABLES": ":".join(filter(None, [current, HUGE_PAGES_TUNABLE]))}


class ClusterSpec(Options):
    """Where a run computes: its options, declared once for the Python API, the run config's
    ``cluster:`` section and the CLI flags."""

    address: str | None = Field(
        None, description="Scheduler address of an existing Dask cluster (tcp://host:port)."
    )
    scheduler_file: str | None = Field(
        None, description="Scheduler file of an existing Dask cluster."
    )
    workers: Annotated[int, Field(ge=1)] | None = Field(
        None, description="LocalCluster worker processes (default: one per core)."
    )
    threads_per_worker: Annotated[int, Field(ge=1), Flag(aliases=("--threads",))] = Field(
        1, description="Threads per LocalCluster worker (BLAS already uses the cores it has)."
    )
    memory_limit: str | float | None = Field(
        "auto", description="Memory limit per LocalCluster worker ('auto', bytes, '4GiB')."
    )
    in_process: Annotated[bool | None, Flag(off="--local-cluster")] = Field(
        None,
        description="Threads in this process instead of a cluster (unset: only for inputs "
        "under 256 MiB when no address, scheduler file or worker count is given).",
    )
    connect_timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(
        DEFAULT_CONNECT_TIMEOUT,
        description="Seconds to reach an existing cluster's scheduler before the run fails.",
    )
    scheduler_timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(
        DEFAULT_SCHEDULER_TIMEOUT,
        description="Seconds a pass waits on a scheduler that stopped answering, or has no "
        "worker, before the run fails.",
    )
    dashboard: bool = Field(
        False,
        description="Serve the Dask dashboard of the LocalCluster mmpipe starts (on "
        "127.0.0.1, a free port; asks for a LocalCluster even for small inputs) and print its "
        "address; an existing cluster's address is printed if it serves one.",
    )

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
    if not spec.address and not spec.scheduler_file and os.environ.get(ADDRESS_ENV):
        return spec.model_copy(update={"address": os.environ[ADDRESS_ENV]})
    return spec


def choose(spec: ClusterSpec | None = None, input_bytes: int | None = None) -> ClusterSpec:
    """:func:`resolve`, then settle ``in_process``: True only if asked, or if it was left to
    mmpipe (None), nothing names a cluster and the input is under SMALL_INPUT_BYTES."""
    spec = resolve(spec)
    named = bool(spec.address or spec.scheduler_file or spec.workers is not None)
    if spec.in_process is None:
        small = input_bytes is not None and input_bytes < SMALL_INPUT_BYTES and not spec.dashboard
        return spec.model_copy(update={"in_process": small and not named})
    if spec.in_process and named:
        raise ConfigError(
            "cluster.in_process: true runs on threads in this process, so it cannot be "
            "combined with an address, a scheduler file or a worker count; give one of them."
        )
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
        connected = connect(spec)
        try:
            yield connected
        finally:
            # Bounded: a scheduler that is gone or frozen must not hold the run's exit. A
            # client that lost its scheduler logs its cancelled reconnection as an ERROR with
            # a traceback when closed: the run has said what happened, in one line, already.
            lost = connected.status != "running"
            with suppress(Exception), _silenced("distributed.client", "distributed.utils", lost):
                connected.close(timeout=spec.connect_timeout)
        return
    cluster = start_local_cluster(spec)
    try:
        with Client(cluster, set_as_default=False) as local:
            watch(local, spec.scheduler_timeout)
            yield local
    finally:
        cluster.close()


@contextmanager
def _silenced(first: str, second: str, active: bool) -> Iterator[None]:
    """Drop the records of two loggers inside this, if ``active``."""
    import logging

    loggers = [logging.getLogger(first), logging.getLogger(second)] if active else []
    before = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, was in zip(loggers, before, strict=True):
            logger.disabled = was


def connect(spec: ClusterSpec) -> Any:
    """A ``distributed.Client`` of the existing cluster ``spec`` names, reached within
    ``spec.connect_timeout`` seconds, and watched with ``spec.scheduler_timeout``."""
    deadline = time.monotonic() + spec.connect_timeout
    if spec.address:
        address = where = spec.address
    else:
        # distributed waits for a missing scheduler file forever: read it here, giving a
        # scheduler that is starting the same time to write it.
        address = _scheduler_file_address(str(spec.scheduler_file), deadline)
        where = f"{address} (from scheduler file {spec.scheduler_file})"
    try:
        client = _client_by(address, deadline)
    except (OSError, TimeoutError) as error:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {where} within {spec.connect_timeout:g} s: "
            "check the address and that the scheduler runs"
        ) from error
    except ValueError as error:  # distributed's own words name the bad address
        raise ClusterError(f"bad Dask scheduler address {where}: {error}") from error
    except Exception as error:  # e.g. MemoryError: the peer's bytes read as a huge frame
        raise ClusterError(
            f"cannot talk to a Dask scheduler at {where} ({type(error).__name__}: {error}): "
            "check that the address is a Dask scheduler's"
        ) from error
    watch(client, spec.scheduler_timeout)
    return client


def _client_by(address: str, deadline: float) -> Any:
    """``Client(address)``, given up at ``deadline`` (TimeoutError) whatever the peer does.

    distributed bounds the TCP connection by its ``timeout``, but not its handshake: a peer
    that accepts and never answers like a scheduler held ``Client(timeout=2)`` until the peer
    closed (98 s against an http.server, for ever against a silent socket or a frozen
    scheduler). So the client is made in a thread and waited for; one that arrives after the
    deadline is closed, unused.
    """
    import threading

    from distributed import Client

    made: dict[str, Any] = {}
    lock = threading.Lock()

    def make() -> None:
        try:
            left = max(deadline - time.monotonic(), 0.1)
            client = Client(address, timeout=left, set_as_default=False)
        except BaseException as error:  # handed to the caller
            made["error"] = error
            return
        with lock:
            if made.get("abandoned"):
                with suppress(Exception):
                    client.close(timeout=5)
            else:
                made["client"] = client

    thread = threading.Thread(target=make, name="mmpipe-connect", daemon=True)
    thread.start()
    thread.join(max(deadline - time.monotonic(), 0) + 2.0)
    with lock:
        if "client" in made:
            return made["client"]
        if "error" in made:
            raise made["error"]
        made["abandoned"] = True
    raise TimeoutError(f"no answer from a Dask scheduler at {address}")


def _scheduler_file_address(path: str, deadline: float) -> str:
    """The address in scheduler file ``path``, waiting for it until ``deadline``."""
    import json

    while True:
        try:
            with open(path) as f:
                return str(json.load(f)["address"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            if time.monotonic() >= deadline:
                raise ClusterError(
                    f"cannot read the Dask scheduler's address from scheduler file {path} "
                    f"({type(error).__name__}: {error}): check the path and that the scheduler "
                    "runs"
                ) from error
            time.sleep(0.1)


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
            dashboard_address="127.0.0.1:0" if spec.dashboard else None,  # off unless asked
            host="127.0.0.1",
            # Without a dashboard the scheduler still serves its HTTP routes (health,
            # metrics), on port 8787 by default: "Port 8787 is already in use" whenever
            # another Dask runs here. Any free loopback port will do.
            scheduler_kwargs={"dashboard": spec.dashboard, "dashboard_address": "127.0.0.1:0"},
        )


_WATCHED: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
"""Client -> its scheduler timeout, for the clients :func:`dask_client` made (a caller's own
client gets :data:`DEFAULT_SCHEDULER_TIMEOUT`)."""


def watch(client: Any, scheduler_timeout: float) -> None:
    """Make :func:`result` give up on ``client``'s scheduler after ``scheduler_timeout`` s."""
    _WATCHED[client] = float(scheduler_timeout)


def scheduler_timeout(client: Any) -> float:
    """The scheduler timeout :func:`result` uses for ``client``."""
    return _WATCHED.get(client, DEFAULT_SCHEDULER_TIMEOUT)


def scheduler_address(client: Any) -> str:
    """The address of ``client``'s scheduler, for messages."""
    address = getattr(getattr(client, "scheduler", None), "address", None)
    return str(address) if address else "(unknown address)"


def result(client: Any, future: Any) -> Any:
    """``future.result()``, watched: the value, the task's own exception unchanged, or a
    :class:`ClusterError` when the cluster fails under the computation.

    While it waits it asks the scheduler, at most every :data:`CHECK_INTERVAL` seconds, how
    many workers it has. A scheduler that has not answered for the client's scheduler timeout
    (frozen, gone, unreachable), or that has had no worker that long, ends the wait: the
    future is released and ClusterError names the address. A lost connection, a computation
    the scheduler cancelled and a task that killed every worker that ran it
    (``KilledWorker``) also become ClusterError. Losing a worker does not: the scheduler
    recomputes what it held, and this keeps waiting.
    """
    limit = scheduler_timeout(client)
    interval = min(CHECK_INTERVAL, limit / 4)
    answered = has_workers = time.monotonic()
    with cluster_failures(client):
        while True:
            try:
                return future.result(timeout=interval)
            except TimeoutError:
                if future.done():  # the task's own TimeoutError, or done just now
                    return future.result()
            workers = _count_workers(client, interval)
            now = time.monotonic()
            if workers is None:
                if now - answered > limit:
                    what = f"has not answered for {limit:g} s"
                    raise _gave_up(client, future, what, "check that it runs and is not overloaded")
                continue
            answered = now
            if workers:
                has_workers = now
            elif now - has_workers > limit:
                what = f"has had no worker for {limit:g} s"
                todo = "start workers (or raise scheduler_timeout if they take longer to join)"
                raise _gave_up(client, future, what, f"{todo}, or check why they stopped")


@contextmanager
def cluster_failures(client: Any) -> Iterator[None]:
    """Inside this, a failure of the cluster (see :func:`cluster_failure`) is raised as the
    :class:`ClusterError` that says what happened; any other error as it is. Wrap every
    submission to ``client`` and every wait on it."""
    try:
        yield
    except ClusterError:
        raise
    except BaseException as error:
        lost = cluster_failure(client, error)
        if lost is None:
            raise
        raise lost from error


def _count_workers(client: Any, timeout: float) -> int | None:
    """How many workers the scheduler has, or None if it did not answer within ``timeout``."""
    try:
        info = client.sync(client.scheduler.identity, n_workers=0, callback_timeout=timeout)
        return int(info["n_workers"])
    except Exception:  # any failure to answer counts as no answer
        return None


def _gave_up(client: Any, future: Any, what: str, todo: str) -> ClusterError:
    with suppress(Exception):
        future.release()  # the scheduler drops the computation when it hears of it
    return ClusterError(f"the Dask scheduler at {scheduler_address(client)} {what}: {todo}")


def cluster_failure(client: Any, error: BaseException) -> ClusterError | None:
    """The :class:`ClusterError` that says what happened to the cluster, if ``error`` is a
    failure of the cluster rather than of a task (None: re-raise ``error`` as it is)."""
    from distributed.client import (
        ClosedClientError,
        FutureCancelledError,
        FuturesCancelledError,
    )
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    where = f"the Dask scheduler at {scheduler_address(client)}"
    if isinstance(error, ClosedClientError):
        return ClusterError(
            f"the client of {where} is closed (it lost the scheduler earlier and could not "
            "reconnect): check that the scheduler runs, then run again"
        )
    if isinstance(error, KilledWorker):
        lost = ClusterError(
            f"task {error.task!r} was run by {error.allowed_failures + 1} Dask workers of "
            f"{where} and every one of them died while running it (often: out of memory): "
            "give the workers more memory, or use smaller --chunk-rows"
        )
        lost.transient = False  # the same task will kill workers again
        return lost
    if isinstance(error, FutureCancelledError | FuturesCancelledError):
        reason = getattr(error, "reason", None) or ", ".join(
            sorted({g.reason for g in getattr(error, "error_groups", [])})
        )
        if reason == "scheduler-connection-lost":
            return ClusterError(
                f"lost the connection to {where} during the computation: check that it runs, "
                "then run again"
            )
        return ClusterError(f"{where} cancelled the computation ({reason}): run again")
    if isinstance(error, CommClosedError):
        return ClusterError(f"lost the connection to {where} ({error}): run again")
    return None


EMBEDDED_GRAPH_WARNING = "1GiB"
"""Graph size above which distributed still warns when a pass is submitted (its default:
10 MB). Its warning is meant for data repeated in many tasks; a pass embeds each shared object
once and each row of the per-row arrays once, on purpose (see mmpipe.stats.rowblocks), so only
a graph beyond any sensible size of those is worth a warning."""


@contextmanager
def embedding_data() -> Iterator[None]:
    """Submit the passes' graphs to a distributed client inside this: its "Sending large
    graph" warning then allows the data they embed on purpose."""
    import dask

    with dask.config.set(
        {"distributed.admin.large-graph-warning-threshold": EMBEDDED_GRAPH_WARNING}
    ):
        yield


def current_client() -> Any | None:
    """The run's client: the one made current at the entry point (``fit`` and the flow enter
    ``client.as_current()``), else distributed's default client, else None (threads here).

    The passes never take a client argument: the caller chooses it once."""
    if "distributed" not in sys.modules:  # no client can exist; don't pay for the import
        return None
    from distributed import Client

    try:
        return Client.current(allow_global=True)
    except ValueError:
        return None


@contextmanager
def using(client: Any | None) -> Iterator[None]:
    """Make ``client`` the run's client (:func:`current_client`) inside this; None: leave
    the choice as it is."""
    if client is None:
        yield
        return
    with client.as_current():
        yield


def compute_pass(graph: Any, name: str | None = None, *, rows: int | None = None) -> Any:
    """Compute a delayed result on the run's client (:func:`current_client`), else on threads.

    Every pass computes through here. On a client the wait is watched (:func:`result`): a
    scheduler that stops answering or goes away ends the pass with ClusterError within the
    client's scheduler timeout; a lost worker only costs the recomputation of what it held.
    Inside :func:`mmpipe.progress.reporting`, the pass ``name`` (over ``rows`` rows) reports
    its finished row blocks; otherwise nothing about it changes.
    """
    client = current_client()
    with progress.watching(graph, name, rows) as watch:
        if client is not None:
            with embedding_data(), cluster_failures(client):
                future = client.compute(graph) if watch is None else watch.submit(client, graph)
            return result(client, future)
        import dask

        with nullcontext() if watch is None else watch.in_process():
            (computed,) = dask.compute(graph)
        return computed


def persist_pass(parts: list[Any], name: str | None = None) -> list[Any]:
    """Persist delayed results on the run's client (kept, with their graph, on the workers;
    a lost worker's part is recomputed), else in this process (its blocks reported as
    :func:`compute_pass`'s; on a client, the pass that reads them reports them)."""
    client = current_client()
    if client is not None:
        with embedding_data(), cluster_failures(client):
            return list(client.persist(parts))
    import dask
    from dask.delayed import delayed

    with (
        progress.watching(delayed(parts), name) as watch,
        nullcontext() if watch is None else watch.in_process(),
    ):
        return list(dask.persist(*parts))
