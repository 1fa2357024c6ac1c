"""The results store: one Zarr group per run, readable with plain zarr or xarray.

    results.zarr/                    attrs: {"mmpipe_results": {"format": 1}} (the mark)
      runs/<run_id>/                 attrs: status, owner, heartbeat, started, finished,
                                            config, versions, fingerprint, plan, timings,
                                            dataset, summary, error (when failed)
        folds                        (row,) int8 fold group of every row
        modalities/<name>/           mean, scale (feature); components (component, feature);
                                     explained_variance, explained_variance_ratio (component)
        pairs/<source>--<target>/    alphas (alpha); coef (alpha, source_component,
                                     target_component); intercept (alpha, target_component);
                                     r2, mse, r2_weighted (split, alpha); procrustes
                                     (source_component, target_component); procrustes_r2 (split);
                                     cca_correlations, cca_source_weights, ...;
                                     source_*/target_* scaler and PCA of the pair's rows
        classify/<a+b>/              alphas (alpha); classes (class); confusion (split, alpha,
                                     true_class, predicted_class); coef (alpha, feature_component,
                                     class); intercept (alpha, class) of the final classifier
        transfer/<source>--<target>/ alphas; confusion, target_confusion (split, alpha,
                                     true_class, predicted_class)
        retrieval/<source>--<target>/split_<s>/  rows, forward_rank, backward_rank (query)
        random_features/<s>--<t>/    alphas; weights (source_component, feature), offsets
                                     (feature); r2, mse (split, alpha); coef (alpha, feature,
                                     target_component), intercept: the final map
        sketches/<name>/             offset, scale (feature); basis (feature, sketch_column): a
                                     wide modality's reduction u = ((x − offset) / scale) @ basis;
                                     its modalities/, pairs/ and classify/ models act on u
        logistic/<a+b>/              confusion (split, true_class, predicted_class); coef
                                     (feature_component, class), intercept (class): final model

The life of a run (:class:`RunWriter`): before the first pass its group is created under a
fresh id with status ``running`` and its owner (host, pid, start) — which proves the location
writable before any work. While the run lives, a thread refreshes its ``heartbeat``. Its very
last write sets ``complete``; an error or a SIGTERM/SIGINT sets ``failed`` with the reason.
A run killed with SIGKILL, lost with its machine or stopped by a full disk before it could say
so is reported ``abandoned`` (:mod:`mmpipe.io.runs` lists, cleans and reads runs).
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
import zarr.abc.store
import zarr.storage
from zarr.buffer import default_buffer_prototype

from mmpipe.errors import (
    DiskFullError,
    MmpipeError,
    ResultsError,
    StorageError,
    StoreNotFoundError,
)
from mmpipe.io.locations import (
    DATASET_MEMBER,
    RESULTS_FORMAT,
    RESULTS_MARK,
    is_results_attrs,
)
from mmpipe.io.runs import (
    HEARTBEAT_SECONDS,
    RUNS,
    STATUS_COMPLETE,
    STATUS_FAILED,
    STATUS_RUNNING,
    owner_identity,
)
from mmpipe.io.storage import StorageOptions, is_remote, make_store, open_group
from mmpipe.io.zarr_private import run_sync
from mmpipe.jsonable import to_json

if TYPE_CHECKING:
    from mmpipe.result import FitResult

_VERSIONED = ("mmpipe", "numpy", "scipy", "dask", "distributed", "zarr", "scikit-learn", "prefect")


def versions() -> dict[str, str]:
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def new_run_id() -> str:
    """Sortable by time, unique across concurrent runs."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_writable(url: str | os.PathLike[str], *, storage_options: StorageOptions | None) -> None:
    """Fail early (before anything is computed or written) when ``url`` cannot hold results:
    a file, a missing parent folder, a folder of other things, a dataset, a Zarr group that is
    not a results store. Writing is proven by :meth:`RunWriter.begin`."""
    text = os.fspath(url)
    if not is_remote(text):
        path = text.removeprefix("file://")
        if os.path.exists(path) and not os.path.isdir(path):
            raise ResultsError(f"Results location {text!r} is a file; give a directory path.")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise ResultsError(
                f"Results location {text!r}: the parent folder {parent!r} does not exist."
            )
        if not os.path.isdir(path) or not os.listdir(path):
            return
        if not os.path.exists(os.path.join(path, "zarr.json")):
            raise ResultsError(
                f"Results location {text!r} is a non-empty folder that is not a Zarr group; "
                "choose a new path or an existing results store."
            )
    try:
        root = open_group(text, mode="r", storage_options=storage_options)
    except StoreNotFoundError:
        return  # nothing there yet: the run creates the store
    _check_results_group(root, text)


