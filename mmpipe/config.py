"""The run config: one validated object for `mmpipe run`, the flows and deployments.

Read from YAML (safe loader) or built from CLI flags; unknown keys and bad values are refused
with the key's dotted name and what is allowed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mmpipe.cluster import DEFAULT_CONNECT_TIMEOUT, DEFAULT_SCHEDULER_TIMEOUT, ClusterSpec
from mmpipe.defaults import DEFAULT_ALPHAS, DEFAULT_COMPONENTS
from mmpipe.errors import ConfigError
from mmpipe.io.secrets import literal_secrets

if TYPE_CHECKING:
    from mmpipe.options import FitConfig

ComponentValue = int | float | None
_COMPONENTS_ALLOWED = (
    "a count >= 1, a variance fraction in (0, 1), null for all, or a mapping of modality "
    "names to those"
)


def _check_component(value: Any) -> None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return
    if isinstance(value, float) and 0.0 < value < 1.0:
        return
    raise ValueError(f"must be {_COMPONENTS_ALLOWED}")


class ClusterConfig(BaseModel):
    """Where the run computes (see mmpipe.cluster)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = Field(None, description="Scheduler address of an existing cluster.")
    scheduler_file: str | None = Field(None, description="Scheduler file of an existing cluster.")
    workers: Annotated[int, Field(ge=1)] | None = Field(
        None, description="LocalCluster worker processes (default: one per core)."
    )
    threads_per_worker: Annotated[int, Field(ge=1)] = Field(1, description="LocalCluster threads.")
    memory_limit: str | float | None = Field("auto", description="LocalCluster memory per worker.")
    in_process: bool | None = Field(
        None,
        description="Threads in the flow's process instead of a cluster (null: only for inputs "
        "under 256 MiB when no address, scheduler file or worker count is given).",
    )
    connect_timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(
        DEFAULT_CONNECT_TIMEOUT,
        description="Seconds to reach an existing cluster's scheduler before the run fails.",
    )
    scheduler_timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(
        DEFAULT_SCHEDULER_TIMEOUT,
        description="Seconds a pass waits on a scheduler that stopped answering, or has no "
        "worker, before the run fails.",
    )

    def spec(self) -> ClusterSpec:
        return ClusterSpec(
            address=self.address,
            scheduler_file=self.scheduler_file,
            workers=self.workers,
            threads_per_worker=self.threads_per_worker,
            memory_limit=self.memory_limit,
            in_process=self.in_process,
            connect_timeout=self.connect_timeout,
            scheduler_timeout=self.scheduler_timeout,
        )


