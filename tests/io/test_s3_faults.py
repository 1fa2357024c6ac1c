"""Object storage that fails: transient faults are retried, permanent ones end clearly.

A moto S3 server on 127.0.0.1 holds the data; a fault-injecting proxy (tests/faultproxy.py)
in front of it answers chosen requests with 500/503, resets the connection, cuts a response
short or does not answer. mmpipe talks to the proxy only. Fake credentials; no other address
is ever contacted.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from faultproxy import FaultProxy
from typer.testing import CliRunner

import mmpipe
from mmpipe.cli import app
from mmpipe.errors import StorageError
from mmpipe.io.runs import list_runs, read_run
from mmpipe.io.storage import (
    DEADLINE_ENV,
    S3_ATTEMPTS,
    RemoteStore,
    make_store,
    s3_defaults,
)
from mmpipe.io.synth import SynthSpec, synthesize
from mmpipe.result import FitResult

s3fs = pytest.importorskip("s3fs")
from s3server import BUCKET, moto_s3  # noqa: E402 (after the skip: needs s3fs, moto)

SPEC = SynthSpec(rows=1200, modalities={"image": 12, "text": 6}, classes=3, chunk_rows=200)
FIT: dict[str, Any] = {"components": 4, "folds": 3}
READ_TIMEOUT = 2.0
"""The client's read timeout in these tests (seconds): a delayed answer costs this much."""
PERMANENT_BOUND = 40.0
"""Seconds a permanent failure may take with the default 5 attempts per request (measured:
well under 20 s; the backoff alone is at most 1 + 2 + 4 + 8 s per request)."""
CHUNK = r"/ds\.zarr/modalities/[a-z]+/c/\d+/\d+$"
LIST = r"[?&]list-type=2"


@dataclass
class S3:
    proxy: FaultProxy
    direct: dict[str, Any]
    """Storage options straight to moto (setting up, checking results)."""
    options: dict[str, Any]
    """Storage options through the proxy (what mmpipe under test uses)."""
    dataset: str

    def url(self, key: str) -> str:
        return f"s3://{BUCKET}/{key}"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    """moto on 127.0.0.1, the fault proxy in front of it, one dataset written directly."""
    with moto_s3(tmp_path_factory.mktemp("aws"), keep=(DEADLINE_ENV,)) as endpoint:
        direct = {"endpoint_url": endpoint, "anon": False}
        # moto's in-process servers share one backend: another module may have written it.
        dataset = synthesize(f"s3://{BUCKET}/ds.zarr", SPEC, storage_options=direct, overwrite=True)
        with FaultProxy(int(endpoint.rsplit(":", 1)[1])) as proxy:
            options = {
                "endpoint_url": proxy.endpoint,
                "anon": False,
                # The user's own setting wins over mmpipe's default (15 s); mmpipe's
                # retry defaults stay.
                "config_kwargs": {"read_timeout": READ_TIMEOUT},
            }
            yield S3(proxy=proxy, direct=direct, options=options, dataset=dataset)


@pytest.fixture(autouse=True)
def _fresh(request: pytest.FixtureRequest) -> Iterator[None]:
    """No rule, no counter, no cached filesystem (or listing) carried between tests."""
    s3fs.S3FileSystem.clear_instance_cache()
    if "s3" in request.fixturenames:
        request.getfixturevalue("s3").proxy.clear()
    yield
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def baseline(s3: S3) -> FitResult:
    """The fault-free fit through the proxy: the answer every faulty run must give."""
    s3.proxy.clear()
    result = mmpipe.fit(
        s3.dataset,
        **FIT,
        out=s3.url("baseline.zarr"),
        storage_options=s3.options,
        results_storage_options=s3.options,
    )
    assert s3.proxy.injected["total"] == 0
    s3fs.S3FileSystem.clear_instance_cache()
    return result


def _closed_port() -> socket.socket:
    """A socket bound on 127.0.0.1 that does not listen: connecting to it is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def _assert_same_results(got: FitResult, want: FitResult, results: str, s3: S3) -> None:
    """Every CV figure and every stored map equal the fault-free run's, bit for bit."""
    for g, w in zip(got.summary()["pairs"], want.summary()["pairs"], strict=True):
        assert (g["source"], g["target"], g["alpha"]) == (w["source"], w["target"], w["alpha"])
        assert g["cv"]["r2_folds"] == w["cv"]["r2_folds"]
        assert g["r2_by_alpha"] == w["r2_by_alpha"]
    s3fs.S3FileSystem.clear_instance_cache()
    assert [r["status"] for r in list_runs(results, storage_options=s3.direct)] == ["complete"]
    run = read_run(results, storage_options=s3.direct)
    for p in want.pairs:
        key = f"pairs/{p.source}--{p.target}"
        stored_coef = np.asarray(run[f"{key}/coef"][...])  # type: ignore[index]
        stored_r2 = np.asarray(run[f"{key}/r2"][...])  # type: ignore[index]
        assert np.array_equal(stored_coef, p.models.ridge.coef_)
        assert np.array_equal(stored_r2, p.r2)
        assert np.array_equal(got.pair(p.source, p.target).r2, p.r2)


