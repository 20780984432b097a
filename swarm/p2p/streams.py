"""Framed message streams over libp2p, for the job protocols.

A ``FramedStream`` sends and receives ``swarm.schema`` messages, one length-prefixed
frame each (``swarm.wire``), over a libp2p stream whose remote peer id Noise has
authenticated. Every way a stream can go wrong (EOF, reset, garbage, an oversized
frame, a message of the wrong type) surfaces as one ``ProtocolError``, so a protocol
handler has one thing to catch; ``serve_protocol`` catches it, counts the drop and
resets the stream, so a hostile peer can never crash the node. A stream that merely
ended or broke raises the subclass ``StreamEnded``: on a stream this node opened, that
is a peer gone, not a bad message (``count_if_malformed``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamError
from libp2p.peer.id import ID

from swarm import schema, wire
from swarm.errors import ProtocolError
from swarm.p2p import windows
from swarm.p2p.drops import DropCounter, DropReason

M = TypeVar("M")
T = TypeVar("T")
# A read takes up to what a peer may have in flight (yamux's largest window, 16 MiB). With
# a smaller read, py-libp2p copies what it returns twice (a slice of its buffer, then bytes
# of the slice) and a busy stream takes more reads: 100 MiB results came 12-21 % faster
# with this than with 1 MiB reads (docs/BENCHMARKS.md, 2026-11-29 late evening).
READ_SIZE = 16 << 20
logger = logging.getLogger(__name__)


class StreamEnded(ProtocolError):
    """The stream ended or broke before the message expected (EOF, reset, peer gone)."""


def count_if_malformed(drops: DropCounter, exc: ProtocolError) -> None:
    """Count a bad message received on a stream this node opened (a peer that went away
    is no drop)."""
    if not isinstance(exc, StreamEnded):
        drops.count(DropReason.MALFORMED)


class FramedStream:
    def __init__(self, stream: INetStream, *, max_frame: int = wire.MAX_FRAME):
        self.stream = stream
        self.decoder = wire.FrameDecoder(max_frame=max_frame)
        self._ready: list[dict[str, Any]] = []
        windows.use(stream, windows.release_in_batches)

    @property
    def peer_id(self) -> str:
        return str(self.stream.muxed_conn.peer_id)

    @property
    def peer_closed(self) -> bool:
        """The peer has closed or reset its side, as far as is known here (no I/O: the
        flags py-libp2p's yamux sets when the FIN or RST arrives)."""
        muxed = getattr(self.stream, "muxed_stream", None)
        return bool(getattr(muxed, "recv_closed", False) or getattr(muxed, "closed", False))

    async def send(self, message: Any) -> None:
        await self.send_raw(wire.frame(schema.to_map(message)))

    async def send_raw(self, data: bytes) -> None:
        try:
            await self.stream.write(data)
        except (StreamError, OSError, trio.BrokenResourceError) as exc:
            raise StreamEnded(
                f"stream to {self.peer_id[:12]}… broke: {type(exc).__name__}"
            ) from exc

    async def receive(self, *classes: type[M]) -> M:
        """The next message, which must be of one of ``classes``."""
        while not self._ready:
            try:
                data = await self.stream.read(READ_SIZE)
            except (StreamError, OSError, trio.BrokenResourceError) as exc:
                raise StreamEnded(f"stream from {self.peer_id[:12]}… ended") from exc
            if not data:
                raise StreamEnded(f"stream from {self.peer_id[:12]}… ended")
            self._ready.extend(self.decoder.feed(data))
        return schema.from_map(self._ready.pop(0), *classes)

    async def receive_or_end(self, *classes: type[M]) -> M | None:
        """The next message, or None if the peer closed the stream between messages (a
        reused stream's normal end); a stream that ends inside a frame is a ProtocolError."""
        try:
            return await self.receive(*classes)
        except StreamEnded:
            if self.decoder.pending:
                raise ProtocolError(
                    f"stream from {self.peer_id[:12]}… ended inside a frame"
                ) from None
            return None

    async def close(self) -> None:
        try:
            await self.stream.close()
        except Exception:  # closing a broken stream must not fail the caller
            pass

    async def reset(self) -> None:
        try:
            await self.stream.reset()
        except Exception:
            pass


class CoalescedSends:
    """Messages of one exchange written together: a message waits up to ``linger`` seconds
    for the ones after it, unless it is ``urgent`` (then it goes at once, with everything
    waiting before it), or what waits reaches ``max_bytes``.

    Every frame costs a yamux frame, a Noise message and a socket write at both ends (about
    0.3 ms of CPU each side on loopback); a tiny job's whole result (its start, a stdout
    chunk, the run's end, the result's end) is one write this way, not four, and a chatty
    guest's stdout still streams within ``linger``. The first write goes through ``first``
    (e.g. ``StreamPool.start_raw``, which finds a live stream for it); the stream it
    returns takes the rest. The waiting is done by a task in ``nursery``; call ``flush``
    before reading the reply.
    """

    def __init__(
        self,
        first: Callable[[bytes], Awaitable[FramedStream]],
        nursery: trio.Nursery,
        *,
        linger: float,
        urgent: tuple[type, ...] = (),
        max_bytes: int = 256 * 1024,
    ) -> None:
        self.stream: FramedStream | None = None  # once the first write is done
        self._first = first
        self._nursery = nursery
        self._linger = linger
        self._urgent = urgent
        self._max_bytes = max_bytes
        self._waiting = bytearray()
        self._timer: trio.CancelScope | None = None
        self._lock = trio.Lock()  # the timer's flush and a sender's, one write at a time
        self._broken: BaseException | None = None  # a timer's flush failed: the next says so

    async def send(self, message: Any) -> None:
        data = wire.frame(schema.to_map(message))
        if isinstance(message, self._urgent) or len(self._waiting) + len(data) >= self._max_bytes:
            if self._waiting:
                self._waiting += data
                await self.flush()
            else:  # nothing waits ahead of it: written as it is (the lock is fair: in turn)
                async with self._lock:
                    await self._write(data)
            return
        self._waiting += data
        if self._timer is None:
            self._timer = trio.CancelScope(deadline=trio.current_time() + self._linger)
            self._nursery.start_soon(self._flush_later, self._timer)

    async def _flush_later(self, timer: trio.CancelScope) -> None:
        with timer:
            await trio.sleep_forever()
        if timer.cancelled_caught and self._timer is timer:  # its deadline, not a flush
            try:
                await self.flush()
            except ProtocolError as exc:  # the sender hears of it on its next flush
                self._broken = exc

    async def flush(self) -> None:
        """Write everything waiting now."""
        if self._timer is not None:
            self._timer, timer = None, self._timer
            timer.cancel()
        async with self._lock:
            data, self._waiting = bytes(self._waiting), bytearray()
            await self._write(data)

    async def _write(self, data: bytes) -> None:
        # (called with the lock held)
        if self._broken is not None:
            raise self._broken
        if not data:
            return
        if self.stream is None:
            self.stream = await self._first(data)
        else:
            await self.stream.send_raw(data)


async def open_stream(host: IHost, peer_id: str, protocol: str, **kw) -> FramedStream:
    try:
        stream = await host.new_stream(ID.from_base58(peer_id), [TProtocol(protocol)])
    except Exception as exc:  # libp2p raises many unrelated types for an unreachable peer
        raise StreamEnded(f"cannot open {protocol} to {peer_id[:12]}…: {exc}") from exc
    return FramedStream(stream, **kw)


class StreamPool:
    """Streams to one peer for one protocol, reused one exchange at a time.

    Opening a libp2p stream costs far more than a message on an open one (measured with
    py-libp2p 0.8.1 on loopback: about 8.5 ms of CPU for a request/response on a new
    stream, 1.8 ms on an open one), so a compute node keeps the streams of finished
    exchanges with a requester and takes one for the next: the protocols' handlers loop,
    one exchange after another. ``request`` starts with a message that gets a reply, so
    a stream that died while idle is found out at once; ``start_raw`` sends without waiting
    (the reply comes at the exchange's end). Both skip idle streams known to be closed. A
    stream that fails is reset, never given back.
    """

    def __init__(self, open: Callable[[], Awaitable[FramedStream]], *, max_idle: int = 16):
        self._open = open
        self._idle: list[FramedStream] = []
        self._max_idle = max_idle

    async def request(
        self, message: Any, *replies: type[M], timeout: float
    ) -> tuple[FramedStream, M]:
        """Send ``message`` and read its reply, on an idle stream if there is one; the
        caller then gives the stream back (or discards it). An idle stream that turns out
        dead (the peer closed it, or restarted) is dropped and the next one tried, then a
        new one; every request of the protocols that pool streams may be sent twice."""
        return await self._on_a_stream(
            partial(_exchange, message=message, replies=replies, timeout=timeout)
        )

    async def start_raw(self, data: bytes) -> FramedStream:
        """Send ``data`` (the encoded frames that start an exchange whose reply comes at
        its end) on an idle stream the peer has not closed or reset, or on a new one; the
        caller gives it back. A stream whose FIN or RST is still on its way when it is taken
        loses the exchange (found out by its missing reply): only a peer that drops streams
        it served, not a swarm requester, does that."""
        stream, _ = await self._on_a_stream(lambda stream: stream.send_raw(data))
        return stream

    async def _on_a_stream(
        self, attempt: Callable[[FramedStream], Awaitable[T]]
    ) -> tuple[FramedStream, T]:
        """``attempt`` on idle streams, newest first, until one does not end under it (those
        known to be closed are skipped), else on a new stream; a stream it fails on is reset."""
        while self._idle:
            stream = self._idle.pop()
            if stream.peer_closed:  # nobody would read what we send
                await self.discard(stream)
                continue
            try:
                return stream, await attempt(stream)
            except StreamEnded:
                await self.discard(stream)
            except BaseException:
                await self.discard(stream)
                raise
        stream = await self._open()
        try:
            return stream, await attempt(stream)
        except BaseException:
            await self.discard(stream)
            raise

    async def give_back(self, stream: FramedStream) -> None:
        """The exchange ended well: keep the stream for the next one."""
        if len(self._idle) < self._max_idle:
            self._idle.append(stream)
        else:
            await stream.close()

    async def discard(self, stream: FramedStream) -> None:
        with trio.CancelScope(shield=True):  # also when the exchange was cancelled
            await stream.reset()

    async def aclose(self) -> None:
        while self._idle:
            await self._idle.pop().close()


async def _exchange(stream: FramedStream, *, message: Any, replies: tuple, timeout: float) -> Any:
    await stream.send(message)
    with trio.fail_after(timeout):
        return await stream.receive(*replies)


Handler = Callable[[FramedStream], Awaitable[None]]


def serve_protocol(
    host: IHost, protocol: str, handler: Handler, *, drops: DropCounter, **kw
) -> None:
    """Route incoming ``protocol`` streams to ``handler``; bad peers are dropped and counted."""

    async def on_stream(stream: INetStream) -> None:
        framed = FramedStream(stream, **kw)
        try:
            await handler(framed)
        except ProtocolError as exc:
            drops.count(DropReason.MALFORMED)
            logger.debug("%s from %s dropped: %s", protocol, framed.peer_id, exc)
            await framed.reset()
        except Exception:
            drops.count(DropReason.ERROR)
            logger.exception("%s handler failed", protocol)
            await framed.reset()
        else:
            await framed.close()

    host.set_stream_handler(TProtocol(protocol), on_stream)
