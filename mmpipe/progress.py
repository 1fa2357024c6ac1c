"""Progress of the passes, for whoever asks: one hook, no output of its own.

Every pass computes through :func:`mmpipe.cluster.compute_pass` (or ``persist_pass``), which
asks :func:`watch` for a :class:`Watch` of its graph. Nobody listening (the default, for
Python API users): None, and the pass runs exactly as before. Inside
``with reporting(callback):`` the pass's row-block tasks (those that read rows: one per
block) are counted as they finish and ``callback`` gets an :class:`Update` when the pass
starts, one per finished block (each block exactly once), and one when it ends.

How blocks are followed: in this process, a ``dask.callbacks.Callback`` whose ``_posttask``
sees each finished task; on a distributed client, the block tasks are submitted with the pass
in the same ``client.compute`` call (the same graph and keys, so still one pass over the data)
and their futures' completion is reported, each future released as soon as it has.

The command line renders updates as rich progress bars (:func:`terminal_bars`); rich is only
imported there.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

BLOCK_FUNCTION = "_run_block"
"""Name of the function of a row-block task (mmpipe.stats.rowblocks): a graph's blocks."""
SELECTIONS = ("getitem", "finalize")


@dataclass(frozen=True)
class Update:
    """What a callback gets: where pass ``name`` is."""

    name: str
    """The pass (``sketch``, ``statistics``, ``scoring``, ``synth``...)."""
    total: int
    """Row blocks (or chunks) in the pass."""
    done: int
    """Blocks finished so far, this one included."""
    rows: int | None = None
    """Rows the pass reads (None: not known)."""
    key: Any = None
    """The block task that just finished (None: the pass starts, or ``ended``)."""
    ended: bool = False
    """The pass is over (done or failed)."""


Callback = Callable[[Update], None]
_LISTENERS: list[Callback] = []
_LOCK = threading.Lock()


@contextmanager
def reporting(callback: Callback) -> Iterator[None]:
    """Inside this, every pass (of any thread) reports its progress to ``callback``."""
    with _LOCK:
        _LISTENERS.append(callback)
    try:
        yield
    finally:
        with _LOCK:
            _LISTENERS.remove(callback)


def _listener() -> Callback | None:
    with _LOCK:
        return _LISTENERS[-1] if _LISTENERS else None


def block_keys(graph: Any) -> list[Any]:
    """The keys of ``graph``'s row-block tasks: those running ``_run_block``; in a graph
    without them (a dask-array pass, synth's store, the iterations over held blocks), those
    of its most common task name."""
    from dask.utils import key_split

    tasks = {}
    for key, node in dict(graph.__dask_graph__()).items():
        func = getattr(node, "func", None)
        if func is not None:
            tasks[key] = getattr(func, "__name__", "")
    blocks = [k for k, f in tasks.items() if f == BLOCK_FUNCTION]
    if blocks or not tasks:
        return blocks
    names = Counter(key_split(k) for k in tasks)
    for selection in SELECTIONS:  # a part of another task's result, not work of its own
        if len(names) > 1:
            names.pop(selection, None)
    common = max(names, key=lambda n: names[n])
    return [k for k in tasks if key_split(k) == common]


class Watch:
    """One pass's blocks, counted as they finish (see the module docstring)."""

    def __init__(self, callback: Callback, name: str, keys: list[Any], rows: int | None):
        self.callback = callback
        self.name = name
        self.keys = set(keys)
        self.rows = rows
        self.seen: set[Any] = set()
        self.pending: dict[Any, Any] = {}
        self.closed = False
        self.lock = threading.Lock()
        self.emit(Update(name, len(self.keys), 0, rows))

    def emit(self, update: Update) -> None:
        with suppress(Exception):  # showing progress must never break a pass
            self.callback(update)

    def finished(self, key: Any) -> None:
        with self.lock:
            if self.closed or key not in self.keys or key in self.seen:
                return
            self.seen.add(key)
            done = len(self.seen)
            self.emit(Update(self.name, len(self.keys), done, self.rows, key))

    @contextmanager
    def in_process(self) -> Iterator[None]:
        """Count the blocks of a ``dask.compute``/``dask.persist`` inside this."""
        from dask.callbacks import Callback as DaskCallback

        watch = self

        class Posttask(DaskCallback):
            def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, id: Any) -> None:
                watch.finished(key)

        with Posttask():
            yield

    def submit(self, client: Any, graph: Any) -> Any:
        """``client.compute(graph)``, the block tasks' futures followed: the pass's future."""
        from dask.delayed import Delayed

        dsk = dict(graph.__dask_graph__())  # a layer per block key: not an HLG's
        keys = sorted(self.keys, key=str)
        future, *blocks = client.compute([graph, *(Delayed(k, dsk) for k in keys)])
        with self.lock:
            for block in blocks:
                self.pending[block.key] = block
        for block in blocks:
            block.add_done_callback(self._done)
        return future

    def _done(self, future: Any) -> None:
        if future.status == "finished":
            self.finished(future.key)
        with self.lock:
            self.pending.pop(future.key, None)  # released: the pass's own tasks hold it

    def close(self, completed: bool) -> None:
        """End the pass. ``completed``: it returned, so every block is done, and the blocks
        whose futures' callbacks have not run yet are reported now."""
        if completed:
            for key in sorted(self.keys - self.seen, key=str):
                self.finished(key)
        with self.lock:
            self.closed = True
            self.pending.clear()
        self.emit(Update(self.name, len(self.keys), len(self.seen), self.rows, ended=True))


