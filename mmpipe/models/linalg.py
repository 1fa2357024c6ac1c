"""Small dense helpers shared by the models, in NumPy: importing scipy.linalg for them would
cost every run about 0.4 s of start-up."""

from __future__ import annotations

import numpy as np


def block_diagonal(*blocks: np.ndarray) -> np.ndarray:
    """The block-diagonal matrix of 2-D ``blocks`` (as ``scipy.linalg.block_diag``)."""
    rows = sum(b.shape[0] for b in blocks)
    cols = sum(b.shape[1] for b in blocks)
    out = np.zeros((rows, cols), dtype=np.result_type(*blocks) if blocks else np.float64)
    r = c = 0
    for b in blocks:
        out[r : r + b.shape[0], c : c + b.shape[1]] = b
        r, c = r + b.shape[0], c + b.shape[1]
    return out
