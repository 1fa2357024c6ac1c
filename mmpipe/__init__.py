"""mmpipe: distributed batch pipeline for multimodal learning on chunked Zarr data.

>>> import mmpipe
>>> result = mmpipe.fit("dataset.zarr", components=32, folds=5, out="results.zarr")
"""

from mmpipe.errors import MmpipeError
from mmpipe.fit import FitConfig, FitResult, PairResult, fit
from mmpipe.io.dataset import Dataset, open_dataset, write_dataset
from mmpipe.io.results import list_runs, read_run

__version__ = "0.1.0"

__all__ = [
    "Dataset",
    "FitConfig",
    "FitResult",
    "MmpipeError",
    "PairResult",
    "__version__",
    "fit",
    "list_runs",
    "open_dataset",
    "read_run",
    "write_dataset",
]
