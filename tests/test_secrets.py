"""Credentials never sit in a run config: references are expanded where a store is opened."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mmpipe.cli import app
from mmpipe.config import load_config
from mmpipe.errors import ConfigError
from mmpipe.io.secrets import literal_secrets, resolve_references


@pytest.mark.parametrize(
    "options",
    [
        {"key": "AKIAEXAMPLE"},
        {"secret": "hunter2"},
        {"token": "t"},
        {"client_kwargs": {"aws_secret_access_key": "s"}},
        {"account_key": "k"},
        {"sas_token": "?sig=1"},
        {"password": "p"},
    ],
)
def test_literal_credentials_refused_in_the_run_config(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=r"storage_options\.\S+ holds a literal credential"):
        load_config({"dataset": "d.zarr", "storage_options": options})


def test_references_and_plain_options_accepted() -> None:
    options = {
        "endpoint_url": "http://127.0.0.1:9000",
        "anon": False,
        "key": "${AWS_KEY_FOR_RUN}",
        "client_kwargs": {"region_name": "us-east-1", "aws_session_token": "${TOKEN}"},
    }
    assert load_config({"dataset": "d.zarr", "storage_options": options}).storage_options == options
    assert literal_secrets(options) == []


def test_references_expanded_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMPIPE_TEST_KEY", "the-key")
    monkeypatch.delenv("MMPIPE_TEST_ABSENT", raising=False)
    got = resolve_references(
        {"key": "${MMPIPE_TEST_KEY}", "anon": False, "nested": {"token": "${MMPIPE_TEST_KEY}"}}
    )
    assert got == {"key": "the-key", "anon": False, "nested": {"token": "the-key"}}
    with pytest.raises(ConfigError, match=r"\$\{MMPIPE_TEST_ABSENT\}, which is not set"):
        resolve_references({"secret": "${MMPIPE_TEST_ABSENT}"})


def test_run_refuses_a_literal_secret_in_one_line(tmp_path: object) -> None:
    result = CliRunner().invoke(
        app,
        ["run", "deploy/mfeat.yaml", "--set", "storage_options.secret=hunter2"],
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: Invalid run config")
    assert "storage_options.secret holds a literal credential" in lines[0]
    assert "hunter2" not in result.output
