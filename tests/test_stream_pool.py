"""Reusing libp2p streams for one exchange after another (real hosts on loopback)."""

from __future__ import annotations

import multiaddr
import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr

from swarm import schema, wire
from swarm.errors import ProtocolError
from swarm.p2p.drops import DropCounter
from swarm.p2p.host import listen_addresses, open_host
from swarm.p2p.streams import (
    CoalescedSends,
    FramedStream,
    StreamPool,
    open_stream,
    serve_protocol,
)
from swarm.protocol import Ack, BidMessage, Log, Reject, ResultEnd, ResultStart, RunEnd

PROTOCOL = "/swarm/test/pool/1.0.0"


def bid(job: str) -> BidMessage:
    return BidMessage(job, has_data=False, capacity=0.5, queue_length=0)


class Server:
    """Answers bids on PROTOCOL; ``once`` closes each stream after one exchange (an old or
    hostile peer), ``reset_on`` resets the stream on that job id."""

    def __init__(self, host, *, once: bool = False, reset_on: str | None = None) -> None:
        self.streams = 0
        self.once, self.reset_on = once, reset_on
        serve_protocol(host, PROTOCOL, self.handle, drops=DropCounter())

    async def handle(self, stream: FramedStream) -> None:
        self.streams += 1
        while (message := await stream.receive_or_end(BidMessage)) is not None:
            if message.job_id == self.reset_on:
                raise ProtocolError("refused")
            await stream.send(Reject(message.job_id, "no"))
            if self.once:
                return


@pytest.fixture
async def two_hosts():
    async with (
        open_host(key_pair=create_new_key_pair(), host="127.0.0.1", port=0) as client,
        open_host(key_pair=create_new_key_pair(), host="127.0.0.1", port=0) as server,
    ):
        await client.connect(info_from_p2p_addr(multiaddr.Multiaddr(listen_addresses(server)[0])))
        yield client, server


def encoded(message) -> bytes:
    return wire.frame(schema.to_map(message))


def pool_to(client, server) -> StreamPool:
    return StreamPool(lambda: open_stream(client, str(server.get_id()), PROTOCOL))


async def exchange(pool: StreamPool, job: str) -> Reject:
    stream, reply = await pool.request(bid(job), Reject, Ack, timeout=5)
    await pool.give_back(stream)
    return reply


async def test_one_stream_serves_exchange_after_exchange(two_hosts):
    client, server_host = two_hosts
    server = Server(server_host)
    pool = pool_to(client, server_host)
    for i in range(20):
        assert await exchange(pool, f"j{i}") == Reject(f"j{i}", "no")
    assert server.streams == 1


async def test_concurrent_exchanges_each_take_their_own_stream(two_hosts):
    client, server_host = two_hosts
    server = Server(server_host)
    pool = pool_to(client, server_host)
    async with trio.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(exchange, pool, f"j{i}")
    assert server.streams == 4
    for i in range(8):  # and afterwards they are reused
        await exchange(pool, f"k{i}")
    assert server.streams == 4


async def test_a_stream_the_peer_closed_is_replaced_at_once(two_hosts):
    client, server_host = two_hosts
    server = Server(server_host, once=True)  # closes after each exchange
    pool = pool_to(client, server_host)
    for i in range(5):
        assert await exchange(pool, f"j{i}") == Reject(f"j{i}", "no")
    assert server.streams == 5  # each idle stream turned out dead and was replaced


async def test_a_failed_exchange_drops_its_stream(two_hosts):
    client, server_host = two_hosts
    server = Server(server_host, reset_on="bad")
    pool = pool_to(client, server_host)
    await exchange(pool, "j1")
    with pytest.raises(ProtocolError):  # reset by the server: no retry on a fresh stream
        await exchange(pool, "bad")
    await exchange(pool, "j2")
    # the stream of "bad" was retried once on a new stream (it could have died idle), then
    # j2 needed another new one: nothing broken was given back
    assert server.streams == 3


