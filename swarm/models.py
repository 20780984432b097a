"""The nouns the swarm talks about: plain frozen data, no I/O.

A node describes itself with a ``NodeInfo`` (what it is and what it can do); every other
node keeps a ``Member`` for it: that description plus when it was last heard from and
the liveness status derived from that.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Role(enum.StrEnum):
    REQUESTER = "requester"  # accepts jobs from users and orchestrates them
    COMPUTE = "compute"  # bids for jobs and runs them


class NodeStatus(enum.StrEnum):
    HEALTHY = "healthy"  # heard from within its last few heartbeats
    UNHEALTHY = "unhealthy"  # missed several heartbeats in a row
    LOST = "lost"  # silent for long enough to stop counting on it


@dataclass(frozen=True)
class Gpu:
    name: str
    memory: int = 0  # bytes; 0 when unknown (declared with --gpu)


@dataclass(frozen=True)
class Resources:
    cpu: int  # logical CPUs
    memory: int  # total bytes
    memory_free: int  # bytes available when the advert was made
    gpus: tuple[Gpu, ...] = ()

    @property
    def gpu(self) -> int:
        return len(self.gpus)


@dataclass(frozen=True)
class AllowedPath:
    """A host path pattern (glob) that jobs may mount; read-only unless ``writable``."""

    pattern: str
    writable: bool = False

    @property
    def mode(self) -> str:
        return "rw" if self.writable else "ro"


@dataclass(frozen=True)
class NodeInfo:
    """What a node tells the swarm about itself in every advert."""

    peer_id: str
    name: str
    version: str
    roles: tuple[Role, ...]
    resources: Resources
    labels: dict[str, str] = field(default_factory=dict)
    allowed_paths: tuple[AllowedPath, ...] = ()
    datasets: tuple[str, ...] = ()  # names of the datasets this node hosts
    addresses: tuple[str, ...] = ()  # full multiaddrs, ending in /p2p/<peer_id>
    heartbeat: float = 2.0  # seconds between this node's adverts
    running: int = 0  # executions running now
    queued: int = 0  # bids out, each holding room for an execution
    started: float = 0.0  # unix time the node (process) started: a change means a restart


@dataclass(frozen=True)
class Member:
    """One row of a node's membership table."""

    info: NodeInfo
    status: NodeStatus
    last_seen: float  # unix time of the last advert accepted from it
    seq: int  # the advert's sequence number (nanoseconds since the epoch at issue)
    is_self: bool = False
