"""The ``mmpipe`` command. Bad input exits with code 2 and a one-line message on stderr."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import click
import typer

from mmpipe.errors import ConfigError, MmpipeError

app = typer.Typer(
    name="mmpipe",
    help="Distributed batch pipeline for multimodal learning on chunked Zarr data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
example_app = typer.Typer(
    help="Write a real example dataset (no download needed).", no_args_is_help=True
)
app.add_typer(example_app, name="example")

F = TypeVar("F", bound=Callable[..., Any])


DEBUG_ENV = "MMPIPE_DEBUG"
_debug = False


@app.callback()
def _options(
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show the traceback of an error (also MMPIPE_DEBUG=1)."),
    ] = False,
) -> None:
    global _debug
    _debug = debug


def debugging() -> bool:
    return _debug or os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes")


def failure_line(exc: BaseException) -> tuple[int, str]:
    """What the CLI says about an error: its exit code and one line.

    mmpipe's own errors carry their code (2 bad input, 1 environment). Anything else is an
    environment failure (OSError, ConnectionError, TimeoutError) or a bug, both exit 1."""
    if isinstance(exc, MmpipeError):
        code, text = exc.exit_code, str(exc)
    elif isinstance(exc, KeyboardInterrupt):
        code, text = 130, "interrupted (SIGINT)"
    elif isinstance(exc, OSError | ConnectionError | TimeoutError):
        code, text = 1, f"{type(exc).__name__}: {exc} (rerun with --debug for the traceback)"
    else:
        code, text = (
            1,
            (
                f"unexpected {type(exc).__name__}: {exc} — a bug in mmpipe; rerun with --debug "
                "for the traceback and report it"
            ),
        )
    return code, " ".join(text.split())


def handled(fn: F) -> F:
    """Every error ends as one ``error: …`` line on stderr and an exit code (2 bad input,
    1 environment or bug); the traceback only with --debug or MMPIPE_DEBUG=1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.ClickException):
            raise
        except BaseException as exc:
            if debugging() or isinstance(exc, SystemExit):
                raise
            code, line = failure_line(exc)
            typer.echo(f"error: {line}", err=True)
            raise typer.Exit(code) from None

    return wrapper  # type: ignore[return-value]


def parse_options(items: list[str] | None, flag: str = "--storage-option") -> dict[str, Any]:
    """KEY=VALUE pairs; values that parse as JSON (true, 3, {...}) are decoded."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"{flag} {item!r} must be KEY=VALUE.")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


StorageOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--storage-option",
        "-S",
        help="fsspec option KEY=VALUE for remote stores (repeat), "
        "e.g. endpoint_url=http://127.0.0.1:9000",
    ),
]


def _print_json(obj: Any) -> None:
    from mmpipe.jsonable import to_json

    typer.echo(json.dumps(to_json(obj), indent=2))


def main() -> None:
    app()
