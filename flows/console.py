"""What `mmpipe run` shows on the terminal: Prefect's log lines, without tracebacks.

A failed task or flow logs its exception with the traceback; the terminal shows the log line
and mmpipe's one ``error: …`` line instead (``--debug`` or ``MMPIPE_DEBUG=1`` keeps them).
The Prefect API still receives every record whole, so the UI shows the traceback.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from prefect.logging.handlers import PrefectConsoleHandler

_QUIET = "_mmpipe_quiet"


def hide_tracebacks() -> None:
    """Make Prefect's console handlers print records without their exception text."""
    for logger in [logging.getLogger(), *_prefect_loggers()]:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler) and not getattr(handler, _QUIET, False):
                handler.emit = _without_traceback(handler.emit)  # type: ignore[method-assign]
                setattr(handler, _QUIET, True)


def _prefect_loggers() -> list[logging.Logger]:
    names = [
        n for n in logging.root.manager.loggerDict if n.split(".")[0] in ("prefect", "uvicorn")
    ]
    return [logging.getLogger(n) for n in names]


def _without_traceback(emit: Any) -> Any:
    def quiet(record: logging.LogRecord) -> None:
        if record.exc_info or record.exc_text or record.stack_info:
            # A copy: the record itself may still go to other handlers (the API) whole.
            record = copy.copy(record)
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        emit(record)

    return quiet
