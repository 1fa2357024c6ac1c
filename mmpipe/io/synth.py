"""Synthetic multimodal datasets with known structure, written chunk by chunk with Dask.

Every modality is a noisy linear view of shared latent factors:

    z ~ N(0, I_L),   x_m = z A_m + σ ε_m,   ε_m ~ N(0, I),   label = argmax(z C)

The loadings A_m, the noise σ and the class weights C are stored under ``truth/`` so tests can
compute what an ideal model would reach. Rows are generated in fixed blocks of
``GENERATION_BLOCK`` rows, each from its own seeded stream: the same seed gives the same data
whatever the storage chunking or the number of workers, and any chunk can be made alone, so
memory stays bounded by a few chunks however large the dataset.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import zarr
from dask.delayed import delayed

from mmpipe.cluster import compute_pass
from mmpipe.errors import ConfigError
from mmpipe.io.dataset import (
    IDS,
    LABELS,
    MASKS,
    MODALITIES,
    WRITE_EVERY_CHUNK,
    _regular_chunks,
)
from mmpipe.io.output import check_new_dataset, dataset_mark
from mmpipe.io.storage import MODALITY_COMPRESSORS, StorageOptions, open_group

GENERATION_BLOCK = 1024
_PARAMS, _ROWS = 0, 1  # seed-sequence branches: model parameters vs. row blocks


@dataclass(frozen=True)
class SynthSpec:
    """What to generate."""

    rows: int
    """Number of samples n."""
    modalities: dict[str, int]
    """name -> number of columns."""
    classes: int = 0
    """Number of label classes (0: no labels)."""
    latent_dim: int = 8
    """Number of shared latent factors L."""
    noise: float = 0.5
    """Standard deviation σ of the per-modality noise."""
    missing_fraction: float = 0.0
    """Probability that a modality is missing in a row (masks/<name> False, values NaN)."""
    seed: int = 0
    """Seed of everything."""
    dtype: str = "float32"
    """Storage dtype of the modalities."""
    chunk_rows: int = 10_000
    """Rows per storage chunk."""

    def validate(self) -> None:
        def bad(name: str, owner: str, allowed: str, got: object) -> ConfigError:
            flag = "--" + name.replace("_", "-")
            return ConfigError(f"synth {flag} must be {allowed}; got {got!r}.")

        owner = "synth"
        if not isinstance(self.rows, int) or self.rows < 1:
            raise bad("rows", owner, "an int >= 1", self.rows)
        if len(self.modalities) < 2:
            raise bad(
                "modality", owner, "given at least twice (NAME=COLUMNS)", list(self.modalities)
            )
        for name, width in self.modalities.items():
            if not name or "/" in name or not isinstance(width, int) or width < 1:
                raise bad(
                    "modality",
                    owner,
                    "NAME=COLUMNS with a name without '/' and COLUMNS >= 1",
                    f"{name}={width}",
                )
        if self.classes < 0 or self.classes == 1:
            raise bad("classes", owner, "0 (no labels) or an int >= 2", self.classes)
        if self.latent_dim < 1:
            raise bad("latent_dim", owner, "an int >= 1", self.latent_dim)
        if self.noise < 0:
            raise bad("noise", owner, "a float >= 0", self.noise)
        if not 0.0 <= self.missing_fraction < 1.0:
            raise bad("missing_fraction", owner, "a float in [0, 1)", self.missing_fraction)
        if self.chunk_rows < 1:
            raise bad("chunk_rows", owner, "an int >= 1", self.chunk_rows)
        if np.dtype(self.dtype).kind != "f":
            raise bad("dtype", owner, "'float32' or 'float64'", self.dtype)


def _rng(spec: SynthSpec, *path: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, *path])


def ground_truth(spec: SynthSpec) -> dict[str, np.ndarray]:
    """The model parameters: loadings/<name> (L × d) and class_weights (L × C)."""
    out = {}
    for i, (name, width) in enumerate(spec.modalities.items()):
        out[f"loadings/{name}"] = _rng(spec, _PARAMS, 0, i).standard_normal(
            (spec.latent_dim, width)
        ) / np.sqrt(spec.latent_dim)
    if spec.classes:
        out["class_weights"] = _rng(spec, _PARAMS, 1).standard_normal(
            (spec.latent_dim, spec.classes)
        )
    return out


def _latent(spec: SynthSpec, block: int, rows: int) -> np.ndarray:
    return _rng(spec, _ROWS, block, 0).standard_normal((rows, spec.latent_dim))


def _block_rows(spec: SynthSpec, block: int) -> int:
    return min(GENERATION_BLOCK, spec.rows - block * GENERATION_BLOCK)


def _generate(
    spec: SynthSpec, start: int, stop: int, what: str, index: int, truth: Mapping[str, np.ndarray]
) -> np.ndarray:
    """Rows [start, stop) of one output, assembled from the generation blocks they overlap."""
    parts = []
    for block in range(start // GENERATION_BLOCK, (stop - 1) // GENERATION_BLOCK + 1):
        rows = _block_rows(spec, block)
        base = block * GENERATION_BLOCK
        lo, hi = max(start - base, 0), min(stop - base, rows)
        parts.append(_make_block(spec, block, rows, what, index, truth)[lo:hi])
    return np.concatenate(parts)


def _present(spec: SynthSpec, block: int, rows: int, index: int) -> np.ndarray:
    if spec.missing_fraction == 0.0:
        return np.ones(rows, dtype=bool)
    return _rng(spec, _ROWS, block, 2, index).random(rows) >= spec.missing_fraction


def _make_block(
    spec: SynthSpec, block: int, rows: int, what: str, index: int, truth: Mapping[str, np.ndarray]
) -> np.ndarray:
    if what == "modality":
        name = list(spec.modalities)[index]
        z = _latent(spec, block, rows)
        noise = _rng(spec, _ROWS, block, 1, index).standard_normal(
            (rows, spec.modalities[name]), dtype=np.float64
        )
        x = z @ truth[f"loadings/{name}"] + spec.noise * noise
        # Missing values are NaN in the store: they must never reach a statistic.
        x[~_present(spec, block, rows, index)] = np.nan
        return x.astype(spec.dtype)
    if what == "mask":
        return _present(spec, block, rows, index)
    if what == "labels":
        return np.argmax(_latent(spec, block, rows) @ truth["class_weights"], axis=1).astype(
            np.int64
        )
    if what == "ids":
        return np.arange(block * GENERATION_BLOCK, block * GENERATION_BLOCK + rows, dtype=np.int64)
    raise ValueError(what)


def _lazy(
    spec: SynthSpec,
    what: str,
    index: int,
    width: int | None,
    dtype: Any,
    truth: Mapping[str, np.ndarray],
) -> da.Array:
    rows = _regular_chunks(spec.rows, spec.chunk_rows)
    chunks: tuple[tuple[int, ...], ...] = (rows,) if width is None else (rows, (width,))

    def make(block_info: dict[Any, Any] | None = None) -> np.ndarray:
        assert block_info is not None
        start, stop = block_info[None]["array-location"][0]
        return _generate(spec, start, stop, what, index, truth)

    return da.map_blocks(
        make, chunks=chunks, dtype=dtype, meta=np.empty((0,) * len(chunks), dtype=dtype)
    )


def synthesize(
    out: str | os.PathLike[str],
    spec: SynthSpec,
    *,
    storage_options: StorageOptions | None = None,
    overwrite: bool = False,
) -> str:
    """Write a synthetic dataset to ``out`` (local path or fsspec URL); returns ``out``.

    An existing non-empty ``out`` is refused unless ``overwrite``, and then only when it is a
    dataset mmpipe wrote (:func:`mmpipe.io.output.check_new_dataset`): nothing else is deleted.

    Chunks are generated and written in parallel on the run's client
    (:func:`mmpipe.cluster.current_client`) or threads; nothing larger than a chunk is held
    in memory.
    """
    spec.validate()
    truth = ground_truth(spec)
    check_new_dataset(out, overwrite=overwrite, storage_options=storage_options)
    group = open_group(out, mode="w", storage_options=storage_options)
    group.attrs.update(
        {
            **dataset_mark(),
            "mmpipe_synth": {
                "rows": spec.rows,
                "modalities": spec.modalities,
                "classes": spec.classes,
                "latent_dim": spec.latent_dim,
                "noise": spec.noise,
                "missing_fraction": spec.missing_fraction,
                "seed": spec.seed,
                "dtype": spec.dtype,
                "model": "x_m = z @ truth/loadings/<m> + noise * N(0, I); z ~ N(0, I_latent); "
                "label = argmax(z @ truth/class_weights)",
            },
        }
    )
    for key, value in truth.items():
        dims = ["latent", key.rsplit("/", 1)[-1] + "_feature" if "/" in key else "class"]
        group.create_array(f"truth/{key}", data=value, dimension_names=dims)

    sources: list[da.Array] = []
    targets: list[zarr.Array] = []

    def add(path: str, arr: da.Array, dims: list[str], compressors: Any = "auto") -> None:
        chunks = (min(spec.chunk_rows, spec.rows), *arr.shape[1:])
        targets.append(
            group.create_array(
                path,
                shape=arr.shape,
                dtype=arr.dtype,
                chunks=chunks,
                dimension_names=dims,
                compressors=compressors,
                config=WRITE_EVERY_CHUNK,  # an absent chunk must always mean a lost one
            )
        )
        sources.append(arr)

    for i, (name, width) in enumerate(spec.modalities.items()):
        add(
            f"{MODALITIES}/{name}",
            _lazy(spec, "modality", i, width, np.dtype(spec.dtype), truth),
            ["row", f"{name}_feature"],
            MODALITY_COMPRESSORS,
        )
        if spec.missing_fraction > 0:
            add(f"{MASKS}/{name}", _lazy(spec, "mask", i, None, np.dtype(bool), truth), ["row"])
    if spec.classes:
        add(LABELS, _lazy(spec, "labels", 0, None, np.dtype(np.int64), truth), ["row"])
    add(IDS, _lazy(spec, "ids", 0, None, np.dtype(np.int64), truth), ["row"])

    stored = da.store(sources, targets, lock=False, compute=False)  # type: ignore[arg-type]
    compute_pass(delayed(stored), "synth", rows=spec.rows)  # one graph, watched like every pass
    return os.fspath(out)


def population_covariance(
    truth: Mapping[str, np.ndarray], noise: float, names: list[str]
) -> np.ndarray:
    """Covariance of [x_a | x_b | …] implied by the generating model (for recovery checks)."""
    loads = np.hstack([truth[f"loadings/{n}"] for n in names])
    return loads.T @ loads + noise**2 * np.eye(loads.shape[1])


def read_truth(group: zarr.Group) -> dict[str, np.ndarray]:
    """The ``truth/`` arrays of a synthetic dataset, keyed like :func:`ground_truth`."""
    out: dict[str, np.ndarray] = {}
    for path, node in group["truth"].members(max_depth=None):  # type: ignore[union-attr]
        if isinstance(node, zarr.Array):
            out[path] = np.asarray(node[...])
    return out
