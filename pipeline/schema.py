"""Typed config sections: dataclasses whose fields carry a help text, validated from plain YAML data.

Each component (source, detector, tracker, scene) declares its own section with ``option(...)`` fields and
checks value ranges in ``__post_init__`` by raising ``ConfigError(field, message)``; ``build`` walks the YAML
data, rejects unknown keys and wrong types with the full key path and the allowed values, and prefixes
errors from ``__post_init__`` with the section's path.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Union

from pipeline.errors import ConfigError


def option(default: Any, doc: str, **kwargs: Any) -> Any:
    """A config field with its help text. Mutable defaults (lists, sections) are copied per instance."""
    if dataclasses.is_dataclass(default) or isinstance(default, (list, dict)):
        factory = (lambda d=default: dataclasses.replace(d)) if dataclasses.is_dataclass(default) else (
            lambda d=default: type(d)(d))
        return dataclasses.field(default_factory=factory, metadata={"doc": doc}, **kwargs)
    return dataclasses.field(default=default, metadata={"doc": doc}, **kwargs)


def require(condition: bool, key: str, message: str) -> None:
    """Range check for ``__post_init__``: raise ConfigError naming ``key`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(key, message)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp)
        return f"list of {_type_name(item)}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, path)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed and type(value) is type(allowed[allowed.index(value)]):
            return value
        hint = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
        raise ConfigError(path, f"got {value!r}; allowed values: {', '.join(repr(a) for a in allowed)}"
                          + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, path)
            except ConfigError:
                pass
        raise ConfigError(path, f"got {value!r} ({type(value).__name__}); expected {_type_name(tp)}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(path, f"got {value!r}; expected {_type_name(tp)}")
        return [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise ConfigError(path, f"got {value!r} ({type(value).__name__}); expected {_type_name(tp)}")


def build(cls: type, data: Any, path: str = "") -> Any:
    """Validate ``data`` (a mapping from YAML) into the dataclass ``cls``; missing keys take their defaults."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            hint = difflib.get_close_matches(str(key), names, n=1)
            raise ConfigError(_join(path, str(key)), "unknown key"
                              + (f" (did you mean '{_join(path, hint[0])}'?)" if hint else "")
                              + f"; allowed keys here: {', '.join(names)}")
        kwargs[key] = _convert(hints[key], value, _join(path, key))
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(_join(path, err.path), err.message) from None


def to_dict(section: Any) -> dict:
    """Plain data of a section (for summary.json and for round trips through YAML)."""
    return dataclasses.asdict(section)


def describe(cls: type, path: str = "") -> list[str]:
    """One help line per option, nested sections flattened into dotted key paths."""
    hints = typing.get_type_hints(cls)
    lines = []
    for f in dataclasses.fields(cls):
        key = _join(path, f.name)
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            lines.append(f"{key}: {f.metadata.get('doc', '')}")
            lines.extend(describe(tp, key))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        lines.append(f"  {key} ({_type_name(tp)}; default {default!r}): {f.metadata.get('doc', '')}")
    return lines
