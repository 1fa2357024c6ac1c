"""Property tests: over drawn shapes, chunkings, folds and masks, a fit gives the reference
answer (scikit-learn on the same rows of the same folds) or a clear mmpipe error — never a
silent wrong number — and the same answer whatever the chunking.

Hypothesis draws the settings and a seed; NumPy draws the data from the seed, so each example
replays exactly.
"""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error
from sklearn.preprocessing import StandardScaler

import mmpipe
from mmpipe.errors import MmpipeError
from mmpipe.io.dataset import write_dataset

ALPHAS = (0.1, 10.0)
PROPERTY = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI failures reproduce
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def problems(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(40, 160))
    widths = draw(st.lists(st.integers(1, 5), min_size=2, max_size=3))
    return {
        "n": n,
        "widths": widths,
        "store_chunk": draw(st.integers(1, n)),
        "block_rows": draw(st.one_of(st.none(), st.integers(1, n))),
        "folds": draw(st.integers(2, 4)),
        "missing": [draw(st.sampled_from([0.0, 0.0, 0.1, 0.3])) for _ in widths],
        "labels": draw(st.booleans()),
        "dtype": draw(st.sampled_from(["float32", "float64"])),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


def make_data(p: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], Any]:
    rng = np.random.default_rng(p["seed"])
    z = rng.standard_normal((p["n"], 2))
    views, masks = {}, {}
    for i, (w, missing) in enumerate(zip(p["widths"], p["missing"], strict=True)):
        x = z @ rng.standard_normal((2, w)) + 0.7 * rng.standard_normal((p["n"], w))
        # Badly scaled, far from the origin: centering and scaling must be exact.
        x = x * rng.uniform(0.01, 100, w) + rng.normal(0, 1e3, w)
        views[f"m{i}"] = x.astype(p["dtype"])
        if missing:
            masks[f"m{i}"] = rng.random(p["n"]) >= missing
    labels = (z[:, 0] > 0).astype(np.int64) if p["labels"] else None
    return views, masks, labels


