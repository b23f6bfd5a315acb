"""The declarative schema both configs are made of: one :class:`Key` per config key, checked by pydantic.

A config is a frozen dataclass whose every field is declared with :func:`key`
(or :func:`required_key`): its type (the annotation), its default, what it
allows (bounds, a pattern, or the names of a registry) and a one-line
description, in that one place. From these declarations come

* the checks: :func:`check_values` validates every field's type and range with
  a pydantic model built from them (strict types: no ``"3"`` for 3, no bool for
  an integer, no inf or nan), then each value's registry; every error is a
  :class:`ConfigError` naming the key, the value and what is allowed;
* the docs: :func:`reference_rows` gives each key's default, type and
  :class:`Key`, which :mod:`flower_dl.config.reference` turns into the tables of
  ``docs/configuration.md``.

Checks that read several keys together (a topology's degree and ``num-nodes``,
central DP and the strategy) are the config's own, run after these.

Imports neither Flower nor torch: every node process checks its config.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from flower_dl import registry

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value that is missing, of the wrong type, or out of range; the message names key, value, allowed."""


@dataclass(frozen=True)
class Key:
    """What one config key allows and means (the metadata of its dataclass field)."""

    description: str
    """One line: what the key does (Markdown; the docs' table shows it)."""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    pattern: str | None = None
    """A regular expression a string value must match (``allowed`` then says it in words)."""
    min_length: int | None = None
    choices: registry.Registry | tuple[str, ...] = ()
    """The names a string value may take: a registry (which may accept import paths too) or a tuple."""
    allowed: str = ""
    """What is allowed, in words, where the bounds do not say it all (a pattern, a bound another key sets)."""
    note: str = ""
    """Said after the bounds, e.g. ``"0: no checkpoints"``."""


def key(default: T, description: str, **spec: Any) -> T:
    """A config field: its default, a one-line description and what it allows (see :class:`Key`)."""
    field: Any = dataclasses.field(default=default, metadata={"key": Key(description, **spec)})
    return typing.cast(T, field)


def required_key(description: str, **spec: Any) -> Any:
    """A config field without a default: the config is refused when it is missing."""
    return dataclasses.field(metadata={"key": Key(description, **spec)})


def kebab(name: str) -> str:
    """The config key of a field: ``num_nodes`` -> ``num-nodes``."""
    return name.replace("_", "-")


def keys_of(cls: type) -> dict[str, tuple[dataclasses.Field[Any], Key]]:
    """Config key -> (its dataclass field, its :class:`Key`), in declaration order."""
    return {kebab(f.name): (f, f.metadata["key"]) for f in dataclasses.fields(cls)}


# ------------------------------------------------------------------ words
def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def kind_of(cls: type, name: str) -> str:
    """``"int"``, ``"float"``, ``"bool"`` or ``"str"``: a field's type (``T`` of ``T | None``)."""
    annotation = _hints(cls)[name]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = args[0] if args else annotation
    return getattr(base, "__name__", str(base))


def _bound(closed: float | None, closed_mark: str, open_: float | None, open_mark: str) -> tuple[str, str] | None:
    """A bound in words and its bracket: ``("0", "[")`` for ``ge=0``, ``("1", ")")`` for ``lt=1``."""
    if closed is not None:
        return _num(closed), closed_mark
    return (_num(open_), open_mark) if open_ is not None else None


_NOUNS = {"int": "an integer", "float": "a number", "bool": "a boolean", "str": "a string"}


def allowed(kind: str, spec: Key) -> str:
    """What a key allows, in words: ``"an integer >= 2"``, ``"a number in (0, 1]"``, its registry's names."""
    if spec.allowed:
        return spec.allowed
    if kind == "bool":
        return "true or false"
    if isinstance(spec.choices, registry.Registry):
        return spec.choices.allowed()
    if spec.choices:
        return ", ".join(spec.choices)
    low = _bound(spec.ge, "[", spec.gt, "(")
    high = _bound(spec.le, "]", spec.lt, ")")
    noun = _NOUNS.get(kind, "a value")
    if kind == "int" and spec.ge is not None and spec.le is not None:
        words = f"{noun} in {_num(spec.ge)}..{_num(spec.le)}"
    elif low and high:
        words = f"{noun} in {low[1]}{low[0]}, {high[0]}{high[1]}"
    elif low:
        words = f"{noun} {'>=' if low[1] == '[' else '>'} {low[0]}"
    elif high:
        words = f"{noun} {'<=' if high[1] == ']' else '<'} {high[0]}"
    else:
        words = noun
    return f"{words} ({spec.note})" if spec.note else words


