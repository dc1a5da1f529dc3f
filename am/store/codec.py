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
from collections.abc import Callable, Mapping
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
    return _decoder(SliverSpec)(data, "spec")


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


Decoder = Callable[[Any, str], Any]


@cache
def _decoder(hint: Any) -> Decoder:
    """The function decoding values of type `hint`, built once per type (the type hints are
    read here, not for every value: a month of reservations decodes thousands of specs)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return lambda data, where: data
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        nullable = type(None) in args
        options = [_decoder(a) for a in args if a is not type(None)]

        def union(data: Any, where: str) -> Any:
            if data is None:
                if nullable:
                    return None
                raise CodecError(f"{where}: null not allowed")
            for option in options:
                try:
                    return option(data, where)
                except CodecError:
                    continue
            raise CodecError(f"{where}: {data!r} matches none of {hint}")
        return union
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _decoder(args[0])

            def many(data: Any, where: str) -> Any:
                if not isinstance(data, list):
                    raise CodecError(f"{where}: expected a list, got {type(data).__name__}")
                return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(data))
            return many
        items = [_decoder(a) for a in args]

        def fixed(data: Any, where: str) -> Any:
            if not isinstance(data, list):
                raise CodecError(f"{where}: expected a list, got {type(data).__name__}")
            if len(items) != len(data):
                raise CodecError(f"{where}: expected {len(items)} items")
            return tuple(d(v, f"{where}[{i}]") for i, (v, d) in enumerate(zip(data, items)))
        return fixed
    if origin in (dict, Mapping, typing.Mapping) or hint in (dict, Mapping):
        def mapping(data: Any, where: str) -> Any:
            if not isinstance(data, dict):
                raise CodecError(f"{where}: expected an object")
            return dict(data)
        return mapping
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass_decoder(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        def member(data: Any, where: str) -> Any:
            try:
                return hint(data)
            except ValueError:
                raise CodecError(f"{where}: {data!r} is not a {hint.__name__}") from None
        return member
    if hint is float:
        def number(data: Any, where: str) -> Any:
            if isinstance(data, bool) or not isinstance(data, (int, float)):
                raise CodecError(f"{where}: expected a number")
            return float(data)
        return number
    if hint in (int, str, bool):
        def plain(data: Any, where: str) -> Any:
            if not isinstance(data, hint) or (hint is int and isinstance(data, bool)):
                raise CodecError(f"{where}: expected {hint.__name__}, got {data!r}")
            return data
        return plain

    def unsupported(data: Any, where: str) -> Any:
        raise CodecError(f"{where}: unsupported type {hint!r}")
    return unsupported


def _dataclass_decoder(cls: type) -> Decoder:
    fields: dict[str, Decoder] = {}
    names = frozenset(f.name for f in dataclasses.fields(cls))

    def decode(data: Any, where: str) -> Any:
        if not isinstance(data, dict):
            raise CodecError(f"{where}: expected an object for {cls.__name__}")
        if not fields:      # filled on first use: a dataclass may refer to itself
            hints = _hints(cls)
            fields.update({name: _decoder(hints[name]) for name in names})
        unknown = data.keys() - names
        if unknown:
            raise CodecError(f"{where}: unknown fields {sorted(unknown)} for {cls.__name__}")
        kwargs = {k: fields[k](v, f"{where}.{k}") for k, v in data.items()}
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise CodecError(f"{where}: {exc}") from None
    return decode
