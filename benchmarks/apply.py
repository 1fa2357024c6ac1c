"""Applying a fitted run to the 1M-row bench dataset: mmpipe against reading the input, against
scikit-learn in memory, and against dask-ml's ParallelPostFit on the same cluster.

    .venv/bin/python benchmarks/apply.py [--rows 1000000]
        [--peers read,mmpipe,sklearn,parallelpostfit] [--data data/bench]
        [--out benchmarks/RESULTS-apply.md]

The data: the bench dataset of benchmarks/run.py (`make_data`: modalities a and b, 256 float32
columns each, row chunks of 32,768). The run: `mmpipe.fit(store, components=32, folds=2,
pairs=["a:b"], out=<data>/apply-results.zarr)`, made once (reused while it opens as a
complete run). The job: both modalities' PCA scores (32 each) and a mapped to b's PCA space
(the pair's W at its chosen α), for every row, written to a new Zarr group as `pca/a`, `pca/b`
and `mapped/a--b` (float64, the input's row chunks).

Each method runs in its own process; a sampler records the peak resident memory of that
process tree (as in benchmarks/run.py). The methods:

- read: the floor. Every input chunk of a and b read and decoded once on a LocalCluster of 2
  workers × 1 thread (`da.from_zarr`, a sum per array); nothing computed, nothing written;
- read-hugepages (not among the default peers): the same, its workers with the environment
  mmpipe gives its own (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`), which decodes faster;
- mmpipe: the CLI, `mmpipe apply RESULTS STORE --out OUT --embed a --embed b --map a:b
  --workers 2 --threads-per-worker 1 --json` (start-up counted, as run.py counts `mmpipe fit`);
- sklearn: the data loaded in memory as float64, then the exported pipelines
  (`mmpipe.open_run(...).to_sklearn()`): `transform` of a and b, the pair's `predict` of a,
  each output then written with zarr; load, compute and write timed separately;
- parallelpostfit: dask-ml `ParallelPostFit(pipe).transform` of a and b and
  `x.map_blocks(pair_pipe.predict)` of a (ParallelPostFit.predict drops axis 1) on
  `da.from_zarr(...).astype(float64)`, written with `da.to_zarr` in one compute, on a
  LocalCluster of 2 workers × 1 thread.

Every output of every method is compared with mmpipe's (max |difference|; must be ≤ 1e-8).
Before the first method the store's chunk files are read once, so every method starts from
the same warm page cache.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from run import (
    BIN,
    COMPONENTS,
    load,
    make_data,
    measure_command,
    store_bytes,
    tree_read_chars,
)

NAMES = ("a", "b")
PAIR = ("a", "b")
OUTPUTS = ("pca/a", "pca/b", "mapped/a--b")
FOLDS = 2
TOLERANCE = 1e-8
PEERS_DEFAULT = "read,mmpipe,sklearn,parallelpostfit"


# ---------------------------------------------------------------- the methods, one per process
def _cluster(huge_pages: bool = False) -> Any:
    """2 workers × 1 thread; ``huge_pages``: with the environment mmpipe gives its own
    workers (``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``, see README, "Worker memory")."""
    import dask
    from distributed import LocalCluster

    from mmpipe.cluster import worker_environ

    key = "distributed.nanny.pre-spawn-environ"
    environ = {**dask.config.get(key, {}), **(worker_environ() if huge_pages else {})}
    with dask.config.set({key: environ}):
        return LocalCluster(
            n_workers=2, threads_per_worker=1, dashboard_address=None, host="127.0.0.1"
        )


def peer_read(store: str, results: str, out: str, huge_pages: bool = False) -> dict[str, Any]:
    """Read and decode every input chunk once; a trivial reduction per array."""
    import dask
    import dask.array as da
    from distributed import Client

    with _cluster(huge_pages) as cluster, Client(cluster):
        start = time.perf_counter()
        xs = [da.from_zarr(store, component=f"modalities/{n}") for n in NAMES]
        sums = dask.compute(*(x.sum(dtype=np.float64) for x in xs))
        done = time.perf_counter()
    return {"compute_s": done - start, "check": [float(s) for s in sums]}


def peer_mmpipe(store: str, results: str, out: str) -> dict[str, Any]:
    args = [str(BIN / "mmpipe"), "apply", results, store, "--out", out,
            "--embed", "a", "--embed", "b", "--map", "a:b",
            "--workers", "2", "--threads-per-worker", "1", "--json"]  # fmt: skip
    start = time.perf_counter()
    printed = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    done = time.perf_counter()
    summary = json.loads(printed)
    return {"compute_s": done - start, "timings": summary["timings"],
            "blocks": summary["blocks"], "chunk_rows": summary["chunk_rows"]}  # fmt: skip


def _pipelines(results: str) -> dict[str, Any]:
    import mmpipe

    exported: dict[str, Any] = mmpipe.open_run(results).to_sklearn()
    return exported


def peer_sklearn(store: str, results: str, out: str) -> dict[str, Any]:
    import zarr

    start = time.perf_counter()
    views = load(store)  # float64, as benchmarks/run.py's sklearn peer
    loaded = time.perf_counter()
    pipes = _pipelines(results)
    values = {
        "pca/a": pipes["modalities/a"].transform(views["a"]),
        "pca/b": pipes["modalities/b"].transform(views["b"]),
        "mapped/a--b": pipes["pairs/a--b"].predict(views["a"]),
    }
    computed = time.perf_counter()
    chunk = int(zarr.open_array(store, path="modalities/a", mode="r").chunks[0])
    group = zarr.open_group(out, mode="w-")
    for path, v in values.items():
        arr = group.create_array(path, shape=v.shape, chunks=(chunk, v.shape[1]), dtype=v.dtype)
        arr[...] = v
    written = time.perf_counter()
    return {"load_s": loaded - start, "compute_s": computed - loaded,
            "write_s": written - computed, "total_s": written - start}  # fmt: skip


def _declared(y: Any, rows: tuple[int, ...], width: int) -> Any:
    """``y`` with its true chunks. ParallelPostFit.transform maps blocks without ``chunks=``,
    so Dask believes the (n, 32) scores have the input's 256 columns: fine for ``.compute()``
    (blocks are concatenated as they come), wrong for ``da.to_zarr`` (the array it creates)."""
    import dask.array as da

    return da.Array(y.dask, y.name, chunks=(rows, (width,)), meta=y._meta)


def peer_parallelpostfit(store: str, results: str, out: str) -> dict[str, Any]:
    import dask
    import dask.array as da
    from dask_ml.wrappers import ParallelPostFit
    from distributed import Client

    with _cluster() as cluster, Client(cluster):
        start = time.perf_counter()
        pipes = _pipelines(results)
        xs = {n: da.from_zarr(store, component=f"modalities/{n}").astype(np.float64) for n in NAMES}
        rows = xs["a"].chunks[0]
        pair = pipes["pairs/a--b"]
        k_map = int(pair.named_steps["ridge"].coef_.shape[0])
        ys = {
            f"pca/{n}": _declared(
                ParallelPostFit(pipes[f"modalities/{n}"]).transform(xs[n]),
                rows,
                int(pipes[f"modalities/{n}"].named_steps["pca"].n_components_),
            )
            for n in NAMES
        }
        ys["mapped/a--b"] = xs["a"].map_blocks(
            pair.predict, chunks=(rows, (k_map,)), dtype=np.float64
        )
        stores = [da.to_zarr(y, out, component=p, compute=False) for p, y in ys.items()]
        dask.compute(*stores)
        done = time.perf_counter()
    return {"compute_s": done - start}


def peer_read_hugepages(store: str, results: str, out: str) -> dict[str, Any]:
    """The floor again, its workers with mmpipe's worker environment (huge pages)."""
    return peer_read(store, results, out, huge_pages=True)


