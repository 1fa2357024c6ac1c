"""`mmpipe run` against a real Prefect server: a failure is one `error:` line on the console
and a Failed flow run with the same message; SIGTERM marks the run failed."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from servers import BIN, PrefectAPI

from mmpipe.io.runs import list_runs

pytestmark = pytest.mark.slow

# `mmpipe run`, whose statistics pass announces itself and waits to be signalled.
PAUSED_RUN = """
import sys, time
from mmpipe import cli, engine
def paused(prepared, **kwargs):
    print("in-pass", flush=True)
    time.sleep(300)
engine.statistics_pass = paused
sys.argv = ["mmpipe", "run", *sys.argv[1:]]
cli.main()
"""


def write_config(tmp_path: Path, **settings: object) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"components": 3, "folds": 3, **settings}))
    return path


def flow_runs(api: PrefectAPI) -> list[object]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api.url}), get_client(sync_client=True) as client:
        return list(client.read_flow_runs())


def test_failed_run_is_one_line_and_a_failed_flow(
    prefect_api: PrefectAPI, small_store: str, tmp_path: Path
) -> None:
    # Results inside the input: refused before any computation.
    config = write_config(tmp_path, dataset=small_store, results=f"{small_store}/runs.zarr")
    done = subprocess.run(
        [str(BIN / "mmpipe"), "run", str(config)],
        env=prefect_api.env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    message = errors[0].removeprefix("error: ")
    assert "lies inside the input dataset" in message
    failed = [r for r in flow_runs(prefect_api) if r.state and r.state.is_failed()]  # type: ignore[attr-defined]
    assert any(message in (r.state.message or "") for r in failed)  # type: ignore[attr-defined]


def test_sigterm_marks_the_flow_run_failed(
    prefect_api: PrefectAPI, small_store: str, tmp_path: Path
) -> None:
    out = tmp_path / "results.zarr"
    config = write_config(tmp_path, dataset=small_store, results=str(out))
    proc = subprocess.Popen(
        [sys.executable, "-c", PAUSED_RUN, str(config)],
        env=prefect_api.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:  # the flow's own output comes first; wait for the pass
        if line.strip() == "in-pass":
            break
    else:
        pytest.fail(f"the flow never reached its pass: {proc.communicate()}")
    assert [r["status"] for r in list_runs(out)] == ["running"]
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: The run was stopped by SIGTERM")
    (run,) = list_runs(out)
    assert run["status"] == "failed"
    assert "SIGTERM" in run["error"]
