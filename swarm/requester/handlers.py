"""The requester's stream protocols: bids, module downloads and results.

Thin adapters from ``FramedStream`` to ``RequesterService``: every stream's peer id is
authenticated by Noise, so a bid or a result is attributed to the node that sent it, and
only the awarded node may deliver an execution's results. A bad stream raises
``ProtocolError``, which ``serve_protocol`` counts and answers with a reset. Bid and
result streams carry one exchange after another (compute nodes keep them, see
``StreamPool``) until the compute node closes them.
"""

from __future__ import annotations

import logging

import trio
from libp2p.abc import IHost

from swarm.errors import ProtocolError, SwarmError
from swarm.p2p.drops import DropCounter
from swarm.p2p.streams import FramedStream, open_stream, serve_protocol
from swarm.placement import Bid, Decline
from swarm.protocol import (
    BID_PROTOCOL,
    BLOB_PROTOCOL,
    CANCEL_PROTOCOL,
    RESULT_PROTOCOL,
    Ack,
    Answers,
    Award,
    BidMessage,
    BlobChunk,
    BlobEnd,
    BlobGet,
    BlobMeta,
    Cancel,
    Failure,
    Log,
    Outputs,
    Reject,
    Replies,
    ResultEnd,
    ResultStart,
    RunEnd,
)
from swarm.requester.service import RequesterService
from swarm.storage.blobs import check_digest

CHUNK = 1 << 20
logger = logging.getLogger(__name__)


def serve_requester_protocols(host: IHost, requester: RequesterService, drops: DropCounter) -> None:
    async def on_bid(stream: FramedStream) -> None:
        # One exchange after another on the same stream (compute nodes reuse their streams):
        # a node's answers to the jobs of one announce message, then our replies to its bids.
        peer = stream.peer_id
        while (answers := await stream.receive_or_end(Answers)) is not None:
            job_ids = [a.job_id for a in (*answers.bids, *answers.declines)]
            if len(set(job_ids)) != len(job_ids):
                raise ProtocolError("two answers for one job")
            await stream.send(await _replies(requester, peer, answers))

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
        # One execution's result after another on the same stream, each acknowledged.
        while (start := await stream.receive_or_end(ResultStart)) is not None:
            await receive_result(stream, start)

    async def receive_result(stream: FramedStream, start: ResultStart) -> None:
        try:
            session = requester.open_session(stream.peer_id, start)
        except SwarmError as exc:  # e.g. an id too short or ambiguous to look up: malformed
            if isinstance(exc, ProtocolError):
                raise
            raise ProtocolError(f"results refused: {exc}") from None
        with session.scope:  # cancelled when the requester withdraws the execution
            try:
                while True:
                    message = await stream.receive(Log, RunEnd, Outputs, ResultEnd)
                    await session.send(message)
                    if isinstance(message, ResultEnd):
                        break
            except SwarmError as exc:
                session.abort(str(exc))
                raise
        if session.scope.cancelled_caught:
            raise ProtocolError("the execution was withdrawn (job stopped or node lost)")
        # The node's room has just freed up: the ack may offer it the next waiting job.
        await stream.send(Ack(requester.take_offers(start.execution_id)))

    for protocol, handler in (
        (BID_PROTOCOL, on_bid),
        (BLOB_PROTOCOL, on_blob),
        (RESULT_PROTOCOL, on_result),
    ):
        serve_protocol(host, protocol, handler, drops=drops)


async def _replies(requester: RequesterService, peer: str, answers: Answers) -> Replies:
    """Hand the declines to their rounds, then wait for every bid's award or reject."""
    for message in answers.declines:
        await requester.handle_bid(
            peer, Decline(message.job_id, peer, message.reason, message.busy)
        )
    replies: list[Award | Reject] = []

    async def reply_to(message: BidMessage) -> None:
        bid = Bid(message.job_id, peer, message.has_data, message.capacity, message.queue_length)
        replies.append(await requester.handle_bid(peer, bid))

    async with trio.open_nursery() as nursery:
        for message in answers.bids:
            nursery.start_soon(reply_to, message)
    awards = tuple(r for r in replies if isinstance(r, Award))
    return Replies(awards, tuple(r for r in replies if isinstance(r, Reject)))


CANCEL_TIMEOUT = 5.0


async def send_cancel(host: IHost, peer_id: str, cancel: Cancel) -> None:
    """Ask ``peer_id`` to stop an execution; a node that cannot be reached is left to the
    liveness checks (it has lost its requester's stream anyway by then)."""
    try:
        with trio.fail_after(CANCEL_TIMEOUT):
            stream = await open_stream(host, peer_id, CANCEL_PROTOCOL)
            try:
                await stream.send(cancel)
                reply = await stream.receive(Ack, Failure)
            finally:
                await stream.close()
    except (SwarmError, trio.TooSlowError) as exc:
        logger.info("cancel of %s on %s not delivered: %s", cancel.execution_id, peer_id, exc)
        return
    if isinstance(reply, Failure):
        logger.info("cancel of %s on %s: %s", cancel.execution_id, peer_id, reply.message)
