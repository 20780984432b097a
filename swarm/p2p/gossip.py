"""GossipSub for swarm: topics, tuned timings, and a guard that counts what it drops.

Library defaults this module replaces, each measured on py-libp2p 0.8.1:

- heartbeat 120 s, and "adaptive gossip" that stretches a 1 s heartbeat to 30 s in any
  mesh smaller than its degree (every small swarm): heartbeat 1 s, adaptive off;
- spam protection that silently drops everything above 10 messages/s per peer and
  topic, our own publishes included: off (one forwarding peer relays every node's
  adverts, so the limit would cut swarms of a few dozen nodes);
- meshsub/1.2, whose IDONTWANT per message halves small-message throughput: only
  meshsub/1.1 and 1.0 are offered;
- mesh degree 6 (4–12): a swarm of tens of nodes keeps fewer than 12 peers each, so every
  peer stays in the mesh and each advert reaches every node from nearly all its peers
  (gossip degenerates into flooding). Degree 4 (3–6): an idle 10-node swarm spent about
  40 % less CPU. Degree 3 (2–4) spent less again, but in a 20-node swarm one node went
  unheard for up to 90 s (most likely pruned from every mesh, then kept out by the 60 s
  prune back-off); see docs/BENCHMARKS.md, Membership;
- every RPC carries the sender's signed peer record, verified again each time (an
  ed25519 check per message, duplicates included): a peer's unchanged record is only
  re-verified every minute (``swarm.p2p.records``);
- the reader takes each RPC's varint length byte by byte, every byte a read through
  yamux, its locks and its flow control: ``GuardedPubsub`` hands it a buffered stream;
- the sender's own signed peer record is rebuilt (addresses listed and parsed, envelope
  serialised) for every message forwarded and every RPC sent: it is rebuilt every 10 s
  (``swarm.p2p.records``);
- yamux sends a WINDOW_UPDATE frame for nearly every read: the gossip reader's streams
  release their window at half of it, as go-yamux does (``swarm.p2p.windows``);
- the reader spawns each new message's handling through the service manager, which
  walks every task of the service to find the reader's own: a task in ``GuardedPubsub``'s
  own nursery instead;
- peer scoring, with the library's default parameters (every threshold -inf), can refuse
  no one, yet its gates computed each peer's score for every message forwarded:
  ``OpenGates`` answers them at once while no threshold is set (the score bookkeeping
  stays).

Fewer, fuller RPCs. py-libp2p spends about the same per RPC (yamux frame, Noise, socket
write; at the receiver the reverse, a parse and the sender record) whatever it carries,
and an idle swarm's RPCs each carried one advert, several times over. Now:

- heartbeats fall on the same wall-clock instants on every node (``swarm.p2p.advertiser``),
  so the swarm's adverts travel as one wave every interval;
- ``SwarmGossipSub`` holds each advert (``NODES_TOPIC`` only; job announces and control
  messages are never held) for ``ADVERT_HOLD`` seconds, varied 0.4–1.6x at random so
  two neighbours rarely flush at the same moment, then forwards everything held for a
  peer in one RPC; an advert that the peer has sent us meanwhile is not sent back (an
  RPC costs ~0.3 ms of CPU at each end whatever it carries; see docs/BENCHMARKS.md);
- duplicates (most messages a node receives) are settled by the reader itself, without
  a task each, and tell the hold which peer already has the message;
- ``GuardedPubsub``'s sending loop writes whatever is queued for a peer as one RPC
  (``merge_rpcs``), with no waiting.

At N=20 a node now receives about 12 RPCs a second instead of about 38 (see
docs/BENCHMARKS.md, Membership). The price: an advert takes a few hundred ms to reach a
20-node swarm on one shared 2-core host instead of about 50 ms, since every node works
through the same wave at the same moment (goal: 1 s).

Strict signing stays on: every message carries its author's signature. The guard in
``GuardedPubsub`` checks that signature itself, once, before anything else, to count
forgeries (the library drops them without trace): the library's own second check of the
same signature, and its check of every message this node itself publishes, are skipped
(``publish`` signs as the library does). The guard also keeps exceptions raised while
handling a hostile message from tearing the whole pubsub service down.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import libp2p.pubsub.gossipsub as _libp2p_gossipsub
import trio
from libp2p.abc import IHost, INetStream
from libp2p.peer.id import ID
from libp2p.pubsub.exceptions import NoPubsubAttached
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import RpcQueue
from libp2p.pubsub.score import PeerScorer
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX, signature_validator
from libp2p.tools.anyio_service import background_trio_service

from swarm.p2p import windows
from swarm.p2p.coalesce import HeldMessages, merge_rpcs
from swarm.p2p.drops import DropCounter, DropReason
from swarm.p2p.records import install_record_caches

NODES_TOPIC = "/swarm/1/nodes"
JOBS_TOPIC = "/swarm/1/jobs"
# Seconds an advert may wait to be forwarded with others, per hop (0.1 s, not 25 ms: ~45 %
# fewer RPCs at 20 nodes, same reach there; docs/BENCHMARKS.md, Membership, 2026-11-29).
ADVERT_HOLD = 0.1
_READ_SIZE = 64 * 1024

logger = logging.getLogger(__name__)
install_record_caches()


class BufferedReads:
    """A stream whose reads are served from a buffer filled by large reads underneath."""

    def __init__(self, stream: INetStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def read(self, n: int | None = None) -> bytes:
        if not self._buffer:
            data = await self._stream.read(_READ_SIZE)
            if not data:
                return b""
            self._buffer += data
        if n is None or n < 0:
            n = len(self._buffer)
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data


class SwarmGossipSub(GossipSub):
    """GossipSub that forwards messages of ``held_topics`` in batches, ``hold`` apart.

    A message on a held topic, ours or forwarded, waits up to ``hold`` seconds in a
    per-peer outbox (``HeldMessages``); everything held then leaves at once, one RPC per
    peer. A held message the peer sends us meanwhile is not sent back to it. Messages
    of other topics (job announces) and control messages go out at once, as before.
    """

    def __init__(self, *, hold: float, held_topics: frozenset[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hold = hold
        self._held_topics = held_topics
        self._held = HeldMessages()
        self._held_waiting = trio.Event()

    async def run(self) -> None:
        if self._hold > 0:
            self.manager.run_daemon_task(self._forward_held)
        await super().run()

    def send_rpc(self, peer_id: ID, rpc: rpc_pb2.RPC, priority: bool = False) -> None:
        if not self._may_hold(rpc, priority) or self.pubsub is None:
            super().send_rpc(peer_id, rpc, priority)
            return
        for message in rpc.publish:
            if not self._held.hold(peer_id, self.pubsub.get_message_id(message), message):
                one = rpc_pb2.RPC(publish=[message], senderRecord=rpc.senderRecord)
                super().send_rpc(peer_id, one)  # this peer's share is full: at once
        self._held_waiting.set()

    async def publish(self, msg_forwarder: ID, pubsub_msg: rpc_pb2.Message) -> None:
        """Forward a new, validated message: the library's ``publish``, with one part
        done with set operations instead of a loop over every connected peer.

        That part keeps a copy for peers that are connected but whose subscriptions have
        not arrived yet (sent once they do). The library looped over all connected peers
        for every message forwarded, building a peer id and comparing ids each time,
        though such peers are rare; ``_queue_for_unsubscribed`` finds them the same way.
        """
        if not self._check_spam_protection(msg_forwarder, pubsub_msg):
            return
        if not self._check_equivocation(pubsub_msg):
            return
        pubsub = self.pubsub
        if pubsub is None:
            raise NoPubsubAttached
        self.mcache.put(pubsub_msg)
        msg_id = pubsub.get_message_id(pubsub_msg)
        origin = ID(pubsub_msg.from_id)
        peers = self._get_peers_to_send(
            pubsub_msg.topicIDs, msg_forwarder=msg_forwarder, origin=origin, msg_id=msg_id
        )
        rpc_msg = rpc_pb2.RPC(publish=[pubsub_msg])
        rpc_msg.senderRecord, _ = _libp2p_gossipsub.env_to_send_in_RPC(pubsub.host)
        await self._emit_idontwant_for_message(msg_id, pubsub_msg.topicIDs)
        await self._notify_observers(pubsub_msg.topicIDs, msg_id)
        topics = list(pubsub_msg.topicIDs)
        for peer_id in peers:
            if peer_id not in pubsub.peers:
                continue
            if self.scorer is not None and not self.scorer.allow_publish(peer_id, topics):
                continue
            self.send_rpc(peer_id, rpc_msg)
        self._queue_for_unsubscribed(pubsub, rpc_msg, topics, {msg_forwarder, origin})
        now = time.time()
        for topic in topics:
            self.time_since_last_publish[topic] = int(now)
            self.recent_message_deliveries[topic].append(now)

    def _queue_for_unsubscribed(
        self, pubsub: Pubsub, rpc_msg: rpc_pb2.RPC, topics: list[str], skip: set[ID]
    ) -> None:
        """Keep ``rpc_msg`` for each peer of ``topics`` not identified yet, and each
        connected peer not yet known to be in them (the library's rule)."""
        queued: set[ID] = set()
        for topic in topics:
            in_topic = pubsub.peer_topics.get(topic, set())
            waiting = in_topic.difference(self.peer_protocol, self.direct_peers, skip, queued)
            waiting.update(
                pubsub.peers.keys() - in_topic - self.direct_peers.keys() - skip - queued
            )
            for peer_id in waiting:
                self._prune_pending_messages(peer_id)
                self._pending_messages[peer_id].append((time.time(), rpc_msg))
            queued |= waiting

    def _may_hold(self, rpc: rpc_pb2.RPC, priority: bool) -> bool:
        return (
            self._hold > 0
            and not priority
            and bool(rpc.publish)
            and not rpc.subscriptions
            and not rpc.HasField("control")
            and all(
                message.topicIDs and set(message.topicIDs) <= self._held_topics
                for message in rpc.publish
            )
        )

    def peer_has(self, peer_id: ID, message: rpc_pb2.Message) -> None:
        """``peer_id`` sent us ``message``: a copy held for it is not sent."""
        if self.pubsub is not None:
            self._held.peer_has(peer_id, self.pubsub.get_message_id(message))

    def remove_peer(self, peer_id: ID) -> None:
        super().remove_peer(peer_id)
        self._held.forget(peer_id)

    async def _forward_held(self) -> None:
        while True:
            await self._held_waiting.wait()
            await trio.sleep(self._hold * random.uniform(0.4, 1.6))
            self._held_waiting = trio.Event()  # what is held from now on waits for the next
            held = self._held.take_all()
            if not held or self.pubsub is None:
                continue
            record, _ = _libp2p_gossipsub.env_to_send_in_RPC(self.pubsub.host)
            for peer_id, messages in held.items():
                super().send_rpc(peer_id, rpc_pb2.RPC(publish=messages, senderRecord=record))


class OpenGates(PeerScorer):
    """The library's peer scorer, without the per-message cost of gates that cannot close.

    With a threshold at -inf (the library's defaults, kept here) a gate's answer does not
    depend on the score, but the library computed the score anyway: for every peer, every
    message forwarded. Such a gate now answers at once, exactly as it would have; a
    threshold that is set is judged on the score as before.
    """

    def allow_publish(self, peer: ID, topics: list[str]) -> bool:
        if self.params.publish_threshold == -math.inf:
            return bool(topics)
        return super().allow_publish(peer, topics)

    def allow_gossip(self, peer: ID, topics: list[str]) -> bool:
        if self.params.gossip_threshold == -math.inf:
            return bool(topics)
        return super().allow_gossip(peer, topics)

    def is_graylisted(self, peer: ID, topics: list[str]) -> bool:
        if self.params.graylist_threshold == -math.inf:
            return False
        return super().is_graylisted(peer, topics)

    def allow_px_from(self, peer: ID, topics: list[str]) -> bool:
        if self.params.accept_px_threshold == -math.inf:
            return bool(topics)
        return super().allow_px_from(peer, topics)


def make_gossipsub(*, hold: float = ADVERT_HOLD) -> SwarmGossipSub:
    router = SwarmGossipSub(
        hold=hold,
        held_topics=frozenset({NODES_TOPIC}),
        protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
        degree=4,
        degree_low=3,
        degree_high=6,
        heartbeat_initial_delay=0.1,
        heartbeat_interval=1,
        adaptive_gossip_enabled=False,
        spam_protection_enabled=False,
        eclipse_protection_enabled=False,
    )
    if router.scorer is not None:
        router.scorer = OpenGates(router.scorer.params)
    return router


def signature_ok(message: rpc_pb2.Message) -> bool:
    """The library's strict-signing check, made total (it raises on some garbage keys)."""
    try:
        return signature_validator(message)
    except Exception:
        return False


class GuardedPubsub(Pubsub):
    """Pubsub that counts forged messages and survives messages that make it raise."""

    def __init__(self, host: IHost, router: SwarmGossipSub, *, drops: DropCounter) -> None:
        super().__init__(host, router, strict_signing=True)
        self.drops = drops
        # ``push_msg`` below checks signatures (once); the library's flag would check again.
        self.strict_signing = False
        self._reading_from: dict[trio.lowlevel.Task, ID] = {}  # reader task -> its peer
        self._pushes: trio.Nursery | None = None  # where new messages are handled (``run``)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._pushes = nursery
            try:
                await super().run()
            finally:
                self._pushes = None

    async def publish(self, topic_id: str, data: bytes) -> None:
        """Publish ``data`` signed by this node (what the library does with strict signing)."""
        message = rpc_pb2.Message(
            data=data, topicIDs=[topic_id], from_id=self.my_id.to_bytes(), seqno=self._next_seqno()
        )
        payload = PUBSUB_SIGNING_PREFIX.encode() + message.SerializeToString()
        message.signature = self.sign_key.sign(payload)
        message.key = self.host.get_public_key().serialize()
        await self.push_msg(self.my_id, message)

    async def continuously_read_stream(self, stream: INetStream) -> None:
        windows.use(stream, windows.release_at_half_window)  # bulk streams keep auto-tuning
        reader = trio.lowlevel.current_task()
        self._reading_from[reader] = stream.muxed_conn.peer_id
        try:
            await super().continuously_read_stream(BufferedReads(stream))  # type: ignore[arg-type]
        finally:
            del self._reading_from[reader]

    def _is_subscribed_to_msg(self, msg: rpc_pb2.Message) -> bool:
        """Whether the reader should hand ``msg`` on to the library's handling (the
        reader asks nothing else here). It is handled here instead:

        - a message already seen is settled in the reading task, not in a task of its
          own that would only find it seen (most messages a node receives are such
          duplicates): its sender needs no copy from us;
        - a new one goes to ``push_msg`` in a task of this pubsub's own nursery. The
          library would start that task through its service manager, which looks for
          the reader's task by walking every task of the service, for every message.
        """
        if not super()._is_subscribed_to_msg(msg):
            return False
        peer_id = self._reading_from.get(trio.lowlevel.current_task())
        if peer_id is None or self._pushes is None:
            return not self._is_msg_seen(msg)  # not one of our readers: the library's way
        if self._is_msg_seen(msg):
            if isinstance(self.router, SwarmGossipSub):
                self.router.peer_has(peer_id, msg)
        else:
            self._pushes.start_soon(self.push_msg, peer_id, msg)
        return False

    async def handle_sending_messages(
        self, peer_id: ID, stream: INetStream, queue: RpcQueue
    ) -> None:
        """The library's per-peer sending loop, writing what is queued together.

        After the RPC it waited for, it takes whatever else is already queued for the peer
        (no waiting) and writes it all merged, in as few RPCs as the size limit allows.
        """
        try:
            while True:
                rpc = await queue.pop()
                if rpc is None:
                    return  # queue closed: the peer is gone
                batch = [rpc]
                while len(queue):
                    more = await queue.pop()  # returns at once, something is queued
                    if more is None:
                        break
                    batch.append(more)
                for merged in merge_rpcs(batch, queue.max_message_size):
                    if not await self.write_msg(stream, merged):
                        return
        except Exception:
            logger.debug("sending loop for %s ended on error", peer_id, exc_info=True)
            self._handle_dead_peer(peer_id)

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        try:
            if msg_forwarder != self.my_id:
                if self._is_msg_seen(msg):
                    if isinstance(self.router, SwarmGossipSub):
                        self.router.peer_has(msg_forwarder, msg)
                    return  # a duplicate: the library would drop it too
                if not signature_ok(msg):
                    self.drops.count(DropReason.FORGED)
                    return
            await super().push_msg(msg_forwarder, msg)
        except Exception:  # an error here would cancel the whole pubsub service
            logger.debug("gossip message from %s dropped on error", msg_forwarder, exc_info=True)
            self.drops.count(DropReason.ERROR)


@asynccontextmanager
async def open_gossip(host: IHost, *, drops: DropCounter) -> AsyncIterator[GuardedPubsub]:
    """Running pubsub on ``host``. Enter it before dialling: a Pubsub that exists but has
    not started makes ``connect()`` and shutdown hang."""
    router = make_gossipsub()
    pubsub = GuardedPubsub(host, router, drops=drops)
    async with background_trio_service(pubsub), background_trio_service(router):
        await pubsub.wait_until_ready()
        yield pubsub
