"""The results store: one Zarr group per run, readable with plain zarr or xarray.

    results.zarr/                    attrs: {"mmpipe_runs": [complete run ids], "latest": id}
      runs/<run_id>/                 attrs: status, config, versions, fingerprint, plan,
                                            timings, dataset, summary
        folds                        (row,) int8 fold group of every row
        modalities/<name>/           mean, scale (feature); components (component, feature);
                                     explained_variance, explained_variance_ratio (component)
        pairs/<source>--<target>/    alphas (alpha); coef (alpha, source_component,
                                     target_component); intercept (alpha, target_component);
                                     r2, mse (split, alpha); procrustes (source_component,
                                     target_component); procrustes_r2 (split);
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

A run is written under a fresh id with status "running"; only its last write sets status
"complete" and adds it to the store's list of runs. A failed run is marked "failed" and never
touches another run.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
import zarr.abc.store
import zarr.storage
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from mmpipe.errors import ResultsError, StoreNotFoundError
from mmpipe.io.storage import StorageOptions, is_remote, make_store, open_group

if TYPE_CHECKING:
    from mmpipe.engine import FitResult

RUNS = "runs"
STATUS_RUNNING, STATUS_COMPLETE, STATUS_FAILED = "running", "complete", "failed"
_VERSIONED = ("mmpipe", "numpy", "scipy", "dask", "distributed", "zarr", "scikit-learn", "prefect")


def versions() -> dict[str, str]:
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def check_writable(url: str | os.PathLike[str], *, storage_options: StorageOptions | None) -> None:
    """Fail early (before the pass) when ``url`` cannot hold results."""
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
        if (
            os.path.isdir(path)
            and os.listdir(path)
            and not os.path.exists(os.path.join(path, "zarr.json"))
        ):
            raise ResultsError(
                f"Results location {text!r} is a non-empty folder that is not a Zarr group; "
                "choose a new path or an existing results store."
            )


def _json(value: Any) -> Any:
    from mmpipe.engine import to_json

    return to_json(value)


def _array(group: zarr.Group, name: str, data: np.ndarray, dims: list[str]) -> None:
    data = np.asarray(data)
    group.create_array(
        name,
        data=data,
        chunks=data.shape if data.size else "auto",
        dimension_names=dims,
        overwrite=True,
    )


def _write_pca(group: zarr.Group, prefix: str, pca: Any, feature: str, component: str) -> None:
    _array(group, f"{prefix}mean", pca.mean_, [feature])
    _array(group, f"{prefix}scale", pca.scale_, [feature])
    _array(group, f"{prefix}components", pca.components_, [component, feature])
    _array(group, f"{prefix}explained_variance", pca.explained_variance_, [component])
    _array(group, f"{prefix}explained_variance_ratio", pca.explained_variance_ratio_, [component])


def pair_key(source: str, target: str) -> str:
    return f"{source}--{target}"


def write_run(
    result: FitResult,
    url: str | os.PathLike[str],
    *,
    storage_options: StorageOptions | None = None,
) -> FitResult:
    """Write ``result`` as a new run under ``url``; returns it with ``results`` set."""
    from dataclasses import replace

    text = os.fspath(url)
    check_writable(text, storage_options=storage_options)
    root = open_group(text, mode="a", storage_options=storage_options)
    run = root.require_group(RUNS).create_group(result.run_id)
    run.attrs.update(
        _json(
            {
                "status": STATUS_RUNNING,
                "run_id": result.run_id,
                "dataset": result.dataset,
                "started": result.started,
                "config": result.config.to_json(),
                "versions": versions(),
                "fingerprint": result.fingerprint,
                "plan": result.plan.describe(),
                "rows": result.n_rows,
            }
        )
    )
    try:
        # Build the run's arrays in memory, then upload every key concurrently: creating
        # ~60 nested arrays one by one costs ~20 requests each on object storage.
        staged = zarr.open_group(zarr.storage.MemoryStore(), mode="w", zarr_format=3)
        _write_body(staged, result)
        _upload(staged.store, run.store, f"{run.path}/")
        location = f"{text.rstrip('/')}/{RUNS}/{result.run_id}"
        done = replace(result, results=location)
        run.attrs.update(
            _json(
                {
                    "summary": done.summary(),
                    "timings": done.timings,
                    "classes": None if done.classes is None else done.classes.tolist(),
                }
            )
        )
        # The last step: mark complete, then list the run at the top of the store.
        run.attrs["status"] = STATUS_COMPLETE
        runs = list(root.attrs.get("mmpipe_runs", []))  # type: ignore[arg-type]
        root.attrs.update({"mmpipe_runs": [*runs, result.run_id], "latest": result.run_id})
        return done
    except BaseException as exc:
        run.attrs.update({"status": STATUS_FAILED, "error": f"{type(exc).__name__}: {exc}"})
        raise


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

    sync(copy_all())


def _write_body(run: zarr.Group, result: FitResult) -> None:
    _array(run, "folds", result.plan.assignment, ["row"])
    mods = run.create_group("modalities")
    for name, m in result.modalities.items():
        g = mods.create_group(name)
        g.attrs.update(
            _json({"rows": m.rows, "zero_variance_columns": m.zero_variance_columns.tolist()})
        )
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
                }
            )
        )
        ms = p.models
        _array(g, "alphas", p.alphas, ["alpha"])
        _array(g, "coef", ms.ridge.coef_, ["alpha", "source_component", "target_component"])
        _array(g, "intercept", ms.ridge.intercept_, ["alpha", "target_component"])
        _array(g, "r2", p.r2, ["split", "alpha"])
        _array(g, "mse", p.mse, ["split", "alpha"])
        _array(g, "procrustes", ms.procrustes.coef_, ["source_component", "target_component"])
        _array(g, "procrustes_r2", p.procrustes_r2, ["split"])
        _array(g, "procrustes_mse", p.procrustes_mse, ["split"])
        _array(g, "cca_correlations", ms.cca.correlations_, ["canonical"])
        _array(g, "cca_source_weights", ms.cca.source_weights_, ["source_component", "canonical"])
        _array(g, "cca_target_weights", ms.cca.target_weights_, ["target_component", "canonical"])
        _array(g, "cca_validation_correlations", p.cca_correlations, ["split", "canonical_cv"])
        _write_pca(g, "source_", ms.source_pca, "source_feature", "source_component")
        _write_pca(g, "target_", ms.target_pca, "target_feature", "target_component")
    cells = ["split", "alpha", "true_class", "predicted_class"]
    if result.classify:
        tasks = run.create_group("classify")
        for c in result.classify:
            g = tasks.create_group(c.name)
            g.attrs.update(_json({"features": list(c.features), "alpha": c.alpha}))
            _array(g, "alphas", c.alphas, ["alpha"])
            _array(g, "classes", c.classes, ["class"])
            _array(g, "confusion", c.confusion.astype(np.int64), cells)
            model = c.model.model
            _array(g, "coef", model.coef_, ["alpha", "feature_component", "class"])
            _array(g, "intercept", model.intercept_, ["alpha", "class"])
    if result.transfer:
        moved = run.create_group("transfer")
        for t in result.transfer:
            g = moved.create_group(pair_key(t.source, t.target))
            g.attrs.update(
                _json(
                    {"source": t.source, "target": t.target, "alpha": t.alpha,
                     "map_alpha": t.map_alpha}
                )
            )  # fmt: skip
            _array(g, "alphas", t.alphas, ["alpha"])
            _array(g, "confusion", t.confusion.astype(np.int64), cells)
            _array(g, "target_confusion", t.target_confusion.astype(np.int64), cells)
    if result.reductions:
        sketches = run.create_group("sketches")
        for name, reduction in result.reductions.items():
            g = sketches.create_group(name)
            _array(g, "offset", reduction.offset, ["feature"])
            _array(g, "scale", reduction.scale, ["feature"])
            _array(g, "basis", reduction.basis, ["feature", "sketch_column"])
    if result.random_features:
        nonlinear = run.create_group("random_features")
        for rf in result.random_features:
            g = nonlinear.create_group(pair_key(rf.source, rf.target))
            g.attrs.update(_json(rf.summary()))
            _array(g, "alphas", rf.alphas, ["alpha"])
            _array(g, "weights", rf.features.weights_, ["source_component", "feature"])
            _array(g, "offsets", rf.features.offsets_, ["feature"])
            _array(g, "r2", rf.r2, ["split", "alpha"])
            _array(g, "mse", rf.mse, ["split", "alpha"])
            _array(g, "coef", rf.ridge.coef_, ["alpha", "feature", "target_component"])
            _array(g, "intercept", rf.ridge.intercept_, ["alpha", "target_component"])
    if result.logistic:
        fitted = run.create_group("logistic")
        for lr in result.logistic:
            g = fitted.create_group(lr.name)
            g.attrs.update(_json(lr.summary()))
            _array(g, "classes", lr.classes, ["class"])
            _array(g, "confusion", lr.confusion.astype(np.int64), cells[:1] + cells[2:])
            _array(g, "coef", lr.coef, ["feature_component", "class"])
            _array(g, "intercept", lr.intercept, ["class"])
    if result.retrieval:
        found = run.create_group("retrieval")
        for r in result.retrieval:
            g = found.create_group(pair_key(r.source, r.target))
            g.attrs.update(_json(r.summary()))
            for split, ranks in enumerate(r.ranks):
                h = g.create_group(f"split_{split}")
                _array(h, "rows", ranks.rows, ["query"])
                _array(h, "forward_rank", ranks.forward, ["query"])
                _array(h, "backward_rank", ranks.backward, ["query"])


def list_runs(
    url: str | os.PathLike[str], *, storage_options: StorageOptions | None = None
) -> list[dict[str, Any]]:
    """Every run in a results store with its id and status (complete or not)."""
    root = open_group(url, mode="r", storage_options=storage_options)
    if RUNS not in root:
        return []
    runs = root[RUNS]
    assert isinstance(runs, zarr.Group)
    return [
        {"run_id": name, "status": dict(node.attrs).get("status", "unknown")}
        for name, node in sorted(runs.members())
    ]


def read_run(
    url: str | os.PathLike[str],
    run_id: str | None = None,
    *,
    storage_options: StorageOptions | None = None,
    allow_incomplete: bool = False,
) -> zarr.Group:
    """The group of a run (the latest complete one by default). Refuses incomplete runs."""
    root = open_group(url, mode="r", storage_options=storage_options)
    run_id = run_id or str(dict(root.attrs).get("latest") or "") or None
    if run_id is None:
        raise StoreNotFoundError(f"No complete run in results store {os.fspath(url)!r}.")
    try:
        run = root[f"{RUNS}/{run_id}"]
    except KeyError as exc:
        raise StoreNotFoundError(f"No run {run_id!r} in results store {os.fspath(url)!r}.") from exc
    assert isinstance(run, zarr.Group)
    status = dict(run.attrs).get("status")
    if status != STATUS_COMPLETE and not allow_incomplete:
        raise ResultsError(f"Run {run_id!r} in {os.fspath(url)!r} is {status!r}, not complete.")
    return run


def read_attrs(group: zarr.Group) -> Mapping[str, Any]:
    return dict(group.attrs)


__all__ = ["check_writable", "list_runs", "make_store", "read_run", "write_run"]
