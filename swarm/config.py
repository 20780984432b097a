"""The one configuration object of a node, and the parsers that build it from flags.

Parsers take the strings a user typed and either return typed values or raise a
``ConfigError`` that says, in one line, what is wrong and how to write it instead.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import base58
import multiaddr
from multiaddr.exceptions import Error as MultiaddrError

from swarm.errors import ConfigError
from swarm.models import AllowedPath, Role
from swarm.storage.sources import check_dataset_name

DEFAULT_HOME = "~/.swarm"
DEFAULT_SWARM_PORT = 1235
DEFAULT_API_PORT = 1234
DEFAULT_HEARTBEAT = 2.0
MISSED_HEARTBEATS = 3  # a node missing this many heartbeats is unhealthy
DEFAULT_LOST_AFTER = 15.0
DEFAULT_FORGET_AFTER = 300.0


@dataclass(frozen=True)
class Dataset:
    """A named dataset this node hosts, and where it lives on this host."""

    name: str
    path: Path


@dataclass(frozen=True)
class NodeConfig:
    """Everything `swarm serve` was told. Validated on construction."""

    home: Path
    roles: tuple[Role, ...] = (Role.REQUESTER, Role.COMPUTE)
    name: str | None = None  # None: host name + short peer id
    swarm_host: str = "0.0.0.0"
    swarm_port: int = DEFAULT_SWARM_PORT
    peers: tuple[str, ...] = ()  # bootstrap multiaddrs ending in /p2p/<peer id>
    api_host: str = "127.0.0.1"
    api_port: int = DEFAULT_API_PORT
    api_token: str | None = field(default_factory=lambda: new_api_token())  # None: no auth
    labels: dict[str, str] = field(default_factory=dict)
    allowed_paths: tuple[AllowedPath, ...] = ()
    datasets: tuple[Dataset, ...] = ()
    gpus: int | None = None  # declared GPU count; None: detect with nvidia-smi
    mdns: bool = False
    swarm_key: Path | None = None
    web_ui: bool = False
    heartbeat: float = DEFAULT_HEARTBEAT
    max_jobs: int | None = None  # executions run at once; None: the CPU count
    trusted_requesters: frozenset[str] | None = None  # None: work for any requester
    fetch_private_urls: bool = False  # URL inputs may reach non-public addresses
    lost_after: float = DEFAULT_LOST_AFTER
    forget_after: float = DEFAULT_FORGET_AFTER

    def __post_init__(self) -> None:
        if not self.roles:
            raise ConfigError("a node needs at least one role: --node-type requester,compute")
        for flag, port in (("--swarm-port", self.swarm_port), ("--api-port", self.api_port)):
            if not 0 <= port <= 65535:
                raise ConfigError(f"{flag} {port} is not a TCP port (0-65535; 0 picks a free one)")
        _check_ip(self.swarm_host, "--swarm-host")
        _check_ip(self.api_host, "--api-host")
        names = [dataset.name for dataset in self.datasets]
        if duplicate := next((n for n in names if names.count(n) > 1), None):
            raise ConfigError(f"--data {duplicate} is given twice: give each dataset one path")
        if not self.api_token and not ipaddress.ip_address(self.api_host).is_loopback:
            raise ConfigError(
                f"refusing to serve the API on {self.api_host} without a token: "
                "keep --api-host 127.0.0.1 or give the API a token"
            )
        if not 0.05 <= self.heartbeat <= 60:
            raise ConfigError(f"--heartbeat {self.heartbeat} must be between 0.05 and 60 seconds")
        if self.max_jobs is not None and self.max_jobs < 1:
            raise ConfigError(f"--max-jobs {self.max_jobs} must be 1 or more")
        if self.gpus is not None and self.gpus < 0:
            raise ConfigError(f"--gpu {self.gpus} must be 0 or more")
        if self.swarm_key is not None and not os.access(self.swarm_key, os.R_OK):
            raise ConfigError(f"cannot read swarm key file {self.swarm_key}")


def new_api_token() -> str:
    return secrets.token_urlsafe(24)


def _check_ip(text: str, flag: str) -> None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(
            f"{flag} {text!r} is not an IP address, like 127.0.0.1 or 0.0.0.0"
        ) from None


def resolve_home(flag: str | None = None) -> Path:
    """The node home: the flag, else $SWARM_HOME, else ~/.swarm."""
    text = flag or os.environ.get("SWARM_HOME") or DEFAULT_HOME
    return Path(text).expanduser().absolute()


def parse_roles(text: str) -> tuple[Role, ...]:
    """'requester,compute' → (Role.REQUESTER, Role.COMPUTE)."""
    roles = []
    for part in _split(text):
        try:
            role = Role(part.lower())
        except ValueError:
            raise ConfigError(
                f"unknown node type {part!r}: use requester, compute or requester,compute"
            ) from None
        if role not in roles:
            roles.append(role)
    if not roles:
        raise ConfigError("--node-type is empty: use requester, compute or requester,compute")
    return tuple(sorted(roles))


def parse_labels(texts: list[str]) -> dict[str, str]:
    """['zone=eu,disk=ssd', 'gpu=a100'] → {'zone': 'eu', 'disk': 'ssd', 'gpu': 'a100'}."""
    labels: dict[str, str] = {}
    for text in texts:
        for part in _split(text):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ConfigError(
                    f"label {part!r} is not key=value (example: --labels zone=eu,disk=ssd)"
                )
            labels[key.strip()] = value.strip()
    return labels


def parse_allowed_path(text: str) -> AllowedPath:
    """'/data/*:ro' → AllowedPath('/data/*'); the part before any wildcard must exist."""
    pattern, mode = text, "ro"
    head, sep, tail = text.rpartition(":")
    if sep and tail in ("ro", "rw"):
        pattern, mode = head, tail
    if not pattern:
        raise ConfigError(f"--allow-listed-local-paths {text!r} names no path")
    pattern = os.path.abspath(os.path.expanduser(pattern))
    static = _static_prefix(pattern)
    if not os.path.exists(static):
        raise ConfigError(f"--allow-listed-local-paths {text!r}: {static} does not exist")
    return AllowedPath(pattern=pattern, writable=mode == "rw")


def _static_prefix(pattern: str) -> str:
    """The leading part of a glob that has no wildcard in it."""
    parts = Path(pattern).parts
    static = []
    for part in parts:
        if glob.has_magic(part):
            break
        static.append(part)
    return str(Path(*static)) if static else "/"


def parse_dataset(text: str) -> Dataset:
    """'logs=/var/log/app' → Dataset('logs', Path('/var/log/app')); the path must exist."""
    name, sep, path = text.partition("=")
    name = name.strip()
    if not sep or not name or not path:
        raise ConfigError(f"--data {text!r} is not NAME=PATH (example: --data logs=/var/log/app)")
    check_dataset_name(name, f"--data {text!r}")
    resolved = Path(path).expanduser().absolute()
    if not resolved.exists():
        raise ConfigError(f"--data {name}: {resolved} does not exist")
    return Dataset(name=name, path=resolved)


def parse_peer(text: str) -> str:
    """Check a bootstrap address: a multiaddr that ends in /p2p/<peer id>."""
    try:
        addr = multiaddr.Multiaddr(text.strip())
    except MultiaddrError as exc:
        raise ConfigError(
            f"--peer {text!r} is not a multiaddr ({exc}): expected /ip4/HOST/tcp/PORT/p2p/PEER_ID"
        ) from None
    names = [protocol.name for protocol in addr.protocols()]
    if not names or names[-1] != "p2p":
        raise ConfigError(f"--peer {text!r} does not end in /p2p/PEER_ID: the peer id is needed")
    if "tcp" not in names:
        raise ConfigError(f"--peer {text!r} has no /tcp/PORT: swarm nodes speak TCP")
    return str(addr)


def parse_trusted_requesters(texts: list[str]) -> frozenset[str] | None:
    """--trusted-requesters PEERID,... → the peer ids (None when the flag was not given)."""
    ids = [part for text in texts for part in _split(text)]
    if not texts:
        return None
    for peer_id in ids:
        if not is_peer_id(peer_id):
            raise ConfigError(
                f"--trusted-requesters {peer_id!r} is not a peer id (like 12D3KooW…): "
                "copy it from the requester's `swarm serve` banner or `swarm agent`"
            )
    if not ids:
        raise ConfigError("--trusted-requesters is empty: give one or more peer ids")
    return frozenset(ids)


def is_peer_id(text: str) -> bool:
    """A base58 libp2p peer id: a multihash, inline (identity) or sha2-256 of the key."""
    try:
        raw = base58.b58decode(text)
    except ValueError:
        return False
    if len(raw) < 3:
        return False
    code, length = raw[0], raw[1]
    return (code == 0x00 and length == len(raw) - 2) or (
        code == 0x12 and length == 32 == len(raw) - 2
    )


def parse_peers(texts: list[str]) -> tuple[str, ...]:
    """--peer values (each may hold several, comma-separated, as SWARM_PEERS does)."""
    return tuple(parse_peer(part) for text in texts for part in _split(text))


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
