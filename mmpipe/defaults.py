"""Defaults shared by the Python API, the CLI and the run config (kept import-light)."""

DEFAULT_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)
"""The ridge α path."""
DEFAULT_COMPONENTS = 32
"""PCA components per modality."""
