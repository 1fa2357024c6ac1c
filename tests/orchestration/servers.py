"""Real servers for the orchestration tests, on 127.0.0.1, started and stopped by the caller.

- :func:`prefect_api_server`: a standalone ``prefect server start`` with its own PREFECT_HOME,
  for subprocesses (``mmpipe run``, ``prefect deploy``, ``prefect worker``);
- :func:`dask_processes`: ``dask scheduler`` and two ``dask worker`` processes.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    check: Callable[[], bool], what: str, timeout: float, proc: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready")
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class PrefectAPI:
    url: str
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 300, cwd: Path = REPO) -> str:
        """Run a command against this server; fail the test with its output if it fails."""
        done = subprocess.run(
            args, env=self.env, cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            pytest.fail(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done.stdout


@contextmanager
def prefect_api_server(home: Path) -> Iterator[PrefectAPI]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_UI_ENABLED": "false",
    }
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        wait_for(healthy, "prefect server", 180, server)
        yield PrefectAPI(url=url, env=env)
    finally:
        stop(server)
        log.close()


@dataclass(frozen=True)
class DaskCluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]

    def running(self) -> bool:
        return all(p.poll() is None for p in [self.scheduler, *self.workers])


@contextmanager
def dask_processes(
    tmp_path: Path, *, nanny: bool = True, workers: int = 2
) -> Iterator[DaskCluster]:
    """``dask scheduler`` and ``dask worker`` processes on 127.0.0.1 (1 thread each)."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler_file = tmp_path / "scheduler.json"
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    dask = shutil.which("dask", path=str(BIN)) or str(BIN / "dask")
    log = (tmp_path / "dask.log").open("w")
    scheduler = subprocess.Popen(
        [
            dask,
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        wait_for(scheduler_file.exists, "dask scheduler", 60, scheduler)
        for i in range(workers):
            procs.append(
                subprocess.Popen(
                    [
                        dask,
                        "worker",
                        address,
                        "--nthreads",
                        "1",
                        "--memory-limit",
                        "2GiB",
                        "--no-dashboard",
                        "--host",
                        "127.0.0.1",
                        "--name",
                        f"w{i}",
                        "--nanny" if nanny else "--no-nanny",
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        from distributed import Client

        with Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=120)
        yield DaskCluster(address, scheduler, procs)
    finally:
        for proc in [*procs, scheduler]:
            if proc.poll() is None:
                proc.send_signal(18)  # SIGCONT: a stopped process cannot exit
            stop(proc)
        log.close()
