"""A flow run against object storage with credentials: the credentials reach the store and
nothing else — not the Prefect database, its API (parameters, logs, artifacts), the console,
or the results.

Real services on 127.0.0.1 only: a moto S3 server in this process, a `prefect server`, and
`mmpipe run` as a subprocess with the credentials in its environment.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from servers import BIN, PrefectAPI

from mmpipe.io.synth import SynthSpec, synthesize

s3fs = pytest.importorskip("s3fs")
from s3server import moto_s3  # noqa: E402 (after the skip: needs s3fs, moto)

pytestmark = pytest.mark.slow

KEY = "AKIAMMPIPETESTKEY7Q"
SECRET = "mmpipe-fake-secret-4f1d9c2b7e"  # distinctive: found only if it leaks


@pytest.fixture
def s3_endpoint(tmp_path: Path) -> Iterator[str]:
    # No credentials in the environment: only the run's storage options can authenticate.
    with moto_s3(tmp_path, key=KEY, secret=SECRET, credentials_in_environment=False) as url:
        yield url


def test_credentials_never_leave_the_store(
    prefect_api: PrefectAPI, s3_endpoint: str, tmp_path: Path
) -> None:
    direct = {"endpoint_url": s3_endpoint, "key": KEY, "secret": SECRET}
    synthesize(
        "s3://bucket/data.zarr",
        SynthSpec(rows=600, modalities={"a": 6, "b": 4}, classes=3, chunk_rows=200),
        storage_options=direct,
    )
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "dataset": "s3://bucket/data.zarr",
                "results": "s3://bucket/results.zarr",
                "storage_options": {
                    "endpoint_url": s3_endpoint,
                    "key": "${MMPIPE_TEST_KEY}",
                    "secret": "${MMPIPE_TEST_SECRET}",
                },
                "components": 3,
                "folds": 3,
                "classify": ["a+b"],
                "cluster": {"in_process": True},
            }
        )
    )
    env = {**prefect_api.env, "MMPIPE_TEST_KEY": KEY, "MMPIPE_TEST_SECRET": SECRET}
    env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [str(BIN / "mmpipe"), "run", str(config), "--json"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    console = done.stdout + done.stderr
    assert "run " in console or '"run_id"' in console
    assert SECRET not in console
    assert KEY not in console

    # The Prefect API: the parameters hold only the references; logs and artifacts exist.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings({PREFECT_API_URL: prefect_api.url}),
        get_client(sync_client=True) as client,
    ):
        # The server is shared with other tests: this test's run is the one on S3.
        (run,) = [
            r for r in client.read_flow_runs() if "s3://bucket/data.zarr" in repr(r.parameters)
        ]
        parameters = repr(run.parameters)
        assert "${MMPIPE_TEST_SECRET}" in parameters
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
        artifacts = client.read_artifacts()
    assert logs
    assert artifacts
    for text in (parameters, *(log.message for log in logs), *(repr(a) for a in artifacts)):
        assert SECRET not in text
        assert KEY not in text

    # The Prefect database, byte for byte (and every other file of its home).
    home = Path(prefect_api.env["PREFECT_HOME"])
    searched = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name.startswith("prefect.db") for p in searched)
    for path in searched:
        data = path.read_bytes()
        assert SECRET.encode() not in data, path
        assert KEY.encode() not in data, path

    # The results store: every object of it.
    fs = s3fs.S3FileSystem(anon=False, endpoint_url=s3_endpoint, key=KEY, secret=SECRET)
    objects = fs.find("bucket/results.zarr")
    assert any(o.endswith("zarr.json") for o in objects)
    assert len(objects) > 20
    for obj in objects:
        data = fs.cat_file(obj)
        assert SECRET.encode() not in data, obj
        assert KEY.encode() not in data, obj
