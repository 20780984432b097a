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
from collections.abc import Callable
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
    body = _encoder(type(message))(message)
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
            fields = {k: v for k, v in body.items() if k not in ("type", "v")}
            try:
                return _dataclass_checker(cls)(fields)
            except _Invalid as exc:
                raise ProtocolError(exc.text(kind + "".join(reversed(exc.path)))) from None
    expected = ", ".join(cls.TYPE for cls in classes)
    raise ProtocolError(f"unexpected message type {kind!r} (expected {expected})")


# Each message class is compiled once, from its annotations, into a checker: a function
# that takes the decoded value and returns the typed one or raises ``_Invalid``. Where
# the bad value sits is only spelled out on the way up from a failure, so a good message
# costs no string building.

Check = Callable[[Any], Any]


class _Invalid(Exception):
    """A value that does not fit; ``text(where)`` says how, ``path`` where (innermost
    first)."""

    def __init__(self, text: Callable[[str], str]) -> None:
        self.text = text
        self.path: list[str] = []


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@cache
def _dataclass_checker(cls: type[M]) -> Callable[[Any], M]:
    hints = _hints(cls)
    fields = [
        (
            f.name,
            _checker(hints[f.name], f.metadata.get("max")),
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
    ]
    names = frozenset(name for name, _, _ in fields)

    def check(body: Any) -> M:
        if not isinstance(body, dict):
            raise _Invalid(lambda where: f"{where} is a {type(body).__name__}, expected a map")
        values = {}
        for name, check_field, optional in fields:
            if name not in body:
                if optional:
                    continue
                raise _Invalid(lambda where, name=name: f"{where}: field {name!r} is missing")
            try:
                values[name] = check_field(body[name])
            except _Invalid as exc:
                exc.path.append("." + name)
                raise
        if len(body) > len(values) and not names.issuperset(body):
            unknown = sorted(set(body) - names)[0]
            raise _Invalid(lambda where: f"{where}: unknown field {unknown!r}")
        return cls(**values)

    return check


@cache
def _checker(hint: Any, bound: int | None) -> Check:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        check_inner = _checker(inner, bound)
        if type(None) not in args:
            return check_inner
        return lambda value: None if value is None else check_inner(value)
    if origin is tuple and args[-1] is not Ellipsis:  # fixed length, e.g. tuple[str, str]
        return _fixed_tuple_checker(tuple(_checker(a, None) for a in args))
    if origin is tuple:
        return _tuple_checker(_checker(args[0], None), bound or MAX_ITEMS)
    if origin is dict:
        return _dict_checker(_checker(str, None), _checker(args[1], None), bound or MAX_ITEMS)
    if dataclasses.is_dataclass(hint):
        return _dataclass_checker(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum_checker(hint)
    if hint is bool:
        return _bool
    if hint is int:
        return _int
    if hint is float:
        return _float
    if hint is str:
        return _sized(str, "a string", "characters", bound or MAX_STR)
    if hint is bytes:
        return _sized(bytes, "bytes", "bytes", bound or MAX_BYTES)
    raise TypeError(f"schema: unsupported annotation {hint!r}")  # a bug, not input


def _fixed_tuple_checker(items: tuple[Check, ...]) -> Check:
    def check(value: Any) -> tuple:
        if not isinstance(value, list | tuple) or len(value) != len(items):
            raise _wrong(value, f"a list of {len(items)}")
        try:
            return tuple([item(v) for item, v in zip(items, value, strict=True)])
        except _Invalid as exc:
            exc.path.append("[]")
            raise

    return check


def _tuple_checker(item: Check, bound: int) -> Check:
    def check(value: Any) -> tuple:
        if not isinstance(value, list | tuple):
            raise _wrong(value, "a list")
        _bounded(len(value), bound, "items")
        try:
            return tuple([item(v) for v in value])
        except _Invalid as exc:
            exc.path.append("[]")
            raise

    return check


def _dict_checker(key: Check, item: Check, bound: int) -> Check:
    def check(value: Any) -> dict:
        if not isinstance(value, dict):
            raise _wrong(value, "a map")
        _bounded(len(value), bound, "entries")
        out = {}
        for k, v in value.items():
            try:
                checked = key(k)
            except _Invalid as exc:
                exc.path.append(" key")
                raise
            try:
                out[checked] = item(v)
            except _Invalid as exc:
                exc.path.append(f"[{k!r}]")
                raise
        return out

    return check


def _enum_checker(kind: type[enum.Enum]) -> Check:
    def check(value: Any) -> enum.Enum:
        try:
            return kind(value)
        except ValueError:
            raise _Invalid(
                lambda where: f"{where}: {value!r} is not one of {[e.value for e in kind]}"
            ) from None

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _wrong(value, "a boolean")
    return value


def _int(value: Any) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not _INT_RANGE[0] <= value <= _INT_RANGE[1]
    ):
        raise _wrong(value, "an integer")
    return value


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _wrong(value, "a finite number")
    return float(value)


def _sized(kind: type, expected: str, unit: str, bound: int) -> Check:
    def check(value: Any) -> Any:
        if not isinstance(value, kind):
            raise _wrong(value, expected)
        _bounded(len(value), bound, unit)
        return value

    return check


def _bounded(size: int, bound: int, unit: str) -> None:
    if size > bound:
        raise _Invalid(lambda where: f"{where} has {size} {unit}, at most {bound} allowed")


def _wrong(value: Any, expected: str) -> _Invalid:
    return _Invalid(
        lambda where: f"{where} is {type(value).__name__} {str(value)[:40]!r}, expected {expected}"
    )


# Encoding is compiled the same way: each class into a function from a message to its map.


@cache
def _encoder(cls: type) -> Callable[[Any], dict[str, Any]]:
    hints = _hints(cls)
    fields = [(f.name, _value_encoder(hints[f.name])) for f in dataclasses.fields(cls)]

    def encode_fields(message: Any) -> dict[str, Any]:
        return {
            name: getattr(message, name) if plain is None else plain(getattr(message, name))
            for name, plain in fields
        }

    return encode_fields


@cache
def _value_encoder(hint: Any) -> Callable[[Any], Any] | None:
    """How a value of ``hint`` becomes plain data; None when it already is."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        plain = _value_encoder(inner)
        if plain is None:
            return None
        return lambda value: None if value is None else plain(value)
    if origin is tuple:
        items = [_value_encoder(a) for a in args if a is not Ellipsis]
        if args[-1] is Ellipsis:
            (item,) = items
            if item is None:
                return list
            return lambda value: [item(v) for v in value]
        return lambda value: [v if e is None else e(v) for e, v in zip(items, value, strict=True)]
    if origin is dict:
        item = _value_encoder(args[1])
        if item is None:
            return dict
        return lambda value: {k: item(v) for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return _encoder(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return lambda value: value.value
    return None
