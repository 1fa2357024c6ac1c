"""The runs of a results store: their status, listing, cleaning and reading back.

A run's status is what its writer stored (``running``, ``complete``, ``failed``, see
:class:`mmpipe.io.results.RunWriter`) corrected by what is known of it now: a ``running`` run
whose owner is gone (same host, process no longer there) or whose heartbeat is older than
:data:`STALE_AFTER_SECONDS` is reported ``abandoned``.

There is no shared index document: the list of runs is the list of groups under ``runs/``,
so any number of runs can be written into one store at once without losing one.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import zarr

from mmpipe.errors import ResultsError, StoreNotFoundError
from mmpipe.io.locations import DATASET_MEMBER, is_results_attrs
from mmpipe.io.storage import StorageOptions, open_group

RUNS = "runs"
STATUS_RUNNING, STATUS_COMPLETE, STATUS_FAILED = "running", "complete", "failed"
STATUS_ABANDONED = "abandoned"
"""Reported, never stored: a ``running`` run whose owner is gone or whose heartbeat is stale."""
HEARTBEAT_SECONDS = 30.0
"""How often a live run refreshes its heartbeat."""
STALE_AFTER_SECONDS = 300.0
"""A running run on another host whose heartbeat is older than this is abandoned (ten
missed heartbeats: generous for clocks that disagree by a minute or two)."""


def owner_identity() -> dict[str, Any]:
    """Who runs this process: host, pid, and (on Linux) boot id and process start time, so
    that a reused pid or a rebooted machine is not taken for the owner."""
    owner: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
    boot, start = _boot_id(), _process_start(os.getpid())
    if boot and start is not None:
        owner |= {"boot_id": boot, "process_start": start}
    return owner


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def _process_start(pid: int) -> int | None:
    """Clock ticks after boot at which ``pid`` started (field 22 of /proc/pid/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def owner_alive(owner: Mapping[str, Any]) -> bool | None:
    """True/False when this machine can tell whether the run's owner process still runs;
    None when it cannot (another host, no owner recorded)."""
    if owner.get("host") != socket.gethostname() or "pid" not in owner:
        return None
    pid = int(owner["pid"])
    if "boot_id" in owner and _boot_id() is not None:
        if owner["boot_id"] != _boot_id():
            return False
        return _process_start(pid) == owner.get("process_start")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def effective_status(attrs: Mapping[str, Any], *, stale_after: float = STALE_AFTER_SECONDS) -> str:
    """The stored status, except that a ``running`` run nobody runs is ``abandoned``."""
    status = str(attrs.get("status", "unknown"))
    if status != STATUS_RUNNING:
        return status
    alive = owner_alive(attrs.get("owner") or {})
    if alive is not None:
        return STATUS_RUNNING if alive else STATUS_ABANDONED
    beat = attrs.get("heartbeat") or attrs.get("started")
    try:
        age = (datetime.now(UTC) - datetime.fromisoformat(str(beat))).total_seconds()
    except ValueError:
        return STATUS_ABANDONED
    return STATUS_RUNNING if age <= stale_after else STATUS_ABANDONED


def _runs_group(
    url: str | os.PathLike[str], storage_options: StorageOptions | None, mode: str = "r"
) -> tuple[zarr.Group, zarr.Group | None]:
    root = open_group(url, mode="r" if mode == "r" else "a", storage_options=storage_options)
    attrs = dict(root.attrs)
    members = {name: node for name, node in root.members()}
    if DATASET_MEMBER in members and not is_results_attrs(attrs):
        raise ResultsError(
            f"{os.fspath(url)!r} is a dataset, not a results store: give the path that "
            "`mmpipe fit --out` wrote to."
        )
    runs = members.get(RUNS)
    return root, runs if isinstance(runs, zarr.Group) else None


def duration(attrs: Mapping[str, Any]) -> float | None:
    """Seconds from a run's start to its end (None while it runs, or when unknown)."""
    try:
        start = datetime.fromisoformat(str(attrs["started"]))
        end = datetime.fromisoformat(str(attrs["finished"]))
    except (KeyError, TypeError, ValueError):
        return None
    return (end - start).total_seconds()


def headline(summary: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The one figure that sums a run up: the mean CV R² over its pairs, or, with no pairs,
    the CV accuracy of its first task that has one (None for a run without a summary)."""
    if not summary:
        return None
    pairs = summary.get("pairs") or []
    r2 = [p["cv"]["r2"] for p in pairs if isinstance(p.get("cv"), Mapping) and "r2" in p["cv"]]
    if r2:
        return {"metric": "mean CV R²", "value": sum(r2) / len(r2), "over": f"{len(r2)} pairs"}
    for name, items in summary.items():
        if not isinstance(items, list):
            continue
        for item in items:
            cv = item.get("cv") if isinstance(item, Mapping) else None
            if isinstance(cv, Mapping) and "accuracy" in cv:
                what = "+".join(item["features"]) if "features" in item else (
                    f"{item.get('source')} → {item.get('target')}"
                )  # fmt: skip
                return {"metric": f"{name} accuracy", "value": cv["accuracy"], "over": what}
    return None


def _mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def list_runs(
    url: str | os.PathLike[str],
    *,
    storage_options: StorageOptions | None = None,
    stale_after: float = STALE_AFTER_SECONDS,
) -> list[dict[str, Any]]:
    """Every run in a results store, sorted by id (= by start time): ``run_id``, ``status``
    (complete, running, failed, or abandoned when nobody runs it any more), ``started``,
    ``finished``, ``heartbeat``, ``owner``, ``dataset``, ``error``, ``duration`` (seconds, None
    until it ends) and ``headline`` (:func:`headline`: metric, value, over; None until it
    completes)."""
    _, runs = _runs_group(url, storage_options)
    if runs is None:
        return []
    out = []
    for name, node in sorted(runs.members()):
        attrs = dict(node.attrs)
        out.append(
            {
                "run_id": name,
                "status": effective_status(attrs, stale_after=stale_after),
                "stored_status": attrs.get("status", "unknown"),
                "started": attrs.get("started"),
                "finished": attrs.get("finished"),
                "heartbeat": attrs.get("heartbeat"),
                "owner": attrs.get("owner"),
                "dataset": attrs.get("dataset"),
                "error": attrs.get("error"),
                "duration": duration(attrs),
                "headline": headline(_mapping(attrs.get("summary"))),
            }
        )
    return out


def clean_runs(
    url: str | os.PathLike[str],
    *,
    storage_options: StorageOptions | None = None,
    stale_after: float = STALE_AFTER_SECONDS,
) -> list[str]:
    """Delete the failed and abandoned runs of a store; returns their ids. Complete runs and
    runs still alive are kept."""
    removed = []
    for run in list_runs(url, storage_options=storage_options, stale_after=stale_after):
        if run["status"] in (STATUS_FAILED, STATUS_ABANDONED):
            removed.append(run["run_id"])
    if removed:
        root = open_group(url, mode="a", storage_options=storage_options)
        runs = root[RUNS]
        assert isinstance(runs, zarr.Group)
        for run_id in removed:
            del runs[run_id]
    return removed


def read_run(
    url: str | os.PathLike[str],
    run_id: str | None = None,
    *,
    storage_options: StorageOptions | None = None,
    allow_incomplete: bool = False,
) -> zarr.Group:
    """The group of a run (the latest complete one by default). Refuses incomplete runs."""
    text = os.fspath(url)
    _, runs = _runs_group(url, storage_options)
    if run_id is None:
        complete = [
            (str(dict(node.attrs).get("finished") or ""), name)
            for name, node in (runs.members() if runs is not None else [])
            if dict(node.attrs).get("status") == STATUS_COMPLETE
        ]
        if not complete:
            raise StoreNotFoundError(f"No complete run in results store {text!r}.")
        run_id = max(complete)[1]
    if runs is None or run_id not in runs:
        raise StoreNotFoundError(f"No run {run_id!r} in results store {text!r}.")
    run = runs[run_id]
    assert isinstance(run, zarr.Group)
    status = effective_status(dict(run.attrs))
    if status != STATUS_COMPLETE and not allow_incomplete:
        raise ResultsError(f"Run {run_id!r} in {text!r} is {status!r}, not complete.")
    return run
