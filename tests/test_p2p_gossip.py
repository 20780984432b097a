"""The gossip layer's two economies: cached sender records and buffered reads."""

from __future__ import annotations

import pytest
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from swarm.p2p.gossip import BufferedReads
from swarm.p2p.records import SenderRecordCache

PEER_A = ID(b"peer-a")
PEER_B = ID(b"peer-b")


class Consume:
    """The library's check, faked: accepts records starting with b"ok", counts calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[ID, bytes]] = []

    def __call__(self, rpc: rpc_pb2.RPC, host, peer_id: ID) -> bool:
        self.calls.append((peer_id, rpc.senderRecord))
        return not rpc.HasField("senderRecord") or rpc.senderRecord.startswith(b"ok")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def rpc(record: bytes | None) -> rpc_pb2.RPC:
    message = rpc_pb2.RPC()
    if record is not None:
        message.senderRecord = record
    return message


@pytest.fixture
def consume() -> Consume:
    return Consume()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(consume, clock) -> SenderRecordCache:
    return SenderRecordCache(consume, recheck=60, clock=clock)


def test_the_same_record_from_the_same_peer_is_checked_once(cache, consume):
    assert all(cache(rpc(b"ok-1"), None, PEER_A) for _ in range(5))
    assert consume.calls == [(PEER_A, b"ok-1")]


def test_a_new_record_another_peer_or_time_brings_a_new_check(cache, consume, clock):
    cache(rpc(b"ok-1"), None, PEER_A)
    cache(rpc(b"ok-2"), None, PEER_A)  # the peer's addresses changed
    cache(rpc(b"ok-2"), None, PEER_B)  # the same bytes from someone else
    clock.now += 61
    cache(rpc(b"ok-2"), None, PEER_A)  # re-checked now and then
    assert consume.calls == [(PEER_A, b"ok-1"), (PEER_A, b"ok-2"), (PEER_B, b"ok-2")] + [
        (PEER_A, b"ok-2")
    ]


def test_a_refused_record_is_refused_every_time(cache, consume):
    assert not cache(rpc(b"forged"), None, PEER_A)
    assert not cache(rpc(b"forged"), None, PEER_A)
    assert len(consume.calls) == 2


def test_an_rpc_without_a_record_goes_to_the_library(cache, consume):
    assert cache(rpc(None), None, PEER_A)
    assert consume.calls == [(PEER_A, b"")]


def test_the_cache_forgets_everyone_when_full(consume, clock):
    cache = SenderRecordCache(consume, clock=clock, max_peers=2)
    for peer in (ID(b"1"), ID(b"2"), ID(b"3"), ID(b"1")):
        cache(rpc(b"ok"), None, peer)
    assert len(consume.calls) == 4


class Stream:
    """Hands out the given chunks, one per read, whatever was asked for; then b""."""

    muxed_conn = "the connection"

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)
        self.reads = 0

    async def read(self, n: int | None = None) -> bytes:
        self.reads += 1
        return self.chunks.pop(0) if self.chunks else b""


async def test_buffered_reads_serve_small_reads_from_one_large_read():
    stream = Stream(b"\x05hello\x03abc", b"xyz")
    reader = BufferedReads(stream)
    assert [await reader.read(1), await reader.read(5), await reader.read(1)] == [
        b"\x05",
        b"hello",
        b"\x03",
    ]
    assert await reader.read(3) == b"abc"
    assert stream.reads == 1
    assert await reader.read(10) == b"xyz"  # no more than there is
    assert await reader.read(1) == b""  # the end of the stream shows through
    assert reader.muxed_conn == "the connection"  # everything else is the stream's


async def test_buffered_reads_without_a_size_return_what_is_buffered():
    reader = BufferedReads(Stream(b"abc"))
    assert await reader.read(1) == b"a"
    assert await reader.read() == b"bc"


def test_the_record_caches_replace_the_library_functions_once():
    import libp2p.pubsub.gossipsub as library_gossipsub
    import libp2p.pubsub.pubsub as library_pubsub

    from swarm.p2p import gossip  # noqa: F401  (importing it installs the caches)
    from swarm.p2p.records import LocalRecordCache, install_record_caches

    for module in (library_pubsub, library_gossipsub):
        assert isinstance(module.maybe_consume_signed_record, SenderRecordCache)
        assert isinstance(module.env_to_send_in_RPC, LocalRecordCache)
    installed = library_pubsub.maybe_consume_signed_record
    install_record_caches()
    assert library_pubsub.maybe_consume_signed_record is installed  # not wrapped twice
