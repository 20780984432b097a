"""Fewer gossip RPCs: merged sends, held adverts, the cached local peer record."""

from __future__ import annotations

import pytest
import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import RpcQueue
from libp2p.utils.varint import decode_uvarint_from_stream

from swarm.p2p.coalesce import HeldMessages, merge_rpcs
from swarm.p2p.gossip import (
    JOBS_TOPIC,
    NODES_TOPIC,
    GuardedPubsub,
    make_gossipsub,
)
from swarm.p2p.records import LocalRecordCache
from swarm.p2p.windows import release_at_half_window

RECORD = b"r" * 300
PEER = ID(b"peer-a")


def message(n: int, topic: str = NODES_TOPIC, size: int = 10) -> rpc_pb2.Message:
    return rpc_pb2.Message(
        from_id=b"author", seqno=n.to_bytes(8, "big"), data=bytes(size), topicIDs=[topic]
    )


def publish(*ns: int, record: bytes = RECORD, size: int = 10) -> rpc_pb2.RPC:
    return rpc_pb2.RPC(publish=[message(n, size=size) for n in ns], senderRecord=record)


def control(**fields) -> rpc_pb2.RPC:
    return rpc_pb2.RPC(control=rpc_pb2.ControlMessage(**fields), senderRecord=RECORD)


def seqnos(rpcs: list[rpc_pb2.RPC]) -> list[int]:
    return [int.from_bytes(m.seqno, "big") for rpc in rpcs for m in rpc.publish]


def test_queued_rpcs_merge_into_one_keeping_every_entry_in_order():
    rpcs = [
        publish(1),
        control(ihave=[rpc_pb2.ControlIHave(topicID=NODES_TOPIC, messageIDs=[b"a", b"b"])]),
        rpc_pb2.RPC(subscriptions=[rpc_pb2.RPC.SubOpts(subscribe=True, topicid=JOBS_TOPIC)]),
        publish(2, 3),
        control(graft=[rpc_pb2.ControlGraft(topicID=NODES_TOPIC)]),
        control(
            prune=[rpc_pb2.ControlPrune(topicID=JOBS_TOPIC, backoff=60)],
            iwant=[rpc_pb2.ControlIWant(messageIDs=[b"c"])],
        ),
        control(ihave=[rpc_pb2.ControlIHave(topicID=JOBS_TOPIC, messageIDs=[b"d"])]),
    ]
    [merged] = merge_rpcs(rpcs, limit=1 << 20)
    assert seqnos([merged]) == [1, 2, 3]
    assert [s.topicid for s in merged.subscriptions] == [JOBS_TOPIC]
    assert [(i.topicID, list(i.messageIDs)) for i in merged.control.ihave] == [
        (NODES_TOPIC, [b"a", b"b"]),
        (JOBS_TOPIC, [b"d"]),
    ]
    assert [g.topicID for g in merged.control.graft] == [NODES_TOPIC]
    assert [(p.topicID, p.backoff) for p in merged.control.prune] == [(JOBS_TOPIC, 60)]
    assert [list(i.messageIDs) for i in merged.control.iwant] == [[b"c"]]
    assert merged.senderRecord == RECORD
    # The record is sent once, not once per merged RPC.
    assert merged.ByteSize() < sum(r.ByteSize() for r in rpcs) - 5 * len(RECORD)


def test_a_large_queue_is_split_within_the_size_limit_and_nothing_is_lost():
    rpcs = [publish(n, size=1000) for n in range(100)]
    merged = merge_rpcs(rpcs, limit=10_000)
    assert 10 <= len(merged) <= 15
    assert all(rpc.ByteSize() <= 10_000 for rpc in merged)
    assert seqnos(merged) == list(range(100))
    assert all(rpc.senderRecord == RECORD for rpc in merged)


def test_an_rpc_over_the_limit_goes_alone_and_unchanged():
    small, huge = publish(1), publish(2, size=50_000)
    merged = merge_rpcs([small, huge, publish(3)], limit=10_000)
    assert [seqnos([rpc]) for rpc in merged] == [[1], [2], [3]]
    assert merged[1] == huge


def test_merging_nothing_or_one_rpc():
    assert merge_rpcs([], limit=100) == []
    assert merge_rpcs([publish(1)], limit=10_000) == [publish(1)]


def test_held_messages_leave_once_per_peer_minus_what_the_peer_sent_us():
    held = HeldMessages(max_per_peer=3)
    for n in (1, 2, 2, 3):  # the same message twice is held once
        assert held.hold("a", bytes([n]), message(n))
    assert not held.hold("a", b"\x04", message(4))  # a's share is full
    held.hold("b", b"\x01", message(1))
    held.peer_has("a", b"\x02")
    held.peer_has("c", b"\x02")  # nothing held for c: nothing happens
    taken = held.take_all()
    assert {peer: seqnos([rpc_pb2.RPC(publish=m)]) for peer, m in taken.items()} == {
        "a": [1, 3],
        "b": [1],
    }
    assert held.take_all() == {} and len(held) == 0
    held.hold("a", b"\x05", message(5))
    held.forget("a")
    assert held.take_all() == {}


