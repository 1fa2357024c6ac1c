"""A modality seen through fewer columns: u = ((x − offset) / scale) @ basis.

Made by the sketch passes for wide modalities (mmpipe.models.sketch, mmpipe.stats.sketch);
applied wherever that modality's rows are read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Rows per slice when applying a reduction: bounds the float64 temporaries of a block.
APPLY_ROWS = 4096


@dataclass(frozen=True, eq=False)
class Reduction:
    """u = ((x − offset) / scale) @ basis: a wide modality's q sketch coordinates."""

    offset: np.ndarray
    """(d,) column means."""
    scale: np.ndarray
    """(d,) population standard deviations (1 where a column is constant)."""
    basis: np.ndarray
    """(d, q) orthonormal directions in the standardized space."""

    @property
    def width(self) -> int:
        return int(self.basis.shape[1])

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(rows, d) raw values → (rows, q) float64 coordinates; non-finite values stay
        non-finite (the statistics pass reports them)."""
        x = np.asarray(x)
        weights = self.basis / self.scale[:, None]
        shift = self.offset @ weights
        out = np.empty((x.shape[0], self.width))
        for lo in range(0, x.shape[0], APPLY_ROWS):
            part = np.asarray(x[lo : lo + APPLY_ROWS], dtype=np.float64)
            np.subtract(part @ weights, shift, out=out[lo : lo + APPLY_ROWS])
        return out
