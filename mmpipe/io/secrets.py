"""Credentials stay out of run configs: storage options refer to them by name.

A run config travels far — into Prefect flow-run parameters (its database, API and UI),
deployments, logs. So a storage option whose name says it is a credential (``key``,
``secret``, ``token``, ``password``…) may only hold a reference ``${NAME}`` to an environment
variable, expanded in the process that opens the store, at the moment it opens it. Plain
environment credentials (``AWS_ACCESS_KEY_ID``…) and fsspec's own configuration files work
as usual and need no option at all.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from mmpipe.errors import ConfigError

REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
SECRET_WORDS = ("key", "secret", "token", "password", "passwd", "credential", "sas", "signature")
"""A storage option whose name contains one of these (``key``, ``aws_secret_access_key``,
``session_token``, ``account_key``, ``client_secret``…) is taken for a credential."""
NOT_SECRET = frozenset({"endpoint_url", "region_name", "anon", "use_ssl", "requester_pays"})


def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return lowered not in NOT_SECRET and any(word in lowered for word in SECRET_WORDS)


def literal_secrets(options: Mapping[str, Any], prefix: str = "storage_options") -> list[str]:
    """Dotted names of credential-like options that hold a value instead of a ``${NAME}``."""
    found: list[str] = []
    for name, value in options.items():
        where = f"{prefix}.{name}"
        if isinstance(value, Mapping):
            found += literal_secrets(value, where)
        elif (
            is_secret_name(str(name))
            and value not in (None, "")
            and not (isinstance(value, str) and REFERENCE.match(value))
        ):
            found.append(where)
    return found


def resolve_references(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` with every ``${NAME}`` value replaced by that environment variable."""
    out: dict[str, Any] = {}
    for name, value in (options or {}).items():
        if isinstance(value, Mapping):
            out[name] = resolve_references(value)
            continue
        match = REFERENCE.match(value) if isinstance(value, str) else None
        if match is None:
            out[name] = value
            continue
        variable = match.group(1)
        if variable not in os.environ:
            raise ConfigError(
                f"storage option {name!r} refers to ${{{variable}}}, which is not set in this "
                "environment: export it where the run executes."
            )
        out[name] = os.environ[variable]
    return out
