"""Publishing this node's adverts and taking in everyone else's.

This node publishes a fresh advert at start, soon after ``notify_changed()`` is called
(its compute load changed), and otherwise every ``interval`` seconds (its heartbeat), at
multiples of the interval since the epoch so that the swarm's heartbeats coincide (a
heartbeat less than ``change_gap`` after a change's advert is skipped).
Adverts for changes are rate-limited: one comes at least ``change_gap`` seconds after the
advert before it, and describes the node as it is then, so a burst of changes (a hundred
jobs arriving) makes a few adverts, not hundreds. Gossip stays control traffic: every
advert costs every node of the swarm some CPU. Incoming adverts pass two gates:

1. ``validate`` runs inside gossipsub before a message is delivered or forwarded: it
   drops (and counts) oversized, malformed, stale, future and replayed adverts, and
   adverts whose author (the signed gossip sender) is not the node they describe. What
   it refuses is never forwarded, so one bad peer cannot flood the swarm with it.
2. The subscription reader records what got through in the membership table, which
   re-checks freshness (two valid adverts can still cross on different paths, and one
   advert validated concurrently from two peers is delivered twice).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from swarm.errors import ProtocolError
from swarm.models import NodeInfo
from swarm.p2p.adverts import MAX_ADVERT_SIZE, Advert, decode_advert, encode_advert
from swarm.p2p.drops import DropCounter, DropReason
from swarm.p2p.gossip import NODES_TOPIC, GuardedPubsub
from swarm.p2p.membership import MembershipTable

CHANGE_GAP = 0.5  # seconds: the least time between an advert and one made for a change
_MAX_VALIDATED = 256


@functools.lru_cache(maxsize=4096)
def _peer_id_text(peer_id: bytes) -> str:
    return str(ID(peer_id))


def next_beat(after: float, interval: float) -> float:
    """The first multiple of ``interval`` (seconds since the epoch) later than ``after``."""
    return (math.floor(after / interval) + 1) * interval


class Advertiser:
    def __init__(
        self,
        *,
        pubsub: GuardedPubsub,
        table: MembershipTable,
        drops: DropCounter,
        describe: Callable[[], NodeInfo],
        interval: float,
        change_gap: float = CHANGE_GAP,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._pubsub = pubsub
        self._table = table
        self._drops = drops
        self._describe = describe
        self._interval = interval
        self._change_gap = change_gap
        self._wall_clock = wall_clock
        self._changed = trio.Event()
        self._validated: dict[bytes, Advert] = {}  # advert bytes -> decoded, until delivered
        self._last_seq = 0
        self._published_at = float("-inf")  # trio clock
        self._published_wall = float("-inf")  # wall clock, at the same moment

    def notify_changed(self) -> None:
        """Publish a fresh advert soon (within ``change_gap``), not at the next heartbeat.

        Cheap and safe to call as often as anything changes: calls made while an advert
        is pending are folded into it.
        """
        self._changed.set()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self._pubsub.set_topic_validator(NODES_TOPIC, self.validate, is_async_validator=False)
        subscription = await self._pubsub.subscribe(NODES_TOPIC)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive, subscription)
            await self.publish()
            task_status.started()
            while True:
                with trio.move_on_at(self._next_heartbeat()):
                    await self._changed.wait()
                    await trio.sleep_until(self._published_at + self._change_gap)
                self._changed = trio.Event()  # what changed until now goes into this advert
                await self.publish()
                self._table.prune()

    def _next_heartbeat(self) -> float:
        """The trio time of the next heartbeat: the first multiple of the interval since
        the epoch (wall clock) more than ``change_gap`` (at most half the interval) after
        the last advert. All nodes with the same interval then publish together, and
        their adverts travel together (``SwarmGossipSub`` forwards what arrives within a
        few ms in one RPC). Adverts stay less than 1.5 intervals apart."""
        margin = min(self._change_gap, self._interval / 2)
        beat = next_beat(self._published_wall + margin, self._interval)
        return self._published_at + (beat - self._published_wall)

    async def publish(self) -> None:
        info = self._describe()
        self._table.set_self(info)
        self._last_seq = max(time.time_ns(), self._last_seq + 1)
        self._published_at = trio.current_time()
        self._published_wall = self._wall_clock()
        await self._pubsub.publish(NODES_TOPIC, encode_advert(Advert(info, self._last_seq)))

    def validate(self, forwarder: ID, message: rpc_pb2.Message) -> bool:
        """Gossipsub topic validator: True lets the message through (and on to others)."""
        try:
            reason = self._judge(message)
        except Exception:  # a raising validator would take the pubsub service down
            reason = DropReason.ERROR
        if reason is None:
            return True
        self._drops.count(reason)
        return False

    @functools.cached_property
    def _my_id(self) -> bytes:
        return self._pubsub.my_id.to_bytes()

    def _judge(self, message: rpc_pb2.Message) -> DropReason | None:
        if message.from_id == self._my_id:
            return None
        if len(message.data) > MAX_ADVERT_SIZE:
            return DropReason.OVERSIZED
        try:
            advert = decode_advert(message.data)
        except ProtocolError:
            return DropReason.MALFORMED
        if advert.info.peer_id != _peer_id_text(message.from_id):
            return DropReason.AUTHOR_MISMATCH
        reason = self._table.check(advert)
        if reason is None:
            if len(self._validated) >= _MAX_VALIDATED:
                self._validated.clear()  # only ever holds what is about to be delivered
            self._validated[message.data] = advert
        return reason

    async def _receive(self, subscription) -> None:
        async for message in subscription:
            if message.from_id == self._my_id:
                continue
            # Decoded once: by the validator, just before the message was delivered.
            advert = self._validated.pop(message.data, None)
            if advert is None:
                try:
                    advert = decode_advert(message.data)
                except ProtocolError:
                    continue  # counted by the validator
            # Not counted if refused: it passed the validator, so a refusal here means two
            # deliveries raced (the same advert via two peers at once), not a bad message.
            self._table.observe(advert)
