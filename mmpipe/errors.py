"""Every exception mmpipe raises on purpose.

All derive from :class:`MmpipeError`; each also derives from the built-in exception it refines,
so ``except ValueError`` keeps working for callers that do not know mmpipe. Messages name the
array, file, key or address at fault and say what to do about it.

Two families, told apart by ``exit_code`` (what the CLI exits with):

- bad input (2): the dataset, the config or a results store is not what it must be; running
  again gives the same error until the input is fixed;
- the environment (1): a cluster, a store or a disk failed under the run. ``transient`` says
  whether trying again may succeed (the flows retry only those).
"""

from __future__ import annotations


class MmpipeError(Exception):
    """Base class of all mmpipe errors. The CLI prints ``error: <message>`` and exits
    with ``exit_code``."""

    exit_code = 2
    transient = False


class StoreNotFoundError(MmpipeError, FileNotFoundError):
    """The dataset or results location does not exist or is not a Zarr group."""


class DatasetError(MmpipeError, ValueError):
    """The dataset breaks the contract (layout, dtype, shape, row counts, absent chunks)."""


class DataValueError(MmpipeError, ValueError):
    """The data itself is unusable (NaN/inf values, constant modality, duplicate ids)."""


class ConfigError(MmpipeError, ValueError):
    """A parameter or config value is out of its allowed range."""


class MissingDependencyError(MmpipeError, ImportError):
    """An optional package needed for this command is not installed."""


class ResultsError(MmpipeError, ValueError):
    """A results store cannot be written or read as asked (bad location, incomplete run)."""


class EnvironmentFailure(MmpipeError):
    """Something outside the input failed: the cluster, the storage service, the disk."""

    exit_code = 1
    transient = True


class ClusterError(EnvironmentFailure, ConnectionError):
    """The Dask scheduler cannot be reached, stopped answering, or lost the computation."""


class StorageError(EnvironmentFailure, OSError):
    """Reading or writing a store failed (network, object storage service, permissions)."""


class DiskFullError(StorageError):
    """The results location ran out of space; trying again will fail the same way."""

    transient = False


class RunInterrupted(EnvironmentFailure):
    """The run was stopped by a signal (SIGTERM, SIGINT); it is marked failed."""

    transient = False


def bad_parameter(name: str, owner: str, allowed: str, got: object) -> ConfigError:
    """The one message template for every bad parameter (scikit-learn's wording)."""
    return ConfigError(f"The {name!r} parameter of {owner} must be {allowed}. Got {got!r} instead.")
