"""NumPy helpers of the models against their SciPy reference."""

from __future__ import annotations

import numpy as np
from scipy.linalg import block_diag

from mmpipe.models.linalg import block_diagonal


def test_block_diagonal_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    blocks = [rng.standard_normal((2, 3)), np.eye(1), rng.standard_normal((4, 2)), np.zeros((0, 2))]
    np.testing.assert_array_equal(block_diagonal(*blocks), block_diag(*blocks))
    np.testing.assert_array_equal(block_diagonal(np.eye(2)), np.eye(2))


def test_the_engine_does_not_import_scipy() -> None:
    # Start-up guard rail: SciPy costs a fit's client about 0.7 s to import (linalg and
    # optimize); only the logistic fit needs it, and imports it itself.
    import subprocess
    import sys

    code = "import sys, mmpipe.engine, mmpipe.cli; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
