"""scikit-learn's parameter protocol (``get_params``/``set_params``) for mmpipe's models.

The same contract as ``sklearn.base.BaseEstimator``: ``__init__`` only stores its keyword
arguments under their own names, learned attributes end in ``_``, and ``sklearn.base.clone``
rebuilds an unfitted copy from ``get_params(deep=False)``. Written here rather than inherited
because importing ``sklearn.base`` costs about two seconds per process, which every fit and
every Dask worker would pay for a protocol of thirty lines.
"""

from __future__ import annotations

import inspect
from typing import Any


class Params:
    """``get_params``/``set_params``/``repr`` from the ``__init__`` signature."""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        init = cls.__init__
        if init is object.__init__:
            return []
        return sorted(
            p.name
            for p in inspect.signature(init).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters (``deep``: also those of nested estimators)."""
        out: dict[str, Any] = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params: Any) -> Any:
        """Set constructor parameters; returns self. An unknown name is a ValueError."""
        valid = self._get_param_names()
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {valid!r}."
                )
            if sub:
                getattr(self, name).set_params(**{sub: value})
            else:
                setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())
        return f"{type(self).__name__}({args})"