PEERS = {
    "read": peer_read,
    "read-hugepages": peer_read_hugepages,
    "mmpipe": peer_mmpipe,
    "sklearn": peer_sklearn,
    "parallelpostfit": peer_parallelpostfit,
}


# ---------------------------------------------------------------- measurement harness
def measure(peer: str, store: str, results: str, out: str) -> dict[str, Any]:
    """Run one method in a child process; sample its process tree's peak RSS (run.py's)."""
    command = [sys.executable, __file__, "--peer", peer, "--store", store, "--results", results,
               "--peer-out", out]  # fmt: skip
    return measure_command(command, peer)


def fitted_run(store: str, results: Path) -> dict[str, Any]:
    """The run to apply: reused when ``results`` opens as a complete run with the pair a:b,
    else fitted again (not timed)."""
    import mmpipe

    if results.exists():
        try:
            run = mmpipe.open_run(str(results))
            if PAIR in run.pairs and set(NAMES) <= set(run.modalities):
                return {"run_id": run.run_id, "fit_s": None, "reused": True}
        except Exception as exc:  # an incomplete or older run: fit again
            print(f"refitting: {exc}", file=sys.stderr)
        shutil.rmtree(results)
    start = time.perf_counter()
    mmpipe.fit(store, components=COMPONENTS, folds=FOLDS, pairs=["a:b"], out=str(results))
    fit_s = time.perf_counter() - start
    return {"run_id": mmpipe.open_run(str(results)).run_id, "fit_s": fit_s, "reused": False}


