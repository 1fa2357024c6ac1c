"""The options of a fit: what to compute and how to evaluate it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from mmpipe.defaults import DEFAULT_ALPHAS, DEFAULT_COMPONENTS

Components = int | float | None | Mapping[str, int | float | None]


@dataclass(frozen=True)
class FitConfig:
    """Every choice of a fit; stored with the results as provenance."""

    pairs: tuple[tuple[str, str], ...] | None = None
    """Directed (source, target) pairs; None = every ordered pair of modalities."""
    components: int | float | dict[str, int | float | None] | None = DEFAULT_COMPONENTS
    """PCA components per modality: a count (capped at the width), a variance fraction in (0, 1),
    None for all, or a dict per modality name."""
    folds: int = 5
    """K for K-fold cross-validation (ignored when ``holdout`` is set)."""
    holdout: float | None = None
    """Fraction of rows held out for validation, instead of K-fold."""
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    """Ridge penalties to evaluate; the best mean validation R² is chosen."""
    seed: int = 0
    """Seed of the fold assignment."""
    solver: Literal["normal", "tsqr"] = "normal"
    """'normal': from the statistics; 'tsqr': second pass, QR of the scores (ill-conditioned)."""
    cca_reg: float = 1e-3
    """Ridge term added to each side's score covariance in CCA."""
    chunk_rows: int | None = None
    """Dask row block size; None lets open_dataset choose from the store chunks."""
    sketch_above: int | None = 4096
    """Modalities wider than this many columns are first reduced by a randomized sketch of
    their standardized columns (mmpipe.models.sketch); None: never."""
    sketch_columns: int | None = None
    """Sketch width q of a reduced modality; None: min(d, 4·k + 64) for k components."""
    sketch_power: int = 1
    """Power iterations of the sketch (one more pass over the wide modality each)."""
    precision: Literal["float64", "float32"] = "float64"
    """dtype of each row block's Gram in the statistics pass; merges are float64 either way.
    float32 makes each block's Gram about 40% faster (README, Performance) at about 1e-6
    relative error."""
    classify: tuple[tuple[str, ...], ...] = ()
    """Feature sets to classify the labels from, each one or more modalities (fused scores)."""
    transfer: bool = False
    """For every pair source → target: the target's classifier on source rows mapped by W."""
    retrieval: bool = False
    """For every pair: rank the target's validation rows for each mapped source row."""
    retrieval_rows: int | None = 5000
    """Validation rows per split and pair ranked in retrieval (a seeded subset); None: all."""
    logistic: bool = False
    """Also fit multinomial logistic regression (L-BFGS on the workers) per classify set."""
    logistic_c: float = 1.0
    """Inverse l2 strength of the logistic regression (scikit-learn's C)."""
    random_features: int = 0
    """D random Fourier features for a non-linear map per pair (0: linear maps only)."""
    rff_gamma: float | None = None
    """RBF γ of the random features; None: 1 / (2·median pairwise distance²) of source scores."""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["pairs"] = None if self.pairs is None else [list(p) for p in self.pairs]
        out["alphas"] = list(self.alphas)
        out["classify"] = [list(f) for f in self.classify]
        return out

    @property
    def scoring(self) -> bool:
        """Whether the fit needs the scoring pass."""
        return bool(self.classify) or self.transfer or self.retrieval


def pair_of(item: str | Sequence[str]) -> tuple[str, ...]:
    """'image:text' or ('image', 'text') -> ('image', 'text'); parse_pairs checks the rest."""
    parts = item.split(":") if isinstance(item, str) else item
    return tuple(str(p).strip() for p in parts)


def feature_set(item: str | Sequence[str]) -> tuple[str, ...]:
    """'image+text' or ('image', 'text') -> ('image', 'text')."""
    parts = item.split("+") if isinstance(item, str) else item
    return tuple(str(p).strip() for p in parts)
