"""Every option is declared once (mmpipe.options, mmpipe.cluster) and reaches the Python API,
the run config and the CLI with the same name, the same values and the same error message."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

import mmpipe
from mmpipe.cli import app
from mmpipe.cluster import ClusterSpec
from mmpipe.config import ApplyConfig, RunConfig, load_config
from mmpipe.errors import ConfigError
from mmpipe.options import ApplyOptions, FitConfig

FIT_COMMAND = typer.main.get_command(app).commands["fit"]  # type: ignore[attr-defined]
FLAGS = {name for param in FIT_COMMAND.params for name in (*param.opts, *param.secondary_opts)}


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


@pytest.mark.parametrize("field", list(FitConfig.model_fields))
def test_every_fit_option_is_a_run_config_key_and_a_flag(field: str) -> None:
    assert field in RunConfig.model_fields, f"{field} is missing from the run config"
    assert flag(field) in FLAGS, f"mmpipe fit has no {flag(field)}"


@pytest.mark.parametrize("field", list(ClusterSpec.model_fields))
def test_every_cluster_option_is_a_run_config_key_and_a_flag(field: str) -> None:
    assert RunConfig.model_fields["cluster"].annotation is ClusterSpec
    assert flag(field) in FLAGS, f"mmpipe fit has no {flag(field)}"


# One bad value per option, as typed on the command line (a YAML scalar everywhere else). A
# new option without an entry here fails test_every_option_has_a_bad_value.
BAD_VALUES: dict[str, str | None] = {
    "pairs": "a-b",
    "components": "lots",
    "folds": "1",
    "holdout": "1.5",
    "split": None,  # a flag: the command line cannot give it a bad value
    "alphas": "1,-2",
    "seed": "-1",
    "solver": "qr",
    "cca_reg": "-1",
    "scale": None,  # a flag
    "transfer_classifier": "svm",
    "chunk_rows": "0",
    "sketch_above": "0",
    "sketch_columns": "1",
    "sketch_power": "-1",
    "precision": "float16",
    "classify": "a+a",
    "transfer": None,  # a flag: the command line cannot give it a bad value
    "retrieval": None,
    "retrieval_rows": "1",
    "logistic": None,
    "logistic_c": "0",
    "random_features": "-3",
    "pls": "-2",
    "rff_gamma": "0",
    "multiview": "a,a",
}
REPEATED = {"pairs", "classify"}


def test_every_option_has_a_bad_value() -> None:
    assert set(BAD_VALUES) == set(FitConfig.model_fields)


def _problem(message: str) -> str:
    """The message without the part that says where the options came from."""
    return message.split(": ", 1)[1]


@pytest.mark.parametrize("field", [f for f, v in BAD_VALUES.items() if v is not None])
def test_a_bad_value_gets_the_same_message_from_every_source(field: str) -> None:
    text = BAD_VALUES[field]
    assert text is not None
    value: Any = yaml.safe_load(text)
    value = [value] if field in REPEATED else value
    with pytest.raises(ConfigError) as from_python:
        mmpipe.fit("never-opened.zarr", **{field: value})
    with pytest.raises(ConfigError) as from_yaml:
        load_config({"dataset": "never-opened.zarr", field: value})
    result = CliRunner().invoke(app, ["fit", "never-opened.zarr", flag(field), text])
    assert result.exit_code == 2, result.output
    from_cli = result.stderr.strip().removeprefix("error: ")
    expected = _problem(str(from_python.value))
    assert expected.startswith(f"{field}"), expected  # names the option
    assert _problem(str(from_yaml.value)) == expected
    assert _problem(from_cli) == expected


@pytest.mark.parametrize(
    ("cli", "config"),
    [
        (["--components", "a=64,b=0.9"], {"components": {"a": 64, "b": 0.9}}),
        (["--components", "all"], {"components": None}),
        (["--sketch-above", "never"], {"sketch_above": None}),
        (["--retrieval-rows", "all"], {"retrieval_rows": None}),
        (["--alphas", "0.5,2"], {"alphas": [0.5, 2]}),
        (["--pairs", "m0:m1", "--pair", "m1:m0"], {"pairs": ["m0:m1", "m1:m0"]}),
        (["--classify", "m0+m1", "--retrieve"], {"classify": ["m0+m1"], "retrieval": True}),
        (["--folds", "3", "--seed", "7"], {"folds": 3, "seed": 7}),
    ],
)
def test_the_command_line_means_what_the_run_config_means(
    small_store: str, monkeypatch: pytest.MonkeyPatch, cli: list[str], config: dict[str, Any]
) -> None:
    seen: dict[str, Any] = {}

    def record(dataset: str, options: FitConfig, **kwargs: Any) -> Any:
        seen["options"] = options
        raise SystemExit(0)

    monkeypatch.setattr(mmpipe, "fit", record)
    result = CliRunner().invoke(app, ["fit", small_store, "--in-process", *cli])
    assert result.exit_code == 0, result.output
    from_yaml = load_config({"dataset": small_store, **config}).fit_config()
    assert seen["options"] == from_yaml
    assert seen["options"] == FitConfig.with_overrides(None, config)  # and the Python API's
    assert seen["options"] != FitConfig()  # the flags did change something


def test_words_for_none_are_the_same_everywhere() -> None:
    for field, word in [
        ("sketch_above", "never"),
        ("retrieval_rows", "all"),
        ("components", "all"),
        ("chunk_rows", "auto"),
        ("sketch_columns", "auto"),
        ("rff_gamma", "median"),
    ]:
        assert getattr(FitConfig.with_overrides(None, {field: word}), field) is None
        assert getattr(FitConfig.with_overrides(None, {field: None}), field) is None
        run = yaml.safe_load(f"dataset: x.zarr\n{field}: {word}\n")
        assert getattr(load_config(run), field) is None


def test_keyword_options_replace_those_of_a_config() -> None:
    base = FitConfig(folds=3, components=4)
    merged = FitConfig.with_overrides(base, {"folds": 4})
    assert (merged.folds, merged.components) == (4, 4)
    with pytest.raises(ConfigError, match=r"unknown key 'fold' \(allowed: pairs, components"):
        FitConfig.with_overrides(base, {"fold": 4})


def test_logistic_without_classify_is_refused_everywhere() -> None:
    expected = "logistic needs at least one classify feature set"
    with pytest.raises(ConfigError, match=expected):
        mmpipe.fit("never-opened.zarr", logistic=True)
    with pytest.raises(ConfigError, match=expected):
        load_config({"dataset": "x.zarr", "logistic": True})
    result = CliRunner().invoke(app, ["fit", "never-opened.zarr", "--logistic"])
    assert result.exit_code == 2
    assert expected in result.stderr


def test_docs_list_every_option_as_the_models_declare_it() -> None:
    from pathlib import Path

    from mmpipe.cli.fitting import options_markdown

    docs = Path(__file__).resolve().parents[1] / "docs" / "options.md"
    assert docs.read_text() == options_markdown() + "\n", (
        "run: mmpipe config options > docs/options.md"
    )


@pytest.mark.parametrize("field", list(ApplyOptions.model_fields))
def test_every_apply_option_is_a_run_config_key_and_a_flag(field: str) -> None:
    command = typer.main.get_command(app).commands["apply"]  # type: ignore[attr-defined]
    flags = {n for param in command.params for n in (*param.opts, *param.secondary_opts)}
    assert field in ApplyConfig.model_fields
    assert flag(field) in flags, f"mmpipe apply has no {flag(field)}"


def test_a_bad_apply_value_gets_the_same_message_from_every_source(tmp_path: Any) -> None:
    with pytest.raises(ConfigError) as from_python:
        mmpipe.apply("r.zarr", "d.zarr", str(tmp_path / "o.zarr"), embed=["a"], space="umap")
    inputs = {"flow": "apply", "results": "r.zarr", "dataset": "d.zarr", "out": "o.zarr"}
    with pytest.raises(ConfigError) as from_yaml:
        load_config({**inputs, "embed": ["a"], "space": "umap"})
    result = CliRunner().invoke(
        app, ["apply", "r.zarr", "d.zarr", "--out", "o.zarr", "--embed", "a", "--space", "umap"]
    )
    assert result.exit_code == 2, result.output
    expected = _problem(str(from_python.value))
    assert expected.startswith("space: Input should be 'pca', 'cca' or 'multiview'")
    assert _problem(str(from_yaml.value)) == expected
    assert _problem(result.stderr.strip().removeprefix("error: ")) == expected