class ResettingServer(Server):
    """Replies to one message per stream, then resets the stream (a peer that dropped it)."""

    async def handle(self, stream: FramedStream) -> None:
        self.streams += 1
        message = await stream.receive(BidMessage)
        await stream.send(Reject(message.job_id, "no"))
        raise ProtocolError("done with this stream")


async def test_starting_an_exchange_skips_an_idle_stream_the_peer_reset(two_hosts):
    client, server_host = two_hosts
    server = ResettingServer(server_host)
    pool = pool_to(client, server_host)
    assert await exchange(pool, "j1") == Reject("j1", "no")  # the stream goes back idle...
    await trio.sleep(0.2)  # ...and its reset reaches us meanwhile
    stream = await pool.start_raw(encoded(bid("j2")))  # the dead one refuses it: a new one
    assert await stream.receive(Reject) == Reject("j2", "no")
    assert server.streams == 2


async def test_starting_an_exchange_skips_an_idle_stream_the_peer_closed(two_hosts):
    client, server_host = two_hosts
    server = Server(server_host, once=True)  # closes each stream after one exchange
    pool = pool_to(client, server_host)
    assert await exchange(pool, "j1") == Reject("j1", "no")
    await trio.sleep(0.2)  # the close reaches us while the stream idles
    stream = await pool.start_raw(encoded(bid("j2")))
    assert await stream.receive(Reject) == Reject("j2", "no")
    assert server.streams == 2


# --- CoalescedSends: the messages of one exchange written together ----------------------


class Recorder:
    """A FramedStream stand-in that records each write; ``fail`` makes writes raise."""

    def __init__(self, writes: list[bytes], *, fail: bool = False) -> None:
        self.writes, self.fail = writes, fail

    async def send_raw(self, data: bytes) -> None:
        if self.fail:
            raise ProtocolError("stream broke")
        self.writes.append(data)


def messages_in(data: bytes) -> list:
    frames = wire.FrameDecoder(max_frame=wire.MAX_FRAME).feed(data)
    return [schema.from_map(m, Log, RunEnd, ResultEnd, ResultStart) for m in frames]


END = RunEnd("completed", 0, "", 0.001, 6, 0, False, False, 0)


def coalesced(nursery, writes, *, fail_later=False, **kw) -> CoalescedSends:
    async def first(data: bytes) -> Recorder:
        writes.append(data)
        return Recorder(writes, fail=fail_later)

    return CoalescedSends(first, nursery, linger=0.02, urgent=(ResultEnd,), **kw)


async def test_a_tiny_result_is_one_write_in_order(autojump_clock):
    writes: list[bytes] = []
    async with trio.open_nursery() as nursery:
        sends = coalesced(nursery, writes)
        for message in (ResultStart("j", "e"), Log("stdout", b"hi\n"), END, ResultEnd()):
            await sends.send(message)
        assert len(writes) == 1  # the urgent end took everything before it along
    assert messages_in(writes[0]) == [
        ResultStart("j", "e"),
        Log("stdout", b"hi\n"),
        END,
        ResultEnd(),
    ]


async def test_a_message_waits_at_most_linger(autojump_clock):
    writes: list[bytes] = []
    async with trio.open_nursery() as nursery:
        sends = coalesced(nursery, writes)
        await sends.send(ResultStart("j", "e"))
        await trio.sleep(0.019)
        assert writes == []
        await trio.sleep(0.002)
        assert [messages_in(w) for w in writes] == [[ResultStart("j", "e")]]
        await sends.send(Log("stdout", b"later\n"))  # goes on the stream the first returned
        await trio.sleep(0.021)
        assert [messages_in(w) for w in writes[1:]] == [[Log("stdout", b"later\n")]]
        await sends.flush()
        assert len(writes) == 2  # nothing waiting, nothing written


async def test_a_full_buffer_goes_at_once(autojump_clock):
    writes: list[bytes] = []
    async with trio.open_nursery() as nursery:
        sends = coalesced(nursery, writes, max_bytes=1000)
        await sends.send(Log("stdout", b"x" * 600))
        assert writes == []
        await sends.send(Log("stdout", b"y" * 600))
        assert len(writes) == 1 and len(messages_in(writes[0])) == 2


