"""Fewer, fuller gossip RPCs: merging queued RPCs, and holding adverts to forward together.

Each gossip RPC costs py-libp2p about the same (a yamux frame, a Noise encryption, a
socket write; at the receiver a decryption, a parse and the sender's peer record) however
few messages it carries, and an idle swarm's RPCs each carry one advert. Two pure helpers
make RPCs carry more:

- ``merge_rpcs`` joins RPCs queued for one peer into as few RPCs as fit the size limit,
  keeping every message, subscription and control entry, in order;
- ``HeldMessages`` is a per-peer outbox for messages that may wait a few milliseconds
  (adverts, never job announces): what is held for a peer leaves as one RPC, and a held
  message the peer has meanwhile sent us itself is not sent back to it.

Pure: no trio, no libp2p I/O. ``swarm.p2p.gossip`` drives both.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from libp2p.pubsub.pb import rpc_pb2
from libp2p.utils.varint import encode_uvarint

_SLACK = 16  # bytes: a merged length prefix can be a few bytes longer than the parts'


def merge_rpcs(rpcs: Iterable[rpc_pb2.RPC], limit: int) -> list[rpc_pb2.RPC]:
    """``rpcs`` joined, in order, into RPCs of at most ``limit`` bytes where possible.

    Repeated fields (messages, subscriptions, IHAVE/IWANT/GRAFT/PRUNE/IDONTWANT entries)
    are concatenated; the sender record, the same in every RPC of one sender, is kept
    once. An RPC that alone exceeds ``limit`` is passed on as it is (the caller's size
    check applies to it as before), never merged with another.
    """
    out: list[rpc_pb2.RPC] = []
    current: rpc_pb2.RPC | None = None
    size = 0
    for rpc in rpcs:
        rpc_size = rpc.ByteSize()
        if current is not None:
            # The record is kept once; the control entries' shared length prefix may grow.
            extra = rpc_size - (
                _record_size(rpc) if rpc.senderRecord == current.senderRecord else 0
            )
            if size + extra + _SLACK <= limit:
                current.MergeFrom(rpc)
                size = current.ByteSize()
                continue
            out.append(current)
        current = rpc_pb2.RPC()
        current.CopyFrom(rpc)
        size = rpc_size
    if current is not None:
        out.append(current)
    return out


def _record_size(rpc: rpc_pb2.RPC) -> int:
    if not rpc.senderRecord:
        return 0
    n = len(rpc.senderRecord)
    return 1 + len(encode_uvarint(n)) + n


class HeldMessages:
    """Messages waiting to be forwarded, per peer, each once, in the order they came."""

    def __init__(self, *, max_per_peer: int = 1024) -> None:
        self._max_per_peer = max_per_peer
        self._held: dict[Hashable, dict[bytes, rpc_pb2.Message]] = {}

    def __len__(self) -> int:
        return sum(len(messages) for messages in self._held.values())

    def hold(self, peer: Hashable, msg_id: bytes, message: rpc_pb2.Message) -> bool:
        """Keep ``message`` for ``peer``; False (not kept) if the peer's share is full."""
        messages = self._held.setdefault(peer, {})
        if msg_id not in messages and len(messages) >= self._max_per_peer:
            return False
        messages[msg_id] = message
        return True

    def peer_has(self, peer: Hashable, msg_id: bytes) -> None:
        """``peer`` sent us ``msg_id`` itself: it needs no copy from us."""
        messages = self._held.get(peer)
        if messages is not None:
            messages.pop(msg_id, None)

    def forget(self, peer: Hashable) -> None:
        self._held.pop(peer, None)

    def take_all(self) -> dict[Hashable, list[rpc_pb2.Message]]:
        """Everything held, per peer (peers left with nothing are left out), and empty."""
        held, self._held = self._held, {}
        return {peer: list(messages.values()) for peer, messages in held.items() if messages}
