"""Caches for the signed peer records py-libp2p attaches to every gossip RPC.

Each RPC carries its sender's signed peer record. py-libp2p 0.8.1 verifies every copy it
receives (an ed25519 check per RPC, duplicates included) and rebuilds its own for every
RPC it sends and every message it forwards. ``install_record_caches`` replaces the two
library functions, in both pubsub modules that call them, with caches:

- ``SenderRecordCache``: a peer's unchanged record is re-verified only every
  ``RECORD_RECHECK`` seconds;
- ``LocalRecordCache``: this host's record is rebuilt every ``RECORD_REFRESH`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import libp2p.pubsub.gossipsub as _libp2p_gossipsub
import libp2p.pubsub.pubsub as _libp2p_pubsub
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

RECORD_RECHECK = 60.0
RECORD_REFRESH = 10.0


class SenderRecordCache:
    """``maybe_consume_signed_record`` that skips records it has just verified.

    A peer sends the same signed peer record with every RPC. The first copy (and any
    changed one) goes through the library's check and into the peer store; the same
    bytes from the same peer within ``recheck`` seconds are accepted as they are.
    """

    def __init__(
        self,
        consume: Callable[[rpc_pb2.RPC, IHost, ID], bool],
        *,
        recheck: float = RECORD_RECHECK,
        clock: Callable[[], float] = time.monotonic,
        max_peers: int = 4096,
    ) -> None:
        self._consume = consume
        self._recheck = recheck
        self._clock = clock
        self._max_peers = max_peers
        self._verified: dict[ID, tuple[bytes, float]] = {}

    def __call__(self, rpc: rpc_pb2.RPC, host: IHost, peer_id: ID) -> bool:
        if not rpc.HasField("senderRecord"):
            return self._consume(rpc, host, peer_id)
        record, now = rpc.senderRecord, self._clock()
        known = self._verified.get(peer_id)
        if known is not None and known[0] == record and now - known[1] < self._recheck:
            return True
        accepted = self._consume(rpc, host, peer_id)
        if accepted:
            if len(self._verified) >= self._max_peers:
                self._verified.clear()
            self._verified[peer_id] = (record, now)
        return accepted


class LocalRecordCache:
    """``env_to_send_in_RPC`` that re-derives this host's signed peer record only every
    ``refresh`` seconds.

    The library builds it for every RPC it sends and every message it forwards: the
    host's addresses listed and parsed, compared with the stored record's, the envelope
    serialised again; a tenth of an idle node's CPU in a 10-node swarm. The record only
    changes when the listen addresses do, which a node notices ``refresh`` seconds later.
    """

    def __init__(
        self,
        make: Callable[[IHost], tuple[bytes, bool]],
        *,
        refresh: float = RECORD_REFRESH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._make = make
        self._refresh = refresh
        self._clock = clock
        self._made: dict[int, tuple[IHost, bytes, float]] = {}

    def __call__(self, host: IHost) -> tuple[bytes, bool]:
        now = self._clock()
        made = self._made.get(id(host))
        if made is not None and made[0] is host and now - made[2] < self._refresh:
            return made[1], False
        record, fresh = self._make(host)
        if len(self._made) >= 64:
            self._made.clear()
        self._made[id(host)] = (host, record, now)
        return record, fresh


def install_record_caches() -> None:
    """Put the caches in place of the library's functions (once; later calls do nothing)."""
    if not isinstance(_libp2p_pubsub.maybe_consume_signed_record, SenderRecordCache):
        consume = SenderRecordCache(_libp2p_pubsub.maybe_consume_signed_record)
        _libp2p_pubsub.maybe_consume_signed_record = consume
        _libp2p_gossipsub.maybe_consume_signed_record = consume
    if not isinstance(_libp2p_pubsub.env_to_send_in_RPC, LocalRecordCache):
        make = LocalRecordCache(_libp2p_pubsub.env_to_send_in_RPC)
        _libp2p_pubsub.env_to_send_in_RPC = make
        _libp2p_gossipsub.env_to_send_in_RPC = make
