"""The compute role on the network: job announces in, bids and results out.

``AnnounceListener`` validates announce messages inside gossipsub (before they are
delivered or forwarded): size, schema, the signed gossip author must be the requester
named in every announce, and a (job, seq) seen before or issued too far from now is a
replay; one bad announce drops the whole message. For the jobs of a message that passes,
the node decides (``ComputeService.consider``, job by job: each bid reserves room) and
answers the requester in one exchange on a bid stream, dialling it at the addresses the
announces carry (the requester need not be a direct neighbour). The awards come back in
the reply; each execution then talks to the requester through a ``RemoteRequester``. The
awarding requester may cancel it on the cancel protocol. A result's ack may offer the
node the requester's next jobs (``Ack.offers``): they are answered like announces.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import asynccontextmanager, contextmanager
from functools import partial

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from swarm import schema
from swarm.compute.service import MAX_MODULE_SIZE, ComputeService
from swarm.concurrency import open_nursery
from swarm.errors import ConfigError, ModuleError, ProtocolError
from swarm.jobspec import JobSpec
from swarm.p2p.drops import DropCounter, DropReason
from swarm.p2p.gossip import JOBS_TOPIC, GuardedPubsub
from swarm.p2p.streams import (
    CoalescedSends,
    FramedStream,
    StreamPool,
    count_if_malformed,
    open_stream,
    serve_protocol,
)
from swarm.placement import Bid
from swarm.protocol import (
    BID_PROTOCOL,
    BLOB_PROTOCOL,
    CANCEL_PROTOCOL,
    MAX_ANNOUNCES,
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
    DeclineMessage,
    Failure,
    JobAnnounce,
    JobAnnounces,
    Replies,
    ResultEnd,
    ResultStart,
)
from swarm.storage.blobs import BlobStore

MAX_SKEW = 120.0  # seconds an announce may be older or newer than our clock
AWARD_TIMEOUT = 30.0
ACK_TIMEOUT = 60.0
LOG_LINGER = 0.02  # seconds a result message may wait for the next, to share its write
_REMEMBER = 100_000
_REQUESTERS = 256  # requesters whose links (and idle streams) are kept
_PASSED = 64  # decoded announce messages waiting for the subscription loop
logger = logging.getLogger(__name__)


class AnnounceListener:
    def __init__(
        self, *, host: IHost, pubsub: GuardedPubsub, compute: ComputeService, drops: DropCounter
    ) -> None:
        self.host = host
        self.pubsub = pubsub
        self.compute = compute
        self.drops = drops
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()
        # Announce messages the validator decoded and passed, by gossip message id, for
        # the subscription loop to take instead of decoding them again.
        self._passed: OrderedDict[tuple[bytes, bytes], JobAnnounces] = OrderedDict()
        self._requesters: OrderedDict[str, RemoteRequester] = OrderedDict()
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        serve_protocol(self.host, CANCEL_PROTOCOL, self._on_cancel, drops=self.drops)
        self.pubsub.set_topic_validator(JOBS_TOPIC, self.validate, is_async_validator=False)
        subscription = await self.pubsub.subscribe(JOBS_TOPIC)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            async for message in subscription:
                if ID(message.from_id) == self.pubsub.my_id:
                    continue  # our own jobs reach our compute role in-process
                batch = self._passed.pop((message.from_id, message.seqno), None)
                if batch is None:
                    try:
                        batch = schema.decode(message.data, JobAnnounces, max_size=MAX_ANNOUNCES)
                    except ProtocolError:
                        continue  # counted by the validator
                if batch.announces:
                    nursery.start_soon(self._answer, batch.announces, nursery)

    async def _on_cancel(self, stream: FramedStream) -> None:
        """A requester stops an execution it awarded us (Noise vouches for its peer id)."""
        cancel = await stream.receive(Cancel)
        if self.compute.cancel(cancel.execution_id, str(stream.peer_id)):
            await stream.send(Ack())
        else:
            await stream.send(Failure(f"no execution {cancel.execution_id} of yours runs here"))

    def validate(self, forwarder: ID, message: rpc_pb2.Message) -> bool:
        if forwarder == self.pubsub.my_id:
            return True  # our own message, on its way out
        try:
            reason = self._judge(message)
        except Exception:
            reason = DropReason.ERROR
        if reason is None:
            return True
        self.drops.count(reason)
        return False

    def _judge(self, message: rpc_pb2.Message) -> DropReason | None:
        if len(message.data) > MAX_ANNOUNCES:
            return DropReason.OVERSIZED
        try:
            batch = schema.decode(message.data, JobAnnounces, max_size=MAX_ANNOUNCES)
        except ProtocolError:
            return DropReason.MALFORMED
        author = str(ID(message.from_id))
        now = time.time()
        keys, job_ids = [], set()
        for announce in batch.announces:
            if announce.requester != author:
                return DropReason.AUTHOR_MISMATCH
            age = now - announce.seq / 1e9
            if age > MAX_SKEW:
                return DropReason.STALE
            if age < -MAX_SKEW:
                return DropReason.FUTURE
            key = (announce.job_id, announce.seq)
            if key in self._seen or announce.job_id in job_ids:
                return DropReason.REPLAYED  # seen before, or the same job twice in one message
            keys.append(key)
            job_ids.add(announce.job_id)
        for key in keys:
            self._seen[key] = None
        while len(self._seen) > _REMEMBER:
            self._seen.popitem(last=False)
        self._passed[(message.from_id, message.seqno)] = batch
        while len(self._passed) > _PASSED:
            self._passed.popitem(last=False)
        return None

    def _requester(self, announce: JobAnnounce, nursery: trio.Nursery) -> RemoteRequester:
        """The long-lived link to the announcing requester (it keeps streams for reuse)."""
        requester = self._requesters.pop(announce.requester, None)
        if requester is None:
            requester = RemoteRequester(
                self.host, announce.requester, drops=self.drops, on_offers=self._offered
            )
        requester.addresses = announce.addresses
        self._requesters[announce.requester] = requester
        if len(self._requesters) > _REQUESTERS:
            _, oldest = self._requesters.popitem(last=False)
            nursery.start_soon(oldest.aclose)
        return requester

    def _offered(self, announces: tuple[JobAnnounce, ...]) -> None:
        """Jobs a requester offered in a result's ack (checked to be its own)."""
        self._nursery.start_soon(self._answer, announces, self._nursery)

    async def _answer(self, announces: tuple[JobAnnounce, ...], nursery: trio.Nursery) -> None:
        """Decide every job of one announce message and answer the requester in one go."""
        bids: dict[str, BidMessage] = {}
        declines = []
        for announce in announces:
            decision = self.compute.consider(announce)
            if isinstance(decision, Bid):
                bids[announce.job_id] = BidMessage(
                    announce.job_id, decision.has_data, decision.capacity, decision.queue_length
                )
            else:
                declines.append(DeclineMessage(announce.job_id, decision.reason, decision.busy))
        requester = self._requester(announces[0], nursery)
        try:
            replies = await requester.answer(Answers(tuple(bids.values()), tuple(declines)))
        except (ProtocolError, trio.TooSlowError) as exc:
            logger.debug("answers to %s went unanswered: %s", announces[0].requester, exc)
            for job_id in bids:
                self.compute.release(job_id)
            return
        awards = {award.job_id: award for award in replies.awards}
        for announce in announces:
            if announce.job_id not in bids:
                continue
            award = awards.get(announce.job_id)
            if award is None or not _award_matches(award, announce):
                self.compute.release(announce.job_id)
                if award is not None:
                    self.drops.count(DropReason.MALFORMED)
                continue
            nursery.start_soon(
                partial(self.compute.execute, award, requester, requester=announce.requester)
            )


