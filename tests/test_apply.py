"""mmpipe.apply / `mmpipe apply`: a fitted run applied to another dataset in one chunked pass.

The run is fitted on one synthetic dataset and applied to another with the same modalities
(another seed, some rows masked out). Outputs are checked against the run's own NumPy methods
on the rows in memory and against scikit-learn fitted on the same training rows.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from helpers import one_error_line
from typer.testing import CliRunner

import mmpipe
from mmpipe.cli import app
from mmpipe.errors import ConfigError, DatasetError, MmpipeError, ResultsError
from mmpipe.fitted import FittedRun
from mmpipe.io.dataset import write_dataset
from mmpipe.io.synth import SynthSpec, synthesize
from mmpipe.loading import open_run
from mmpipe.options import ApplyOptions

WIDTHS = {"a": 10, "b": 8, "c": 6}
K = 4
ALPHAS = (0.1, 1.0, 10.0)
ALL = {
    "embed": ["a", "b"],
    "map": ["a:b", "c:a"],
    "classify": ["a", "a+b"],
    "impute": True,
    "features": True,
}


def _synth(path: Path, *, seed: int, rows: int, chunk_rows: int, missing: float = 0.0) -> str:
    return synthesize(
        path,
        SynthSpec(
            rows=rows,
            modalities=WIDTHS,
            classes=3,
            latent_dim=4,
            seed=seed,
            chunk_rows=chunk_rows,
            missing_fraction=missing,
        ),
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A run fitted on one dataset (seed 1, no missing rows) and another dataset to apply it
    to (seed 2, a quarter of each modality masked out)."""
    root = tmp_path_factory.mktemp("apply")
    train = _synth(root / "train.zarr", seed=1, rows=1200, chunk_rows=200)
    results = str(root / "results.zarr")
    fit = mmpipe.fit(
        train,
        out=results,
        components=K,
        alphas=ALPHAS,
        folds=3,
        classify=["a", "a+b"],
        logistic=True,
    )
    new = _synth(root / "new.zarr", seed=2, rows=1000, chunk_rows=128, missing=0.25)
    return {"root": root, "train": train, "results": results, "fit": fit, "new": new}