# ------------------------------------------------------------------ checks
@functools.cache
def model_of(cls: type) -> type[BaseModel]:
    """The pydantic model that checks a config class's fields: their types (strict) and bounds."""
    hints = _hints(cls)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        spec: Key = f.metadata["key"]
        default = ... if f.default is dataclasses.MISSING else f.default
        constraints = {k: getattr(spec, k) for k in ("ge", "gt", "le", "lt", "pattern", "min_length")}
        fields[f.name] = (hints[f.name], Field(default, **{k: v for k, v in constraints.items() if v is not None}))
    config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
    return create_model(f"{cls.__name__}Schema", __config__=config, **fields)


def check_values(cls: type, values: Mapping[str, Any]) -> None:
    """Refuse the first value (in declaration order) of the wrong type, out of range or not a known name.

    Parameters
    ----------
    cls : type
        A config dataclass whose fields are declared with :func:`key`.
    values : Mapping
        Field name -> value.

    Raises
    ------
    ConfigError
        ``"<key>: <value> is not an integer; allowed: an integer >= 2"``, ``"... is out of range; allowed:
        ..."``, ``"... is not a known <key>; allowed: ..."`` (an import path that does not import:
        :meth:`flower_dl.registry.Registry.check`'s message).
    """
    try:
        model_of(cls).model_validate(dict(values))
    except ValidationError as err:
        raise ConfigError(_message(cls, err.errors()[0], values)) from None
    for k, (f, spec) in keys_of(cls).items():
        value = values[f.name]
        if isinstance(spec.choices, registry.Registry):
            # an import path (model, strategy) is imported here: refused before anything starts
            try:
                spec.choices.check(value)
            except registry.RegistryError as err:
                raise ConfigError(str(err)) from None
        elif spec.choices and value not in spec.choices:
            raise ConfigError(f"{k}: {value!r} is not a known {k}; allowed: {allowed(kind_of(cls, f.name), spec)}")


def _message(cls: type, error: Mapping[str, Any], values: Mapping[str, Any]) -> str:
    """One pydantic error in our words: the key, the value, what is wrong and what is allowed."""
    name = str(error["loc"][0])
    k = kebab(name)
    spec = keys_of(cls)[k][1]
    kind = kind_of(cls, name)
    words = allowed(kind, spec)
    if error["type"] == "missing":
        return f"{k}: missing; allowed: {words}"
    value = values[name]
    if error["type"].endswith("_type"):
        return f"{k}: {value!r} is not {_NOUNS.get(kind, 'of the right type')}; allowed: {words}"
    if error["type"] == "finite_number":
        return f"{k}: {value!r} is not finite; allowed: a finite {words.removeprefix('a ')}"
    wrong = "is out of range" if kind in ("int", "float") else "is not allowed"
    return f"{k}: {value!r} {wrong}; allowed: {words}"


def refuse_unknown(cls: type, given: Mapping[str, Any], what: str) -> None:
    """Refuse a key ``cls`` does not declare: ``"shares: unknown run-config key; allowed keys: ..."``."""
    known = keys_of(cls)
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown {what} key; allowed keys: {', '.join(sorted(known))}")


# ------------------------------------------------------------------ docs
def toml_value(value: Any) -> str:
    """A default as TOML writes it (``5``, ``"edges"``, ``true``, ``1e-05``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def reference_rows(cls: type) -> list[tuple[str, Any, str, Key]]:
    """``(key, default, kind, Key)`` of every field in declaration order (default ``dataclasses.MISSING``: required)."""
    return [(k, f.default, kind_of(cls, f.name), spec) for k, (f, spec) in keys_of(cls).items()]