def _award_matches(award: Award, announce: JobAnnounce) -> bool:
    """The award is for the announced job and module, with a spec that validates."""
    if award.job_id != announce.job_id or award.spec.task.module != announce.module:
        return False
    try:
        JobSpec.from_dict(award.spec.to_dict())
    except ConfigError:
        return False
    return True


class RemoteRequester:
    """A requester reached over libp2p streams (a ``RequesterLink``), one per requester.

    Bid and result streams are kept for reuse (``StreamPool``): a new libp2p stream costs
    several times a message on an open one. Module downloads are rare and get their own.
    """

    def __init__(
        self,
        host: IHost,
        peer_id: str,
        *,
        drops: DropCounter,
        on_offers: Callable[[tuple[JobAnnounce, ...]], None] | None = None,
    ) -> None:
        self.host = host
        self.peer_id = peer_id
        self.addresses: tuple[str, ...] = ()
        self.drops = drops
        self._on_offers = on_offers
        self._bids = StreamPool(partial(self.open, BID_PROTOCOL))
        self._results = StreamPool(partial(self.open, RESULT_PROTOCOL))

    async def open(self, protocol: str) -> FramedStream:
        peer = ID.from_base58(self.peer_id)
        if not self.host.get_network().get_connections(peer):
            addrs = []
            for text in self.addresses:
                try:
                    addrs.append(multiaddr.Multiaddr(text))
                except Exception:
                    continue
            self.host.get_peerstore().add_addrs(peer, addrs, 600)
        return await open_stream(self.host, self.peer_id, protocol)

    async def aclose(self) -> None:
        await self._bids.aclose()
        await self._results.aclose()

    @contextmanager
    def _counted(self):
        """A bad message from the requester is dropped and counted like any other."""
        try:
            yield
        except ProtocolError as exc:
            count_if_malformed(self.drops, exc)
            raise

    async def answer(self, answers: Answers) -> Replies:
        """Send bids and declines; the reply holds the requester's decision on each bid."""
        with self._counted():
            stream, replies = await self._bids.request(answers, Replies, timeout=AWARD_TIMEOUT)
        bid_for = {bid.job_id for bid in answers.bids}
        replied = [r.job_id for r in (*replies.awards, *replies.rejects)]
        if len(set(replied)) != len(replied) or not set(replied) <= bid_for:
            await self._bids.discard(stream)
            self.drops.count(DropReason.MALFORMED)
            raise ProtocolError("replies for jobs not bid for, or twice for one job")
        await self._bids.give_back(stream)
        return replies

    async def fetch_module(self, digest: str, blobs: BlobStore) -> None:
        stream = await self.open(BLOB_PROTOCOL)
        try:
            with self._counted():
                await stream.send(BlobGet(digest))
                meta = await stream.receive(BlobMeta, Failure)
                if isinstance(meta, BlobMeta):
                    if meta.size > MAX_MODULE_SIZE:
                        raise ProtocolError(
                            f"module of {meta.size} bytes is over the {MAX_MODULE_SIZE} limit"
                        )
                    with blobs.writer(digest, max_size=meta.size) as writer:
                        while isinstance(
                            chunk := await stream.receive(BlobChunk, BlobEnd), BlobChunk
                        ):
                            writer.write(chunk.data)
                        writer.commit()  # ProtocolError unless the bytes hash to ``digest``
        finally:
            with trio.CancelScope(shield=True):
                await stream.close()
        if isinstance(meta, Failure):
            raise ModuleError(f"the requester cannot send module {digest}: {meta.message}")

    @asynccontextmanager
    async def open_results(self, award: Award):
        # The start goes with what follows it (within LOG_LINGER): a tiny job's whole
        # result is one write.
        results: CoalescedSends | None = None
        try:
            async with open_nursery() as nursery:
                results = CoalescedSends(
                    self._results.start_raw, nursery, linger=LOG_LINGER, urgent=(ResultEnd,)
                )
                await results.send(ResultStart(award.job_id, award.execution_id))
                yield results
                with self._counted():
                    await results.flush()
            stream = results.stream
            with trio.fail_after(ACK_TIMEOUT), self._counted():
                reply = await stream.receive(Ack, Failure)
        except BaseException:
            if results is not None and results.stream is not None:
                await self._results.discard(results.stream)
            raise
        if isinstance(reply, Failure):
            await self._results.discard(stream)
            raise ProtocolError(f"the requester refused the result: {reply.message}")
        if reply.offers:
            self._offered(reply.offers)
        await self._results.give_back(stream)

    def _offered(self, offers: tuple[JobAnnounce, ...]) -> None:
        job_ids = {announce.job_id for announce in offers}
        if len(job_ids) != len(offers) or any(a.requester != self.peer_id for a in offers):
            self.drops.count(DropReason.MALFORMED)  # another's jobs, or one job twice
            logger.debug("offers from %s dropped: another requester's, or twice", self.peer_id)
        elif self._on_offers is not None:
            self._on_offers(offers)
