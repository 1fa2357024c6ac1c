"""NumPy values as plain JSON, for attributes, --json output and logs."""

from __future__ import annotations

import json
from typing import Any

import numpy as np


def to_json(value: Any) -> Any:
    """Make numpy scalars/arrays JSON-serializable (for attributes and --json output)."""
    return json.loads(json.dumps(value, default=_default))


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")