def _check_results_group(root: zarr.Group, text: str) -> None:
    attrs = dict(root.attrs)
    if is_results_attrs(attrs):
        return
    members = {name for name, _ in root.members()}
    if DATASET_MEMBER in members:
        raise ResultsError(
            f"Results location {text!r} is a dataset (it has {DATASET_MEMBER}/): mmpipe never "
            "writes into a dataset; give a separate results path."
        )
    if members - {RUNS}:
        raise ResultsError(
            f"Results location {text!r} is a Zarr group but not an mmpipe results store "
            f"(it holds {', '.join(sorted(members))}); choose a new path."
        )


def _storage_failure(exc: BaseException, text: str) -> MmpipeError:
    """An OSError met while writing results, as the error a person can act on."""
    if isinstance(exc, StoreNotFoundError | FileNotFoundError):
        return ResultsError(
            f"Results location {text!r} cannot be created there: choose a folder you can write to."
        )
    if isinstance(exc, MmpipeError):
        return exc
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return DiskFullError(
            f"No space left on the device holding results {text!r}: free space or choose "
            "another location; earlier runs are untouched."
        )
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ResultsError(
            f"Results location {text!r} is not writable ({exc.strerror}): choose a location "
            "you can write to."
        )
    return StorageError(f"Writing results to {text!r} failed: {type(exc).__name__}: {exc}")