@contextmanager
def watching(
    graph: Any, name: str | None = None, rows: int | None = None
) -> Iterator[Watch | None]:
    """A :class:`Watch` of ``graph``'s blocks, ended with the block; None when nobody listens
    (then nothing is done). ``name``: the pass's, else its block tasks' name."""
    callback = _listener()
    keys = [] if callback is None else block_keys(graph)
    if callback is None or not keys:
        yield None
        return
    if name is None:
        from dask.utils import key_split

        name = key_split(keys[0]).strip("_")
    watch = Watch(callback, name, keys, rows)
    completed = False
    try:
        yield watch
        completed = True
    finally:
        watch.close(completed)


@contextmanager
def counting(
    name: str, steps: list[Any], rows: int | None = None
) -> Iterator[Callable[[Any], None]]:
    """Report work that is not a Dask pass (an example's conversion) as pass ``name`` made of
    ``steps``: call the yielded function with each step once it is done."""
    callback = _listener()
    if callback is None:
        yield lambda step: None
        return
    watch = Watch(callback, name, steps, rows)
    completed = False
    try:
        yield watch.finished
        completed = True
    finally:
        watch.close(completed)


@contextmanager
def terminal_bars(enabled: bool = True) -> Iterator[None]:
    """Rich progress bars on stderr for every pass inside this, if ``enabled`` and stderr is
    a terminal (the command line: not with --json). A pass with the same name as the one
    before (logistic regression's iterations) reuses its bar."""
    import sys

    if not enabled or not sys.stderr.isatty():
        yield
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.table import Column
    from rich.text import Text

    class RowsPerSecond(ProgressColumn):
        def render(self, task: Task) -> Text:
            rows = task.fields.get("rows")
            speed = task.finished_speed or task.speed
            if not speed or not task.total:
                return Text("")
            if rows:
                return Text(f"{speed * rows / task.total:,.0f} rows/s", "progress.data.speed")
            return Text(f"{speed:.1f} blocks/s", "progress.data.speed")

    # 80 columns: "statistics            ━━━━━━━━━━━━━ 12/80 blocks 76,908 rows/s 0:00:42 left"
    progress = Progress(
        TextColumn("{task.description}", table_column=Column(width=21, no_wrap=True)),
        BarColumn(bar_width=13),
        MofNCompleteColumn(),
        TextColumn("blocks"),
        RowsPerSecond(table_column=Column(no_wrap=True)),
        TimeRemainingColumn(table_column=Column(no_wrap=True)),
        TextColumn("left"),
        console=Console(stderr=True),
        transient=False,
    )
    state: dict[str, Any] = {"task": None, "name": None, "repeats": 0}

    def show(update: Update) -> None:
        if update.key is None and not update.ended:  # a pass starts
            if state["name"] == update.name and state["task"] is not None:
                state["repeats"] += 1
                label = f"{update.name} {state['repeats'] + 1}"
                progress.reset(state["task"], total=update.total, description=label)
                progress.update(state["task"], rows=update.rows)
            else:
                state["repeats"] = 0
                state["task"] = progress.add_task(update.name, total=update.total, rows=update.rows)
            state["name"] = update.name
            return
        if state["task"] is not None and state["name"] == update.name:
            progress.update(state["task"], completed=update.done)

    with progress, reporting(show):
        yield


def dashboard_line(client: Any) -> str:
    """What to tell someone who asked for the dashboard of ``client``'s cluster (None: threads
    in this process, which have none)."""
    from importlib.util import find_spec

    if client is None:
        return "no Dask dashboard: this run computes on threads in this process (--local-cluster)"
    link = None
    with suppress(Exception):
        link = client.dashboard_link
    if not link:
        return f"no Dask dashboard: the scheduler at {client.scheduler.address} serves none"
    note = "" if find_spec("bokeh") else " (its pages need bokeh>=3.1)"
    return f"Dask dashboard: {link}{note}"


def announce_dashboard(client: Any, asked: bool) -> None:
    """Print :func:`dashboard_line` on stderr if ``asked`` (stdout may be --json's)."""
    import sys

    if asked:
        print(dashboard_line(client), file=sys.stderr, flush=True)
