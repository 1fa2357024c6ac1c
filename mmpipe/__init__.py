"""mmpipe: distributed batch pipeline for multimodal learning on chunked Zarr data.

>>> import mmpipe
>>> result = mmpipe.fit("dataset.zarr", components=32, folds=5, out="results.zarr")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mmpipe.errors import MmpipeError

if TYPE_CHECKING:
    from mmpipe.applying import apply
    from mmpipe.fitted import FittedRun
    from mmpipe.htmlreport import report_run
    from mmpipe.io.dataset import Dataset, open_dataset, write_dataset
    from mmpipe.io.runs import list_runs, read_run
    from mmpipe.loading import open_run
    from mmpipe.options import FitConfig
    from mmpipe.result import FitResult, PairResult
    from mmpipe.steps import fit

__version__ = "0.1.0"

# Imported on first use: dask.array alone takes seconds to import, and `mmpipe --help` or
# `mmpipe config check` should not wait for it.
_LAZY = {
    "FitConfig": "mmpipe.options",
    "apply": "mmpipe.applying",
    "FittedRun": "mmpipe.fitted",
    "open_run": "mmpipe.loading",
    "FitResult": "mmpipe.result",
    "PairResult": "mmpipe.result",
    "fit": "mmpipe.steps",
    "Dataset": "mmpipe.io.dataset",
    "open_dataset": "mmpipe.io.dataset",
    "write_dataset": "mmpipe.io.dataset",
    "list_runs": "mmpipe.io.runs",
    "read_run": "mmpipe.io.runs",
    "report_run": "mmpipe.htmlreport",
}

__all__ = [
    "Dataset",
    "FitConfig",
    "FitResult",
    "FittedRun",
    "MmpipeError",
    "PairResult",
    "__version__",
    "apply",
    "fit",
    "list_runs",
    "open_dataset",
    "open_run",
    "read_run",
    "report_run",
    "write_dataset",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mmpipe' has no attribute {name!r}")
