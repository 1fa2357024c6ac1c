"""SIGTERM and SIGINT as exceptions, so that a run stopped by ``timeout``, Kubernetes or Ctrl-C
marks itself failed with the reason instead of staying ``running`` forever.

Python's default SIGTERM ends the process without running ``finally`` blocks or ``except``
clauses; turned into :class:`~mmpipe.errors.RunInterrupted` it unwinds like any error.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from mmpipe.errors import RunInterrupted

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _raise(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    error = RunInterrupted(f"The run was stopped by {name}; it is marked failed.")
    error.exit_code = 128 + signum  # the shell's convention for death by a signal
    raise error


@contextmanager
def stop_signals_raise() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGINT raise RunInterrupted in the main thread; the
    previous handlers come back afterwards. Outside the main thread (where Python cannot set
    handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
