"""Typed messages on the wire: frozen dataclasses checked against their annotations.

A message class declares its fields with plain types (``str``, ``int``, ``float``,
``bool``, ``bytes``, enums, ``X | None``, ``tuple[X, ...]``, ``dict[str, X]`` and nested
dataclasses) and a ``TYPE`` tag. ``encode`` turns one into msgpack bytes; ``decode``
turns any bytes into one of the expected classes or raises ``ProtocolError``: every
field present with the right type, every string, byte string and collection within its
bound (``field(metadata={"max": N})`` narrows the defaults below). Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from functools import cache
from typing import Any, TypeVar

from swarm import wire
from swarm.errors import ProtocolError

VERSION = 1
MAX_STR = 4096
MAX_BYTES = wire.MAX_FRAME
MAX_ITEMS = 1024
_INT_RANGE = (-(2**63), 2**64 - 1)

M = TypeVar("M")


def encode(message: Any) -> bytes:
    return wire.pack(to_map(message))


def to_map(message: Any) -> dict[str, Any]:
    """A message as a msgpack/JSON-safe map, tagged with its ``TYPE`` and version."""
    body = _plain(message)
    body["type"], body["v"] = message.TYPE, VERSION
    return body


def decode(data: bytes, *classes: type[M], max_size: int = wire.MAX_FRAME) -> M:
    return from_map(wire.unpack(data, max_size=max_size), *classes)


def from_map(body: dict[str, Any], *classes: type[M]) -> M:
    """The message of one of ``classes`` that ``body`` holds, or ProtocolError."""
    kind = body.get("type")
    for cls in classes:
        if cls.TYPE == kind:
            if body.get("v") != VERSION:
                raise ProtocolError(f"{kind} message of unsupported version {body.get('v')!r}")
            return _check_dataclass(
                cls, {k: v for k, v in body.items() if k not in ("type", "v")}, kind
            )
    expected = ", ".join(cls.TYPE for cls in classes)
    raise ProtocolError(f"unexpected message type {kind!r} (expected {expected})")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_dataclass(cls: type[M], body: Any, where: str) -> M:
    if not isinstance(body, dict):
        raise ProtocolError(f"{where} is a {type(body).__name__}, expected a map")
    hints = _hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in body:
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            raise ProtocolError(f"{where}: field {f.name!r} is missing")
        values[f.name] = _check(
            hints[f.name], body[f.name], f"{where}.{f.name}", f.metadata.get("max")
        )
    unknown = set(body) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ProtocolError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    return cls(**values)


def _check(hint: Any, value: Any, where: str, bound: int | None) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check(inner, value, where, bound)
    if origin is tuple and args[-1] is not Ellipsis:  # fixed length, e.g. tuple[str, str]
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise _wrong(where, value, f"a list of {len(args)}")
        return tuple(_check(a, v, f"{where}[]", None) for a, v in zip(args, value, strict=True))
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _wrong(where, value, "a list")
        _bounded(where, len(value), bound or MAX_ITEMS, "items")
        return tuple(_check(args[0], v, f"{where}[]", None) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(where, value, "a map")
        _bounded(where, len(value), bound or MAX_ITEMS, "entries")
        return {
            _check(str, k, f"{where} key", None): _check(args[1], v, f"{where}[{k!r}]", None)
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(hint):
        return _check_dataclass(hint, value, where)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise ProtocolError(
                f"{where}: {value!r} is not one of {[e.value for e in hint]}"
            ) from None
    if hint is bool:
        if not isinstance(value, bool):
            raise _wrong(where, value, "a boolean")
        return value
    if hint is int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not _INT_RANGE[0] <= value <= _INT_RANGE[1]
        ):
            raise _wrong(where, value, "an integer")
        return value
    if hint is float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise _wrong(where, value, "a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _wrong(where, value, "a string")
        _bounded(where, len(value), bound or MAX_STR, "characters")
        return value
    if hint is bytes:
        if not isinstance(value, bytes):
            raise _wrong(where, value, "bytes")
        _bounded(where, len(value), bound or MAX_BYTES, "bytes")
        return value
    raise TypeError(f"schema: unsupported annotation {hint!r} at {where}")  # a bug, not input


def _bounded(where: str, size: int, bound: int, unit: str) -> None:
    if size > bound:
        raise ProtocolError(f"{where} has {size} {unit}, at most {bound} allowed")


def _wrong(where: str, value: Any, expected: str) -> ProtocolError:
    return ProtocolError(
        f"{where} is {type(value).__name__} {str(value)[:40]!r}, expected {expected}"
    )