class Queues:
    """The pubsub a router sees: one outbound queue per peer, message ids."""

    def __init__(self) -> None:
        self.peer_queues = {PEER: RpcQueue()}

    @staticmethod
    def get_message_id(msg: rpc_pb2.Message) -> bytes:
        return msg.from_id + msg.seqno


def test_the_router_holds_adverts_but_never_job_announces_or_control():
    router = make_gossipsub(hold=0.02)
    router.pubsub = Queues()  # type: ignore[assignment]
    queue = router.pubsub.peer_queues[PEER]
    jobs = rpc_pb2.RPC(publish=[message(1, topic=JOBS_TOPIC)], senderRecord=RECORD)
    mixed = rpc_pb2.RPC(publish=[message(2), message(3, topic=JOBS_TOPIC)])
    router.send_rpc(PEER, jobs)
    router.send_rpc(PEER, mixed)
    router.send_rpc(PEER, control(ihave=[rpc_pb2.ControlIHave(topicID=NODES_TOPIC)]), True)
    assert len(queue) == 3  # all at once
    router.send_rpc(PEER, publish(4, 5))
    router.send_rpc(PEER, publish(6))
    assert len(queue) == 3  # held
    router.peer_has(PEER, message(5))
    assert seqnos([rpc_pb2.RPC(publish=router._held.take_all()[PEER])]) == [4, 6]


def test_without_a_hold_adverts_go_at_once():
    router = make_gossipsub(hold=0)
    router.pubsub = Queues()  # type: ignore[assignment]
    router.send_rpc(PEER, publish(1))
    assert len(router.pubsub.peer_queues[PEER]) == 1


class Stream:
    """Records whole writes; the muxed connection names the peer."""

    class muxed_conn:  # noqa: N801
        peer_id = PEER

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.writes.append(data)
        await trio.lowlevel.checkpoint()


class Sender:
    """Just what the sending loop uses of a pubsub."""

    write_msg = Pubsub.write_msg
    handle_sending_messages = GuardedPubsub.handle_sending_messages

    def __init__(self) -> None:
        self.dead: list[ID] = []

    def _handle_dead_peer(self, peer_id: ID) -> None:
        self.dead.append(peer_id)


class Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self, n: int) -> bytes:
        out, self.data = self.data[:n], self.data[n:]
        return out


async def parse(write: bytes) -> rpc_pb2.RPC:
    reader = Bytes(write)
    length = await decode_uvarint_from_stream(reader)
    rpc = rpc_pb2.RPC()
    rpc.ParseFromString(reader.data)
    assert len(reader.data) == length
    return rpc


async def test_the_sending_loop_writes_what_is_queued_in_one_write():
    sender, stream, queue = Sender(), Stream(), RpcQueue()
    queue.push(publish(1))
    queue.push(control(graft=[rpc_pb2.ControlGraft(topicID=NODES_TOPIC)]), priority=True)
    queue.push(publish(2, 3))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.handle_sending_messages, PEER, stream, queue)
        await trio.testing.wait_all_tasks_blocked()
        assert len(stream.writes) == 1
        queue.push(publish(4))
        await trio.testing.wait_all_tasks_blocked()
        queue.close()
    rpcs = [await parse(write) for write in stream.writes]
    assert seqnos(rpcs) == [1, 2, 3, 4]
    assert [g.topicID for g in rpcs[0].control.graft] == [NODES_TOPIC]
    assert sender.dead == []


def test_the_local_record_is_made_again_only_after_the_refresh():
    made: list[object] = []
    now = [0.0]

    def make(host):
        made.append(host)
        return b"record-%d" % len(made), True

    cache = LocalRecordCache(make, refresh=10, clock=lambda: now[0])
    host = object()
    assert cache(host) == (b"record-1", True)
    now[0] = 9.9
    assert cache(host) == (b"record-1", False)
    now[0] = 10.0
    assert cache(host) == (b"record-2", True)
    assert cache(object())[0] == b"record-3"  # another host has its own


@pytest.mark.parametrize("limit", [1, 200, 1 << 20])
def test_merging_keeps_every_message_whatever_the_limit(limit):
    rpcs = [publish(n, size=n * 7) for n in range(30)]
    assert seqnos(merge_rpcs(rpcs, limit=limit)) == list(range(30))


class Window:
    """The parts of a yamux stream the window rule touches."""

    def __init__(self) -> None:
        self.window_lock = trio.Lock()
        self._pending_recv_release = 0
        self.target_recv_window = 256 * 1024
        self.recv_window = self.target_recv_window
        self.updates: list[int] = []

    async def send_window_update(self, increment: int, skip_lock: bool = False) -> None:
        self.updates.append(increment)


async def test_gossip_streams_release_the_window_once_half_of_it_is_read():
    window = Window()
    for _ in range(200):  # 200 reads of 1000 bytes: 200 window updates from the library
        window.recv_window -= 1000
        await release_at_half_window(window, bytes_read=1000)  # type: ignore[arg-type]
    assert window.updates == [132_000]  # the first read reaching 128 KiB
    assert window.recv_window == 256 * 1024 - 200_000 + 132_000
