"""The options of a fit, declared once.

Each option is one field of :class:`FitConfig` with its type, default, bounds and help text.
Everything else is derived from it: the keyword arguments of ``mmpipe.fit``, the keys of the
YAML run config (``mmpipe.config.RunConfig`` extends this model) and the flags of
``mmpipe fit`` (``mmpipe.cli.options``). All three accept the same values, spelled the same way
(the CLI's text forms too: ``"image=64,text=0.9"``, ``"0.1,1,10"``, ``"all"``), and refuse bad
ones with the same message (:func:`options_message`). A new option is one field here.

Checks that need the dataset (a pair names a modality it has, labels exist) are in
:mod:`mmpipe.prepare`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from mmpipe.defaults import DEFAULT_ALPHAS, DEFAULT_COMPONENTS
from mmpipe.errors import ConfigError


@dataclass(frozen=True)
class Flag:
    """How an option is written on the command line, beyond ``--<name-with-dashes>``."""

    aliases: tuple[str, ...] = ()
    """Other flag names accepted (older spellings)."""
    repeat: bool = False
    """The flag is repeated, one value each (``--pairs a:b --pairs b:a``)."""
    none_word: str | None = None
    """The word that means None (null in YAML), e.g. ``never`` for ``sketch_above``."""
    metavar: str | None = None
    text_pattern: str | None = None
    """The pattern of a list written as text, for the JSON schema."""
    off: str | None = None
    """A yes/no option's flag for no (default ``--no-<name>``)."""


def flag_of(model: type[BaseModel], name: str) -> Flag:
    """The :class:`Flag` of a field (a plain one when it declares none)."""
    for item in model.model_fields[name].metadata:
        if isinstance(item, Flag):
            return item
    return Flag()


