"""mmpipe apply on real data: fit on half of UCI mfeat, apply to the other half, and compare
every output with scikit-learn pipelines fitted on the same training rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge, RidgeClassifier
from sklearn.preprocessing import StandardScaler

import mmpipe
from mmpipe.io.dataset import write_dataset
from mmpipe.io.examples import make_mfeat

pytestmark = pytest.mark.slow  # builds the mfeat example and fits it

K = 12


def _scaler_pca(train: np.ndarray) -> tuple[StandardScaler, PCA]:
    scaler = StandardScaler().fit(train)
    return scaler, PCA(K, svd_solver="covariance_eigh").fit(scaler.transform(train))


def test_apply_to_new_mfeat_rows_equals_scikit_learn(tmp_path: Path) -> None:
    source = mmpipe.open_dataset(make_mfeat(tmp_path / "mfeat.zarr"))
    views = {n: np.asarray(a.compute(), dtype=np.float64) for n, a in source.modalities.items()}
    labels = np.asarray(source.labels.compute())  # type: ignore[union-attr]
    rows = np.random.default_rng(0).permutation(labels.size)
    train, new = np.sort(rows[:1000]), np.sort(rows[1000:])
    picked = ("fou", "kar", "pix")
    write_dataset(
        tmp_path / "train.zarr", {n: views[n][train] for n in picked}, labels=labels[train]
    )
    write_dataset(
        tmp_path / "new.zarr",
        {n: views[n][new] for n in picked},
        labels=labels[new],
        chunk_rows=300,
    )
    fitted = mmpipe.fit(
        str(tmp_path / "train.zarr"), pairs=["fou:kar", "pix:kar"], components=K, folds=3,
        classify=["fou+pix"], out=str(tmp_path / "results.zarr"),
    )  # fmt: skip
    mmpipe.apply(
        str(tmp_path / "results.zarr"), str(tmp_path / "new.zarr"), str(tmp_path / "out.zarr"),
        embed=["fou", "kar"], map=["fou:kar", "pix:kar"], classify=["fou+pix"], features=True,
    )  # fmt: skip
    out = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    assert out.attrs["status"] == "complete"

    fitted_on = {n: _scaler_pca(views[n][train]) for n in picked}

    def scores(name: str, x: np.ndarray) -> np.ndarray:
        scaler, pca = fitted_on[name]
        return np.asarray(pca.transform(scaler.transform(x)))

    for name in ("fou", "kar"):  # signs follow scikit-learn's svd_flip: compared as they are
        np.testing.assert_allclose(
            out[f"pca/{name}"][...], scores(name, views[name][new]), atol=1e-8
        )  # type: ignore[index]
    for src in ("fou", "pix"):
        alpha = fitted.pair(src, "kar").alpha
        ridge = Ridge(alpha=alpha).fit(
            scores(src, views[src][train]), scores("kar", views["kar"][train])
        )
        mapped = ridge.predict(scores(src, views[src][new]))
        np.testing.assert_allclose(out[f"mapped/{src}--kar"][...], mapped, atol=1e-7)  # type: ignore[index]
        scaler, pca = fitted_on["kar"]
        in_units = scaler.inverse_transform(pca.inverse_transform(mapped))
        np.testing.assert_allclose(
            out[f"mapped_features/{src}--kar"][...],
            in_units,
            rtol=1e-7,
            atol=1e-7,  # type: ignore[index]
        )
    fused = np.hstack([scores("fou", views["fou"][train]), scores("pix", views["pix"][train])])
    classifier = RidgeClassifier(alpha=fitted.classify[0].alpha).fit(fused, labels[train])
    expected = classifier.predict(
        np.hstack([scores("fou", views["fou"][new]), scores("pix", views["pix"][new])])
    )
    predicted = out["predictions/fou+pix"][...]  # type: ignore[index]
    np.testing.assert_array_equal(predicted, expected)
    assert np.mean(predicted == labels[new]) > 0.9  # real digits, really classified