def reference_mse(
    xs: np.ndarray, xt: np.ndarray, train: np.ndarray, val: np.ndarray, ks: int, kt: int
) -> np.ndarray:
    """Per α: scikit-learn's scaler → PCA → ridge on the training rows, MSE on validation."""

    def scores(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scaler = StandardScaler().fit(x[train])
        pca = PCA(n_components=k, svd_solver="full").fit(scaler.transform(x[train]))
        return pca.transform(scaler.transform(x[train])), pca.transform(scaler.transform(x[val]))

    (s_tr, s_va), (t_tr, t_va) = scores(xs, ks), scores(xt, kt)
    return np.array(
        [mean_squared_error(t_va, Ridge(alpha=a).fit(s_tr, t_tr).predict(s_va)) for a in ALPHAS]
    )


@PROPERTY
@given(problems())
def test_fit_equals_the_reference(p: dict[str, Any]) -> None:
    views, masks, labels = make_data(p)
    components = 2
    with TemporaryDirectory() as tmp:
        store = write_dataset(
            Path(tmp) / "d.zarr", views, labels=labels, masks=masks or None,
            chunk_rows=p["store_chunk"],
        )  # fmt: skip
        # Every drawn problem is well posed (enough rows per fold, no constant modality):
        # the fit must succeed and equal the reference.
        result = mmpipe.fit(
            store, pairs=["m0:m1"], components=components, folds=p["folds"],
            alphas=ALPHAS, chunk_rows=p["block_rows"], seed=p["seed"] % 1000,
        )  # fmt: skip
    pair = result.pairs[0]
    xs, xt = views["m0"].astype(np.float64), views["m1"].astype(np.float64)
    both = np.ones(p["n"], dtype=bool)
    for name in ("m0", "m1"):
        if name in masks:
            both &= masks[name]
    assert pair.rows == int(both.sum())
    ks, kt = min(components, xs.shape[1]), min(components, xt.shape[1])
    for split in range(result.plan.n_splits):
        train = result.plan.train_mask(split) & both
        val = result.plan.validation_mask(split) & both
        if val.sum() == 0:
            continue
        expected = reference_mse(xs, xt, train, val, ks, kt)
        np.testing.assert_allclose(pair.mse[split], expected, rtol=1e-6, atol=1e-9)


@PROPERTY
@given(problems(), st.integers(1, 160), st.integers(1, 160))
def test_same_answer_for_every_chunking(p: dict[str, Any], chunk_a: int, chunk_b: int) -> None:
    views, masks, labels = make_data(p)
    numbers: list[np.ndarray] = []
    with TemporaryDirectory() as tmp:
        for i, (store_chunk, block) in enumerate(
            [(p["store_chunk"], p["block_rows"]), (min(chunk_a, p["n"]), min(chunk_b, p["n"]))]
        ):
            store = write_dataset(
                Path(tmp) / f"d{i}.zarr", views, labels=labels, masks=masks or None,
                chunk_rows=store_chunk,
            )  # fmt: skip
            result = mmpipe.fit(
                store, components=2, folds=p["folds"], alphas=ALPHAS, chunk_rows=block, seed=7
            )
            numbers.append(
                np.concatenate([np.ravel(x) for q in result.pairs for x in (q.r2, q.mse, q.coef)])
            )
    np.testing.assert_allclose(numbers[0], numbers[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reruns_are_identical(tmp_path: Path, seed: int) -> None:
    views, masks, labels = make_data(
        {"n": 90, "widths": [4, 3], "missing": [0.1, 0.0], "labels": True,
         "dtype": "float64", "seed": seed}
    )  # fmt: skip
    store = write_dataset(tmp_path / "d.zarr", views, labels=labels, masks=masks, chunk_rows=16)
    first = mmpipe.fit(store, components=2, folds=3, classify=["m0+m1"], seed=seed)
    again = mmpipe.fit(store, components=2, folds=3, classify=["m0+m1"], seed=seed)
    assert first.summary()["pairs"] == again.summary()["pairs"]
    assert first.summary()["classify"] == again.summary()["classify"]


FAULTS = ["nan", "inf", "absent_chunk", "constant", "duplicate_ids"]


@PROPERTY
@given(problems(), st.sampled_from(FAULTS), st.integers(0, 10**6))
def test_a_broken_input_is_a_clear_error(p: dict[str, Any], fault: str, where: int) -> None:
    """Whatever the shape and chunking, a broken input stops the fit with an error that names
    the array at fault — never a result."""
    views, masks, labels = make_data(p)
    n = p["n"]
    row, victim = where % n, f"m{where % len(views)}"
    ids = np.arange(n)
    if fault in ("nan", "inf"):
        views[victim][row, where % views[victim].shape[1]] = np.nan if fault == "nan" else np.inf
        masks.pop(victim, None)  # present where it is broken
        named = f"modalities/{victim}"
    elif fault == "constant":
        views[victim][:] = 3.0
        named = f"modalities/{victim}"
    elif fault == "duplicate_ids":
        ids[(row + 1) % n] = ids[row]
        named = "ids"
    else:
        named = f"modalities/{victim}"
    with TemporaryDirectory() as tmp:
        store = write_dataset(
            Path(tmp) / "d.zarr", views, labels=labels, masks=masks or None, ids=ids,
            chunk_rows=p["store_chunk"],
        )  # fmt: skip
        if fault == "absent_chunk":
            chunks = sorted((Path(store) / "modalities" / victim / "c").iterdir())
            chunk = chunks[where % len(chunks)]
            files = [chunk] if chunk.is_file() else list(chunk.iterdir())
            files[0].unlink()
        with pytest.raises(MmpipeError, match=named):
            mmpipe.fit(
                store, components=2, folds=p["folds"], alphas=ALPHAS, chunk_rows=p["block_rows"]
            )
