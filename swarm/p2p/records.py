"""The signed peer record this node attaches to every gossip RPC, made once, not per RPC.

py-libp2p 0.8.1 calls ``env_to_send_in_RPC(host)`` for every RPC it sends (each publish,
each forward, each control message): it rebuilds the host's address list (``get_addrs``,
multiaddr parsing and string work) to compare it with the cached record's, then marshals
the cached envelope again. On a compute node under load that was about 4 % of its event
loop. ``CachedRecord`` returns the same bytes for ``REFRESH`` seconds, then asks the
library again (so a changed address still gets a fresh record within that time).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import libp2p.peer.peerstore as _libp2p_peerstore
import libp2p.pubsub.gossipsub as _libp2p_gossipsub
import libp2p.pubsub.pubsub as _libp2p_pubsub
from libp2p.abc import IHost

REFRESH = 5.0  # seconds


class CachedRecord:
    """``env_to_send_in_RPC`` answered from a per-host cache for ``refresh`` seconds."""

    def __init__(
        self,
        make: Callable[[IHost], tuple[bytes, bool]],
        *,
        refresh: float = REFRESH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._make = make
        self._refresh = refresh
        self._clock = clock
        self._cached: dict[int, tuple[IHost, bytes, float]] = {}

    def __call__(self, host: IHost) -> tuple[bytes, bool]:
        now = self._clock()
        known = self._cached.get(id(host))
        if known is not None and known[0] is host and now - known[2] < self._refresh:
            return known[1], False
        envelope, fresh = self._make(host)
        if len(self._cached) > 64:  # hosts of ended test nodes
            self._cached.clear()
        self._cached[id(host)] = (host, envelope, now)
        return envelope, fresh


def install() -> None:
    """Route the pubsub modules' calls through one ``CachedRecord`` (idempotent)."""
    if isinstance(_libp2p_pubsub.env_to_send_in_RPC, CachedRecord):
        return
    cached = CachedRecord(_libp2p_peerstore.env_to_send_in_RPC)
    _libp2p_pubsub.env_to_send_in_RPC = cached
    _libp2p_gossipsub.env_to_send_in_RPC = cached
