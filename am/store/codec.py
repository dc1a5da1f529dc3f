"""SliverSpec <-> JSON-safe dict, explicitly, from the dataclasses' type hints (no pickles).

Only the dataclasses reachable from `SliverSpec` are accepted; enums are stored by value,
tuples as lists, `X | None` as null. Decoding validates the shape, so a hand-edited or corrupt
row fails loudly with `CodecError` instead of producing a half-built spec.
"""
from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any

from drivers.base import SliverSpec


class CodecError(ValueError):
    pass


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def spec_to_dict(spec: SliverSpec) -> dict[str, Any]:
    return _encode(spec, SliverSpec)


def spec_from_dict(data: Mapping[str, Any]) -> SliverSpec:
    return _decode(data, SliverSpec, "spec")


def stored_param(data: Mapping[str, Any], name: str) -> Any:
    """`spec_from_dict(data).params.get(name)` without decoding the whole spec (the params are
    stored as the JSON object they are); None for a row without that param."""
    params = data.get("params") if isinstance(data, Mapping) else None
    return params.get(name) if isinstance(params, Mapping) else None


def _encode(value: Any, hint: Any) -> Any:
    if value is None:
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        hints = _hints(type(value))
        return {f.name: _encode(getattr(value, f.name), hints[f.name])
                for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        args = typing.get_args(hint)
        inner = args[0] if args else Any
        return [_encode(v, inner) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _encode(v, Any) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)):
        return value
    raise CodecError(f"cannot encode {type(value).__name__} value {value!r}")


def _decode(data: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return data
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if data is None:
            if type(None) in args:
                return None
            raise CodecError(f"{where}: null not allowed")
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _decode(data, arg, where)
            except CodecError:
                continue
        raise CodecError(f"{where}: {data!r} matches none of {hint}")
    if origin is tuple:
        if not isinstance(data, list):
            raise CodecError(f"{where}: expected a list, got {type(data).__name__}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(v, args[0], f"{where}[{i}]") for i, v in enumerate(data))
        if len(args) != len(data):
            raise CodecError(f"{where}: expected {len(args)} items")
        return tuple(_decode(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(data, args)))
    if origin in (dict, Mapping, typing.Mapping) or hint in (dict, Mapping):
        if not isinstance(data, dict):
            raise CodecError(f"{where}: expected an object")
        return dict(data)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(data, dict):
            raise CodecError(f"{where}: expected an object for {hint.__name__}")
        hints = _hints(hint)
        names = {f.name for f in dataclasses.fields(hint)}
        unknown = set(data) - names
        if unknown:
            raise CodecError(f"{where}: unknown fields {sorted(unknown)} for {hint.__name__}")
        kwargs = {k: _decode(v, hints[k], f"{where}.{k}") for k, v in data.items()}
        try:
            return hint(**kwargs)
        except TypeError as exc:
            raise CodecError(f"{where}: {exc}") from None
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(data)
        except ValueError:
            raise CodecError(f"{where}: {data!r} is not a {hint.__name__}") from None
    if hint is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise CodecError(f"{where}: expected a number")
        return float(data)
    if hint in (int, str, bool):
        if not isinstance(data, hint) or (hint is int and isinstance(data, bool)):
            raise CodecError(f"{where}: expected {hint.__name__}, got {data!r}")
        return data
    raise CodecError(f"{where}: unsupported type {hint!r}")