def _read(url: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    g = zarr.open_group(url, mode="r")
    xs = {n: np.asarray(g[f"modalities/{n}"][...]) for n in WIDTHS}
    masks = {n: np.asarray(g[f"masks/{n}"][...]) for n in WIDTHS if f"masks/{n}" in g}
    return xs, masks, np.asarray(g["ids"][...])


def _outputs(url: str) -> dict[str, np.ndarray]:
    g = zarr.open_group(url, mode="r")
    return {
        path: np.asarray(node[...])
        for path, node in g.members(max_depth=None)
        if isinstance(node, zarr.Array)
    }


def _apply(trained: dict[str, Any], out: Path, dataset: str | None = None, **kw: Any) -> dict:
    options = {**ALL, **kw}
    return mmpipe.apply(trained["results"], dataset or trained["new"], out, **options)


# -- what it writes ------------------------------------------------------------------------


def test_outputs_equal_the_run_applied_in_memory(trained: dict[str, Any], tmp_path: Path) -> None:
    summary = _apply(trained, tmp_path / "out.zarr")
    run = open_run(trained["results"])
    xs, masks, ids = _read(trained["new"])
    got = _outputs(str(tmp_path / "out.zarr"))
    n = ids.size

    def on_present(names: tuple[str, ...], make: Any, width: int | None) -> np.ndarray:
        here = np.logical_and.reduce([masks[m] for m in names])
        out = np.full((n,) if width is None else (n, width), np.nan)
        out[here] = make(here)
        return out

    expected = {
        "pca/a": on_present(("a",), lambda h: run.transform(xs["a"][h], "a"), K),
        "pca/b": on_present(("b",), lambda h: run.transform(xs["b"][h], "b"), K),
        "mapped/a--b": on_present(("a",), lambda h: run.map(xs["a"][h], "a", "b"), K),
        "mapped/c--a": on_present(("c",), lambda h: run.map(xs["c"][h], "c", "a"), K),
        "mapped_features/a--b": on_present(
            ("a",), lambda h: run.map(xs["a"][h], "a", "b", features=True), WIDTHS["b"]
        ),
        "probabilities/a+b": on_present(
            ("a", "b"),
            lambda h: run.predict_proba({"a": xs["a"][h], "b": xs["b"][h]}, "a+b"),
            3,
        ),
    }
    for path, want in expected.items():
        np.testing.assert_allclose(got[path], want, rtol=1e-12, atol=1e-12, err_msg=path)
    for key, names in (("a", ("a",)), ("a+b", ("a", "b"))):
        here = np.logical_and.reduce([masks[m] for m in names])
        want = np.full(n, summary["missing_label"])
        want[here] = run.predict({m: xs[m][here] for m in names}, key)
        np.testing.assert_array_equal(got[f"predictions/{key}"], want)
        assert summary["outputs"][f"predictions/{key}"]["nan_rows"] == int((~here).sum())
    np.testing.assert_array_equal(got["ids"], ids)

    # Every output has the input's rows, in the input's row chunks, and says how many rows
    # got no value; the attrs say the same as the summary.
    attrs = dict(zarr.open_group(str(tmp_path / "out.zarr"), mode="r").attrs)
    assert attrs["status"] == "complete"
    assert attrs["run_id"] == run.run_id == summary["run_id"]
    assert attrs["fingerprint"] == run.fingerprint
    assert attrs["outputs"] == summary["outputs"]
    assert attrs["options"] == ApplyOptions.parse(ALL, "x").model_dump(mode="json")
    assert summary["rows"] == n
    assert summary["chunk_rows"] == 128
    g = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    assert g["pca/a"].chunks == (128, K)
    assert summary["outputs"]["pca/a"]["nan_rows"] == int((~masks["a"]).sum()) > 0
    assert got["pca/a"].dtype == np.float64


def test_impute_fills_only_masked_rows_with_a_source(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    summary = _apply(trained, tmp_path / "out.zarr", embed=[], map=[], classify=[], features=False)
    run = open_run(trained["results"])
    xs, masks, _ = _read(trained["new"])
    got = _outputs(str(tmp_path / "out.zarr"))
    assert sorted(run.imputable()) == ["a", "b", "c"]
    for target in WIDTHS:
        sources = [s for s, t in run.pairs if t == target]
        has_source = np.logical_or.reduce([masks[s] for s in sources])
        imputed = got[f"imputed_mask/{target}"]
        np.testing.assert_array_equal(imputed, ~masks[target] & has_source)
        values = got[f"imputed/{target}"]
        assert np.isnan(values[~imputed]).all()
        assert np.isfinite(values[imputed]).all()
        want, want_imputed = run.impute(xs, masks, target)
        np.testing.assert_array_equal(want_imputed, imputed)
        np.testing.assert_allclose(values[imputed], np.asarray(want)[imputed], rtol=1e-12)
        info = summary["outputs"][f"imputed/{target}"]
        assert info["imputed_rows"] == int(imputed.sum())
        assert info["nan_rows"] == int((~imputed).sum())


def test_impute_a_modality_the_dataset_lacks(trained: dict[str, Any], tmp_path: Path) -> None:
    xs, masks, _ = _read(trained["new"])
    url = write_dataset(
        tmp_path / "two.zarr",
        {"a": xs["a"], "b": xs["b"]},
        masks={"a": masks["a"], "b": masks["b"]},
        chunk_rows=128,
    )
    options = ApplyOptions(embed=("a",))
    summary = mmpipe.apply(trained["results"], url, tmp_path / "out.zarr", options, impute=True)
    assert summary["options"]["embed"] == ["a"]  # the object's values, with the keywords'
    got = _outputs(str(tmp_path / "out.zarr"))
    run = open_run(trained["results"])
    # c is in no row: imputed wherever a or b is present, from the better of the two.
    np.testing.assert_array_equal(got["imputed_mask/c"], masks["a"] | masks["b"])
    full = {**xs, "c": np.full((xs["a"].shape[0], WIDTHS["c"]), np.nan, dtype=np.float32)}
    present = {**masks, "c": np.zeros(xs["a"].shape[0], dtype=bool)}
    want, imputed = run.impute(full, present, "c")
    np.testing.assert_array_equal(imputed, got["imputed_mask/c"])
    np.testing.assert_allclose(got["imputed/c"][imputed], want[imputed], rtol=1e-12)
    assert summary["outputs"]["imputed/c"]["imputed_rows"] == int(imputed.sum())


def test_oracle_scikit_learn_on_the_training_rows(trained: dict[str, Any], tmp_path: Path) -> None:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    _apply(trained, tmp_path / "out.zarr", embed=["a", "b"], map=["a:b"], classify=[],
           impute=False, features=False)  # fmt: skip
    train, _, _ = _read(trained["train"])
    new, masks, _ = _read(trained["new"])
    got = _outputs(str(tmp_path / "out.zarr"))

    def scores(name: str) -> tuple[np.ndarray, np.ndarray]:
        scaler = StandardScaler().fit(train[name].astype(np.float64))
        pca = PCA(K, svd_solver="covariance_eigh").fit(scaler.transform(train[name]))
        here = masks[name]
        return pca.transform(scaler.transform(train[name])), pca.transform(
            scaler.transform(new[name][here])
        )

    (ta, na), (tb, _) = scores("a"), scores("b")
    scale = np.abs(na).max()
    np.testing.assert_allclose(got["pca/a"][masks["a"]], na, atol=1e-6 * scale)
    np.testing.assert_allclose(got["pca/b"][masks["b"]], scores("b")[1], atol=1e-6 * scale)
    alpha = trained["fit"].pair("a", "b").alpha
    mapped = Ridge(alpha=alpha, solver="svd").fit(ta, tb).predict(na)
    np.testing.assert_allclose(got["mapped/a--b"][masks["a"]], mapped, atol=1e-6 * scale)


def test_cca_space(trained: dict[str, Any], tmp_path: Path) -> None:
    _apply(trained, tmp_path / "out.zarr", embed=[], map=["a:b"], space="cca", classify=[],
           impute=False, features=False)  # fmt: skip
    run = open_run(trained["results"])
    xs, masks, _ = _read(trained["new"])
    got = _outputs(str(tmp_path / "out.zarr"))
    assert {p for p in got if p.startswith("cca/")} == {"cca/a--b/a", "cca/a--b/b"}
    for side, name in (("source", "a"), ("target", "b")):
        here = masks[name]
        want = run.cca(xs[name][here], "a", "b", side)
        np.testing.assert_allclose(got[f"cca/a--b/{name}"][here], want, rtol=1e-12, atol=1e-12)
        assert np.isnan(got[f"cca/a--b/{name}"][~here]).all()


def test_non_finite_rows_get_nan_and_are_counted(trained: dict[str, Any], tmp_path: Path) -> None:
    xs, _, _ = _read(trained["train"])
    xs["a"][[3, 7]] = np.nan
    xs["a"][11, 2] = np.inf
    url = write_dataset(tmp_path / "nan.zarr", xs, chunk_rows=100)
    summary = mmpipe.apply(trained["results"], url, tmp_path / "out.zarr", embed=["a"])
    got = _outputs(str(tmp_path / "out.zarr"))
    assert summary["outputs"]["pca/a"]["nan_rows"] == 3
    assert np.isnan(got["pca/a"][[3, 7, 11]]).all()
    assert np.isfinite(np.delete(got["pca/a"], [3, 7, 11], axis=0)).all()
    assert "ids" not in got  # the dataset has none


def test_same_outputs_whatever_the_input_chunking(trained: dict[str, Any], tmp_path: Path) -> None:
    other = _synth(tmp_path / "new.zarr", seed=2, rows=1000, chunk_rows=333, missing=0.25)
    _apply(trained, tmp_path / "out.zarr", dataset=other)
    first = _outputs(str(tmp_path / "out.zarr"))
    _apply(trained, tmp_path / "ref.zarr")
    second = _outputs(str(tmp_path / "ref.zarr"))
    assert first.keys() == second.keys()
    for path in first:
        np.testing.assert_allclose(first[path], second[path], rtol=1e-12, atol=1e-12)
    blocked = mmpipe.open_dataset(other, chunk_rows=333 * 2)  # several blocks of two chunks
    summary = _apply(trained, tmp_path / "blocked.zarr", dataset=blocked)
    assert summary["blocks"] == 2
    assert summary["chunk_rows"] == 333
    for path, values in _outputs(str(tmp_path / "blocked.zarr")).items():
        np.testing.assert_allclose(values, second[path], rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_same_outputs_on_a_local_cluster(
    trained: dict[str, Any], tmp_path: Path, local_client: Any
) -> None:
    _apply(trained, tmp_path / "here.zarr")
    summary = mmpipe.apply(trained["results"], trained["new"], tmp_path / "two.zarr",
                           client=local_client, **ALL)  # fmt: skip
    assert summary["status"] == "complete"
    here = _outputs(str(tmp_path / "here.zarr"))
    for path, values in _outputs(str(tmp_path / "two.zarr")).items():
        np.testing.assert_allclose(values, here[path], rtol=1e-12, atol=1e-12, err_msg=path)


@pytest.mark.slow
def test_cli_on_an_existing_cluster(trained: dict[str, Any], tmp_path: Path) -> None:
    from orchestration.servers import dask_processes

    _apply(trained, tmp_path / "here.zarr")
    flags = ["--embed", "a", "--embed", "b", "--map", "a:b", "--map", "c:a", "--classify",
             "a", "--classify", "a+b", "--impute", "--features"]  # fmt: skip
    with dask_processes(tmp_path) as cluster:
        result = CliRunner().invoke(
            app,
            [
                "apply",
                trained["results"],
                trained["new"],
                "--out",
                str(tmp_path / "far.zarr"),
                *flags,
                "--address",
                cluster.address,
                "--json",
            ],
        )
        assert result.exit_code == 0, result.output
        assert cluster.running()
    summary = json.loads(result.stdout)
    assert summary["status"] == "complete"
    here = _outputs(str(tmp_path / "here.zarr"))
    far = _outputs(str(tmp_path / "far.zarr"))
    assert far.keys() == here.keys()
    for path, values in far.items():
        np.testing.assert_allclose(values, here[path], rtol=1e-12, atol=1e-12, err_msg=path)


def test_cli_table(trained: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out.zarr"
    result = CliRunner().invoke(
        app, ["apply", trained["results"], trained["new"], "--out", str(out), "--embed", "a"]
    )
    assert result.exit_code == 0, result.output
    assert "pca/a" in result.stdout
    assert "complete" in result.stdout
    assert dict(zarr.open_group(str(out), mode="r").attrs)["status"] == "complete"


def test_mmpipe_apply_is_the_function_however_imported() -> None:
    import importlib

    module = importlib.import_module("mmpipe.applying")  # importing the module first...
    assert mmpipe.apply is module.apply  # ...leaves the package's name for the function


# -- bad input: a clear error, nothing written ------------------------------------------


def _bad_inputs(trained: dict[str, Any], tmp: Path) -> dict[str, tuple[Any, ...]]:
    xs, _, _ = _read(trained["train"])
    missing = write_dataset(tmp / "missing.zarr", {"a": xs["a"], "c": xs["c"]}, chunk_rows=500)
    narrow = write_dataset(tmp / "narrow.zarr", {**xs, "b": xs["b"][:, :7]}, chunk_rows=500)
    complex_ = write_dataset(
        tmp / "complex.zarr", {**xs, "a": xs["a"].astype(np.complex64)}, chunk_rows=500
    )
    incomplete = tmp / "incomplete.zarr"
    from mmpipe.io.results import RunWriter

    RunWriter.begin(incomplete, dataset=trained["train"], heartbeat_seconds=0).close()
    r, new = trained["results"], trained["new"]
    embed_b = ["--embed", "b"]
    return {
        # name: (results, dataset, out, flags, error class, message)
        "missing modality": (r, missing, "out.zarr", embed_b, DatasetError, r"no modality 'b'"),
        "wrong width": (r, narrow, "out.zarr", embed_b, DatasetError, r"7 columns .* fitted on 8"),
        "wrong dtype": (r, complex_, "out.zarr", ["--embed", "a"], DatasetError, "not numeric"),
        "incomplete run": (str(incomplete), new, "out.zarr", embed_b, ResultsError, "complete"),
        "results as dataset": (r, r, "out.zarr", embed_b, DatasetError, "results store"),
        "dataset as results": (
            new,
            new.replace("new", "other"),
            "out.zarr",
            embed_b,
            ResultsError,
            "results store",
        ),
        "out inside the input": (
            r,
            new,
            os.path.join(new, "out"),
            embed_b,
            ResultsError,
            "inside the input dataset",
        ),
        "out is the results": (r, new, r, embed_b, ResultsError, "is the results store"),
        "out inside the results": (
            r,
            new,
            os.path.join(r, "x"),
            embed_b,
            ResultsError,
            "inside the results store",
        ),
        "out exists": (r, new, trained["train"], embed_b, ResultsError, "already exists"),
        "nothing to apply": (r, new, "out.zarr", [], ConfigError, "nothing to apply"),
        "unknown embed": (
            r,
            new,
            "out.zarr",
            ["--embed", "zz"],
            ConfigError,
            r"embed 'zz'.*it has: a, b, c",
        ),
        "unknown map": (
            r,
            new,
            "out.zarr",
            ["--map", "a:zz"],
            ConfigError,
            r"map a:zz.*it has: a:b",
        ),
        "unknown classifier": (
            r,
            new,
            "out.zarr",
            ["--classify", "b"],
            ConfigError,
            r"classify 'b'.*it has: a, a\+b",
        ),
    }


BAD = [
    "missing modality",
    "wrong width",
    "wrong dtype",
    "incomplete run",
    "results as dataset",
    "dataset as results",
    "out inside the input",
    "out is the results",
    "out inside the results",
    "out exists",
    "nothing to apply",
    "unknown embed",
    "unknown map",
    "unknown classifier",
]


def _kwargs(flags: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        out.setdefault(flag.removeprefix("--"), []).append(value)
    return out


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_refused_before_anything_is_written(
    case: str, trained: dict[str, Any], tmp_path: Path
) -> None:
    results, dataset, out, flags, error, message = _bad_inputs(trained, tmp_path)[case]
    out = out if os.path.isabs(out) else str(tmp_path / out)
    existed = os.path.exists(out)
    before = sorted(os.listdir(out)) if existed else None
    with pytest.raises(error, match=message):
        mmpipe.apply(results, dataset, out, **_kwargs(flags))
    assert os.path.exists(out) == existed
    assert not existed or sorted(os.listdir(out)) == before
    result = CliRunner().invoke(app, ["apply", results, dataset, "--out", out, *flags])
    one_error_line(result, 2)
    assert os.path.exists(out) == existed


# -- an interrupted apply never looks complete -----------------------------------------


def test_a_pass_that_fails_midway_marks_the_output_failed(
    trained: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mmpipe.stats.apply as stats_apply

    real = stats_apply.compute_block
    seen: list[int] = []
    lock = threading.Lock()

    def third_block_fails(block: Any, run: FittedRun, plan: Any) -> Any:
        with lock:
            seen.append(block.start)
        if block.start == 2 * 128:
            raise RuntimeError("disk on fire in block 3")
        return real(block, run, plan)

    monkeypatch.setattr(stats_apply, "compute_block", third_block_fails)
    dataset = mmpipe.open_dataset(trained["new"], chunk_rows=128)
    out = tmp_path / "out.zarr"
    with pytest.raises(RuntimeError, match="disk on fire"):
        mmpipe.apply(trained["results"], dataset, out, embed=["a"])
    attrs = dict(zarr.open_group(str(out), mode="r").attrs)
    assert attrs["status"] == "failed"
    assert "disk on fire in block 3" in attrs["error"]
    assert "outputs" not in attrs  # the counts are written only with the complete status


def test_an_interrupt_marks_the_output_failed(
    trained: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    import dask

    import mmpipe.stats.apply as stats_apply

    real = stats_apply.compute_block

    def interrupted(block: Any, run: FittedRun, plan: Any) -> Any:
        if block.start == 128:
            signal.raise_signal(signal.SIGTERM)  # the handler raises in the main thread
        return real(block, run, plan)

    monkeypatch.setattr(stats_apply, "compute_block", interrupted)
    dataset = mmpipe.open_dataset(trained["new"], chunk_rows=128)
    out = tmp_path / "out.zarr"
    # One thread, the main one: the signal's handler raises inside the pass.
    with dask.config.set(scheduler="synchronous"), pytest.raises(MmpipeError, match="SIGTERM"):
        mmpipe.apply(trained["results"], dataset, out, embed=["a"])
    attrs = dict(zarr.open_group(str(out), mode="r").attrs)
    assert attrs["status"] == "failed"
    assert "SIGTERM" in attrs["error"]


# -- bounded memory ----------------------------------------------------------------------

LIMIT = 500 * 2**20  # the worker's memory limit


def _worker_rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


@pytest.mark.slow
def test_apply_larger_than_worker_memory(tmp_path: Path) -> None:
    from mmpipe.cluster import ClusterSpec, dask_client

    wide = {"a": 192, "b": 192}

    def spec(rows: int, seed: int) -> SynthSpec:
        return SynthSpec(rows=rows, modalities=wide, classes=3, seed=seed, chunk_rows=16_384)

    train = synthesize(tmp_path / "train.zarr", spec(4000, 1))
    mmpipe.fit(train, out=tmp_path / "results.zarr", components=8, folds=2, classify=["a+b"])
    rows = 1_200_000
    big = synthesize(tmp_path / "big.zarr", spec(rows, 2))
    assert rows * 384 * 4 > 3 * LIMIT  # 1.8 GB against 500 MiB for the only worker
    peak = 0
    stop = threading.Event()
    with dask_client(ClusterSpec(workers=1, memory_limit=LIMIT)) as client:

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                for rss in client.run(_worker_rss).values():
                    peak = max(peak, rss)
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            summary = mmpipe.apply(
                tmp_path / "results.zarr", big, tmp_path / "out.zarr", client=client,
                embed=["a", "b"], map=["a:b"], classify=["a+b"],
            )  # fmt: skip
        finally:
            stop.set()
            sampler.join()
        # No worker was restarted for memory: the same process did the whole pass.
        assert len(client.scheduler_info()["workers"]) == 1
    assert summary["status"] == "complete"
    assert summary["rows"] == rows
    assert summary["blocks"] > 10
    assert 0 < peak < LIMIT, peak / 2**20
    print(f"apply of {rows} rows: peak worker RSS {peak / 2**20:.0f} MiB")