def _assert_retried(proxy: FaultProxy) -> None:
    """Every request that met a fault was sent again and then forwarded."""
    log = list(proxy.log)
    for i, seen in enumerate(log):
        if seen.outcome != "forwarded":
            assert any(
                later.outcome == "forwarded"
                and (later.method, later.path) == (seen.method, seen.path)
                for later in log[i + 1 :]
            ), f"{seen.method} {seen.path} ({seen.outcome}) was never retried"


TRANSIENT: dict[str, tuple[dict[str, Any], int]] = {
    # name: (FaultProxy.fail arguments, how many faults)
    "500-first-requests": (dict(status=500), 4),
    "503-slowdown-chunk-reads": (dict(status=503, method="GET", path=CHUNK), 3),
    "500-head": (dict(status=500, method="HEAD"), 3),
    "reset-listing": (dict(action="reset", method="GET", path=LIST), 2),
    # One chunk reset three times in a row: more than aiohttp's own single retry of a
    # request on a reused connection.
    "reset-one-chunk": (dict(action="reset", method="GET", path=r"/image/c/1/0$"), 3),
    "cut-chunk-reads": (dict(action="cut", method="GET", path=CHUNK), 2),
    "reset-results-writes": (dict(action="reset", method="PUT", path=r"/results-"), 3),
    "503-results-writes": (dict(status=503, method="PUT", path=r"/results-"), 3),
    "timeout-first-requests": (dict(action="delay", delay=30.0), 2),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(TRANSIENT))
def test_transient_faults_are_retried_and_results_unchanged(
    s3: S3, baseline: FitResult, case: str
) -> None:
    rule, count = TRANSIENT[case]
    s3.proxy.fail(count, **rule)
    results = s3.url(f"results-{case}.zarr")
    got = mmpipe.fit(
        s3.dataset,
        **FIT,
        out=results,
        storage_options=s3.options,
        results_storage_options=s3.options,
    )
    action = str(rule.get("action", "status"))
    assert s3.proxy.injected[action] == count, s3.proxy.log
    _assert_retried(s3.proxy)
    _assert_same_results(got, baseline, results, s3)


@pytest.mark.slow
def test_a_failing_chunk_read_is_an_error_never_the_fill_value(s3: S3) -> None:
    """A chunk that cannot be read must not come back as zeros/NaN (Zarr's "absent" chunk)."""
    ds = mmpipe.open_dataset(s3.dataset, storage_options=s3.options)
    s3.proxy.fail(None, status=500, method="GET", path=r"/ds\.zarr/modalities/image/c/2/0$")
    start = time.monotonic()
    with pytest.raises(StorageError) as info:
        ds.arrays.read("image", 0, SPEC.rows)
    took = time.monotonic() - start
    message = str(info.value)
    assert "s3://bucket/ds.zarr/modalities/image/c/2/0" in message
    assert s3.options["endpoint_url"] in message
    assert f"after retrying with backoff ({S3_ATTEMPTS} attempts per request)" in message
    assert "\n" not in message
    assert s3.proxy.injected["status"] == S3_ATTEMPTS  # botocore's attempts, then given up
    assert took < PERMANENT_BOUND
    # Chunks that do answer are read as before.
    assert np.isfinite(ds.arrays.read("image", 0, 400)).any()


@pytest.mark.slow
def test_unreachable_endpoint_is_one_storage_error(s3: S3) -> None:
    closed = _closed_port()
    try:
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
        secret = "fake-secret-do-not-print-7f3a"
        options = {"endpoint_url": endpoint, "key": "AKIAFAKEKEY0000", "secret": secret}
        start = time.monotonic()
        with pytest.raises(StorageError) as info:
            mmpipe.open_dataset(s3.url("ds.zarr"), storage_options=options)
        took = time.monotonic() - start
    finally:
        closed.close()
    message = str(info.value)
    # zarr asks for zarr.json and the v2 metadata keys at once: any of them may fail first.
    head = f"cannot reach the object store at {endpoint} for s3://bucket/ds.zarr "
    tries = rf"after retrying with backoff \({S3_ATTEMPTS} attempts per request\)"
    assert re.match(head + tries + r" \(read [.a-z]+: ", message), message
    assert message.endswith("; check endpoint_url and the network, then run again")
    assert secret not in message
    assert "AKIAFAKEKEY0000" not in message
    assert info.value.exit_code == 1
    assert took < PERMANENT_BOUND, took


