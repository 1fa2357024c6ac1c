"""The run config: one validated object for `mmpipe run`, the flows and deployments.

Read from YAML (safe loader). Its keys are the fit's options (:class:`~mmpipe.options.FitConfig`,
the same names and values as ``mmpipe.fit``'s keyword arguments and ``mmpipe fit``'s flags),
plus where the data is and goes, and a ``cluster:`` section (:class:`~mmpipe.cluster.ClusterSpec`).
Unknown keys and bad values are refused with the key's dotted name and what is allowed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, field_validator

from mmpipe.cluster import ClusterSpec
from mmpipe.errors import ConfigError
from mmpipe.io.secrets import literal_secrets
from mmpipe.options import FitConfig, Options


class RunInputs(Options):
    """Where a run's data is and where its results go."""

    dataset: str = Field(description="Dataset path or fsspec URL.")
    results: str | None = Field(None, description="Results store path or URL (None: not written).")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for both stores. Credentials only as '${ENV_VAR}' "
        "references, expanded where the store is opened.",
    )

    @field_validator("storage_options")
    @classmethod
    def _no_literal_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        found = literal_secrets(value)
        if found:
            raise ValueError(
                f"{', '.join(found)} holds a literal credential; a run config becomes Prefect "
                "parameters and must not carry secrets: write '${ENV_VAR}' and set the variable "
                "where the run executes (or use AWS_* variables / fsspec configuration)"
            )
        return value


class RunConfig(FitConfig, RunInputs):
    """Everything one run needs: data, results, what to fit, how to evaluate, where to compute."""

    cluster: ClusterSpec = Field(ClusterSpec(), description="Where to compute.")

    def fit_config(self) -> FitConfig:
        """The fit's own options (every key of the run config that :class:`FitConfig` has)."""
        return FitConfig.parse(
            self.model_dump(include=set(FitConfig.model_fields), exclude_unset=True),
            "fit options",
        )


def load_config(data: dict[str, Any], *, source: str = "") -> RunConfig:
    """Validate a mapping as a RunConfig; ConfigError names every bad key."""
    return RunConfig.parse(data, f"run config {source}".strip())


def read_config(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML run config (safe loader), apply dotted-key overrides, validate."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"Run config {os.fspath(path)!r} does not exist.")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"Run config {os.fspath(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Invalid run config {os.fspath(path)!r}: expected a mapping of keys.")
    for key, value in (overrides or {}).items():
        target = data
        *parents, last = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    return load_config(data, source=repr(os.fspath(path)))


def config_schema() -> dict[str, Any]:
    return RunConfig.model_json_schema()


__all__ = ["BaseModel", "ClusterSpec", "RunConfig", "RunInputs", "config_schema", "load_config"]
