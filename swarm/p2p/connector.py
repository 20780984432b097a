"""Keeping in touch: bootstrap peers, peers learned from adverts, and optional mDNS.

Each bootstrap peer has its own task. While connected it checks back every
``check_interval``; once the connection is gone it dials again, doubling the pause after
each failure (with jitter, so a swarm restarting together does not dial in lockstep) up to
``max_backoff``, and starts over from ``initial_backoff`` after a success.

Bootstrap links alone make poor gossip meshes: when everyone bootstraps from one seed,
the seed prunes its mesh down to GossipSub's degree and the pruned nodes hear nothing
(measured: in a 20-node star most nodes went "lost"). So a node with fewer than
``target`` connections also dials healthy members it learned from their adverts (whose
addresses their authors signed), until gossip has enough neighbours to form a mesh.

mDNS (off by default) uses the library's zeroconf-based discovery, which calls back on a
zeroconf thread; the callback only hands the peer to trio, where it is dialled once.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from functools import partial

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.discovery.mdns.mdns import create_mdns_discovery
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from multiaddr.protocols import P_P2P

from swarm.models import Member, NodeStatus
from swarm.p2p.host import DIAL_TIMEOUT, dial
from swarm.p2p.keys import SwarmKey

logger = logging.getLogger(__name__)


async def keep_connected(
    host: IHost,
    address: str,
    *,
    initial_backoff: float = 0.25,
    max_backoff: float = 5.0,
    check_interval: float = 0.5,
) -> None:
    """Stay connected to the peer at ``address`` for as long as this task runs."""
    peer_id = ID.from_base58(multiaddr.Multiaddr(address).get_peer_id())
    backoff = initial_backoff
    while True:
        if peer_id in host.get_network().connections:
            backoff = initial_backoff
            await trio.sleep(check_interval)
            continue
        try:
            await dial(host, address)
            backoff = initial_backoff
            continue
        except Exception as exc:  # libp2p raises a variety of types for a failed dial
            logger.debug("dial %s failed (%s); next try in %.1fs", address, exc, backoff)
        await trio.sleep(backoff * random.uniform(0.8, 1.2))
        backoff = min(backoff * 2, max_backoff)


async def keep_enough_peers(
    host: IHost,
    members: Callable[[], list[Member]],
    *,
    target: int = 6,
    interval: float = 1.0,
    retry_after: float = 30.0,
) -> None:
    """While fewer than ``target`` peers are connected, dial healthy known members."""
    failed_at: dict[str, float] = {}

    async def attempt(member: Member) -> None:
        try:
            peer_id = ID.from_base58(member.info.peer_id)
            addrs = [multiaddr.Multiaddr(a).decapsulate_code(P_P2P) for a in member.info.addresses]
            with trio.fail_after(DIAL_TIMEOUT):
                await host.connect(PeerInfo(peer_id, addrs))
        except Exception as exc:  # bad addresses from the advert, or a failed dial
            logger.debug("dial %s failed: %s", member.info.name, exc)
            failed_at[member.info.peer_id] = trio.current_time()

    while True:
        await trio.sleep(interval)
        connected = host.get_network().connections
        missing = target - len(connected)
        if missing <= 0:
            continue
        now = trio.current_time()
        candidates = [
            member
            for member in members()
            if not member.is_self
            and member.status is NodeStatus.HEALTHY
            and member.info.addresses
            and now - failed_at.get(member.info.peer_id, -retry_after) >= retry_after
            and not any(str(peer) == member.info.peer_id for peer in connected)
        ]
        random.shuffle(candidates)
        async with trio.open_nursery() as nursery:
            for member in candidates[:missing]:
                nursery.start_soon(attempt, member)


async def discover_with_mdns(
    host: IHost, *, swarm_key: SwarmKey | None, task_status=trio.TASK_STATUS_IGNORED
) -> None:
    """Announce this node on the LAN and dial the swarm peers announced there.

    With a swarm key, the mDNS service name carries the key's fingerprint, so only nodes
    of the same private swarm look for each other (the key itself still guards the door).
    """
    discovered_send, discovered_receive = trio.open_memory_channel[PeerInfo](64)
    token = trio.lowlevel.current_trio_token()

    def on_discovered(info: PeerInfo) -> None:  # runs on a zeroconf thread
        def hand_over() -> None:
            try:
                discovered_send.send_nowait(info)
            except (trio.WouldBlock, trio.ClosedResourceError):
                pass

        try:
            token.run_sync_soon(hand_over)
        except trio.RunFinishedError:
            pass

    # Zeroconf blocks for a second or more while it registers: keep that off the trio
    # thread, and do not make the node wait for it. (The library's start() would also
    # spawn a cleanup loop we do not need.)
    mdns = await trio.to_thread.run_sync(
        partial(
            create_mdns_discovery,
            host.get_network(),
            # DNS-SD service names hold at most 15 bytes: "p2p-" and 10 hex digits.
            private_network_fingerprint=swarm_key.fingerprint[:10] if swarm_key else None,
            host=host,
        )
    )
    peerDiscovery.register_peer_discovered_handler(on_discovered)
    task_status.started()
    try:
        await trio.to_thread.run_sync(mdns.broadcaster.register, abandon_on_cancel=True)
        async with discovered_receive:
            async for info in discovered_receive:
                if info.peer_id == host.get_id() or info.peer_id in host.get_network().connections:
                    continue
                with trio.move_on_after(DIAL_TIMEOUT):
                    try:
                        await host.connect(info)
                    except Exception as exc:
                        logger.debug("mDNS peer %s not reachable: %s", info.peer_id, exc)
    finally:
        peerDiscovery.unregister_peer_discovered_handler(on_discovered)
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(mdns.stop)
