"""Models derived from sufficient statistics: scaler + PCA, transfer maps, CCA."""

from mmpipe.models.pair import PairModels, PairScores, fit_pair, score_pair
from mmpipe.models.pca import StandardPCA
from mmpipe.models.transfer import CCA, ProcrustesTransfer, RidgeTransfer

__all__ = [
    "CCA",
    "PairModels",
    "PairScores",
    "ProcrustesTransfer",
    "RidgeTransfer",
    "StandardPCA",
    "fit_pair",
    "score_pair",
]