def _text_forms(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Let the JSON schema accept what the model accepts: the word for None, and a list
    written as text ('0.1,1,10')."""
    for name, prop in schema.get("properties", {}).items():
        flag = flag_of(model, name)
        forms = [{"const": flag.none_word}] if flag.none_word else []
        if flag.text_pattern:
            forms.append({"type": "string", "pattern": flag.text_pattern})
        if forms:
            kept = {k: prop.pop(k) for k in ("title", "description", "default") if k in prop}
            schema["properties"][name] = {"anyOf": [prop, *forms], **kept}


class Options(BaseModel):
    """Base of mmpipe's option models: frozen, unknown names refused. :meth:`parse` is how
    mmpipe reads options (keyword arguments, YAML, CLI flags): every bad value is a
    :class:`~mmpipe.errors.ConfigError` with :func:`options_message`'s wording."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_text_forms)

    def __init__(self, **data: Any) -> None:
        token = _VALIDATING.set(_VALIDATING.get() + 1)
        try:
            super().__init__(**data)
        except ValidationError as exc:
            if _VALIDATING.get() > 1:
                raise  # a nested model's errors belong to the outer model's message
            raise ConfigError(options_message(exc, type(self), type(self).__name__)) from None
        finally:
            _VALIDATING.reset(token)

    @classmethod
    def parse(cls, data: Mapping[str, Any], source: str) -> Self:
        """Validate a mapping (a YAML file's, CLI flags', keyword arguments'); ``source`` says
        where it came from in the error."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"Invalid {source}: expected a mapping of keys to values.")
        token = _VALIDATING.set(_VALIDATING.get() + 1)
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(options_message(exc, cls, source)) from None
        finally:
            _VALIDATING.reset(token)


_VALIDATING: ContextVar[int] = ContextVar("mmpipe_options_validating", default=0)
"""How many option models are being validated in this context (nested models count)."""


def _field_at(model: type[BaseModel], loc: Sequence[str | int]) -> tuple[type[BaseModel], str]:
    """The model and field name that a validation error's location points into."""
    for i, part in enumerate(loc[:-1]):
        annotation = model.model_fields.get(str(part))
        inner = getattr(annotation, "annotation", None)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return _field_at(inner, loc[i + 1 :])
        break
    return model, str(loc[0]) if loc else ""


def options_message(exc: ValidationError, model: type[BaseModel], source: str) -> str:
    """One message for every bad option, wherever it was given: ``<key>: <what is wrong>
    (got <value>)``; an unknown key lists the allowed ones; credentials are never echoed."""
    lines = []
    errors = exc.errors()
    for err in errors:
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        if err["type"] == "too_short" and any(
            len(e["loc"]) > len(err["loc"]) and e["loc"][: len(err["loc"])] == err["loc"]
            for e in errors
        ):
            continue  # an item was refused; saying the list is then too short adds nothing
        key = ".".join(str(p) for p in loc)
        owner, name = _field_at(model, loc)
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key {key!r} (allowed: {', '.join(owner.model_fields)})")
            continue
        if err["type"] == "missing":
            lines.append(f"missing key {key!r}")
            continue
        msg = str(err["msg"]).removeprefix("Value error, ")
        flag = flag_of(owner, name) if name in owner.model_fields else Flag()
        if flag.none_word and "must be" not in msg:
            msg += f", or {flag.none_word!r} (null)"
        # Storage options may hold credentials: never echo them.
        got = "" if key.startswith("storage_options") else f" (got {err.get('input')!r})"
        lines.append(f"{key}: {msg}{got}" if key else msg)
    return f"Invalid {source}: " + "; ".join(dict.fromkeys(lines))


# -- the text forms every source accepts --------------------------------------------------------


def _none_word(word: str) -> BeforeValidator:
    def parse(value: Any) -> Any:
        return None if isinstance(value, str) and value.strip().lower() == word else value

    return BeforeValidator(parse)


def _split(separator: str) -> BeforeValidator:
    """A string holds a list: 'a:b,c:d', '0.1,1,10'."""

    def parse(value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(separator) if part.strip()]
        return value

    return BeforeValidator(parse)


def pair_of(item: str | Sequence[str]) -> tuple[str, ...]:
    """'image:text' or ('image', 'text') -> ('image', 'text')."""
    parts = item.split(":") if isinstance(item, str) else item
    return tuple(str(p).strip() for p in parts)


def feature_set(item: str | Sequence[str]) -> tuple[str, ...]:
    """'image+text' or ('image', 'text') -> ('image', 'text')."""
    parts = item.split("+") if isinstance(item, str) else item
    return tuple(str(p).strip() for p in parts)


def _pairs(value: Any) -> Any:
    if value is None or not isinstance(value, list | tuple):
        return value
    out = []
    for item in value:
        parts = pair_of(item) if isinstance(item, str | list | tuple) else item
        if not isinstance(parts, tuple) or len(parts) != 2 or not all(parts):
            raise ValueError(f"pair {item!r} must be written SOURCE:TARGET")
        out.append(parts)
    return out


def _feature_sets(value: Any) -> Any:
    if not isinstance(value, list | tuple):
        return value
    out = []
    for item in value:
        features = feature_set(item) if isinstance(item, str | list | tuple) else item
        if not isinstance(features, tuple) or not features or not all(features):
            raise ValueError(f"feature set {item!r} must be modality names joined by +")
        if len(set(features)) != len(features):
            raise ValueError(f"feature set {item!r} repeats a modality")
        out.append(features)
    return out


_COMPONENTS_ALLOWED = (
    "a count >= 1, a variance fraction in (0, 1), 'all' (null), or a mapping of modality "
    "names to those"
)


def _component(value: Any) -> int | float | None:
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == "all":
            return None
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"must be {_COMPONENTS_ALLOWED}") from None
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    if isinstance(value, float) and 0.0 < value < 1.0:
        return value
    raise ValueError(f"must be {_COMPONENTS_ALLOWED}")


def _components(value: Any) -> Any:
    if isinstance(value, str) and "=" in value:
        value = {k.strip(): v for k, _, v in (p.partition("=") for p in value.split(","))}
    if isinstance(value, Mapping):
        return {str(name): _component(v) for name, v in value.items()}
    return _component(value)


def _finite_alphas(value: Any) -> Any:
    if isinstance(value, list | tuple):
        for a in value:
            if isinstance(a, int | float) and not math.isfinite(a):
                raise ValueError("every α must be a finite number >= 0")
    return value


