"""The run config: one validated object for `mmpipe run`, the flows and deployments.

Read from YAML (safe loader). Its keys are the fit's options (:class:`~mmpipe.options.FitConfig`,
the same names and values as ``mmpipe.fit``'s keyword arguments and ``mmpipe fit``'s flags),
plus where the data is and goes, and a ``cluster:`` section (:class:`~mmpipe.cluster.ClusterSpec`).
Unknown keys and bad values are refused with the key's dotted name and what is allowed.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, Field, TypeAdapter

from mmpipe.cluster import ClusterSpec
from mmpipe.errors import ConfigError
from mmpipe.io.secrets import literal_secrets
from mmpipe.options import ApplyOptions, FitConfig, Options


def _no_literal_secrets(value: dict[str, Any]) -> dict[str, Any]:
    found = literal_secrets(value)
    if found:
        raise ValueError(
            f"{', '.join(found)} holds a literal credential; a run config becomes Prefect "
            "parameters and must not carry secrets: write '${ENV_VAR}' and set the variable "
            "where the run executes (or use AWS_* variables / fsspec configuration)"
        )
    return value


StorageOptionsField = Annotated[dict[str, Any], AfterValidator(_no_literal_secrets)]
STORAGE_HELP = (
    "fsspec options for every store of the run. Credentials only as '${ENV_VAR}' references, "
    "expanded where the store is opened."
)


class RunInputs(Options):
    """Where a fit's data is and where its results go."""

    dataset: str = Field(description="Dataset path or fsspec URL.")
    results: str | None = Field(None, description="Results store path or URL (None: not written).")
    storage_options: StorageOptionsField = Field(default_factory=dict, description=STORAGE_HELP)
    flow: Literal["fit"] = Field("fit", description="Which flow runs this config: the fit.")


class RunConfig(FitConfig, RunInputs):
    """Everything one run needs: data, results, what to fit, how to evaluate, where to compute."""

    cluster: ClusterSpec = Field(ClusterSpec(), description="Where to compute.")

    def fit_config(self) -> FitConfig:
        """The fit's own options (every key of the run config that :class:`FitConfig` has)."""
        return FitConfig.parse(
            self.model_dump(include=set(FitConfig.model_fields), exclude_unset=True),
            "fit options",
        )


class ApplyInputs(Options):
    """Which run to apply, to what data, and where its outputs go."""

    flow: Literal["apply"] = Field(
        description="Which flow runs this config: apply (a fitted run to a dataset)."
    )
    results: str = Field(description="Results store holding the fitted run.")
    dataset: str = Field(description="Dataset to apply the run to (path or fsspec URL).")
    out: str = Field(
        description="Where the outputs go: a new Zarr group (path or URL). {date} and {time} "
        "are replaced by the UTC date and time the run starts (a schedule writes a new group "
        "each time; an existing one is never overwritten)."
    )
    storage_options: StorageOptionsField = Field(default_factory=dict, description=STORAGE_HELP)


class ApplyConfig(ApplyOptions, ApplyInputs):
    """Everything one apply needs (``flow: apply``): the run, the data, what to compute from
    it (:class:`~mmpipe.options.ApplyOptions`), where to compute."""

    cluster: ClusterSpec = Field(ClusterSpec(), description="Where to compute.")

    def out_at(self, when: datetime) -> str:
        """``out`` with {date} and {time} replaced by ``when`` (UTC): 2026-12-02, 031500."""
        when = when.astimezone(UTC)
        return self.out.replace("{date}", when.strftime("%Y-%m-%d")).replace(
            "{time}", when.strftime("%H%M%S")
        )

    def apply_options(self) -> ApplyOptions:
        """What to compute (every key of the config that :class:`ApplyOptions` has)."""
        return ApplyOptions.parse(
            self.model_dump(include=set(ApplyOptions.model_fields), exclude_unset=True),
            "apply options",
        )


AnyConfig = RunConfig | ApplyConfig
FLOWS: dict[str, type[RunConfig] | type[ApplyConfig]] = {"fit": RunConfig, "apply": ApplyConfig}
"""The config of each flow, by the value of its ``flow`` key (default: fit)."""


def load_config(data: dict[str, Any], *, source: str = "") -> AnyConfig:
    """Validate a mapping as the config of its flow (``flow:``, default fit); ConfigError
    names every bad key."""
    where = f"run config {source}".strip()
    if not isinstance(data, dict):
        raise ConfigError(f"Invalid {where}: expected a mapping of keys to values.")
    flow = data.get("flow", "fit")
    if flow not in FLOWS:
        raise ConfigError(
            f"Invalid {where}: flow: must be one of {', '.join(FLOWS)} (got {flow!r})"
        )
    return FLOWS[flow].parse(data, where)


def read_config(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> AnyConfig:
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
    """The JSON schema of a run config: the fit's, or the apply's (``flow: apply``)."""
    schema: dict[str, Any] = TypeAdapter(AnyConfig).json_schema()
    return schema


__all__ = [
    "ApplyConfig",
    "BaseModel",
    "ClusterSpec",
    "RunConfig",
    "RunInputs",
    "config_schema",
    "load_config",
]
