"""Command-line flags derived from mmpipe's option models (:mod:`mmpipe.options`).

Every field of a model becomes ``--<name-with-dashes>`` with the field's help text and
default; a yes/no field becomes ``--<name>/--no-<name>``. A flag's text is read as a YAML
scalar (``3`` is a number, ``null`` is None, ``all`` a word), so a value means the same on the
command line as in a run config, and the model checks it with the same message.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import typer
import yaml
from pydantic import BaseModel

from mmpipe.options import Flag, flag_of

F = TypeVar("F", bound=Callable[..., Any])


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _is_bool(annotation: Any) -> bool:
    if annotation is bool:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args == [bool]
    return False


def _metavar(annotation: Any, flag: Flag) -> str:
    """INT, FLOAT, [a|b], TEXT; with the word for None (INT|never)."""
    union = get_origin(annotation) in (Union, types.UnionType)
    args = [a for a in get_args(annotation) if a is not type(None)] if union else [annotation]
    names = []
    for arg in args:
        while get_origin(arg) is Annotated:
            arg = get_args(arg)[0]
        if get_origin(arg) is Literal:
            names.append("|".join(map(str, get_args(arg))))
        else:
            names.append({int: "INT", float: "FLOAT"}.get(arg, "TEXT"))
    if flag.none_word:
        names.append(flag.none_word)
    return "|".join(dict.fromkeys(names))


def _shown(value: Any, flag: Flag) -> str:
    """A default as it would be typed on the command line."""
    if value is None:
        return flag.none_word or "unset"
    if isinstance(value, tuple):
        return ",".join(_shown(v, flag) for v in value) if value else "none"
    return str(value)


def _parameter(model: type[BaseModel], name: str) -> inspect.Parameter:
    field = model.model_fields[name]
    flag = flag_of(model, name)
    dashed = flag_name(name)
    text = field.description or ""
    if _is_bool(field.annotation):
        off = flag.off or f"--no-{dashed[2:]}"
        option = typer.Option(None, f"{dashed}/{off}", *flag.aliases, help=text)
        annotation: Any = bool | None
    else:
        if field.default is not None or flag.none_word:
            text += f" (default: {_shown(field.get_default(), flag)})"
        option = typer.Option(
            None,
            dashed,
            *flag.aliases,
            help=text,
            metavar=flag.metavar or _metavar(field.annotation, flag),
            show_default=False,
        )
        annotation = list[str] | None if flag.repeat else str | None
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                             annotation=annotation)  # fmt: skip


def _scalar(text: str) -> Any:
    """A flag's text as YAML reads it: the same value as in a run config."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, str | int | float | bool) or value is None else text


def with_options(**models: type[BaseModel]) -> Callable[[F], F]:
    """Add a flag for every field of each model to a Typer command.

    ``@with_options(fit_options=FitConfig)`` replaces the command's ``fit_options`` parameter
    by one flag per field; the command receives ``fit_options``: the dict of the flags given
    (values as a run config would hold them), for ``FitConfig.parse`` to check.
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name not in models]
        fields = {
            key: [n for n in model.model_fields if n not in signature.parameters]
            for key, model in models.items()
        }
        added = [_parameter(models[key], n) for key, names in fields.items() for n in names]

        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            for key, names in fields.items():
                given = {}
                for name in names:
                    value = kwargs.pop(name, None)
                    if value is None:
                        continue
                    if isinstance(value, list):
                        given[name] = [_scalar(v) for v in value]
                    elif isinstance(value, str):
                        given[name] = _scalar(value)
                    else:
                        given[name] = value
                kwargs[key] = given
            return fn(*args, **kwargs)

        parameters = [*own, *added]
        command.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=parameters
        )
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        return command  # type: ignore[return-value]

    return decorate


def markdown_table(model: type[BaseModel], prefix: str = "") -> str:
    """The options of ``model`` as a Markdown table: run-config key, flag, default, meaning
    (docs/options.md is this table; a test keeps it current)."""
    rows = ["| key (YAML, Python) | flag | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        flag = flag_of(model, name)
        names = [flag_name(name), *flag.aliases]
        if _is_bool(field.annotation):
            names = [f"{flag_name(name)}/{flag.off or '--no-' + name.replace('_', '-')}"]
            names += list(flag.aliases)
        default = _shown(field.get_default(), flag)
        text = (field.description or "").replace("|", "\\|")
        flags = ", ".join(f"`{n}`" for n in names)
        rows.append(f"| `{prefix}{name}` | {flags} | `{default}` | {text} |")
    return "\n".join(rows)
