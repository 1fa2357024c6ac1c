"""Every exception mmpipe raises on purpose.

All derive from :class:`MmpipeError`; each also derives from the built-in exception it refines,
so ``except ValueError`` keeps working for callers that do not know mmpipe. Messages name the
array or field at fault and say what to do about it.
"""

from __future__ import annotations


class MmpipeError(Exception):
    """Base class of all mmpipe errors. The CLI turns these into exit code 2."""


class StoreNotFoundError(MmpipeError, FileNotFoundError):
    """The dataset or results location does not exist or is not a Zarr group."""


class DatasetError(MmpipeError, ValueError):
    """The dataset breaks the contract (layout, dtype, shape, row counts)."""


class DataValueError(MmpipeError, ValueError):
    """The data itself is unusable (NaN/inf values), found during the statistics pass."""


class ConfigError(MmpipeError, ValueError):
    """A parameter or config value is out of its allowed range."""


class MissingDependencyError(MmpipeError, ImportError):
    """An optional package needed for this command is not installed."""


class ResultsError(MmpipeError, ValueError):
    """A results store cannot be written or read as asked."""


def bad_parameter(name: str, owner: str, allowed: str, got: object) -> ConfigError:
    """The one message template for every bad parameter (scikit-learn's wording)."""
    return ConfigError(f"The {name!r} parameter of {owner} must be {allowed}. Got {got!r} instead.")
