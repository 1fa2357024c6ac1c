"""The run config: every bad key or value is refused with its name and what is allowed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from mmpipe.cli import app
from mmpipe.cluster import ADDRESS_ENV, ClusterSpec, resolve
from mmpipe.config import config_schema, load_config, read_config
from mmpipe.errors import ConfigError, MmpipeError

BASE: dict[str, Any] = {"dataset": "data/x.zarr"}


def test_defaults_and_fit_config() -> None:
    config = load_config({**BASE, "pairs": ["a:b"], "components": {"a": 0.9, "b": 4}})
    fit = config.fit_config()
    assert fit.pairs == (("a", "b"),)
    assert fit.components == {"a": 0.9, "b": 4}
    assert fit.folds == 5
    assert fit.holdout is None
    assert config.cluster == ClusterSpec()


BAD_CONFIGS: list[tuple[dict[str, Any], str]] = [
    ({}, "missing key 'dataset'"),
    ({**BASE, "fold": 3}, "unknown key 'fold' (allowed: dataset, results,"),
    ({**BASE, "cluster": {"nodes": 2}}, "unknown key 'cluster.nodes' (allowed: address,"),
    ({**BASE, "folds": 1}, "folds: Input should be greater than or equal to 2"),
    ({**BASE, "folds": "many"}, "folds: Input should be a valid integer"),
    ({**BASE, "holdout": 1.5}, "holdout: Input should be less than 1"),
    ({**BASE, "alphas": []}, "alphas: Tuple should have at least 1 item"),
    ({**BASE, "alphas": [1, -2]}, "alphas.1: Input should be greater than or equal to 0"),
    ({**BASE, "components": 0}, "components: must be a count >= 1, a variance fraction"),
    ({**BASE, "components": 1.5}, "components: must be a count >= 1"),
    ({**BASE, "components": {"a": -1}}, "components: must be a count >= 1"),
    ({**BASE, "pairs": ["a-b"]}, "pairs: pair 'a-b' must be written SOURCE:TARGET"),
    ({**BASE, "solver": "qr"}, "solver: Input should be 'normal' or 'tsqr'"),
    ({**BASE, "cca_reg": -1}, "cca_reg: Input should be greater than or equal to 0"),
    ({**BASE, "chunk_rows": 0}, "chunk_rows: Input should be greater than or equal to 1"),
    ({**BASE, "cluster": {"workers": 0}}, "cluster.workers: Input should be greater than"),
    ({**BASE, "cluster": {"threads_per_worker": 0}}, "cluster.threads_per_worker:"),
    ({**BASE, "seed": "x"}, "seed: Input should be a valid integer"),
]


@pytest.mark.parametrize(("data", "message"), BAD_CONFIGS)
def test_bad_key_or_value(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="Invalid run config") as info:
        load_config(data)
    assert message in str(info.value)
    assert isinstance(info.value, MmpipeError)


@pytest.mark.parametrize(("data", "message"), BAD_CONFIGS)
def test_the_schema_refuses_what_the_config_refuses(data: dict[str, Any], message: str) -> None:
    # jsonschema, an independent validator, reading only the printed schema.
    validator = jsonschema.Draft202012Validator(config_schema())
    assert list(validator.iter_errors(data)), message


GOOD_CONFIGS: list[dict[str, Any]] = [
    {**BASE, "components": "all", "sketch_above": "never", "retrieval_rows": "all"},
    {**BASE, "components": "a=64,b=0.9", "pairs": "a:b,b:a", "alphas": "0.1,1"},
    {**BASE, "components": {"a": 0.5, "b": None, "c": "all"}, "pairs": [["a", "b"]]},
    {**BASE, "rff_gamma": "median", "chunk_rows": "auto", "sketch_columns": 128},
    {**BASE, "classify": ["a+b", "c", ["a", "c"]], "logistic": True},
]


@pytest.mark.parametrize("data", GOOD_CONFIGS)
def test_the_schema_accepts_what_the_config_accepts(data: dict[str, Any]) -> None:
    load_config(data)
    validator = jsonschema.Draft202012Validator(config_schema())
    assert not [e.message for e in validator.iter_errors(data)]


def test_every_bad_key_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({**BASE, "folds": 0, "colour": "red"})
    assert "folds:" in str(info.value)
    assert "'colour'" in str(info.value)


def test_yaml_file_safe_loader_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("dataset: d.zarr\nfolds: 4\ncluster: {workers: 2}\n")
    config = read_config(path, {"folds": 3, "cluster.threads_per_worker": 2, "alphas": [1, 2]})
    assert (config.folds, config.cluster.workers, config.cluster.threads_per_worker) == (3, 2, 2)
    assert config.alphas == (1.0, 2.0)

    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("dataset: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_config(unsafe)
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        read_config(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        read_config(tmp_path / "missing.yaml")


def test_deploy_examples_are_valid_configs() -> None:
    import yaml

    repo = Path(__file__).resolve().parents[1]
    read_config(repo / "deploy" / "mfeat.yaml")
    declared = yaml.safe_load((repo / "deploy" / "prefect.yaml").read_text())
    for deployment in declared["deployments"]:
        load_config(deployment["parameters"]["config"], source=deployment["name"])


def test_schema_command_prints_the_model_schema() -> None:
    result = CliRunner().invoke(app, ["config", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema == config_schema()
    fit, apply = (schema["$defs"][ref["$ref"].rsplit("/", 1)[1]] for ref in schema["anyOf"])
    assert fit["additionalProperties"] is False
    assert set(fit["required"]) == {"dataset"}
    assert set(apply["required"]) == {"flow", "results", "dataset", "out"}
    # A valid JSON schema, and the configs load_config accepts are valid under it.
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    repo = Path(__file__).resolve().parents[1]
    validator.validate(yaml.safe_load((repo / "deploy" / "mfeat.yaml").read_text()))
    for deployment in yaml.safe_load((repo / "deploy" / "prefect.yaml").read_text())["deployments"]:
        validator.validate(deployment["parameters"]["config"])
    validator.validate({**BASE, "folds": 3, "cluster": {"workers": 2}, "alphas": [0, 1.5]})
    apply = {"flow": "apply", "results": "r.zarr", "dataset": "d.zarr", "out": "o.zarr"}
    validator.validate({**apply, "embed": ["a"], "map": ["a:b"]})
    load_config({**apply, "embed": ["a"], "map": ["a:b"]})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**apply, "embed": ["a"], "colour": "red"})  # no branch accepts it


def test_check_and_run_commands_refuse_bad_configs(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("dataset: d.zarr\nfolds: 1\nextra: 2\n")
    runner = CliRunner()
    for command in (["config", "check", str(path)], ["run", str(path)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert "folds:" in result.stderr
        assert "unknown key 'extra'" in result.stderr
        assert "Traceback" not in result.output
    good = tmp_path / "good.yaml"
    good.write_text("dataset: d.zarr\n")
    result = runner.invoke(app, ["config", "check", str(good), "--set", "folds=3"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["folds"] == 3


def test_cluster_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ADDRESS_ENV, raising=False)
    assert resolve(None) == ClusterSpec()
    monkeypatch.setenv(ADDRESS_ENV, "tcp://127.0.0.1:8786")
    assert resolve(None).address == "tcp://127.0.0.1:8786"
    # An explicit address or scheduler file wins over the environment.
    assert resolve(ClusterSpec(address="tcp://127.0.0.1:1")).address == "tcp://127.0.0.1:1"
    assert resolve(ClusterSpec(scheduler_file="s.json")).address is None
    with pytest.raises(MmpipeError, match="workers"):
        resolve(ClusterSpec(workers=0))


def test_small_inputs_run_in_process_unless_a_cluster_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mmpipe.cluster import SMALL_INPUT_BYTES, choose

    monkeypatch.delenv(ADDRESS_ENV, raising=False)
    small, large = SMALL_INPUT_BYTES - 1, SMALL_INPUT_BYTES
    assert choose(ClusterSpec(), small).in_process is True
    assert choose(ClusterSpec(), large).in_process is False
    assert choose(ClusterSpec(), None).in_process is False  # size unknown: a cluster
    # Anything that names a cluster wins over the size.
    assert choose(ClusterSpec(workers=2), small).in_process is False
    assert choose(ClusterSpec(address="tcp://127.0.0.1:1"), small).in_process is False
    monkeypatch.setenv(ADDRESS_ENV, "tcp://127.0.0.1:8786")
    assert choose(ClusterSpec(), small).in_process is False
    monkeypatch.delenv(ADDRESS_ENV)
    # An explicit choice is kept, and contradictions are refused by name.
    assert choose(ClusterSpec(in_process=False), small).in_process is False
    assert choose(ClusterSpec(in_process=True), large).in_process is True
    with pytest.raises(MmpipeError, match="in_process"):
        choose(ClusterSpec(in_process=True, workers=2), small)
    assert "threads in this process" in choose(ClusterSpec(), small).describe()


@pytest.mark.slow  # the session's LocalCluster: real worker processes
def test_existing_cluster_is_left_running(local_client: Any) -> None:
    from mmpipe.cluster import dask_client

    address = local_client.scheduler.address
    with dask_client(ClusterSpec(address=address)) as client:
        assert client.submit(lambda: 41 + 1).result() == 42
    assert local_client.submit(lambda: 1).result() == 1
    with dask_client(client=local_client) as passed:
        assert passed is local_client
    assert local_client.status == "running"


def test_an_apply_config_dates_its_output_per_run() -> None:
    from datetime import UTC, datetime

    from mmpipe.config import ApplyConfig

    config = load_config(
        {"flow": "apply", "results": "r.zarr", "dataset": "d.zarr", "embed": ["a"],
         "out": "out/{date}/x-{time}.zarr"}
    )  # fmt: skip
    assert isinstance(config, ApplyConfig)
    when = datetime(2026, 12, 2, 4, 0, 5, tzinfo=UTC)
    assert config.out_at(when) == "out/2026-12-02/x-040005.zarr"
    assert config.apply_options().embed == ("a",)
    with pytest.raises(ConfigError, match="unknown key 'fold'"):
        load_config({"flow": "apply", "results": "r", "dataset": "d", "out": "o", "fold": 1})