_COMPONENT_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "minimum": 1},
        {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        {"const": "all"},
        {"type": "null"},
    ]
}
_COMPONENTS_SCHEMA: dict[str, Any] = {
    "anyOf": [
        *_COMPONENT_SCHEMA["anyOf"],
        {"type": "string", "pattern": r"^\s*[^=,\s]+\s*=[^,]+(,\s*[^=,\s]+\s*=[^,]+)*$"},
        {"type": "object", "additionalProperties": _COMPONENT_SCHEMA},
    ]
}
_PAIRS_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "array",
            "items": {
                "anyOf": [
                    {"type": "string", "pattern": r"^[^:]+:[^:]+$"},
                    {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
                ]
            },
        },
        {"type": "string", "pattern": r"^[^:,]+:[^:,]+(,[^:,]+:[^:,]+)*$"},
        {"type": "null"},
    ]
}

_NUMBERS = r"^\s*[-+0-9.eE]+(\s*,\s*[-+0-9.eE]+)*\s*$"
ComponentSpec = int | float | None
Components = ComponentSpec | Mapping[str, ComponentSpec]
PairList = Annotated[
    tuple[tuple[str, str], ...] | None,
    BeforeValidator(_pairs),
    _split(","),  # before validators run last first: this one sees the value first
    WithJsonSchema(_PAIRS_SCHEMA),
]
_FEATURE_SETS_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "array",
            "items": {
                "anyOf": [
                    {"type": "string", "pattern": r"^[^+,]+(\+[^+,]+)*$"},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1},
                ]
            },
        },
        {"type": "string", "pattern": r"^[^,]+(,[^,]+)*$"},
    ]
}
FeatureSets = Annotated[
    tuple[tuple[str, ...], ...],
    BeforeValidator(_feature_sets),
    _split(","),
    WithJsonSchema(_FEATURE_SETS_SCHEMA),
]
Alphas = Annotated[
    tuple[Annotated[float, Field(ge=0, allow_inf_nan=False)], ...],
    Field(min_length=1),
    BeforeValidator(_finite_alphas),
    _split(","),
]