async def test_a_failed_timed_write_is_raised_by_the_next_flush(autojump_clock):
    writes: list[bytes] = []
    async with trio.open_nursery() as nursery:
        sends = coalesced(nursery, writes, fail_later=True)
        await sends.send(ResultStart("j", "e"))
        await trio.sleep(0.05)  # the first write went through ``first``
        await sends.send(Log("stdout", b"lost\n"))
        await trio.sleep(0.05)  # the timer's write fails on the broken stream
        with pytest.raises(ProtocolError, match="broke"):
            await sends.send(ResultEnd())


async def test_a_large_message_with_nothing_waiting_is_its_own_write(autojump_clock):
    writes: list[bytes] = []
    async with trio.open_nursery() as nursery:
        sends = coalesced(nursery, writes, max_bytes=1000)
        await sends.send(Log("stdout", b"x" * 2000))
        assert [messages_in(w) for w in writes] == [[Log("stdout", b"x" * 2000)]]


async def test_messages_keep_their_order_while_a_write_is_in_progress(autojump_clock):
    # The timer's write is still on its way when a large message and a small one come:
    # neither may overtake what was sent before it.
    writes: list[bytes] = []

    class Slow(Recorder):
        async def send_raw(self, data: bytes) -> None:
            await trio.sleep(0.1)
            self.writes.append(data)

    async def first(data: bytes) -> Slow:
        await trio.sleep(0.1)
        writes.append(data)
        return Slow(writes)

    async with trio.open_nursery() as nursery:
        sends = CoalescedSends(first, nursery, linger=0.02, urgent=(ResultEnd,), max_bytes=1000)
        await sends.send(ResultStart("j", "e"))
        await trio.sleep(0.05)  # the timed write of the start is under way
        nursery.start_soon(sends.send, Log("stdout", b"big" * 500))
        await trio.sleep(0.001)
        await sends.send(Log("stdout", b"small"))
        await sends.send(ResultEnd())
    sent = [m for w in writes for m in messages_in(w)]
    assert sent == [
        ResultStart("j", "e"),
        Log("stdout", b"big" * 500),
        Log("stdout", b"small"),
        ResultEnd(),
    ]


# --- window updates: one per windows.RELEASE_BATCH bytes read, not one per read ------------------


@pytest.fixture
def window_updates(monkeypatch):
    """Window-update frames sent, by stream, on every host of the test."""
    from libp2p.stream_muxer.yamux.yamux import YamuxStream

    sent: list[int] = []
    real = YamuxStream.send_window_update

    async def counted(self, increment, *args, **kwargs):
        sent.append(increment)
        return await real(self, increment, *args, **kwargs)

    monkeypatch.setattr(YamuxStream, "send_window_update", counted)
    return sent


async def test_small_messages_are_read_without_a_window_update_each(two_hosts, window_updates):
    client, server_host = two_hosts
    Server(server_host)
    pool = pool_to(client, server_host)
    await exchange(pool, "warm-up")  # the stream's set-up reads are the library's own
    window_updates.clear()
    for i in range(200):  # ~200 x 40 bytes each way, well under windows.RELEASE_BATCH
        assert await exchange(pool, f"j{i}") == Reject(f"j{i}", "no")
    assert window_updates == []


async def test_a_bulk_transfer_still_gets_its_window_back(two_hosts, window_updates):
    client, server_host = two_hosts
    got: list[int] = []

    async def sink(stream: FramedStream) -> None:
        while (message := await stream.receive_or_end(Log)) is not None:
            got.append(len(message.data))
        await stream.send(Ack())

    serve_protocol(server_host, PROTOCOL, sink, drops=DropCounter())
    stream = await open_stream(client, str(server_host.get_id()), PROTOCOL)
    with trio.fail_after(20):
        for _ in range(8):  # 8 MiB: far past the 256 KiB window it starts with
            await stream.send(Log("stdout", bytes(1 << 20)))
        await stream.stream.close()
        assert await stream.receive(Ack) == Ack()
    assert got == [1 << 20] * 8
    assert sum(window_updates) >= 7 << 20  # released as it was read
