"""Who gets in, and what gets through: real libp2p on loopback, nodes in this process.

- a plaintext libp2p peer is refused (Noise only);
- with a swarm key, peers with another key or none cannot connect, open streams or appear;
- forged, garbage, oversized, mis-attributed, stale, future and replayed adverts are
  dropped, counted by reason (visible in GET /api/v1/agent), not forwarded, and the node
  keeps working.
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

from swarm.client import Client
from swarm.config import NodeConfig
from swarm.models import NodeInfo, Resources, Role
from swarm.node import open_node
from swarm.p2p.adverts import Advert, encode_advert
from swarm.p2p.drops import DropCounter
from swarm.p2p.gossip import NODES_TOPIC, open_gossip
from swarm.p2p.host import open_host
from swarm.p2p.keys import parse_swarm_key

KEY_1 = parse_swarm_key("11" * 32)
KEY_2 = parse_swarm_key("22" * 32)
LOOPBACK = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")


def config(tmp_path, name: str, **kwargs) -> NodeConfig:
    return NodeConfig(
        home=tmp_path / name,
        name=name,
        swarm_host="127.0.0.1",
        swarm_port=0,
        api_port=0,
        heartbeat=0.2,
        gpus=0,
        **kwargs,
    )


def key_file(tmp_path, key) -> str:
    path = tmp_path / f"{key.fingerprint}.key"
    path.write_text(f"/key/swarm/psk/1.0.0/\n/base16/\n{key.psk_hex}\n")
    return path


def names(node) -> set[str]:
    return {member.info.name for member in node.members()}


async def wait_until(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def test_plaintext_peer_is_refused(tmp_path):
    async with open_node(config(tmp_path, "x")) as node:
        key_pair = create_new_key_pair()
        attacker = new_host(
            key_pair=key_pair, sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(key_pair)}
        )
        async with attacker.run(listen_addrs=[LOOPBACK]):
            with pytest.raises(Exception):  # noqa: B017 - libp2p's error types vary by stage
                with trio.fail_after(5):
                    await attacker.connect(
                        info_from_p2p_addr(multiaddr.Multiaddr(node.addresses[0]))
                    )
            assert attacker.get_id() not in node.host.get_network().connections
            assert node.connected_peers() == 0


async def test_only_nodes_with_the_same_swarm_key_get_in(tmp_path):
    key_1, key_2 = key_file(tmp_path, KEY_1), key_file(tmp_path, KEY_2)
    async with AsyncExitStack() as stack:
        x = await stack.enter_async_context(open_node(config(tmp_path, "x", swarm_key=key_1)))
        peers = (x.addresses[0],)
        other_key = await stack.enter_async_context(
            open_node(config(tmp_path, "other-key", swarm_key=key_2, peers=peers))
        )
        no_key = await stack.enter_async_context(open_node(config(tmp_path, "no-key", peers=peers)))
        insider = await stack.enter_async_context(
            open_node(config(tmp_path, "insider", swarm_key=key_1, peers=peers))
        )

        await wait_until(lambda: names(x) == {"x", "insider"}, what="the insider to appear")
        seen = x.table.get(insider.peer_id).seq
        await wait_until(lambda: x.table.get(insider.peer_id).seq > seen, what="a later advert")
        assert names(x) == {"x", "insider"}
        assert names(other_key) == {"other-key"} and names(no_key) == {"no-key"}
        assert set(x.host.get_network().connections) == {insider.host.get_id()}

        # A bare host without the key cannot open a stream either.
        protocol = TProtocol("/swarm/test/1.0.0")
        x.host.set_stream_handler(protocol, lambda stream: stream.close())
        for swarm_key in (None, KEY_2):
            async with open_host(
                key_pair=create_new_key_pair(), host="127.0.0.1", port=0, swarm_key=swarm_key
            ) as outsider:
                with pytest.raises(Exception):  # noqa: B017 - stalls, then times out or fails
                    with trio.fail_after(1):
                        await outsider.connect(
                            info_from_p2p_addr(multiaddr.Multiaddr(x.addresses[0]))
                        )
                        await outsider.new_stream(x.host.get_id(), [protocol])


def advert_for(peer_id: str, name: str, seq: int) -> bytes:
    info = NodeInfo(
        peer_id=peer_id,
        name=name,
        version="0.1.0",
        roles=(Role.COMPUTE,),
        resources=Resources(cpu=1, memory=1 << 30, memory_free=1 << 29),
    )
    return encode_advert(Advert(info, seq))


class Mallory:
    """A peer of the swarm (no key needed here) that writes raw gossip messages."""

    def __init__(self, key_pair, pubsub) -> None:
        self.key_pair = key_pair
        self.pubsub = pubsub
        self.peer_id = ID.from_pubkey(key_pair.public_key)
        self.seqno = 0

    def message(self, data: bytes, *, from_id: bytes | None = None, sign: bool = True, key=None):
        self.seqno += 1
        message = rpc_pb2.Message(
            data=data,
            topicIDs=[NODES_TOPIC],
            from_id=from_id or self.peer_id.to_bytes(),
            seqno=self.seqno.to_bytes(8, "big"),
        )
        if sign:
            payload = PUBSUB_SIGNING_PREFIX.encode() + message.SerializeToString()
            message.signature = self.key_pair.private_key.sign(payload)
        if key is not None:
            message.key = key
        return message

    def send(self, to: ID, *messages) -> None:
        self.pubsub.router.send_rpc(to, rpc_pb2.RPC(publish=list(messages)))


def hostile(dropped: dict[str, int]) -> dict[str, int]:
    """Drop counts without ``outdated``: x's and y's own adverts reach each other out of
    order when gossip answers an IWANT late, which is normal and counted there."""
    return {reason: n for reason, n in dropped.items() if reason != "outdated"}


async def test_bad_adverts_are_dropped_counted_and_not_forwarded(tmp_path):
    async with AsyncExitStack() as stack:
        x = await stack.enter_async_context(open_node(config(tmp_path, "x")))
        y = await stack.enter_async_context(
            open_node(config(tmp_path, "y", peers=(x.addresses[0],)))
        )
        victim = await stack.enter_async_context(open_node(config(tmp_path, "victim")))
        key_pair = create_new_key_pair()
        host = await stack.enter_async_context(
            open_host(key_pair=key_pair, host="127.0.0.1", port=0)
        )
        pubsub = await stack.enter_async_context(open_gossip(host, drops=DropCounter()))
        await pubsub.subscribe(NODES_TOPIC)
        await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(x.addresses[0])))
        await pubsub.wait_for_peer(x.host.get_id())
        await wait_until(lambda: names(y) == {"x", "y"}, what="y to see x")

        mallory = Mallory(key_pair, pubsub)
        me, now = str(mallory.peer_id), time.time_ns()
        x_id = x.host.get_id()
        rsa_style_id = ID(bytes.fromhex("1220") + bytes(32))  # sha256 multihash: key not inline
        mallory.send(
            x_id,
            mallory.message(b"\xc1 not msgpack"),
            mallory.message(advert_for(me, "huge", now) + b"\x00" * 70_000),
            mallory.message(advert_for(victim.peer_id, "impostor", now)),
            mallory.message(
                advert_for(victim.peer_id, "forged", now), from_id=victim.host.get_id().to_bytes()
            ),
            mallory.message(advert_for(me, "unsigned", now), sign=False),
            mallory.message(
                advert_for(me, "bad-key", now), from_id=rsa_style_id.to_bytes(), key=b"junk"
            ),
            mallory.message(advert_for(me, "stale", now - 3600 * 10**9)),
            mallory.message(advert_for(me, "future", now + 3600 * 10**9)),
        )
        genuine = advert_for(me, "mallory", now)
        mallory.send(x_id, mallory.message(genuine))
        await wait_until(lambda: "mallory" in names(x), what="mallory's genuine advert")
        mallory.send(x_id, mallory.message(genuine))  # the same advert again, in a new message
        expected = {
            "malformed": 1,
            "oversized": 1,
            "author_mismatch": 1,
            "forged": 3,
            "stale": 1,
            "future": 1,
            "replayed": 1,
            "error": 0,
        }
        await wait_until(lambda: hostile(x.dropped()) == expected, what=f"drops {expected}")

        with Client(x.api_url, x.config.api_token) as client:
            agent = await trio.to_thread.run_sync(client.agent)
        assert hostile(agent["dropped"]) == expected

        # Nothing bad reached y, the good advert did, and x still runs normally.
        await wait_until(lambda: "mallory" in names(y), what="the good advert to be forwarded")
        assert set(hostile(y.dropped()).values()) == {0}, y.dropped()
        assert names(x) == names(y) == {"x", "y", "mallory"}
        seen = y.table.get(x.peer_id).seq
        await wait_until(lambda: y.table.get(x.peer_id).seq > seen, what="x's next advert")
