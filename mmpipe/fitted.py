"""A fitted run, loaded back from its results store: the models a fit learned, ready to use.

    run = mmpipe.open_run("results.zarr")          # the latest complete run
    run.transform(x_image, "image")                # PCA scores (n, k)
    run.map(x_image, "image", "text")              # image mapped through W into text's scores
    run.predict({"image": x_image, "text": x_text}, "image+text")
    run.to_sklearn()["pairs/image--text"]          # a scikit-learn Pipeline, same outputs

Every method takes NumPy arrays (rows × columns, as stored in the dataset) or Dask arrays
(then it returns a Dask array computed block by block). ``mmpipe.apply`` (mmpipe/apply.py)
calls the same methods on every row block of a dataset.

INTERFACE STUB (issue 15): the signatures below are the contract between the loader and the
apply pass; the bodies are being written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mmpipe.io.storage import StorageOptions
from mmpipe.options import FitConfig

Array = Any
"""A NumPy array, or a Dask array (rows chunked, columns whole)."""


@dataclass(frozen=True, eq=False)
class FittedRun:
    """The models of one complete run (see :func:`open_run`)."""

    run_id: str
    results: str
    """Where the run was read from (the results store's location)."""
    dataset: str
    """The dataset the run was fitted on."""
    fingerprint: str
    config: FitConfig
    widths: dict[str, int]
    """Columns of each modality as stored in the dataset it was fitted on (before any sketch):
    data given to this run must have these widths."""
    classes: np.ndarray | None
    """The label classes (None: the run learned no labels)."""

    # -- what the run can do ---------------------------------------------------------------
    @property
    def modalities(self) -> list[str]:
        """Modalities with a fitted scaler + PCA (transform, embed)."""
        raise NotImplementedError

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Directed pairs with a fitted map (map, cca, impute)."""
        raise NotImplementedError

    @property
    def feature_sets(self) -> list[tuple[str, ...]]:
        """Feature sets with a fitted classifier (predict)."""
        raise NotImplementedError

    def imputable(self) -> list[str]:
        """Modalities some pair maps into (impute can fill them in)."""
        raise NotImplementedError

    # -- applying it (NumPy or Dask arrays in, the same kind out) ---------------------------
    def transform(self, x: Array, modality: str) -> Array:
        """(n, d) raw rows of ``modality`` -> (n, k) PCA scores of the modality's model
        (scikit-learn's StandardScaler + PCA, svd_flip signs)."""
        raise NotImplementedError

    def map(self, x: Array, source: str, target: str, *, features: bool = False) -> Array:
        """(n, d_source) raw rows of ``source`` -> (n, k_target) the pair's ridge map at its
        chosen α, in the target's PCA space of that pair; ``features=True``: (n, d_target) in
        the target's original feature units (inverse PCA, then unscaled)."""
        raise NotImplementedError

    def cca(self, x: Array, source: str, target: str, side: Literal["source", "target"]) -> Array:
        """Rows of the pair's ``side`` modality -> (n, c) that side's canonical variates."""
        raise NotImplementedError

    def predict(self, xs: Mapping[str, Array], features: str | Sequence[str]) -> Array:
        """{modality: raw rows} -> (n,) predicted class labels of the run's ridge classifier
        of ``features`` ('a+b' or ('a', 'b')) at its chosen α."""
        raise NotImplementedError

    def predict_proba(self, xs: Mapping[str, Array], features: str | Sequence[str]) -> Array:
        """(n, C) class probabilities of the run's logistic model of ``features``
        (ConfigError when the run fitted none for that set)."""
        raise NotImplementedError

    def impute(
        self, xs: Mapping[str, Array], present: Mapping[str, Array], target: str
    ) -> tuple[Array, Array]:
        """Fill in ``target`` where ``present[target]`` is False from a modality the row has:
        among the pairs SOURCE -> target whose source is present in that row, the one with the
        best cross-validated R². Returns (values (n, d_target) in feature units — NaN where
        the target was present or no source was —, imputed (n,) bool)."""
        raise NotImplementedError

    def to_sklearn(self) -> dict[str, Any]:
        """Real scikit-learn objects with the learned attributes set, same outputs to 1e-10:
        ``modalities/<name>`` Pipeline(StandardScaler, PCA); ``pairs/<s>--<t>`` Pipeline(
        StandardScaler, PCA, Ridge); ``classify/<a+b>`` and ``logistic/<a+b>`` estimators on
        the concatenated raw columns of the set."""
        raise NotImplementedError


def open_run(
    results: str | os.PathLike[str],
    run_id: str | None = None,
    *,
    storage_options: StorageOptions | None = None,
) -> FittedRun:
    """The models of ``run_id`` (default: the latest complete run) of a results store.
    An incomplete run, or a location that is not a results store, is a clear error."""
    raise NotImplementedError
