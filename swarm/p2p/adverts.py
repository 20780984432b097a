"""NodeInfo adverts: the schema of the `/swarm/1/nodes` gossip topic.

An advert is one msgpack map ``{"type": "node_info", "v": 1, "seq": N, "node": {...}}``.
``seq`` is the nanoseconds-since-the-epoch at which the node issued it, strictly
increasing per node (so it also survives restarts): receivers keep the highest one seen
per node and refuse anything not newer (replays), or too old/new for their clock.

Decoding is total and strict: any bytes decode into an ``Advert`` or raise
``ProtocolError``. Every string, list and number has a bound, so a hostile advert cannot
blow up a node's memory or its API output. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from swarm import wire
from swarm.errors import ProtocolError
from swarm.models import AllowedPath, Gpu, NodeInfo, Resources, Role

ADVERT_TYPE = "node_info"
ADVERT_VERSION = 1
MAX_ADVERT_SIZE = 64 * 1024

_MAX_INT = 2**63 - 1
_SHORT = 128  # names, ids, label keys
_LONG = 1024  # paths, label values, addresses


@dataclass(frozen=True)
class Advert:
    info: NodeInfo
    seq: int  # nanoseconds since the epoch when issued; strictly increasing per node

    @property
    def issued_at(self) -> float:
        return self.seq / 1e9


def encode_advert(advert: Advert) -> bytes:
    return wire.pack(
        {
            "type": ADVERT_TYPE,
            "v": ADVERT_VERSION,
            "seq": advert.seq,
            "node": node_info_to_map(advert.info),
        }
    )


def decode_advert(data: bytes) -> Advert:
    """Bytes from gossip → Advert, or ProtocolError whatever the bytes are."""
    message = wire.unpack(data, max_size=MAX_ADVERT_SIZE)
    if message.get("type") != ADVERT_TYPE:
        raise ProtocolError(f"not a node advert: type {message.get('type')!r}")
    if message.get("v") != ADVERT_VERSION:
        raise ProtocolError(f"unsupported advert version {message.get('v')!r}")
    seq = _int(message, "seq", minimum=1)
    return Advert(info=node_info_from_map(_map(message, "node")), seq=seq)


def node_info_to_map(info: NodeInfo) -> dict[str, Any]:
    """The wire (and JSON) shape of a NodeInfo."""
    return {
        "peer_id": info.peer_id,
        "name": info.name,
        "version": info.version,
        "roles": [role.value for role in info.roles],
        "labels": dict(info.labels),
        "resources": {
            "cpu": info.resources.cpu,
            "memory": info.resources.memory,
            "memory_free": info.resources.memory_free,
            "gpu": info.resources.gpu,
            "gpus": [{"name": gpu.name, "memory": gpu.memory} for gpu in info.resources.gpus],
        },
        "allowed_paths": [{"path": p.pattern, "mode": p.mode} for p in info.allowed_paths],
        "datasets": list(info.datasets),
        "addresses": list(info.addresses),
        "heartbeat": info.heartbeat,
        "running": info.running,
        "queued": info.queued,
        "started": info.started,
    }


def node_info_from_map(node: dict[str, Any]) -> NodeInfo:
    """The inverse of ``node_info_to_map``, checking every field; raises ProtocolError."""
    resources = _map(node, "resources")
    labels = _map(node, "labels", max_items=64)
    for key, value in labels.items():
        _check_str(key, "label key", _SHORT)
        _check_str(value, f"label {key!r}", _LONG)
    roles = []
    for text in _list(node, "roles", max_items=len(Role)):
        try:
            roles.append(Role(_check_str(text, "role", _SHORT)))
        except ValueError:
            raise ProtocolError(f"unknown role {text!r}") from None
    if not roles or len(set(roles)) != len(roles):
        raise ProtocolError("roles must be a non-empty list without repeats")
    paths = []
    for item in _list(node, "allowed_paths", max_items=64):
        entry = _as_map(item, "allowed path")
        mode = _str(entry, "mode", 2)
        if mode not in ("ro", "rw"):
            raise ProtocolError(f"allowed path mode {mode!r} is not ro or rw")
        paths.append(AllowedPath(pattern=_str(entry, "path", _LONG), writable=mode == "rw"))
    gpus = []
    for item in _list(resources, "gpus", max_items=64):
        entry = _as_map(item, "gpu")
        gpus.append(Gpu(name=_str(entry, "name", _SHORT), memory=_int(entry, "memory")))
    heartbeat = node.get("heartbeat")
    if (
        isinstance(heartbeat, bool)
        or not isinstance(heartbeat, int | float)
        or not math.isfinite(heartbeat)
        or not 0.05 <= heartbeat <= 60
    ):
        raise ProtocolError(f"heartbeat {heartbeat!r} is not a number of seconds in [0.05, 60]")
    return NodeInfo(
        peer_id=_str(node, "peer_id", _SHORT),
        name=_str(node, "name", _SHORT),
        version=_str(node, "version", _SHORT),
        roles=tuple(sorted(roles)),
        labels=dict(labels),
        resources=Resources(
            cpu=_int(resources, "cpu"),
            memory=_int(resources, "memory"),
            memory_free=_int(resources, "memory_free"),
            gpus=tuple(gpus),
        ),
        allowed_paths=tuple(paths),
        datasets=tuple(_check_str(d, "dataset", _SHORT) for d in _list(node, "datasets", 256)),
        addresses=tuple(_check_str(a, "address", _LONG) for a in _list(node, "addresses", 32)),
        heartbeat=float(heartbeat),
        running=_int(node, "running"),
        queued=_int(node, "queued"),
        started=_time(node, "started"),
    )


def _as_map(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} is a {type(value).__name__}, expected a map")
    return value


def _map(message: dict[str, Any], key: str, max_items: int = 64) -> dict[str, Any]:
    value = _as_map(message.get(key), key)
    if len(value) > max_items:
        raise ProtocolError(f"{key} has {len(value)} entries, at most {max_items} allowed")
    return value


def _list(message: dict[str, Any], key: str, max_items: int) -> list[Any]:
    value = message.get(key)
    if not isinstance(value, list):
        raise ProtocolError(f"{key} is a {type(value).__name__}, expected a list")
    if len(value) > max_items:
        raise ProtocolError(f"{key} has {len(value)} items, at most {max_items} allowed")
    return value


def _check_str(value: Any, what: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"{what} is a {type(value).__name__}, expected a string")
    if len(value) > max_length:
        raise ProtocolError(f"{what} is {len(value)} characters long, at most {max_length}")
    return value


def _str(message: dict[str, Any], key: str, max_length: int) -> str:
    return _check_str(message.get(key), key, max_length)


def _time(message: dict[str, Any], key: str) -> float:
    value = message.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError(f"{key} {value!r} is not a unix time")
    return float(value)


def _int(message: dict[str, Any], key: str, minimum: int = 0) -> int:
    value = message.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= _MAX_INT:
        raise ProtocolError(f"{key} {value!r} is not an integer in [{minimum}, 2**63)")
    return value
