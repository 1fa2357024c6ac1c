"""The fixed benchmark job, mmpipe against its peers on the same data, folds and machine.

    .venv/bin/python benchmarks/run.py [--sizes 100000,1000000]
        [--peers limit,mmpipe,mmpipe32,sklearn,daskml] [--data data/bench]
        [--out benchmarks/RESULTS.md]

The job: two modalities of 256 float32 columns (row-chunked Zarr from `mmpipe synth`),
standardize, PCA to 32 per modality, ridge both directions for 5 α, 5-fold CV. Each method
runs in its own process. A sampler records the peak resident memory of that process tree; the
process reports the bytes its tree read (rchar, see :func:`tree_read_chars`). The methods:

- mmpipe: `mmpipe fit` on a LocalCluster of 2 workers × 1 thread;
- mmpipe32: the same with `--precision float32`;
- sklearn: the data loaded in memory, then StandardScaler + PCA(covariance_eigh) + Ridge per
  fold and α;
- daskml: dask-ml StandardScaler + PCA (tsqr) + `dask.array.linalg.lstsq` on the
  ridge-augmented system, per fold and α, on the same kind of cluster;
- limit: NumPy computing one Gram Zᵀ Z of the data held in memory as float64, the arithmetic
  every exact method must at least do (loading excluded).

Every method reports the mean CV R² of both directions at every α. The report checks that
they agree to 1e-5, and gives time ratios measured in this one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)
WIDTH, COMPONENTS, FOLDS = 256, 32, 5
BIN = Path(sys.executable).parent


# ---------------------------------------------------------------- the peers, one per process
def plan_assignment(n: int) -> np.ndarray:
    from mmpipe.stats.folds import kfold_plan

    return kfold_plan(n, FOLDS, seed=0).assignment


def load(store: str) -> dict[str, np.ndarray]:
    import zarr

    root = zarr.open_group(store, mode="r")
    return {n: np.asarray(root[f"modalities/{n}"][...], dtype=np.float64) for n in ("a", "b")}


def peer_sklearn(store: str) -> dict[str, Any]:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    views = load(store)
    loaded = time.perf_counter()
    folds = plan_assignment(len(views["a"]))
    r2 = {d: np.zeros((FOLDS, len(ALPHAS))) for d in ("a:b", "b:a")}
    for f in range(FOLDS):
        tr, va = folds != f, folds == f
        scores = {}
        for n, x in views.items():
            scaler = StandardScaler().fit(x[tr])
            pca = PCA(COMPONENTS, svd_solver="covariance_eigh").fit(scaler.transform(x[tr]))
            scores[n] = (
                pca.transform(scaler.transform(x[tr])),
                pca.transform(scaler.transform(x[va])),
            )
        for d in r2:
            s, t = d.split(":")
            for i, alpha in enumerate(ALPHAS):
                model = Ridge(alpha=alpha).fit(scores[s][0], scores[t][0])
                r2[d][f, i] = r2_score(scores[t][1], model.predict(scores[s][1]))
    done = time.perf_counter()
    return {"r2": {d: v.mean(axis=0).tolist() for d, v in r2.items()},
            "load_s": loaded - start, "compute_s": done - loaded}  # fmt: skip


def peer_daskml(store: str) -> dict[str, Any]:
    import dask.array as da
    from dask_ml.decomposition import PCA
    from dask_ml.preprocessing import StandardScaler
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                      host="127.0.0.1") as cluster, Client(cluster):  # fmt: skip
        start = time.perf_counter()
        views = {n: da.from_zarr(store, component=f"modalities/{n}").astype(np.float64)
                 for n in ("a", "b")}  # fmt: skip
        n_rows = views["a"].shape[0]
        folds = plan_assignment(n_rows)
        r2 = {d: np.zeros((FOLDS, len(ALPHAS))) for d in ("a:b", "b:a")}
        for f in range(FOLDS):
            tr, va = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
            scores = {}
            for n, x in views.items():
                xt, xv = x[tr], x[va]
                scaler = StandardScaler().fit(xt)
                pca = PCA(n_components=COMPONENTS, svd_solver="tsqr").fit(scaler.transform(xt))
                scores[n] = (pca.transform(scaler.transform(xt)).persist(),
                             pca.transform(scaler.transform(xv)).persist())  # fmt: skip
            for d in r2:
                s, t = d.split(":")
                (s_tr, s_va), (t_tr, t_va) = scores[s], scores[t]
                t_va_np = t_va.compute()
                ss_tot = ((t_va_np - t_va_np.mean(axis=0)) ** 2).sum(axis=0)
                for i, alpha in enumerate(ALPHAS):
                    # Train scores are centered: ridge without intercept on [S; √α I], [T; 0].
                    a = da.concatenate([s_tr, da.from_array(np.sqrt(alpha) * np.eye(COMPONENTS))])
                    b = da.concatenate([t_tr, da.zeros((COMPONENTS, COMPONENTS))])
                    a = a.rechunk({0: 100_000, 1: -1})
                    b = b.rechunk({0: 100_000, 1: -1})
                    w = da.linalg.lstsq(a, b)[0].compute()
                    pred = s_va.compute() @ w
                    r2[d][f, i] = float(np.mean(1 - ((t_va_np - pred) ** 2).sum(0) / ss_tot))
        done = time.perf_counter()
    return {"r2": {d: v.mean(axis=0).tolist() for d, v in r2.items()}, "compute_s": done - start}


def peer_limit(store: str) -> dict[str, Any]:
    views = load(store)
    z = np.concatenate([views["a"], views["b"]], axis=1)
    del views
    start = time.perf_counter()
    gram = z.T @ z
    done = time.perf_counter()
    return {"compute_s": done - start, "check": float(gram[0, 0])}


def peer_mmpipe(store: str, precision: str = "float64") -> dict[str, Any]:
    args = [str(BIN / "mmpipe"), "fit", store, "--pair", "a:b", "--pair", "b:a",
            "--components", str(COMPONENTS), "--folds", str(FOLDS),
            "--alphas", ",".join(map(str, ALPHAS)), "--workers", "2", "--threads", "1",
            "--precision", precision, "--json"]  # fmt: skip
    start = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    done = time.perf_counter()
    info = json.loads(out)
    r2 = {f"{p['source']}:{p['target']}": p["r2_by_alpha"] for p in info["pairs"]}
    return {"r2": r2, "compute_s": done - start, "timings": info["timings"]}


def peer_reads(store: str) -> dict[str, Any]:
    """mmpipe.fit in this process on a store that counts the bytes it returns (not timed)."""
    import zarr.storage

    import mmpipe

    class Counting(zarr.storage.WrapperStore[zarr.storage.LocalStore]):
        total = 0

        async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
            value = await self._store.get(key, prototype, byte_range)
            if value is not None and "/c/" in key:
                Counting.total += len(value)
            return value

    counting = Counting(zarr.storage.LocalStore(store, read_only=True))
    mmpipe.fit(counting, pairs=["a:b", "b:a"], components=COMPONENTS, folds=FOLDS, alphas=ALPHAS)
    return {"chunk_bytes_read": Counting.total}


def peer_mmpipe32(store: str) -> dict[str, Any]:
    """mmpipe with --precision float32 (each block's Gram in float32)."""
    return peer_mmpipe(store, "float32")


PEERS = {
    "reads": peer_reads,
    "mmpipe": peer_mmpipe,
    "mmpipe32": peer_mmpipe32,
    "sklearn": peer_sklearn,
    "daskml": peer_daskml,
    "limit": peer_limit,
}


# ---------------------------------------------------------------- measurement harness
def tree_read_chars() -> int:
    """Bytes read (rchar) by this process and every descendant it has waited for.

    Linux adds a reaped child's I/O counters to its parent's, so this one number, read by
    the peer process after its workers and subprocesses have exited, covers the whole tree
    exactly once. (Summing every process's own counter, as an earlier version of this
    harness did, counted a worker's reads again in each ancestor that reaped it.)
    """
    import psutil

    return int(psutil.Process().io_counters().read_chars)


def measure(peer: str, store: str) -> dict[str, Any]:
    """Run one peer in a child process; sample its process tree's peak RSS."""
    return measure_command([sys.executable, __file__, "--peer", peer, "--store", store], peer)


def measure_command(command: list[str], peer: str) -> dict[str, Any]:
    """Run ``command`` (which prints a JSON object as its last line), sampling its process
    tree's peak RSS; the object with ``wall_s`` and ``peak_rss_bytes`` added."""
    import psutil

    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    root = psutil.Process(child.pid)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            total = 0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            peak = max(peak, total)
            time.sleep(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    out, _ = child.communicate()
    wall = time.perf_counter() - start
    stop.set()
    thread.join()
    if child.returncode != 0:
        raise RuntimeError(f"{peer} failed with exit code {child.returncode}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result |= {"wall_s": wall, "peak_rss_bytes": peak}
    return result


def make_data(root: Path, n: int) -> str:
    from mmpipe.io.synth import SynthSpec, synthesize

    path = root / f"bench-{n}.zarr"
    if path.exists() and not _written_as_synth_writes(path):
        shutil.rmtree(path)  # made by an older mmpipe: another codec
    if not path.exists():
        synthesize(path, SynthSpec(rows=n, modalities={"a": WIDTH, "b": WIDTH}, latent_dim=16,
                                   noise=1.0, chunk_rows=32_768, seed=0))  # fmt: skip
    return str(path)


def _written_as_synth_writes(path: Path) -> bool:
    import zarr

    from mmpipe.io.storage import MODALITY_COMPRESSORS

    written = zarr.open_array(str(path / "modalities" / "a"), mode="r").compressors
    return [c.to_dict()["name"] for c in written] == [
        c.to_dict()["name"] for c in MODALITY_COMPRESSORS
    ]


def r2_gap(r2: dict[str, list[float]], reference: dict[str, list[float]]) -> float:
    """Largest |ΔR²| over directions and α."""
    return max(float(np.max(np.abs(np.subtract(r2[d], reference[d])))) for d in reference)


def store_bytes(path: str, *, chunks_only: bool = False) -> int:
    files = [f for f in Path(path).rglob("*") if f.is_file()]
    if chunks_only:  # the modalities' chunks, what a fit must read
        files = [f for f in files if "/modalities/" in f.as_posix() and "/c/" in f.as_posix()]
    return sum(f.stat().st_size for f in files)


def report(results: dict[int, dict[str, Any]], out: Path, command: str) -> None:
    lines = [
        "# Benchmark results", "",
        "Generated by `benchmarks/run.py`; every number below comes from one run of:", "",
        f"    {command}", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{round(__import__('psutil').virtual_memory().total / 2**30)} GiB RAM, "
        f"Python {platform.python_version()}. Times are wall seconds of each method's own process "
        "(start-up included); ratios compare methods measured in the same run.", "",
        "| rows | dataset on disk | method | wall s | × limit | peak memory | read (rchar) | "
        "max \\|ΔR²\\| vs mmpipe |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for n, by_peer in results.items():
        limit = by_peer.get("limit", {}).get("compute_s")
        reference = by_peer.get("mmpipe", {}).get("r2")
        for peer, r in by_peer.items():
            if peer in ("_meta", "reads"):
                continue
            seconds = r["wall_s"] if peer != "limit" else r["compute_s"]
            ratio = f"{seconds / limit:.1f}" if limit else "-"
            gap = "-"
            if reference and "r2" in r and peer != "mmpipe":
                gap = f"{r2_gap(r['r2'], reference):.1e}"
            lines.append(
                f"| {n:,} | {by_peer['_meta']['bytes'] / 2**30:.2f} GiB | {peer} | {seconds:.2f} "
                f"| {ratio} | {r['peak_rss_bytes'] / 2**30:.2f} GiB "
                f"| {r['read_bytes'] / 2**30:.2f} GiB | {gap} |"
            )
    lines += [""]
    for n, by_peer in results.items():
        if "mmpipe" in by_peer:
            steps = ", ".join(f"{k} {v:.2f} s" for k, v in by_peer["mmpipe"]["timings"].items())
            lines.append(f"- n = {n:,}: mmpipe's own steps: {steps}.")
        passes = by_peer["_meta"].get("passes_over_chunks")
        if passes is not None:
            lines.append(
                f"- n = {n:,}: a whole mmpipe fit read {passes:.3f} × the bytes of the modalities' "
                "chunks (counted by a wrapping store; 1 = every chunk exactly once)."
            )
    lines += ["", "`limit` times only the Gram product (data already in memory as float64).",
              "`mmpipe` wall time includes starting Python, the LocalCluster and writing nothing "
              "(no --out).",
              "`read (rchar)` is every byte the method's processes read through system calls: "
              "store files, Python's own start-up, and data sent between Dask processes.",
              ""]  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    (out.with_suffix(".json")).write_text(json.dumps(results, indent=1, default=str))


def plot(results: dict[int, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    peers = [
        p
        for p in ("limit", "mmpipe", "mmpipe32", "sklearn", "daskml")
        if any(p in r for r in results.values())
    ]
    sizes = sorted(results)
    for peer in peers:
        xs = [n for n in sizes if peer in results[n]]
        ys = [results[n][peer]["compute_s" if peer == "limit" else "wall_s"] for n in xs]
        ax.plot(xs, ys, marker="o", label=peer)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows")
    ax.set_ylabel("wall seconds")
    ax.set_title("standardize + PCA 32 + ridge ×2 directions ×5 α, 5-fold CV")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--peers", default="limit,mmpipe,mmpipe32,sklearn,daskml")
    parser.add_argument("--data", default="data/bench")
    parser.add_argument("--out", default="benchmarks/RESULTS.md")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:  # child process: one method, JSON on the last line
        result = PEERS[args.peer](args.store)
        print(json.dumps(result | {"read_bytes": tree_read_chars()}))
        return
    root = Path(args.data)
    root.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict[str, Any]] = {}
    for n in (int(s) for s in args.sizes.split(",")):
        store = make_data(root, n)
        chunks = store_bytes(store, chunks_only=True)
        results[n] = {"_meta": {"bytes": store_bytes(store), "chunk_bytes": chunks}}
        if "mmpipe" in args.peers:
            # The same fit on a counting store: every chunk byte read, and how many times.
            read = measure("reads", store)["chunk_bytes_read"]
            results[n]["_meta"]["passes_over_chunks"] = read / chunks
        for peer in args.peers.split(","):
            print(f"n={n:,}: {peer} ...", file=sys.stderr, flush=True)
            results[n][peer] = measure(peer, store)
            print(f"  {results[n][peer]['wall_s']:.1f} s", file=sys.stderr, flush=True)
        reference = results[n].get("mmpipe", {}).get("r2")
        for peer, r in results[n].items():
            if reference and isinstance(r, dict) and "r2" in r and peer != "mmpipe":
                gap = r2_gap(r["r2"], reference)
                if gap > 1e-5:
                    print(
                        f"WARNING: {peer} CV R² differs from mmpipe by {gap:.2e}", file=sys.stderr
                    )
    out = Path(args.out)
    command = "benchmarks/run.py " + " ".join(sys.argv[1:])
    report(results, out, command)
    plot(results, out.with_name(out.stem.lower() + ".png"))
    print(out.read_text())


if __name__ == "__main__":
    main()
