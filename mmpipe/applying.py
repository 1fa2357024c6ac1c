"""Apply a fitted run to a dataset at scale: ``mmpipe.apply`` and ``mmpipe apply``.

    summary = mmpipe.apply("results.zarr", "new.zarr", "applied.zarr",
                           embed=["image"], map=["image:text"], classify=["image"])

Everything is checked before anything is read or written: the output location (not the input,
not inside it, not around it, not the results store, not an existing non-empty location), the
run (complete, and having every model asked for), the dataset (every needed modality, with the
width the run was fitted on and a numeric dtype, every chunk in the store). Then one pass over
the dataset's row blocks (:mod:`mmpipe.stats.apply`) computes every output and writes it into
the output group from the workers.

The output group (docs/apply.md)::

    OUT/                                 attrs: mmpipe_apply, status, run_id, results,
                                                fingerprint, dataset, options, rows, outputs,
                                                started, finished, timings, error (failed)
      pca/<NAME>                         (n, k) float64 PCA scores
      mapped/<SOURCE>--<TARGET>          (n, k_target) float64: source through W
      mapped_features/<SOURCE>--<TARGET> (n, d_target) float64, with features=True
      cca/<SOURCE>--<TARGET>/<NAME>      (n, c) float64 canonical variates, space="cca"
      multiview/embedding                (n, c) float64 shared embedding, space="multiview"
      predictions/<SET>                  (n,) labels; missing_label where it cannot predict
      probabilities/<SET>                (n, C) float64, when the run has a logistic model
      imputed/<NAME>                     (n, d) float64, NaN where not imputed
      imputed_mask/<NAME>                (n,) bool: rows imputed
      ids                                the dataset's ids, when it has them

The status is ``running`` from the group's creation, ``complete`` as the very last write,
``failed`` with the reason on an error or SIGTERM/SIGINT: an interrupted apply never looks
complete.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import numpy as np
import zarr

from mmpipe.cluster import using
from mmpipe.errors import ConfigError, DatasetError, MmpipeError, ResultsError, StoreNotFoundError
from mmpipe.fitted import FittedRun
from mmpipe.io.dataset import IDS, MODALITIES, WRITE_EVERY_CHUNK, Dataset, open_dataset
from mmpipe.io.locations import locate
from mmpipe.io.results import pair_key
from mmpipe.io.runs import STATUS_COMPLETE, STATUS_FAILED, STATUS_RUNNING
from mmpipe.io.storage import StorageOptions, is_remote, open_group
from mmpipe.jsonable import to_json
from mmpipe.loading import open_run
from mmpipe.options import ApplyOptions
from mmpipe.signals import stop_signals_raise
from mmpipe.stats.apply import ApplyPlan, Output, apply_pass

APPLY_MARK = "mmpipe_apply"
"""Root attribute of every output group ``mmpipe apply`` writes: ``{"format": 1}``."""
APPLY_FORMAT = 1
OUTPUT_DTYPE = np.dtype(np.float64)
"""Every float output is float64 (the run's methods compute in float64; nothing is rounded)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def set_key(features: tuple[str, ...]) -> str:
    """A feature set's name in paths: ``a+b``."""
    return "+".join(features)


# -- checks before anything is read --------------------------------------------------------


def check_apply_output(
    out: str | os.PathLike[str],
    inputs: Mapping[str, tuple[str | os.PathLike[str] | None, StorageOptions | None]],
    storage_options: StorageOptions | None = None,
) -> None:
    """Refuse an output location that is one of ``inputs`` (what -> (location, its options)),
    lies inside one or contains one, or that already holds something."""
    shown = os.fspath(out)
    target = locate(out, storage_options)
    for what, (url, options) in inputs.items():
        if url is None:
            continue
        source = locate(url, options)
        text = os.fspath(url)
        if target == source:
            raise ResultsError(
                f"Apply output {shown!r} is {what}: inputs are read-only to mmpipe; give a new "
                "path for the output."
            )
        if source.contains(target):
            raise ResultsError(
                f"Apply output {shown!r} lies inside {what} {text!r}: inputs are read-only to "
                "mmpipe; give a path outside it."
            )
        if target.contains(source):
            raise ResultsError(
                f"Apply output {shown!r} contains {what} {text!r}: give a path that does not "
                "hold an input."
            )
    if not is_remote(shown):
        path = shown.removeprefix("file://")
        if os.path.exists(path) and not os.path.isdir(path):
            raise ResultsError(f"Apply output {shown!r} is a file; give a new directory path.")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise ResultsError(
                f"Apply output {shown!r}: the parent folder {parent!r} does not exist."
            )
        if os.path.isdir(path) and os.listdir(path):
            raise ResultsError(
                f"Apply output {shown!r} already exists and is not empty: mmpipe apply never "
                "overwrites; give a new path (or remove the old output)."
            )
        return
    try:
        open_group(shown, mode="r", storage_options=storage_options)
    except StoreNotFoundError:
        return
    raise ResultsError(
        f"Apply output {shown!r} already exists: mmpipe apply never overwrites; give a new path "
        "(or remove the old output)."
    )


def _listing(names: list[str]) -> str:
    return ", ".join(names) or "none"


def _check_asked(run: FittedRun, options: ApplyOptions) -> list[str]:
    """Refuse what the run has no model for; return the modalities impute fills in."""
    where = f"run {run.run_id} of {run.results!r}"
    for name in options.embed:
        if name not in run.modalities:
            raise ConfigError(
                f"embed {name!r}: {where} has no model of that modality (it has: "
                f"{_listing(run.modalities)})."
            )
    pairs = [f"{s}:{t}" for s, t in run.pairs]
    for source, target in options.map:
        if (source, target) not in run.pairs:
            raise ConfigError(
                f"map {source}:{target}: {where} has no map of that pair (it has: "
                f"{_listing(pairs)})."
            )
    sets = [set_key(f) for f in run.feature_sets]
    for features in options.classify:
        if tuple(features) not in [tuple(f) for f in run.feature_sets]:
            raise ConfigError(
                f"classify {set_key(tuple(features))!r}: {where} has no classifier of that "
                f"feature set (it has: {_listing(sets)})."
            )
    targets: list[str] = []
    if options.impute:
        targets = list(run.imputable())
        if not targets:
            raise ConfigError(f"impute: {where} has no map to impute a modality from.")
    return targets


def _check_modality(ds: Dataset, run: FittedRun, name: str, why: str) -> None:
    if name not in ds.names:
        raise DatasetError(
            f"{ds.url!r} has no modality {name!r}, which {why} needs (it has: "
            f"{_listing(ds.names)}): apply a run to data with the modalities it was fitted on."
        )
    arr = ds.arrays.modalities[name]
    dtype = np.dtype(arr.dtype)
    if dtype.kind not in "fiu":
        raise DatasetError(
            f"'{MODALITIES}/{name}' of {ds.url!r} has dtype {dtype}, which is not numeric: "
            "convert it to float32 or float64."
        )
    width, fitted = int(arr.shape[1]), run.widths.get(name)
    if fitted is not None and width != fitted:
        raise DatasetError(
            f"'{MODALITIES}/{name}' of {ds.url!r} has {width} columns but run {run.run_id} was "
            f"fitted on {fitted}: apply needs the same features, in the same order."
        )


def _probe(run: FittedRun, widths: Mapping[str, int], names: tuple[str, ...]) -> dict[str, Any]:
    """One row of zeros per modality: the run's methods on it tell the output widths."""
    return {n: np.zeros((1, widths[n]), dtype=np.float64) for n in names}


def plan_apply(run: FittedRun, ds: Dataset, options: ApplyOptions) -> ApplyPlan:
    """The outputs of ``options`` for ``run`` over ``ds``, every needed modality checked
    (present, numeric, the fitted width). Raises before anything is read."""
    targets = _check_asked(run, options)
    widths = dict(run.widths)
    outputs: list[Output] = []
    needs: dict[str, str] = {}  # modality -> what needs it (for the message)

    def need(names: tuple[str, ...], why: str) -> None:
        for n in names:
            needs.setdefault(n, why)

    for name in options.embed:
        need((name,), f"embed {name}")
        k = np.asarray(run.transform(_probe(run, widths, (name,))[name], name)).shape[1]
        outputs.append(Output(f"pca/{name}", "pca", (name,), k, (name,)))
    for source, target in options.map:
        key, why = pair_key(source, target), f"map {source}:{target}"
        x = _probe(run, widths, (source, target))
        if options.space == "pca":
            need((source,), why)
            k = np.asarray(run.map(x[source], source, target)).shape[1]
            outputs.append(Output(f"mapped/{key}", "mapped", (source,), k, (source, target)))
        else:
            need((source, target), why)
            for side, name in (("source", source), ("target", target)):
                c = np.asarray(run.cca(x[name], source, target, side)).shape[1]  # type: ignore[arg-type]
                outputs.append(
                    Output(f"cca/{key}/{name}", "cca", (name,), c, (source, target, side))
                )
        if options.features:
            need((source,), why)
            outputs.append(
                Output(
                    f"mapped_features/{key}",
                    "mapped_features",
                    (source,),
                    widths[target],
                    (source, target),
                )
            )
    label_dtype, missing_label = "int64", -1
    if options.classify:
        classes = run.classes
        if classes is not None and np.asarray(classes).size:
            label_dtype = str(np.asarray(classes).dtype)
            missing_label = min(-1, int(np.min(classes)) - 1)
    for features in options.classify:
        features = tuple(features)
        key = set_key(features)
        need(features, f"classify {key}")
        outputs.append(Output(f"predictions/{key}", "predictions", features, None, (features,)))
        try:
            proba = run.predict_proba(_probe(run, widths, features), features)
        except ConfigError:  # the run fitted no logistic model of this set
            continue
        classes_count = np.asarray(proba).shape[1]
        outputs.append(
            Output(f"probabilities/{key}", "probabilities", features, classes_count, (features,))
        )
    for target in targets:
        sources = tuple(s for s, t in run.pairs if t == target)
        usable = [s for s in sources if s in ds.names]
        if not usable:
            continue  # nothing in this dataset to impute it from
        need(tuple(usable), f"impute {target}")
        if target in ds.names:
            need((target,), f"impute {target}")
        outputs.append(
            Output(f"imputed/{target}", "imputed", (target,), widths[target], (target, sources))
        )
    if options.impute and not any(o.kind == "imputed" for o in outputs):
        pairs = _listing([f"{s}:{t}" for s, t in run.pairs])
        raise DatasetError(
            f"impute: {ds.url!r} has none of the modalities run {run.run_id} imputes from "
            f"(it imputes {_listing(targets)} from pairs {pairs})."
        )
    if options.space == "multiview":
        model = run.multiview
        if model is None:
            raise ConfigError(
                f"space multiview: run {run.run_id} of {run.results!r} has no multiview model: "
                "fit with multiview (modality names or 'all') first."
            )
        in_data = tuple(v for v in model.modalities if v in ds.names)
        if not in_data:
            raise DatasetError(
                f"space multiview: {ds.url!r} has none of the modalities of run "
                f"{run.run_id}'s common space ({_listing(list(model.modalities))})."
            )
        need(in_data, "space multiview")
        outputs.append(
            Output("multiview/embedding", "multiview", (), model.n_components, (in_data,))
        )
    for name, why in needs.items():
        _check_modality(ds, run, name, why)
    names = tuple(n for n in ds.names if n in needs)
    return ApplyPlan(tuple(outputs), names, widths, label_dtype, missing_label)


def output_chunk_rows(ds: Dataset, names: tuple[str, ...]) -> int:
    """Rows per chunk of the output arrays: the input's row chunk when its modalities share
    one that divides the pass's row blocks, else the row block (a task writes whole chunks)."""
    block = ds.row_chunks[0]
    store = {int(ds.arrays.modalities[n].chunks[0]) for n in names}
    if len(store) == 1:
        (chunk,) = store
        if block % chunk == 0 or len(ds.row_chunks) == 1:  # every block starts on a chunk
            return chunk
    return block


# -- the output group --------------------------------------------------------------------


def _create_output(
    out: str | os.PathLike[str],
    ds: Dataset,
    plan: ApplyPlan,
    chunk: int,
    attrs: Mapping[str, Any],
    storage_options: StorageOptions | None,
) -> tuple[zarr.Group, dict[str, zarr.Array]]:
    """The output group with status ``running`` and every output array (metadata only)."""
    group = open_group(out, mode="w", storage_options=storage_options)
    group.attrs.update(to_json(dict(attrs)))  # status "running" from the first write
    n = ds.n_rows
    arrays: dict[str, zarr.Array] = {}

    def add(path: str, width: int | None, dtype: Any, dims: list[str], fill: Any) -> None:
        shape = (n,) if width is None else (n, width)
        chunks = (min(chunk, n),) if width is None else (min(chunk, n), width)
        arrays[path] = group.create_array(
            path,
            shape=shape,
            dtype=dtype,
            chunks=chunks,
            dimension_names=dims,
            fill_value=fill,
            config=WRITE_EVERY_CHUNK,
        )

    for o in plan.outputs:
        column = o.path.replace("/", "_") + "_column"
        if o.kind == "predictions":
            add(o.path, None, plan.label_dtype, ["row"], plan.missing_label)
        elif o.kind == "imputed":
            target = o.args[0]
            add(o.path, o.width, OUTPUT_DTYPE, ["row", f"{target}_feature"], np.nan)
            add(f"imputed_mask/{target}", None, bool, ["row"], False)
        else:
            add(o.path, o.width, OUTPUT_DTYPE, ["row", column], np.nan)
    if ds.id_array is not None:
        ids = ds.id_array
        add(IDS, None, ids.dtype, ["row"], None)
    return group, arrays


def _fail(group: zarr.Group, exc: BaseException) -> None:
    """Mark the output ``failed`` with the reason; never raises."""
    reason = str(exc) if isinstance(exc, MmpipeError) else f"{type(exc).__name__}: {exc}"
    with suppress(Exception):  # the original error is the one to report
        group.attrs.update({"status": STATUS_FAILED, "error": reason, "finished": _now()})


def _options(options: ApplyOptions | None, overrides: Mapping[str, Any]) -> ApplyOptions:
    if options is None:
        return ApplyOptions.parse(dict(overrides), "apply options")
    if not overrides:
        return options
    data = options.model_dump(exclude_unset=True)
    return ApplyOptions.parse({**data, **overrides}, "apply options")


def apply(
    results: str | os.PathLike[str],
    dataset: str | os.PathLike[str] | Dataset,
    out: str | os.PathLike[str],
    options: ApplyOptions | None = None,
    *,
    storage_options: StorageOptions | None = None,
    results_storage_options: StorageOptions | None = None,
    out_storage_options: StorageOptions | None = None,
    client: object | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Apply the fitted run of ``results`` to ``dataset``, writing the outputs to ``out``.

    What to compute is :class:`~mmpipe.options.ApplyOptions` (``run_id``, ``embed``, ``map``,
    ``space``, ``classify``, ``impute``, ``features``), given as ``options``, as keywords, or
    both (keywords win). ``storage_options`` are the dataset's fsspec options, and the
    default of ``results_storage_options`` and ``out_storage_options``. ``client``: as in
    :func:`mmpipe.fit` (else the current client, else threads in this process).

    Every check is made before anything is read or written (a bad input is an
    :class:`~mmpipe.errors.MmpipeError` naming it, and ``out`` is not created). Then one pass
    writes every output; the output's status is ``complete`` only once all of it is written.
    Returns a summary: ``status``, ``out``, ``run_id``, ``results``, ``fingerprint``,
    ``dataset``, ``rows``, ``blocks``, ``chunk_rows``, ``options``, ``outputs`` (path ->
    ``shape``, ``dtype``, ``nan_rows``: rows without a value) and ``timings`` (seconds).
    """
    start = time.perf_counter()
    opts = _options(options, overrides)
    if results_storage_options is None:
        results_storage_options = storage_options
    if out_storage_options is None:
        out_storage_options = storage_options
    source = dataset.url if isinstance(dataset, Dataset) else dataset
    check_apply_output(
        out,
        {
            "the input dataset": (source, storage_options),
            "the results store": (results, results_storage_options),
        },
        out_storage_options,
    )
    run = open_run(results, opts.run_id, storage_options=results_storage_options)
    ds = open_dataset(dataset, storage_options=storage_options)
    plan = plan_apply(run, ds, opts)
    ds.check_chunks(plan.names)  # every chunk the pass reads is in the store
    chunk = output_chunk_rows(ds, plan.names)
    timings = {"prepare": round(time.perf_counter() - start, 4)}
    attrs = {
        APPLY_MARK: {"format": APPLY_FORMAT},
        "status": STATUS_RUNNING,
        "run_id": run.run_id,
        "results": run.results,
        "fingerprint": run.fingerprint,
        "dataset": ds.url,
        "options": opts.model_dump(mode="json"),
        "rows": ds.n_rows,
        "started": _now(),
    }
    if any(o.kind == "predictions" for o in plan.outputs):
        attrs["missing_label"] = plan.missing_label
    with stop_signals_raise(), using(client):
        group, arrays = _create_output(out, ds, plan, chunk, attrs, out_storage_options)
        try:
            began = time.perf_counter()
            counts = apply_pass(ds, run, plan, arrays)
            timings["pass"] = round(time.perf_counter() - began, 4)
            outputs: dict[str, dict[str, Any]] = {
                path: {
                    "shape": list(arr.shape),
                    "dtype": str(arr.dtype),
                    "nan_rows": int(counts.get(path, 0)),
                }
                for path, arr in arrays.items()
            }
            for o in plan.outputs:
                if o.kind == "imputed":
                    outputs[o.path]["imputed_rows"] = ds.n_rows - outputs[o.path]["nan_rows"]
            timings["total"] = round(time.perf_counter() - start, 4)
            group.attrs.update(
                to_json({"outputs": outputs, "timings": timings, "finished": _now()})
            )
            group.attrs["status"] = STATUS_COMPLETE  # the very last write
        except BaseException as exc:
            _fail(group, exc)
            raise
    summary = {**attrs, "status": STATUS_COMPLETE, "out": os.fspath(out)}
    summary.pop(APPLY_MARK)
    summary.pop("started")
    summary |= {
        "blocks": len(ds.row_chunks),
        "chunk_rows": chunk,
        "outputs": outputs,
        "timings": timings,
    }
    return summary
