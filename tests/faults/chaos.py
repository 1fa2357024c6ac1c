"""Real Dask processes to break: an external scheduler and workers (with or without nannies),
the PIDs of the worker processes, and a way to make a pass last long enough to hit."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "orchestration"))
from servers import dask_processes

# The same processes as the orchestration tests start (one place, tests/orchestration).
external_cluster = dask_processes


def worker_pids(client: Any) -> dict[str, int]:
    """Worker address -> PID of the worker process (not its nanny)."""
    return dict(client.run(os.getpid))


def slow_down(client: Any, *targets: tuple[str, str, float]) -> None:
    """Make block functions sleep first on the current workers, so that a pass lasts long
    enough to kill a worker in its middle. Graphs refer to these module functions by name, and
    a worker looks the name up when it loads a task: it finds the slow one. (A worker that
    replaces a killed one runs at full speed.)"""

    def patch(targets: list[tuple[str, str, float]]) -> None:  # nested: pickled by value
        import importlib

        def slow(fn: Callable[..., Any], seconds: float) -> Callable[..., Any]:
            def slowly(*args: Any, **kwargs: Any) -> Any:
                time.sleep(seconds)
                return fn(*args, **kwargs)

            return slowly

        for module, name, seconds in targets:
            mod = importlib.import_module(module)
            setattr(mod, name, slow(getattr(mod, name), seconds))

    client.run(patch, list(targets))


def scheduler_tasks(client: Any, prefix: str) -> dict[str, Any]:
    """States of the tasks whose key starts with ``prefix``, and which workers hold them."""

    def tasks(dask_scheduler: Any, prefix: str) -> dict[str, Any]:  # nested: pickled by value
        states: dict[str, int] = {}
        holders: dict[str, int] = {}
        for key, ts in dask_scheduler.tasks.items():
            name = key[0] if isinstance(key, tuple) else key
            if str(name).startswith(prefix):
                states[ts.state] = states.get(ts.state, 0) + 1
                for ws in ts.who_has or ():
                    holders[ws.address] = holders.get(ws.address, 0) + 1
        return {"states": states, "holders": holders}

    result: dict[str, Any] = client.run_on_scheduler(tasks, prefix=prefix)
    return result


@dataclass
class Kill:
    """What was running when the worker was killed."""

    worker: str = ""
    pid: int = 0
    states: dict[str, int] | None = None


def kill_mid_pass(
    client: Any,
    prefix: str,
    pids: dict[str, int],
    *,
    running: Callable[[], bool],
    done: int = 2,
    timeout: float = 120,
    act: bool = True,
) -> Kill:
    """Wait until at least ``done`` tasks whose key starts with ``prefix`` hold results while
    others still wait or run, then SIGKILL the worker process that holds the most of them.
    Gives up if ``running()`` turns False first (the pass ended before it could be hit).
    With ``act=False``, only waits for that moment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running():
        seen = scheduler_tasks(client, prefix)
        states = seen["states"]
        pending = sum(n for s, n in states.items() if s in ("waiting", "processing", "queued"))
        if states.get("memory", 0) >= done and pending > 0 and seen["holders"]:
            if not act:
                return Kill(states=states)
            worker = max(seen["holders"], key=seen["holders"].get)
            os.kill(pids[worker], 9)
            return Kill(worker, pids[worker], states)
        time.sleep(0.02)
    raise TimeoutError(f"never saw {prefix} tasks half done (the fit ended, or {timeout} s)")


def numbers(
    obj: Any, path: str = "", out: dict[str, np.ndarray] | None = None, seen: set[int] | None = None
) -> dict[str, np.ndarray]:
    """Every number a fit result holds (arrays, floats, ints), by attribute path; leaves out
    run identity and timings."""
    out = {} if out is None else out
    seen = set() if seen is None else seen
    skip = {"timings", "run_id", "started", "results", "config", "extra", "dataset"}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "biufc":
            out[path] = obj
        return out
    if isinstance(obj, bool | int | float | np.number):
        out[path] = np.asarray(obj)
        return out
    if obj is None or isinstance(obj, str | bytes) or id(obj) in seen:
        return out
    seen.add(id(obj))
    if isinstance(obj, dict):
        items = [(str(k), v) for k, v in obj.items()]
    elif isinstance(obj, list | tuple):
        items = [(str(i), v) for i, v in enumerate(obj)]
    elif hasattr(obj, "__dict__") or hasattr(obj, "__dataclass_fields__"):
        names = list(getattr(obj, "__dataclass_fields__", {})) or list(vars(obj))
        items = [(n, getattr(obj, n, None)) for n in names if n not in skip]
    else:
        return out
    for name, value in items:
        numbers(value, f"{path}.{name}", out, seen)
    return out


def assert_same_results(got: Any, want: Any) -> int:
    """The two fit results hold the same numbers to 1e-10 relative; returns how many arrays
    are bitwise equal."""
    a, b = numbers(got), numbers(want)
    assert a.keys() == b.keys()
    assert len(a) > 10
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-10, atol=0, err_msg=key)
    return sum(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


class Background:
    """``fn()`` in a thread: its result or exception, and when it ended."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.ended = 0.0

        def run() -> None:
            try:
                self.result = fn()
            except BaseException as error:  # handed to the test
                self.error = error
            finally:
                self.ended = time.monotonic()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def running(self) -> bool:
        return self.thread.is_alive()

    def wait(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"still running after {timeout} s: it hangs"
