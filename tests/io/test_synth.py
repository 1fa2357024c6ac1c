"""Synthetic datasets: reproducible by seed whatever the chunking; the truth is recoverable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

import mmpipe
from mmpipe.cli import app
from mmpipe.cluster import using
from mmpipe.errors import ConfigError
from mmpipe.io.storage import MODALITY_COMPRESSORS
from mmpipe.io.synth import SynthSpec, population_covariance, read_truth, synthesize


def _arrays(url: str) -> dict[str, np.ndarray]:
    g = zarr.open_group(url, mode="r")
    return {p: n[...] for p, n in g.members(max_depth=None) if isinstance(n, zarr.Array)}


def spec(**kw: object) -> SynthSpec:
    base: dict[str, object] = dict(
        rows=2500,
        modalities={"image": 12, "text": 7},
        classes=4,
        missing_fraction=0.2,
        seed=3,
        chunk_rows=300,
    )
    base.update(kw)
    return SynthSpec(**base)  # type: ignore[arg-type]


def test_same_seed_same_data_any_chunking(tmp_path: Path) -> None:
    a = _arrays(synthesize(tmp_path / "a.zarr", spec(chunk_rows=300)))
    b = _arrays(synthesize(tmp_path / "b.zarr", spec(chunk_rows=1777)))
    assert set(a) == set(b)
    for key in a:
        assert np.array_equal(a[key], b[key], equal_nan=True), key
    c = _arrays(synthesize(tmp_path / "c.zarr", spec(seed=4)))
    assert not np.array_equal(a["modalities/image"], c["modalities/image"], equal_nan=True)


@pytest.mark.slow  # the session's LocalCluster: real worker processes
def test_same_data_on_a_cluster(tmp_path: Path, local_client: object) -> None:
    a = _arrays(synthesize(tmp_path / "a.zarr", spec()))
    with using(local_client):
        b = _arrays(synthesize(tmp_path / "b.zarr", spec(chunk_rows=512)))
    for key in a:
        assert np.array_equal(a[key], b[key], equal_nan=True), key


def test_layout_masks_labels(tmp_path: Path) -> None:
    url = synthesize(tmp_path / "d.zarr", spec())
    ds = mmpipe.open_dataset(url)
    assert ds.widths == {"image": 12, "text": 7}
    mask = ds.masks["image"].compute()
    image = ds.modalities["image"].compute()
    assert 0.15 < 1 - mask.mean() < 0.25
    assert np.isnan(image[~mask]).all()
    assert np.isfinite(image[mask]).all()
    labels = ds.labels.compute()
    assert set(np.unique(labels)) <= set(range(4))
    assert ds.modalities["image"].dtype == np.float32
    np.testing.assert_array_equal(ds.ids.compute(), np.arange(2500))
    truth = read_truth(zarr.open_group(url, mode="r"))
    assert truth["loadings/image"].shape == (8, 12)
    assert truth["class_weights"].shape == (8, 4)
    # Modalities are written with the codec that decodes fastest for floats, checksummed.
    written, checksum = zarr.open_array(f"{url}/modalities/image", mode="r").compressors
    assert written.to_dict()["configuration"] | {"typesize": None} == (
        MODALITY_COMPRESSORS[0].to_dict()["configuration"] | {"typesize": None}
    )
    assert checksum.to_dict()["name"] == "crc32c"


def _population_scores(cov: np.ndarray, d_s: int, k: int) -> np.ndarray:
    """Covariance of the top-k standardized PCA scores of both sides, from the population."""
    std = np.sqrt(np.diag(cov))
    corr = cov / np.outer(std, std)
    bases = []
    for block in (slice(0, d_s), slice(d_s, cov.shape[0])):
        vals, vecs = np.linalg.eigh(corr[block, block])
        bases.append(vecs[:, np.argsort(vals)[::-1][:k]])
    p = np.zeros((cov.shape[0], 2 * k))
    p[:d_s, :k], p[d_s:, k:] = bases
    return p.T @ corr @ p


def test_fit_recovers_the_truth(tmp_path: Path) -> None:
    s = SynthSpec(
        rows=20_000,
        modalities={"image": 20, "text": 15},
        latent_dim=4,
        noise=0.6,
        seed=1,
        chunk_rows=4000,
    )
    url = synthesize(tmp_path / "d.zarr", s)
    truth = read_truth(zarr.open_group(url, mode="r"))
    result = mmpipe.fit(url, components=4, alphas=(0.1,), folds=5)
    c = _population_scores(population_covariance(truth, s.noise, ["image", "text"]), 20, 4)
    css, cst, ctt = c[:4, :4], c[:4, 4:], c[4:, 4:]
    explained = np.diag(cst.T @ np.linalg.solve(css, cst)) / np.diag(ctt)
    assert result.pair("image", "text").summary()["cv"]["r2"] == pytest.approx(
        explained.mean(), abs=0.02
    )
    # Canonical correlations of the population score sets.
    w_s = np.linalg.inv(np.linalg.cholesky(css))
    w_t = np.linalg.inv(np.linalg.cholesky(ctt))
    rho = np.linalg.svd(w_s @ cst @ w_t.T, compute_uv=False)
    np.testing.assert_allclose(
        result.pair("image", "text").models.cca.correlations_, rho, atol=0.02
    )


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"rows": 0}, "synth --rows must be"),
        ({"modalities": {"a": 3}}, "synth --modality must be"),
        ({"classes": 1}, "synth --classes must be"),
        ({"missing_fraction": 1.0}, "synth --missing-fraction must be"),
        ({"dtype": "int32"}, "synth --dtype must be"),
    ],
)
def test_bad_spec(tmp_path: Path, kw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        synthesize(tmp_path / "d.zarr", spec(**kw))


def test_cli_synth(tmp_path: Path) -> None:
    runner = CliRunner()
    out = str(tmp_path / "d.zarr")
    result = runner.invoke(
        app,
        [
            "synth",
            out,
            "--rows",
            "500",
            "--modality",
            "image=6",
            "--modality",
            "text=4",
            "--classes",
            "3",
            "--chunk-rows",
            "128",
            "--missing-fraction",
            "0.1",
            "--seed",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    ds = mmpipe.open_dataset(out)
    assert ds.n_rows == 500
    assert ds.widths == {"image": 6, "text": 4}
    bad = runner.invoke(app, ["synth", out, "--modality", "image"])
    assert bad.exit_code == 2
    assert "NAME=COLUMNS" in bad.stderr
