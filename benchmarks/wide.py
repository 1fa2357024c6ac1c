"""Wide modalities: how to get the top PCA subspace of a 20,000-column modality.

    .venv/bin/python benchmarks/wide.py [--rows 20000] [--width 20000] [--out benchmarks/WIDE.md]

The data: `mmpipe synth` with a modality "wide" of --width float32 columns and "text" of 64,
sharing 16 latent factors. Each method runs in its own process on a LocalCluster of 2 workers
× 1 thread and returns an orthonormal (d, 32) basis of the standardized wide columns:

- mmpipe: `mmpipe.fit` (pairs wide:text and text:wide, 5-fold CV), whose wide modality goes
  through the randomized sketch (1 + 1 power iteration passes) and then the statistics pass;
  the basis is the final PCA's, mapped back from the sketch coordinates;
- svd_compressed: dask's `da.linalg.svd_compressed(k=32, n_power_iter=1)` on the
  standardized Dask array (means and deviations computed first);
- incremental: dask-ml's IncrementalPCA(32) on the standardized Dask array.

Reported: wall seconds of the method's process, its peak memory (process tree), and the
share of the standardized variance its 32 directions capture (higher is better; computed
afterwards, the same way for all).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

K = 32


def _standardized(store: str) -> Any:
    import dask.array as da
    import zarr

    x = da.from_zarr(zarr.open_array(f"{store}/modalities/wide", mode="r")).astype(np.float64)
    mean, std = da.compute(x.mean(axis=0), x.std(axis=0))
    std[std == 0] = 1.0
    return (x - mean) / std


def method_mmpipe(store: str) -> np.ndarray:
    import mmpipe

    result = mmpipe.fit(store, pairs=["wide:text", "text:wide"], components=K, folds=5)
    pca = result.modalities["wide"].pca
    basis: np.ndarray = result.reductions["wide"].basis @ pca.components_.T
    return basis


def method_svd_compressed(store: str) -> np.ndarray:
    import dask.array as da

    xs = _standardized(store).rechunk({0: 2048, 1: -1})
    _, _, vt = da.linalg.svd_compressed(xs, k=K, n_power_iter=1, compute=True, seed=0)
    return np.asarray(vt.compute()).T


def method_incremental(store: str) -> np.ndarray:
    from dask_ml.decomposition import IncrementalPCA

    xs = _standardized(store).rechunk({0: 2048, 1: -1})
    model = IncrementalPCA(n_components=K, batch_size=2048).fit(xs)
    return np.asarray(model.components_).T


METHODS = {
    "mmpipe": method_mmpipe,
    "svd_compressed": method_svd_compressed,
    "incremental": method_incremental,
}


def child(method: str, store: str, basis_path: str) -> None:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster),
    ):
        start = time.perf_counter()
        basis = METHODS[method](store)
        seconds = time.perf_counter() - start
    np.save(basis_path, basis)
    print(json.dumps({"compute_s": seconds}))


def run(method: str, store: str, basis_path: Path) -> dict[str, Any]:
    import psutil

    cmd = [sys.executable, __file__, "--child", method, "--store", store]
    cmd += ["--basis", str(basis_path)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak, stop = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        parent = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                procs = [parent, *parent.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, _ = proc.communicate()
    stop.set()
    thread.join()
    if proc.returncode:
        raise RuntimeError(f"{method} failed ({proc.returncode})")
    info: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return info | {"wall_s": time.perf_counter() - start, "peak_bytes": peak}


def captured(store: str, bases: dict[str, np.ndarray]) -> dict[str, float]:
    """Share of the standardized variance in each basis's span, in one pass over the rows."""
    import zarr

    arr = zarr.open_array(f"{store}/modalities/wide", mode="r")
    n = arr.shape[0]
    total, mean, sq = 0.0, np.zeros(arr.shape[1]), np.zeros(arr.shape[1])
    for lo in range(0, n, 2048):  # means and deviations first
        x = np.asarray(arr[lo : lo + 2048], dtype=np.float64)
        mean += x.sum(axis=0)
        sq += (x**2).sum(axis=0)
    mean /= n
    std = np.sqrt(np.maximum(sq / n - mean**2, 0))
    std[std == 0] = 1.0
    inside = dict.fromkeys(bases, 0.0)
    for lo in range(0, n, 2048):
        xs = (np.asarray(arr[lo : lo + 2048], dtype=np.float64) - mean) / std
        total += float((xs**2).sum())
        for name, basis in bases.items():
            q, _ = np.linalg.qr(basis)
            inside[name] += float(((xs @ q) ** 2).sum())
    return {name: value / total for name, value in inside.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--width", type=int, default=20_000)
    parser.add_argument("--data", default="data/bench")
    parser.add_argument("--out", default="benchmarks/WIDE.md")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--basis", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.store, args.basis)
        return
    from mmpipe.io.synth import SynthSpec, synthesize

    store = Path(args.data) / f"wide-{args.rows}x{args.width}.zarr"
    if not store.exists():
        synthesize(store, SynthSpec(rows=args.rows, modalities={"wide": args.width, "text": 64},
                                    latent_dim=16, noise=1.0, chunk_rows=1024, seed=0))  # fmt: skip
    results, bases = {}, {}
    for method in args.methods.split(","):
        path = Path(args.data) / f"wide-basis-{method}.npy"
        results[method] = run(method, str(store), path)
        bases[method] = np.load(path)
        print(method, results[method], flush=True)
    shares = captured(str(store), bases)
    lines = [
        "# Wide modality: the top-32 subspace of a "
        f"{args.rows:,} × {args.width:,} float32 modality", "",
        "Generated by one run of:", "",
        f"    {' '.join(['benchmarks/wide.py', *sys.argv[1:]])}", "",
        "2 workers × 1 thread (LocalCluster), 2 cores, 24 GiB RAM. Variance captured: share "
        "of the standardized columns' total variance inside the method's 32 directions.", "",
        "| method | wall s | × mmpipe | peak memory | variance captured |",
        "|---|---|---|---|---|",
    ]  # fmt: skip
    base = results.get("mmpipe", {}).get("wall_s")
    for method, r in results.items():
        ratio = f"{r['wall_s'] / base:.1f}" if base else "-"
        lines.append(
            f"| {method} | {r['wall_s']:.1f} | {ratio} | {r['peak_bytes'] / 2**30:.2f} GiB "
            f"| {shares[method]:.4f} |"
        )
    lines.append("")
    Path(args.out).write_text("\n".join(lines))
    record = {"results": results, "captured": shares}
    Path(args.out).with_suffix(".json").write_text(json.dumps(record))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
