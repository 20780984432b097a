"""GossipSub for swarm: topics, tuned timings, and a guard that counts what it drops.

Library defaults this module replaces, each measured on py-libp2p 0.8.1:

- heartbeat 120 s, and "adaptive gossip" that stretches a 1 s heartbeat to 30 s in any
  mesh smaller than its degree (every small swarm): heartbeat 1 s, adaptive off;
- spam protection that silently drops everything above 10 messages/s per peer and
  topic, our own publishes included: off (one forwarding peer relays every node's
  adverts, so the limit would cut swarms of a few dozen nodes);
- meshsub/1.2, whose IDONTWANT per message halves small-message throughput: only
  meshsub/1.1 and 1.0 are offered.

Strict signing stays on: every message carries its author's signature. The guard in
``GuardedPubsub`` checks that signature first itself, to count forgeries (the library
drops them without trace), and keeps exceptions raised while handling a hostile message
from tearing the whole pubsub service down.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.validators import signature_validator
from libp2p.tools.anyio_service import background_trio_service

from swarm.p2p.drops import DropCounter, DropReason

NODES_TOPIC = "/swarm/1/nodes"
JOBS_TOPIC = "/swarm/1/jobs"

logger = logging.getLogger(__name__)


def make_gossipsub() -> GossipSub:
    return GossipSub(
        protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_initial_delay=0.1,
        heartbeat_interval=1,
        adaptive_gossip_enabled=False,
        spam_protection_enabled=False,
        eclipse_protection_enabled=False,
    )


def signature_ok(message: rpc_pb2.Message) -> bool:
    """The library's strict-signing check, made total (it raises on some garbage keys)."""
    try:
        return signature_validator(message)
    except Exception:
        return False


class GuardedPubsub(Pubsub):
    """Pubsub that counts forged messages and survives messages that make it raise."""

    def __init__(self, host: IHost, router: GossipSub, *, drops: DropCounter) -> None:
        super().__init__(host, router, strict_signing=True)
        self.drops = drops

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        if msg_forwarder != self.my_id and not self._is_msg_seen(msg) and not signature_ok(msg):
            self.drops.count(DropReason.FORGED)
            return
        try:
            await super().push_msg(msg_forwarder, msg)
        except Exception:  # a task error here would cancel the whole pubsub service
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
