"""The ``mmpipe`` command. Bad input exits with code 2 and a one-line message on stderr.

app.py holds the application and its error handling, options.py the flags derived from the
option models, data.py and fitting.py the commands.
"""

from mmpipe.cli import apply, data, fitting, report  # noqa: F401  (registers the commands)
from mmpipe.cli.app import app, debugging, main
from mmpipe.cli.fitting import orchestrator

__all__ = ["app", "debugging", "main", "orchestrator"]
