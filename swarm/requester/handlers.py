"""The requester's stream protocols: bids, module downloads and results.

Thin adapters from ``FramedStream`` to ``RequesterService``: every stream's peer id is
authenticated by Noise, so a bid or a result is attributed to the node that sent it, and
only the awarded node may deliver an execution's results. A bad stream raises
``ProtocolError``, which ``serve_protocol`` counts and answers with a reset.
"""

from __future__ import annotations

from libp2p.abc import IHost

from swarm.errors import ProtocolError, SwarmError
from swarm.p2p.drops import DropCounter
from swarm.p2p.streams import FramedStream, serve_protocol
from swarm.placement import Bid, Decline
from swarm.protocol import (
    BID_PROTOCOL,
    BLOB_PROTOCOL,
    RESULT_PROTOCOL,
    Ack,
    BidMessage,
    BlobChunk,
    BlobEnd,
    BlobGet,
    BlobMeta,
    DeclineMessage,
    Failure,
    Log,
    Outputs,
    ResultEnd,
    ResultStart,
    RunEnd,
)
from swarm.requester.service import RequesterService
from swarm.storage.blobs import check_digest

CHUNK = 1 << 20


def serve_requester_protocols(host: IHost, requester: RequesterService, drops: DropCounter) -> None:
    async def on_bid(stream: FramedStream) -> None:
        message = await stream.receive(BidMessage, DeclineMessage)
        peer = stream.peer_id
        if isinstance(message, DeclineMessage):
            await requester.handle_bid(peer, Decline(message.job_id, peer, message.reason))
            return
        bid = Bid(message.job_id, peer, message.has_data, message.capacity, message.queue_length)
        reply = await requester.handle_bid(peer, bid)
        if reply is not None:
            await stream.send(reply)

    async def on_blob(stream: FramedStream) -> None:
        request = await stream.receive(BlobGet)
        blobs = requester.blobs
        digest = request.digest
        try:
            check_digest(digest)
        except SwarmError as exc:
            raise ProtocolError(str(exc)) from None
        if not blobs.has(digest):
            await stream.send(Failure(f"no module {digest} here"))
            return
        await stream.send(BlobMeta(blobs.size(digest)))
        with blobs.open(digest) as source:
            while chunk := source.read(CHUNK):
                await stream.send(BlobChunk(chunk))
        await stream.send(BlobEnd())

    async def on_result(stream: FramedStream) -> None:
        start = await stream.receive(ResultStart)
        try:
            session = requester.open_session(stream.peer_id, start)
        except SwarmError as exc:  # e.g. an id too short or ambiguous to look up: malformed
            if isinstance(exc, ProtocolError):
                raise
            raise ProtocolError(f"results refused: {exc}") from None
        try:
            while True:
                message = await stream.receive(Log, RunEnd, Outputs, ResultEnd)
                await session.send(message)
                if isinstance(message, ResultEnd):
                    break
        except SwarmError as exc:
            session.abort(str(exc))
            raise
        await stream.send(Ack())

    for protocol, handler in (
        (BID_PROTOCOL, on_bid),
        (BLOB_PROTOCOL, on_blob),
        (RESULT_PROTOCOL, on_result),
    ):
        serve_protocol(host, protocol, handler, drops=drops)