@dataclass(eq=False)
class RunWriter:
    """One run's group in a results store, from ``running`` to ``complete`` or ``failed``.

    Use :meth:`begin` (or :func:`run_writer`), then :meth:`complete` with the result, or
    :meth:`fail`; :meth:`close` stops the heartbeat.
    """

    url: str
    run_id: str
    group: zarr.Group
    heartbeat_seconds: float = HEARTBEAT_SECONDS
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @classmethod
    def begin(
        cls,
        url: str | os.PathLike[str],
        *,
        dataset: str,
        config: Mapping[str, Any] | None = None,
        storage_options: StorageOptions | None = None,
        run_id: str | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> RunWriter:
        """Create the run's group with status ``running`` (and the store, if new)."""
        text = os.fspath(url)
        check_writable(text, storage_options=storage_options)
        run_id = run_id or new_run_id()
        try:
            root = open_group(text, mode="a", storage_options=storage_options)
            if not is_results_attrs(dict(root.attrs)):
                _check_results_group(root, text)
                root.attrs[RESULTS_MARK] = {"format": RESULTS_FORMAT}
            runs = root.require_group(RUNS)
            now = _now()
            attrs = _json(
                {
                    "status": STATUS_RUNNING,
                    "run_id": run_id,
                    "dataset": dataset,
                    "started": now,
                    "heartbeat": now,
                    "owner": owner_identity(),
                    "config": dict(config or {}),
                    "versions": versions(),
                }
            )
            if run_id in runs:  # a retried begin (same id) takes the group its first try made
                group = runs[run_id]
                assert isinstance(group, zarr.Group)
                group.attrs.update(attrs)
            else:  # the group and its status in one write: never a run without a status
                group = runs.create_group(run_id, attributes=attrs)
        except Exception as exc:
            raise _storage_failure(exc, text) from exc
        writer = cls(text, run_id, group, heartbeat_seconds)
        writer._start_heartbeat()
        return writer

    @property
    def location(self) -> str:
        return f"{self.url.rstrip('/')}/{RUNS}/{self.run_id}"

    def _start_heartbeat(self) -> None:
        if self.heartbeat_seconds <= 0:
            return

        def beat() -> None:
            while not self._stop.wait(self.heartbeat_seconds):
                try:
                    with self._lock:
                        if not self._stop.is_set():
                            self.group.attrs["heartbeat"] = _now()
                except Exception:  # a missed beat is what "abandoned" reports
                    pass

        self._thread = threading.Thread(target=beat, name=f"mmpipe-heartbeat-{self.run_id}")
        self._thread.daemon = True
        self._thread.start()

    def close(self) -> None:
        """Stop the heartbeat (idempotent)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def complete(self, result: FitResult) -> FitResult:
        """Write the run's arrays and summary, then — the last write — status ``complete``.
        Returns ``result`` with this run's id and location."""
        done = replace(result, run_id=self.run_id, results=self.location)
        try:
            # Build the run's arrays in memory, then upload every key concurrently: creating
            # ~60 nested arrays one by one costs ~20 requests each on object storage.
            staged = zarr.open_group(zarr.storage.MemoryStore(), mode="w", zarr_format=3)
            _write_body(staged, done)
            _upload(staged.store, self.group.store, f"{self.group.path}/")
            with self._lock:
                self._stop.set()
                self.group.attrs.update(
                    _json(
                        {
                            "summary": done.summary(),
                            "timings": done.timings,
                            "fingerprint": done.fingerprint,
                            "plan": done.plan.describe(),
                            "rows": done.n_rows,
                            "classes": None if done.classes is None else done.classes.tolist(),
                            "finished": _now(),
                        }
                    )
                )
                self.group.attrs["status"] = STATUS_COMPLETE
        except Exception as exc:
            raise _storage_failure(exc, self.url) from exc
        finally:
            self.close()
        return done

    def fail(self, exc: BaseException) -> None:
        """Mark the run ``failed`` with the reason. Never raises. On a full disk the run's own
        partial arrays are deleted first to make room for that mark; if even then it cannot
        be written, the run stays ``running`` until its owner is gone, then reads abandoned."""
        reason = str(exc) if isinstance(exc, MmpipeError) else f"{type(exc).__name__}: {exc}"
        marks = {"status": STATUS_FAILED, "error": reason, "finished": _now()}
        with self._lock:
            self._stop.set()
            try:
                self.group.attrs.update(marks)
            except Exception:
                try:
                    self._remove_body()
                    self.group.attrs.update(marks)
                except Exception:  # the original error is the one to report
                    pass
        self.close()

    def _remove_body(self) -> None:
        """Delete every key under the run but its own metadata (arrays half uploaded)."""
        store, prefix = self.group.store, f"{self.group.path}/"

        async def remove() -> None:
            keys = [k async for k in store.list_prefix(prefix) if k != prefix + "zarr.json"]
            for key in keys:
                await store.delete(key)

        run_sync(remove())


@contextmanager
def run_writer(
    url: str | os.PathLike[str] | None,
    *,
    dataset: str,
    config: Mapping[str, Any] | None = None,
    storage_options: StorageOptions | None = None,
) -> Iterator[RunWriter | None]:
    """Begin a run (nothing when ``url`` is None); mark it failed if the block raises,
    including on SIGINT/SIGTERM turned into :class:`~mmpipe.errors.RunInterrupted`."""
    if url is None:
        yield None
        return
    writer = RunWriter.begin(url, dataset=dataset, config=config, storage_options=storage_options)
    try:
        yield writer
    except BaseException as exc:
        writer.fail(exc)
        raise
    finally:
        writer.close()


def _json(value: Any) -> Any:
    return to_json(value)


def write_array(group: zarr.Group, name: str, data: np.ndarray, dims: list[str]) -> None:
    """Write ``data`` as one chunk, its dimensions named (as xarray reads them)."""
    data = np.asarray(data)
    group.create_array(
        name,
        data=data,
        chunks=data.shape if data.size else "auto",
        dimension_names=dims,
        overwrite=True,
    )


def _write_pca(group: zarr.Group, prefix: str, pca: Any, feature: str, component: str) -> None:
    write_array(group, f"{prefix}mean", pca.mean_, [feature])
    write_array(group, f"{prefix}scale", pca.scale_, [feature])
    write_array(group, f"{prefix}components", pca.components_, [component, feature])
    write_array(group, f"{prefix}explained_variance", pca.explained_variance_, [component])
    write_array(
        group, f"{prefix}explained_variance_ratio", pca.explained_variance_ratio_, [component]
    )
    # Read back by mmpipe.open_run (StandardScaler.var_); absent in runs written before it.
    write_array(group, f"{prefix}var", pca.var_, [feature])


def write_pca(group: zarr.Group, pca: Any) -> None:
    """A scaler + PCA in a group of its own (mean, scale, var, components, ...; attrs rows)."""
    group.attrs.update(_json({"rows": pca.n_samples_, "scaled": bool(pca.scale)}))
    _write_pca(group, "", pca, "feature", "component")


def pair_key(source: str, target: str) -> str:
    return f"{source}--{target}"


def write_run(
    result: FitResult,
    url: str | os.PathLike[str],
    *,
    storage_options: StorageOptions | None = None,
) -> FitResult:
    """Write a finished ``result`` as a new run under ``url`` in one go; returns it with
    ``results`` set. (``mmpipe.fit(out=...)`` instead begins the run before its first pass.)"""
    with run_writer(
        url, dataset=result.dataset, config=result.config.to_json(),
        storage_options=storage_options,
    ) as writer:  # fmt: skip
        assert writer is not None
        return writer.complete(result)


def _upload(source: zarr.abc.store.Store, target: zarr.abc.store.Store, prefix: str) -> None:
    """Copy every key of ``source`` (but its root metadata) under ``prefix`` in ``target``."""
    prototype = default_buffer_prototype()

    async def copy_all() -> None:
        keys = [key async for key in source.list() if key != "zarr.json"]

        async def copy(key: str) -> None:
            value = await source.get(key, prototype)
            assert value is not None
            await target.set(prefix + key, value)

        await asyncio.gather(*(copy(key) for key in keys))

    run_sync(copy_all())


def _write_body(run: zarr.Group, result: FitResult) -> None:
    write_array(run, "folds", result.plan.assignment, ["row"])
    mods = run.create_group("modalities")
    for name, m in result.modalities.items():
        g = mods.create_group(name)
        g.attrs.update(
            _json({"rows": m.rows, "zero_variance_columns": m.zero_variance_columns.tolist()})
        )
        sketch = result.reductions.get(name)
        # The columns data given to this run must have (the dataset's, before any sketch).
        width = m.pca.mean_.size if sketch is None else sketch.offset.size
        g.attrs.update(_json({"width": int(width), "scaled": bool(m.pca.scale)}))
        _write_pca(g, "", m.pca, "feature", "component")
    pairs = run.create_group("pairs")
    for p in result.pairs:
        g = pairs.create_group(pair_key(p.source, p.target))
        g.attrs.update(
            _json(
                {
                    "source": p.source,
                    "target": p.target,
                    "alpha": p.alpha,
                    "rows": p.rows,
                    "rows_dropped": p.rows_dropped,
                    "cca_reg": p.cca_reg,
                }
            )
        )
        ms = p.models
        write_array(g, "alphas", p.alphas, ["alpha"])
        write_array(g, "coef", ms.ridge.coef_, ["alpha", "source_component", "target_component"])
        write_array(g, "intercept", ms.ridge.intercept_, ["alpha", "target_component"])
        write_array(g, "r2", p.r2, ["split", "alpha"])
        write_array(g, "mse", p.mse, ["split", "alpha"])
        if p.r2_weighted is not None:
            write_array(g, "r2_weighted", p.r2_weighted, ["split", "alpha"])
        write_array(g, "procrustes", ms.procrustes.coef_, ["source_component", "target_component"])
        write_array(g, "procrustes_intercept", ms.procrustes.intercept_, ["target_component"])
        write_array(g, "procrustes_r2", p.procrustes_r2, ["split"])
        write_array(g, "procrustes_mse", p.procrustes_mse, ["split"])
        write_array(g, "cca_correlations", ms.cca.correlations_, ["canonical"])
        write_array(
            g, "cca_source_weights", ms.cca.source_weights_, ["source_component", "canonical"]
        )
        write_array(
            g, "cca_target_weights", ms.cca.target_weights_, ["target_component", "canonical"]
        )
        write_array(g, "cca_validation_correlations", p.cca_correlations, ["split", "canonical_cv"])
        write_array(g, "cca_source_mean", ms.cca.source_mean_, ["source_component"])
        write_array(g, "cca_target_mean", ms.cca.target_mean_, ["target_component"])
        _write_pca(g, "source_", ms.source_pca, "source_feature", "source_component")
        _write_pca(g, "target_", ms.target_pca, "target_feature", "target_component")
    if result.reductions:
        sketches = run.create_group("sketches")
        for name, reduction in result.reductions.items():
            g = sketches.create_group(name)
            write_array(g, "offset", reduction.offset, ["feature"])
            write_array(g, "scale", reduction.scale, ["feature"])
            write_array(g, "basis", reduction.basis, ["feature", "sketch_column"])
    result.write_tasks(run)  # each task writes its own group (mmpipe.tasks)


__all__ = [
    "RunWriter",
    "check_writable",
    "make_store",
    "run_writer",
    "write_run",
]