def _cca_reg(value: Any) -> float | tuple[float, ...]:
    """One ridge term (a number) or a path of them (a list, or text '0,0.01,0.1'); a list of
    one value is that value."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        value = parts[0] if len(parts) == 1 else parts
    items = list(value) if isinstance(value, list | tuple) else [value]
    if not items:
        raise ValueError("must be a number >= 0 or a non-empty list of them")
    out = []
    for item in items:
        try:
            number = float(item) if isinstance(item, int | float | str) else math.nan
        except ValueError:
            number = math.nan
        if isinstance(item, bool) or math.isnan(number):
            raise ValueError("Input should be a number >= 0, or a list of them")
        if not math.isfinite(number):
            raise ValueError("Input should be a finite number")
        if number < 0:
            raise ValueError("Input should be greater than or equal to 0")
        out.append(number)
    return out[0] if len(out) == 1 else tuple(out)


CcaReg = Annotated[
    float | tuple[float, ...],
    PlainValidator(_cca_reg),
    PlainSerializer(lambda v: list(v) if isinstance(v, tuple) else v),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 1},
                {"type": "string", "pattern": _NUMBERS},
            ]
        }
    ),
]


class FitConfig(Options):
    """Every choice of a fit; stored with the results as provenance."""

    pairs: Annotated[PairList, Flag(aliases=("--pair",), repeat=True, metavar="SOURCE:TARGET")] = (
        Field(
            None, description="Directed SOURCE:TARGET pairs to fit (default: every ordered pair)."
        )
    )
    components: Annotated[
        ComponentSpec | dict[str, ComponentSpec],
        BeforeValidator(_components),
        WithJsonSchema(_COMPONENTS_SCHEMA),
        Flag(metavar="K|FRACTION|all|NAME=K,..."),
    ] = Field(
        DEFAULT_COMPONENTS,
        description="PCA components per modality: a count (capped at the width), a variance "
        "fraction in (0, 1), 'all', or NAME=VALUE,... per modality.",
    )
    scale: bool = Field(
        True,
        description="Standardize every modality's columns before PCA (as StandardScaler); "
        "--no-scale only centers them.",
    )
    folds: Annotated[int, Field(ge=2, le=127)] = Field(
        5,
        description="K of K-fold cross-validation, 2 to 127 (each row's fold number is "
        "stored as an int8); an error together with holdout, unused with split.",
    )
    holdout: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        None, description="Hold out this fraction of rows for validation instead of K-fold."
    )
    split: bool = Field(
        False,
        description="Use the dataset's own split array instead of K-fold: fit on its train "
        "rows (0; the final models too), score on its test rows (1), never use rows -1.",
    )
    alphas: Annotated[Alphas, Flag(metavar="A,B,...", text_pattern=_NUMBERS)] = Field(
        DEFAULT_ALPHAS, description="Ridge α path; the best mean validation R² is chosen."
    )
    seed: Annotated[int, Field(ge=0)] = Field(0, description="Seed of the fold assignment.")
    solver: Literal["normal", "tsqr"] = Field(
        "normal",
        description="Ridge solver: normal (from the one pass) or tsqr (QR of the scores, one "
        "more pass; for ill-conditioned data).",
    )
    cca_reg: Annotated[CcaReg, Flag(metavar="R|R,R,...")] = Field(
        0.0,
        description="Ridge term added to each side's score covariance in CCA (0: textbook "
        "CCA); a list is a path, chosen per pair by the validation total correlation.",
    )
    chunk_rows: Annotated[
        Annotated[int, Field(ge=1)] | None, _none_word("auto"), Flag(none_word="auto")
    ] = Field(None, description="Rows per Dask block ('auto': from the store's chunks).")
    sketch_above: Annotated[
        Annotated[int, Field(ge=1)] | None, _none_word("never"), Flag(none_word="never")
    ] = Field(
        4096,
        description="Reduce modalities wider than this many columns by a randomized sketch "
        "first ('never': never).",
    )
    sketch_columns: Annotated[
        Annotated[int, Field(ge=2)] | None, _none_word("auto"), Flag(none_word="auto")
    ] = Field(None, description="Sketch width of a wide modality ('auto': min(d, 4k + 64)).")
    sketch_power: Annotated[int, Field(ge=0)] = Field(
        1, description="Power iterations of the sketch (one more pass each)."
    )
    precision: Literal["float64", "float32"] = Field(
        "float64",
        description="dtype of each row block's Gram in the statistics pass (float32: faster, "
        "about 1e-6 relative error; merges are float64 either way).",
    )
    classify: Annotated[FeatureSets, Flag(repeat=True, metavar="NAME[+NAME...]")] = Field(
        (),
        description="Classify the labels from these modalities' fused scores, e.g. image or "
        "image+text.",
    )
    transfer: bool = Field(
        False, description="Apply each pair target's classifier to the source mapped through W."
    )
    transfer_classifier: Literal["ridge", "logistic"] = Field(
        "ridge",
        description="The target's classifier in transfer: ridge (the whole α path) or "
        "logistic (multinomial, C = logistic_c; fitted for transfer alone if need be).",
    )
    retrieval: Annotated[bool, Flag(aliases=("--retrieve",))] = Field(
        False, description="Cross-modal retrieval for every pair, both directions."
    )
    retrieval_rows: Annotated[
        Annotated[int, Field(ge=2)] | None, _none_word("all"), Flag(none_word="all")
    ] = Field(
        5000, description="Validation rows ranked per split and pair in retrieval ('all': all)."
    )
    logistic: bool = Field(
        False,
        description="Also multinomial logistic regression per classify feature set (L-BFGS on "
        "the workers).",
    )
    logistic_c: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(
        1.0, description="Logistic regression's C (inverse l2 strength, as scikit-learn's)."
    )
    random_features: Annotated[int, Field(ge=0)] = Field(
        0,
        description="Also a non-linear map per pair: ridge on this many random Fourier "
        "features of the source scores (0: off).",
    )
    pls: Annotated[int, Field(ge=0)] = Field(
        0,
        description="Also partial least squares per pair, from the statistics (no pass): "
        "PLS-SVD and a PLS regression map with up to this many components, the number "
        "chosen by validation R² (0: off).",
    )
    rff_gamma: Annotated[
        Annotated[float, Field(gt=0, allow_inf_nan=False)] | None,
        _none_word("median"),
        Flag(none_word="median"),
    ] = Field(None, description="RBF γ of the random features ('median': the median rule).")
    multiview: Annotated[
        tuple[str, ...] | None,
        _split(","),
        Flag(metavar="NAME,NAME,...|all", text_pattern=r"^[^,]+(,[^,]+)*$"),
    ] = Field(
        None,
        description="Also a common space of several modalities at once (MCCA): two or more "
        "modality names, or 'all' (every modality of the dataset); unset: off.",
    )

    @model_validator(mode="after")
    def _multiview_views(self) -> Self:
        views = self.multiview
        if (views is not None and views != ("all",)) and (
            len(views) < 2 or len(set(views)) != len(views) or "all" in views
        ):
            raise ValueError(
                "multiview needs two or more distinct modality names, or 'all' alone "
                f"(got {','.join(views)!r})"
            )
        return self

    @model_validator(mode="after")
    def _logistic_needs_classify(self) -> Self:
        if self.logistic and not self.classify:
            raise ValueError("logistic needs at least one classify feature set (e.g. image+text)")
        return self

    @model_validator(mode="after")
    def _split_or_holdout(self) -> Self:
        if self.split and self.holdout is not None:
            raise ValueError(
                "split and holdout both choose the validation rows: give one of them"
            )
        return self

    @model_validator(mode="after")
    def _folds_or_holdout(self) -> Self:
        if self.holdout is not None and "folds" in self.model_fields_set:
            raise ValueError(
                "folds and holdout both choose the validation rows: give one of them "
                "(holdout validates on one held-out fraction, folds on K folds)"
            )
        return self

    @classmethod
    def with_overrides(cls, config: FitConfig | None, overrides: Mapping[str, Any]) -> FitConfig:
        """``config`` (default: every default) with some options replaced, validated again."""
        data = {} if config is None else config.model_dump(exclude_unset=True)
        return cls.parse({**data, **overrides}, "fit options")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


PairTuple = Annotated[
    tuple[tuple[str, str], ...],
    BeforeValidator(_pairs),
    _split(","),
    WithJsonSchema({"anyOf": _PAIRS_SCHEMA["anyOf"][:2]}),  # a list, or text; never null
]


class ApplyOptions(Options):
    """What ``mmpipe apply`` computes from a fitted run over a dataset (mmpipe.apply)."""

    run_id: Annotated[str | None, Flag(aliases=("--run",))] = Field(
        None, description="Run to apply (default: the latest complete run of the store)."
    )
    embed: Annotated[tuple[str, ...], _split(","), Flag(repeat=True, metavar="NAME")] = Field(
        (), description="Modalities to embed: their PCA scores, written to pca/<NAME>."
    )
    map: Annotated[PairTuple, Flag(repeat=True, metavar="SOURCE:TARGET")] = Field(
        (),
        description="Pairs to map: the source through W into the target's PCA space "
        "(mapped/<SOURCE>--<TARGET>), or both into the pair's CCA space with space=cca.",
    )
    space: Literal["pca", "cca", "multiview"] = Field(
        "pca",
        description="Where map writes: pca (the source through W, mapped/) or cca (both "
        "modalities in the pair's common space, cca/<SOURCE>--<TARGET>/<NAME>); multiview "
        "(no map): every row's shared embedding from the views it has (multiview/embedding).",
    )
    classify: Annotated[FeatureSets, Flag(repeat=True, metavar="NAME[+NAME...]")] = Field(
        (),
        description="Classifiers of the run to predict with: predictions/<SET> (and "
        "probabilities/<SET> from the run's logistic model of that set, when it has one).",
    )
    impute: bool = Field(
        False,
        description="Fill in every masked-out modality the run can predict from the "
        "modalities a row has (imputed/<NAME>, in feature units, with a mask of imputed rows).",
    )
    features: bool = Field(
        False, description="Also write mapped rows in the target's original feature units."
    )

    @model_validator(mode="after")
    def _something_to_do(self) -> Self:
        if not (self.embed or self.map or self.classify or self.impute) and (
            self.space != "multiview"
        ):
            raise ValueError("nothing to apply: give at least one of embed, map, classify, impute")
        if self.space == "multiview" and self.map:
            raise ValueError("space multiview takes no map: map writes in space pca or cca")
        if self.features and not self.map:
            raise ValueError("features needs at least one map (SOURCE:TARGET)")
        return self