class RunConfig(BaseModel):
    """Everything one run needs: data, results, what to fit, how to evaluate, where to compute."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(description="Dataset path or fsspec URL.")
    results: str | None = Field(None, description="Results store path or URL (None: not written).")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for both stores. Credentials only as '${ENV_VAR}' "
        "references, expanded where the store is opened.",
    )
    pairs: list[str] | None = Field(
        None, description="SOURCE:TARGET pairs; None = every ordered pair."
    )
    components: ComponentValue | dict[str, ComponentValue] = Field(
        DEFAULT_COMPONENTS,
        description="PCA components: count, variance fraction in (0, 1), null for all, "
        "or a mapping per modality.",
    )
    folds: Annotated[int, Field(ge=2, le=127)] = Field(5, description="K-fold CV.")
    holdout: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        None, description="Hold-out fraction instead of K-fold."
    )
    alphas: list[Annotated[float, Field(ge=0)]] = Field(
        list(DEFAULT_ALPHAS), min_length=1, description="Ridge α path."
    )
    seed: int = Field(0, description="Seed of the fold assignment.")
    solver: Literal["normal", "tsqr"] = Field("normal", description="Ridge solver.")
    cca_reg: Annotated[float, Field(ge=0)] = Field(1e-3, description="CCA ridge term.")
    chunk_rows: Annotated[int, Field(ge=1)] | None = Field(None, description="Dask row block.")
    sketch_above: Annotated[int, Field(ge=1)] | None = Field(
        4096, description="Reduce modalities wider than this by a randomized sketch (null: never)."
    )
    sketch_columns: Annotated[int, Field(ge=2)] | None = Field(
        None, description="Sketch width of a wide modality (null: min(d, 4k + 64))."
    )
    sketch_power: Annotated[int, Field(ge=0)] = Field(
        1, description="Power iterations of the sketch (one pass each)."
    )
    precision: Literal["float64", "float32"] = Field(
        "float64", description="dtype of each row block's Gram in the statistics pass."
    )
    classify: list[str] = Field(
        default_factory=list,
        description="Feature sets to classify the labels from: modality or a+b (fused).",
    )
    transfer: bool = Field(
        False, description="Each pair target's classifier applied to the source mapped by W."
    )
    retrieval: bool = Field(False, description="Cross-modal retrieval for every pair.")
    retrieval_rows: Annotated[int, Field(ge=2)] | None = Field(
        5000, description="Validation rows ranked per split and pair (null: all)."
    )
    logistic: bool = Field(
        False, description="Also multinomial logistic regression per classify feature set."
    )
    logistic_c: Annotated[float, Field(gt=0)] = Field(
        1.0, description="Logistic regression's C (inverse l2 strength)."
    )
    random_features: Annotated[int, Field(ge=0)] = Field(
        0, description="D random Fourier features for a non-linear map per pair (0: off)."
    )
    rff_gamma: Annotated[float, Field(gt=0)] | None = Field(
        None, description="RBF γ of the random features (null: median heuristic)."
    )
    cluster: ClusterConfig = Field(ClusterConfig(), description="Where to compute.")

    @field_validator("components", mode="before")
    @classmethod
    def _components_values(cls, value: Any) -> Any:
        for item in value.values() if isinstance(value, dict) else [value]:
            _check_component(item)
        return value

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

    @field_validator("pairs")
    @classmethod
    def _pairs_shape(cls, value: list[str] | None) -> list[str] | None:
        for item in value or []:
            if item.count(":") != 1:
                raise ValueError(f"pair {item!r} must be written SOURCE:TARGET")
        return value

    def fit_config(self) -> FitConfig:
        from mmpipe.options import FitConfig, feature_set, pair_of

        return FitConfig(
            pairs=None if self.pairs is None else tuple(pair_of(p) for p in self.pairs),  # type: ignore[misc]
            components=self.components,
            folds=self.folds,
            holdout=self.holdout,
            alphas=tuple(self.alphas),
            seed=self.seed,
            solver=self.solver,
            cca_reg=self.cca_reg,
            chunk_rows=self.chunk_rows,
            precision=self.precision,
            sketch_above=self.sketch_above,
            sketch_columns=self.sketch_columns,
            sketch_power=self.sketch_power,
            classify=tuple(feature_set(f) for f in self.classify),
            transfer=self.transfer,
            retrieval=self.retrieval,
            retrieval_rows=self.retrieval_rows,
            logistic=self.logistic,
            logistic_c=self.logistic_c,
            random_features=self.random_features,
            rff_gamma=self.rff_gamma,
        )


def _message(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            allowed = (
                ", ".join(RunConfig.model_fields)
                if "." not in key
                else ", ".join(ClusterConfig.model_fields)
            )
            lines.append(f"unknown key {key!r} (allowed: {allowed})")
        elif err["type"] == "missing":
            lines.append(f"missing key {key!r}")
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            # Storage options may hold credentials: never echo them.
            got = "" if key.startswith("storage_options") else f" (got {err.get('input')!r})"
            lines.append(f"{key}: {msg}{got}")
    unique = list(dict.fromkeys(lines))
    where = f" {source}" if source else ""
    return f"Invalid run config{where}: " + "; ".join(unique)


def load_config(data: dict[str, Any], *, source: str = "") -> RunConfig:
    """Validate a mapping as a RunConfig; ConfigError names every bad key."""
    if not isinstance(data, dict):
        raise ConfigError(f"Invalid run config {source}: expected a mapping of keys to values.")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_message(exc, source)) from None


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
