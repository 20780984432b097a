"""Less CPU per gossip message, with the library's behaviour: the scorer's gates, the task
that takes in each new message, and the copies kept for peers not subscribed yet."""

from __future__ import annotations

from contextlib import AsyncExitStack

import libp2p.pubsub.gossipsub as libp2p_gossipsub
import multiaddr
import trio
from hypothesis import given
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.rpc_queue import RpcQueue
from libp2p.pubsub.score import PeerScorer, ScoreParams, TopicScoreParams

from swarm.p2p.drops import DropCounter
from swarm.p2p.gossip import NODES_TOPIC, OpenGates, make_gossipsub, open_gossip
from swarm.p2p.host import listen_addresses, open_host
from tests.test_p2p_coalesce import RECORD
from tests.test_p2p_security import wait_until

PEERS = [ID(bytes([n]) * 8) for n in range(6)]


def gates(scorer: PeerScorer, peer: ID, topics: list[str]) -> tuple[bool, bool, bool, bool]:
    return (
        scorer.allow_publish(peer, topics),
        scorer.allow_gossip(peer, topics),
        scorer.is_graylisted(peer, topics),
        scorer.allow_px_from(peer, topics),
    )


def test_the_router_keeps_the_library_scorer_with_open_gates():
    scorer = make_gossipsub().scorer
    assert isinstance(scorer, OpenGates)
    assert scorer.params == ScoreParams()


def test_open_gates_answer_without_computing_a_score(monkeypatch):
    scorer = OpenGates(ScoreParams())

    def no_score(*args):
        raise AssertionError("a gate computed a score")

    monkeypatch.setattr(scorer, "score", no_score)
    monkeypatch.setattr(scorer, "topic_score", no_score)
    assert gates(scorer, PEERS[0], [NODES_TOPIC]) == (True, True, False, True)
    assert gates(scorer, PEERS[0], []) == (False, False, False, False)  # as the library


@given(
    penalties=st.lists(st.floats(0, 1e6), min_size=len(PEERS), max_size=len(PEERS)),
    topics=st.lists(st.sampled_from([NODES_TOPIC, "/swarm/1/jobs", "other"]), max_size=3),
)
def test_open_gates_answer_as_the_library_scorer_with_its_defaults(penalties, topics):
    library, ours = PeerScorer(ScoreParams()), OpenGates(ScoreParams())
    for scorer in (library, ours):
        for peer, penalty in zip(PEERS, penalties, strict=True):
            scorer.penalize_behavior(peer, penalty)
            scorer.on_join_mesh(peer, NODES_TOPIC)
            scorer.on_invalid_message(peer, NODES_TOPIC)
    for peer in PEERS:
        assert gates(ours, peer, topics) == gates(library, peer, topics)


def test_a_threshold_that_is_set_is_judged_on_the_score():
    params = ScoreParams(
        p4_invalid_messages=TopicScoreParams(weight=1.0, cap=100.0),
        publish_threshold=-5.0,
        gossip_threshold=-5.0,
        graylist_threshold=-5.0,
        accept_px_threshold=-5.0,
    )
    scorer = OpenGates(params)
    for _ in range(10):
        scorer.on_invalid_message(PEERS[1], NODES_TOPIC)
    assert gates(scorer, PEERS[0], [NODES_TOPIC]) == (True, True, False, True)
    assert gates(scorer, PEERS[1], [NODES_TOPIC]) == (False, False, True, False)


class Swarmish:
    """What a router's publish uses of its pubsub: connected peers, their topics, queues."""

    def __init__(self, peers: list[ID], subscribed: set[ID]) -> None:
        self.peers = {peer: object() for peer in peers}
        self.peer_queues = {peer: RpcQueue() for peer in peers}
        self.peer_topics = {NODES_TOPIC: set(subscribed)}
        self.host = object()

    @staticmethod
    def get_message_id(msg: rpc_pb2.Message) -> bytes:
        return msg.from_id + msg.seqno


def router_in(pubsub: Swarmish, identified: set[ID], mesh: set[ID]) -> GossipSub:
    router = make_gossipsub(hold=0)
    router.pubsub = pubsub  # type: ignore[assignment]
    router.peer_protocol = {peer: PROTOCOL_ID_V11 for peer in identified}
    router.mesh = {NODES_TOPIC: set(mesh)}
    return router


async def test_publish_sends_and_keeps_copies_exactly_as_the_library_does(monkeypatch):
    # 0: forwarder; 1: in the mesh; 2: subscribed, not in the mesh; 3: connected, not
    # subscribed yet; 4: subscribed, not identified yet; 5: the author, connected.
    monkeypatch.setattr(libp2p_gossipsub, "env_to_send_in_RPC", lambda host: (RECORD, False))
    forwarder, author = PEERS[0], PEERS[5]
    msg = rpc_pb2.Message(
        from_id=author.to_bytes(), seqno=(7).to_bytes(8, "big"), data=b"x", topicIDs=[NODES_TOPIC]
    )
    outcomes = []
    for publish in (GossipSub.publish, type(make_gossipsub()).publish):
        pubsub = Swarmish(PEERS, subscribed={PEERS[0], PEERS[1], PEERS[2], PEERS[4]})
        router = router_in(pubsub, identified=set(PEERS) - {PEERS[4]}, mesh={PEERS[1], forwarder})
        await publish(router, forwarder, msg)
        sent = {peer for peer, queue in pubsub.peer_queues.items() if len(queue)}
        kept = {peer for peer, entries in router._pending_messages.items() if entries}
        outcomes.append((sent, kept, router.mcache.get(msg.from_id + msg.seqno) is not None))
    library, ours = outcomes
    assert ours == library
    assert ours == ({PEERS[1]}, {PEERS[3], PEERS[4]}, True)


async def test_new_messages_are_taken_in_without_the_service_manager(monkeypatch):
    async with AsyncExitStack() as stack:
        nodes = []
        for _ in range(2):
            host = await stack.enter_async_context(
                open_host(key_pair=create_new_key_pair(), host="127.0.0.1", port=0)
            )
            pubsub = await stack.enter_async_context(open_gossip(host, drops=DropCounter()))
            nodes.append((host, pubsub))
        (a_host, a), (b_host, b) = nodes
        started = []
        run_task = b.manager.run_task

        def recording(async_fn, *args, **kwargs):
            started.append(getattr(async_fn, "__name__", repr(async_fn)))
            return run_task(async_fn, *args, **kwargs)

        monkeypatch.setattr(b.manager, "run_task", recording)
        received = await b.subscribe(NODES_TOPIC)
        await a.subscribe(NODES_TOPIC)
        address = multiaddr.Multiaddr(listen_addresses(b_host)[0])
        await a_host.connect(info_from_p2p_addr(address))
        await a.wait_for_peer(b_host.get_id())
        await wait_until(lambda: NODES_TOPIC in b.peer_topics and b.peer_topics[NODES_TOPIC])
        got = []
        with trio.fail_after(5):
            for n in range(5):
                await a.publish(NODES_TOPIC, f"advert {n}".encode())
            while len(got) < 5:
                got.append((await received.get()).data)
        assert sorted(got) == [f"advert {n}".encode() for n in range(5)]
        assert "push_msg" not in started
