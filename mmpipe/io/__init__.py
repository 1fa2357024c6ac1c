"""Storage: the dataset contract, dataset makers, the results store."""

from mmpipe.io.dataset import Dataset, open_dataset, write_dataset
from mmpipe.io.results import write_run
from mmpipe.io.runs import list_runs, read_run

__all__ = ["Dataset", "list_runs", "open_dataset", "read_run", "write_dataset", "write_run"]