def warm(store: str) -> None:
    """Read every chunk file of the modalities once, so no method pays a cold page cache."""
    for f in sorted(Path(store, "modalities").rglob("*")):
        if f.is_file():
            f.read_bytes()


def max_difference(out: str, reference: str, path: str) -> float:
    """max |out - reference| over the array ``path`` (NaN where exactly one is NaN)."""
    import zarr

    a = zarr.open_array(out, path=path, mode="r")
    b = zarr.open_array(reference, path=path, mode="r")
    if a.shape != b.shape:
        return float("nan")
    step = 131_072
    gap = 0.0
    for start in range(0, a.shape[0], step):
        x = np.asarray(a[start : start + step], dtype=np.float64)
        y = np.asarray(b[start : start + step], dtype=np.float64)
        if not np.array_equal(np.isnan(x), np.isnan(y)):
            return float("nan")
        gap = max(gap, float(np.nanmax(np.abs(x - y), initial=0.0)))
    return gap


# ---------------------------------------------------------------- report
def _gib(b: float) -> str:
    return f"{b / 2**30:.2f} GiB"


def _fmt_gap(g: float | None) -> str:
    return "-" if g is None else f"{g:.1e}"


def report(results: dict[str, Any], out: Path, command: str) -> None:
    import psutil

    meta = results["_meta"]
    by = {p: r for p, r in results.items() if not p.startswith("_")}
    floor = by.get("read", {}).get("wall_s")
    lines = [
        "# Apply benchmark results", "",
        "Generated by `benchmarks/apply.py`; every number below comes from one run of:", "",
        f"    {command}", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{round(psutil.virtual_memory().total / 2**30)} GiB RAM, "
        f"Python {platform.python_version()}. Times are wall seconds of each method's own "
        "process (start-up included); ratios compare methods measured in this one run.", "",
        f"The job: {meta['rows']:,} rows × (a: 256 + b: 256) float32 columns "
        f"({_gib(meta['chunk_bytes'])} of compressed chunks, {_gib(meta['raw_bytes'])} "
        f"decoded) → `pca/a`, `pca/b` (32 each), `mapped/a--b` (32), float64, written to Zarr; "
        f"run {meta['fit']['run_id']} (`mmpipe.fit(components=32, folds=2, pairs=['a:b'])`).", "",
        "| method | wall s | × read | in-process s | peak memory | read (rchar) "
        "| max \\|Δ\\| pca/a | pca/b | mapped/a--b |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for peer, r in by.items():
        ratio = f"{r['wall_s'] / floor:.2f}" if floor else "-"
        inner = r.get("total_s", r.get("compute_s"))
        gaps = r.get("max_abs_diff", {})
        lines.append(
            f"| {peer} | {r['wall_s']:.2f} | {ratio} | {inner:.2f} | {_gib(r['peak_rss_bytes'])} "
            f"| {_gib(r['read_bytes'])} | "
            + " | ".join(_fmt_gap(gaps.get(o)) for o in OUTPUTS)
            + " |"
        )
    lines.append("")
    if "mmpipe" in by:
        m = by["mmpipe"]
        steps = ", ".join(f"{k} {v:.2f} s" for k, v in m["timings"].items())
        lines.append(
            f"- mmpipe's own steps (its `--json` summary): {steps}; {m['blocks']} row blocks, "
            f"output chunks of {m['chunk_rows']:,} rows."
        )
    if "sklearn" in by:
        s = by["sklearn"]
        lines.append(
            f"- sklearn: load (zarr → float64 NumPy) {s['load_s']:.2f} s, compute "
            f"(open_run + to_sklearn + 2 transform + 1 predict) {s['compute_s']:.2f} s, write "
            f"{s['write_s']:.2f} s, total {s['total_s']:.2f} s."
        )
    for floor_peer in ("read", "read-hugepages"):
        if floor_peer in by and "mmpipe" in by:
            ratio = by["mmpipe"]["wall_s"] / by[floor_peer]["wall_s"]
            lines.append(
                f"- Target 1, within 1.5× of `{floor_peer}`: mmpipe is {ratio:.2f}× "
                f"{floor_peer} — " + ("met." if ratio <= 1.5 else "**not met**.")
            )
    peers = [p for p in ("sklearn", "parallelpostfit") if p in by]
    if "mmpipe" in by and peers:
        ahead = [p for p in peers if by["mmpipe"]["wall_s"] < by[p]["wall_s"]]
        behind = [p for p in peers if p not in ahead]
        verdict = "met" if not behind else f"**not met** (behind {', '.join(behind)})"
        lines.append(
            "- Target 2, ahead of both peers on wall time: "
            + ", ".join(
                f"{p} {by[p]['wall_s'] / by['mmpipe']['wall_s']:.2f}× mmpipe" for p in peers
            )
            + f" — {verdict}."
        )
    worst = max((g for r in by.values() for g in r.get("max_abs_diff", {}).values()), default=None)
    if worst is not None:
        ok = worst <= TOLERANCE  # NaN (shape or missing-row mismatch) is not ok
        lines.append(
            f"- Agreement: the largest |difference| of any output from mmpipe's is {worst:.1e} "
            + (f"(≤ {TOLERANCE:g}: all agree)." if ok else f"— **over {TOLERANCE:g}**.")
        )
    lines += ["",
              "`wall s` is the method's whole process: Python start-up, imports, the cluster "
              "(2 workers × 1 thread; sklearn has none), reading, computing and writing. "
              "`in-process s` leaves out the process and cluster start-up (for mmpipe: the CLI "
              "as a subprocess, so it is its wall time seen from the method's process; for "
              "sklearn: load + compute + write). `read` writes nothing; the others write the "
              "same three float64 arrays with zarr's default codec (mmpipe also copies the "
              "dataset's `ids`). `read (rchar)` counts every byte the method's processes read "
              "through system calls (store files, Python's start-up, data between Dask "
              "processes). The store's chunk files were read once before the first method, so "
              "every method starts from a warm page cache.",
              ""]  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--peers", default=PEERS_DEFAULT)
    parser.add_argument("--data", default="data/bench")
    parser.add_argument("--out", default="benchmarks/RESULTS-apply.md")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--results", help=argparse.SUPPRESS)
    parser.add_argument("--peer-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:  # child process: one method, JSON on the last line
        result = PEERS[args.peer](args.store, args.results, args.peer_out)
        print(json.dumps(result | {"read_bytes": tree_read_chars()}))
        return
    root = Path(args.data)
    root.mkdir(parents=True, exist_ok=True)
    store = make_data(root, args.rows)
    suffix = "" if args.rows == 1_000_000 else f"-{args.rows}"
    fit = fitted_run(store, root / f"apply-results{suffix}.zarr")
    results_path = str(root / f"apply-results{suffix}.zarr")
    scratch = root / f"apply-scratch{suffix}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    raw = args.rows * 2 * 256 * 4
    results: dict[str, Any] = {
        "_meta": {"rows": args.rows, "store": store, "results": results_path, "fit": fit,
                  "chunk_bytes": store_bytes(store, chunks_only=True), "raw_bytes": raw},
    }  # fmt: skip
    warm(store)
    peers = args.peers.split(",")
    reference = str(scratch / "mmpipe.zarr")
    # mmpipe first: every other method's outputs are compared with its, then deleted.
    for peer in sorted(peers, key=lambda p: p != "mmpipe"):
        print(f"{peer} ...", file=sys.stderr, flush=True)
        out = str(scratch / f"{peer}.zarr")
        results[peer] = r = measure(peer, store, results_path, out)
        print(f"  {r['wall_s']:.1f} s", file=sys.stderr, flush=True)
        if not peer.startswith("read") and "mmpipe" in peers:
            r["max_abs_diff"] = {
                o: 0.0 if peer == "mmpipe" else max_difference(out, reference, o) for o in OUTPUTS
            }
            bad = {o: g for o, g in r["max_abs_diff"].items() if not g <= TOLERANCE}
            if bad:
                print(f"WARNING: {peer} differs from mmpipe: {bad}", file=sys.stderr)
        if peer != "mmpipe":
            shutil.rmtree(out, ignore_errors=True)
    results = {"_meta": results["_meta"], **{p: results[p] for p in peers if p in results}}
    shutil.rmtree(scratch, ignore_errors=True)
    command = " ".join([".venv/bin/python", "benchmarks/apply.py", *sys.argv[1:]])
    out_md = Path(args.out)
    report(results, out_md, command)
    print(out_md.read_text())


if __name__ == "__main__":
    main()