@pytest.mark.slow
def test_cli_unreachable_endpoint_is_one_error_line(s3: S3) -> None:
    closed = _closed_port()
    try:
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
        shown = CliRunner().invoke(
            app, ["inspect", s3.url("ds.zarr"), "-S", f"endpoint_url={endpoint}"]
        )
    finally:
        closed.close()
    assert shown.exit_code == 1, shown.output
    lines = shown.stderr.strip().splitlines()
    assert len(lines) == 1, shown.stderr
    assert lines[0].startswith(f"error: cannot reach the object store at {endpoint} for s3://"), (
        lines[0]
    )
    assert "Traceback" not in shown.output


PERMANENT: dict[str, dict[str, Any]] = {
    # name: FaultProxy.fail arguments for every matching request, from the start of the fit
    "chunk-reads-500": dict(status=500, method="GET", path=CHUNK),
    # The listing that finds absent chunks: failing, it must not report every chunk absent.
    "listing-500": dict(status=500, method="GET", path=LIST),
    "results-writes-500": dict(status=500, method="PUT", path=r"/results-"),
    "everything-resets": dict(action="reset"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(PERMANENT))
def test_permanent_failure_ends_clearly_and_no_run_is_complete(s3: S3, case: str) -> None:
    results = s3.url(f"results-permanent-{case}.zarr")
    s3.proxy.fail(None, **PERMANENT[case])
    start = time.monotonic()
    with pytest.raises(StorageError) as info:
        mmpipe.fit(
            s3.dataset,
            **FIT,
            out=results,
            storage_options=s3.options,
            results_storage_options=s3.options,
        )
    took = time.monotonic() - start
    # The requests running beside the failed one were stopped with it: none goes on retrying
    # behind the error.
    sent = s3.proxy.requests["total"]
    time.sleep(1.5)
    assert s3.proxy.requests["total"] == sent
    message = str(info.value)
    assert re.search(r"s3://bucket/(ds|results-permanent-[a-z0-9-]+)\.zarr", message), message
    assert s3.options["endpoint_url"] in message
    assert took < PERMANENT_BOUND, took
    s3.proxy.clear()
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        runs = list_runs(results, storage_options=s3.direct)
    except FileNotFoundError:  # nothing was ever written there
        runs = []
    assert all(r["status"] != "complete" for r in runs), runs


@pytest.mark.slow
def test_a_server_that_stops_answering_hits_the_deadline(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a deadline, s3fs's retries around botocore's make this 20+ minutes."""
    monkeypatch.setenv(DEADLINE_ENV, "5")
    ds = mmpipe.open_dataset(s3.dataset, storage_options=s3.options)
    s3.proxy.fail(None, action="delay", delay=60.0, method="GET", path=CHUNK)
    start = time.monotonic()
    with pytest.raises(StorageError, match=r"no answer within 5 s, retries included"):
        ds.arrays.read("text", 0, SPEC.rows)
    took = time.monotonic() - start
    assert 5 <= took < 10, took
    assert s3.proxy.injected["delay"] >= 2  # botocore retried within the deadline


def test_s3_defaults_fill_in_only_what_the_user_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_RETRY_MODE", raising=False)
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    assert s3_defaults(None) == {
        "config_kwargs": {
            "retries": {"mode": "standard", "total_max_attempts": 5},
            "connect_timeout": 5.0,
            "read_timeout": 15.0,
        }
    }
    mine = {"anon": True, "config_kwargs": {"retries": {"max_attempts": 9}, "read_timeout": 60}}
    assert s3_defaults(mine) == {
        "anon": True,
        "config_kwargs": {
            "retries": {"max_attempts": 9},
            "read_timeout": 60,
            "connect_timeout": 5.0,
        },
    }
    assert mine == {
        "anon": True,
        "config_kwargs": {"retries": {"max_attempts": 9}, "read_timeout": 60},
    }
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")  # botocore reads it when mmpipe stays silent
    assert "retries" not in s3_defaults({})["config_kwargs"]


def test_remote_urls_open_through_remote_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEADLINE_ENV, "7.5")
    store = make_store("memory://mmpipe-test-remote.zarr", mode="w")
    assert isinstance(store, RemoteStore)
    assert (str(store), store.deadline) == ("memory://mmpipe-test-remote.zarr", 7.5)
    assert store.with_read_only(True).deadline == 7.5
    monkeypatch.setenv(DEADLINE_ENV, "soon")
    with pytest.raises(ValueError, match=DEADLINE_ENV):
        make_store("memory://mmpipe-test-remote.zarr")
