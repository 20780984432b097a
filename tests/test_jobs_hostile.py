"""Hostile peers on the job protocols: every bad message is dropped, counted, and harmless.

An attacker (a bare libp2p host with gossip, not a swarm node) talks to one in-process
node that is both requester and compute:

- on the gossip topic /swarm/1/jobs it sends garbage, oversized, mis-attributed,
  forged, stale, future and replayed announces: each is dropped and counted by reason,
  and none gets a bid, while a valid announce from the same attacker does;
- on the bid, blob and result stream protocols it sends garbage, oversized frame
  headers, cut frames, wrong message types and schema-invalid messages, results for
  executions it was never awarded and a path-traversal module id: each stream is reset
  and counted as malformed, nothing is written, and well-formed requests still work;
- afterwards the node still runs a real job to completion and answers its API.

(The node-adverts topic is covered by ``test_p2p_security``.)
"""

from __future__ import annotations

import struct
import time
from contextlib import asynccontextmanager

import multiaddr
import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX

from swarm import schema, wire
from swarm.client import Client
from swarm.errors import ProtocolError
from swarm.jobspec import InputSource, JobSpec, ResourceRequest
from swarm.lifecycle import ExecutionState, JobState
from swarm.node import open_node
from swarm.p2p.drops import DropCounter, DropReason
from swarm.p2p.gossip import JOBS_TOPIC, open_gossip
from swarm.p2p.host import open_host
from swarm.p2p.streams import FramedStream, StreamEnded, open_stream, serve_protocol
from swarm.protocol import (
    BID_PROTOCOL,
    BLOB_PROTOCOL,
    MAX_BATCH,
    RESULT_PROTOCOL,
    Ack,
    Answers,
    BidMessage,
    BlobChunk,
    BlobEnd,
    BlobGet,
    BlobMeta,
    DeclineMessage,
    Failure,
    JobAnnounce,
    JobAnnounces,
    Log,
    Reject,
    Replies,
    ResultEnd,
    ResultStart,
    RunEnd,
)
from swarm.storage.blobs import digest_bytes
from tests.guests import hello
from tests.test_p2p_security import Mallory, config, wait_until

SOME_MODULE = "sha256:" + "ab" * 32
NO_DROPS = {reason.value: 0 for reason in DropReason}


class JobsMallory(Mallory):
    """``Mallory``, writing on the jobs topic instead of the node-adverts topic."""

    def message(self, data: bytes, *, sign: bool = True, **kwargs) -> rpc_pb2.Message:
        message = super().message(data, sign=False, **kwargs)
        message.topicIDs[:] = [JOBS_TOPIC]
        if sign:
            payload = PUBSUB_SIGNING_PREFIX.encode() + message.SerializeToString()
            message.signature = self.key_pair.private_key.sign(payload)
        return message


def one_announce(requester: str, job_id: str, seq: int | None = None, **kwargs) -> JobAnnounce:
    return JobAnnounce(
        job_id=job_id,
        requester=requester,
        seq=time.time_ns() if seq is None else seq,
        module=SOME_MODULE,
        module_size=100,
        resources=ResourceRequest(cpu=0.1, memory=1 << 20),
        **kwargs,
    )


def announce(requester: str, job_id: str, seq: int | None = None, **kwargs) -> bytes:
    """An announce message holding one job."""
    return schema.encode(JobAnnounces((one_announce(requester, job_id, seq, **kwargs),)))


def batch(*announces: JobAnnounce) -> bytes:
    return schema.encode(JobAnnounces(announces))


def frame_map(body) -> bytes:
    """One frame holding any msgpack value (a valid frame need not hold a valid message)."""
    data = wire.pack(body)
    return struct.pack(">I", len(data)) + data


def drops_plus(**increments: int) -> dict[str, int]:
    return NO_DROPS | increments


@asynccontextmanager
async def attacker_of(node):
    """A bare libp2p host with gossip, connected to ``node``; it answers bids with Reject."""
    key_pair = create_new_key_pair()
    async with (
        open_host(key_pair=key_pair, host="127.0.0.1", port=0) as host,
        open_gossip(host, drops=DropCounter()) as pubsub,
    ):
        answers: list[BidMessage | DeclineMessage] = []

        async def on_bid(stream: FramedStream) -> None:
            message = await stream.receive(Answers)
            answers.extend((*message.bids, *message.declines))
            await stream.send(
                Replies(rejects=tuple(Reject(b.job_id, "not you") for b in message.bids))
            )

        serve_protocol(host, BID_PROTOCOL, on_bid, drops=DropCounter())
        await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(node.addresses[0])))
        await pubsub.wait_for_peer(node.host.get_id())
        mallory = JobsMallory(key_pair, pubsub)
        mallory.host, mallory.answers = host, answers
        yield mallory


async def run_hello(node, text: str) -> None:
    """A real job on ``node`` completes (placed on its own compute role)."""
    digest = node.requester.blobs.put_bytes(hello(text))
    job = node.requester.submit(JobSpec.from_dict({"name": "still-up", "task": {"module": digest}}))
    job = await node.requester.wait(job.id, timeout=10)
    assert job.state is JobState.COMPLETED, job.reason
    (execution,) = node.requester.store.executions(job.id)
    folder = node.requester.results.folder(job.id, execution.id)
    assert (folder / "stdout").read_text() == text
    return job, execution


async def agent_of(node) -> dict:
    with Client(node.api_url, node.config.api_token) as client:
        return await trio.to_thread.run_sync(client.agent)


async def test_bad_job_announces_are_dropped_counted_and_get_no_bid(tmp_path):
    async with open_node(config(tmp_path, "x")) as x, attacker_of(x) as mallory:
        me, now, x_id = str(mallory.peer_id), time.time_ns(), x.host.get_id()
        someone_else = ID.from_pubkey(create_new_key_pair().public_key)
        bad_signature = mallory.message(announce(me, "bad-signature"))
        bad_signature.signature = bytes(64)
        mallory.send(
            x_id,
            mallory.message(b"\xc1 not msgpack"),
            mallory.message(schema.encode(Ack())),  # msgpack, but not an announce
            mallory.message(announce(me, "huge") + b"\x00" * (257 * 1024)),
            mallory.message(announce(str(someone_else), "impostor")),
            mallory.message(announce(me, "unsigned"), sign=False),
            mallory.message(announce(me, "foreign-author"), from_id=someone_else.to_bytes()),
            bad_signature,
            mallory.message(announce(me, "stale", now - 3600 * 10**9)),
            mallory.message(announce(me, "future", now + 3600 * 10**9)),
            # One bad announce drops its whole message, the good ones in it too.
            mallory.message(batch(one_announce(me, "ok-1"), one_announce(str(someone_else), "x"))),
            mallory.message(
                batch(one_announce(me, "ok-2"), one_announce(me, "old", now - 3600 * 10**9))
            ),
            mallory.message(batch(one_announce(me, "twice", now), one_announce(me, "twice", now))),
            mallory.message(batch(one_announce(me, "2x", now), one_announce(me, "2x", now + 1))),
            mallory.message(batch(*(one_announce(me, f"many-{i}") for i in range(MAX_BATCH + 1)))),
        )
        genuine = announce(me, "genuine", now)
        mallory.send(x_id, mallory.message(genuine))
        await wait_until(lambda: mallory.answers, what="x to answer the genuine announce")
        mallory.send(x_id, mallory.message(genuine))  # the same announce in a new message
        expected = drops_plus(
            malformed=3, oversized=1, author_mismatch=2, forged=3, stale=2, future=1, replayed=3
        )
        await wait_until(lambda: x.dropped() == expected, what=f"drops {expected}")
        await trio.sleep(0.3)  # room for a wrongful bid to arrive
        assert [(type(a), a.job_id) for a in mallory.answers] == [(BidMessage, "genuine")]

        # Well-formed announces with hostile contents are declined, not fatal.
        mallory.send(
            x_id,
            mallory.message(announce(me, "odd-constraint", constraints=("(((( in ))",))),
            mallory.message(
                announce(me, "peek", inputs=(InputSource("file:///etc/../etc/shadow"),))
            ),
        )
        await wait_until(lambda: len(mallory.answers) == 3, what="answers to the odd announces")
        assert {(type(a), a.job_id) for a in mallory.answers[1:]} == {
            (DeclineMessage, "odd-constraint"),
            (DeclineMessage, "peek"),
        }
        assert x.compute.running == x.compute.queued == 0

        await run_hello(x, "still up\n")
        agent = await agent_of(x)
        assert agent["dropped"] == expected
        assert agent["connected_peers"] == 1


async def test_an_announce_passed_by_the_validator_is_decoded_once(tmp_path, monkeypatch):
    decoded = []
    real_decode = schema.decode

    def counting_decode(data, *classes, **kwargs):
        if JobAnnounces in classes:
            decoded.append(data)
        return real_decode(data, *classes, **kwargs)

    monkeypatch.setattr(schema, "decode", counting_decode)
    async with open_node(config(tmp_path, "x")) as x, attacker_of(x) as mallory:
        genuine = announce(str(mallory.peer_id), "genuine")
        mallory.send(x.host.get_id(), mallory.message(genuine))
        await wait_until(lambda: mallory.answers, what="x to answer the announce")
    assert [(type(a), a.job_id) for a in mallory.answers] == [(BidMessage, "genuine")]
    assert decoded == [genuine]  # by the validator; the subscription loop took its result


async def refused(mallory, node, protocol: str, *frames: bytes, half_close=False) -> None:
    """Sends ``frames`` on a new ``protocol`` stream; the node must reset it unanswered."""
    stream = await open_stream(mallory.host, node.peer_id, protocol)
    try:
        for data in frames:
            await stream.send_raw(data)
        if half_close:
            await stream.stream.close()
    except StreamEnded:
        pass  # the node reset the stream before the last frame went out: refused already
    with trio.fail_after(5):
        with pytest.raises(ProtocolError) as excinfo:
            reply = await stream.receive(Ack, BlobMeta, Failure, Reject, Replies)
            raise AssertionError(f"{protocol} answered {reply}")
    assert "ended" in str(excinfo.value), excinfo.value  # a reset, not some reply


def bad_streams(protocol: str, wrong_type) -> list[tuple[bytes, ...]]:
    """What every protocol must refuse (each tuple is one stream's frames)."""
    body = schema.to_map(wrong_type)
    return [
        (b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1",),  # a frame of undecodable msgpack
        (frame_map([1, 2, 3]),),  # msgpack, not a map
        (struct.pack(">I", wire.MAX_FRAME + 1) + b"\x00" * 64,),  # oversized frame header
        (frame_map(body),),  # a valid message of the wrong type
        (frame_map(BAD_FIELDS[protocol]),),  # the right type with a field of the wrong type
        (frame_map({**BAD_FIELDS[protocol], "v": 99}),),  # unknown version
    ]


BAD_FIELDS = {
    BID_PROTOCOL: {"type": "answers", "v": 1, "bids": 7},
    BLOB_PROTOCOL: {"type": "blob.get", "v": 1, "digest": 7},
    RESULT_PROTOCOL: {"type": "result.start", "v": 1, "job_id": 7},
}


def tree(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def test_bad_streams_to_a_requester_are_reset_counted_and_harmless(tmp_path):
    async with open_node(config(tmp_path, "x")) as x, attacker_of(x) as mallory:
        job, execution = await run_hello(x, "before\n")
        results = x.requester.results.root
        stored = tree(results)
        unknown_bid = BidMessage("no-such-job", has_data=False, capacity=1.0, queue_length=0)
        wrong_types = {
            BID_PROTOCOL: Ack(),
            BLOB_PROTOCOL: unknown_bid,
            RESULT_PROTOCOL: unknown_bid,
        }
        count = 0
        for protocol, wrong_type in wrong_types.items():
            for frames in bad_streams(protocol, wrong_type):
                await refused(mallory, x, protocol, *frames)
                count += 1
            # half a frame, then the attacker stops writing
            await refused(mallory, x, protocol, frame_map({"a": 1})[:-2], half_close=True)
            count += 1
        twice = Answers(bids=(unknown_bid,), declines=(DeclineMessage("no-such-job", "busy"),))
        await refused(mallory, x, BID_PROTOCOL, wire.frame(schema.to_map(twice)))
        count += 1
        await wait_until(
            lambda: x.dropped() == drops_plus(malformed=count), what=f"{count} malformed"
        )

        # Module ids are checked before they become paths.
        for digest in ("sha256:../../etc/passwd", "../../../etc/passwd", "sha256:" + "A" * 64):
            await refused(mallory, x, BLOB_PROTOCOL, wire.frame(schema.to_map(BlobGet(digest))))
            count += 1

        # Results only from the node awarded the execution: not for one never awarded,
        # not for one awarded to another node and awaiting its results, not for x's own,
        # not under another job's id, not by some id prefix.
        store = x.requester.store
        other_job = store.create_job(job.spec)  # as if awarded to someone else, not placed
        someone_else = str(ID.from_pubkey(create_new_key_pair().public_key))
        foreign = store.add_execution(other_job.id, someone_else, ExecutionState.ACCEPTED)
        full_result = [
            Log("stdout", b"forged\n"),
            RunEnd("completed", 0, "", 0.1, 7, 0, False, False, 0),
            ResultEnd(),
        ]
        for start in (
            ResultStart(job.id, "00000000-0000-4000-8000-000000000000"),
            ResultStart(other_job.id, foreign.id),
            ResultStart(job.id, execution.id),
            ResultStart("00000000-0000-4000-8000-000000000000", execution.id),
            ResultStart(job.id, execution.id[:8]),
            ResultStart(job.id, execution.id[:2]),
        ):
            frames = [wire.frame(schema.to_map(m)) for m in (start, *full_result)]
            await refused(mallory, x, RESULT_PROTOCOL, *frames)
            count += 1
        await wait_until(
            lambda: x.dropped() == drops_plus(malformed=count), what=f"{count} malformed"
        )
        assert tree(results) == stored  # no result folder appeared, none was touched
        assert not x.requester.results.folder(other_job.id, foreign.id).exists()
        assert store.executions(job.id) == [execution]
        assert store.executions(other_job.id) == [foreign]  # still awaiting its own node

        # Well-formed requests are answered, and are not drops: a late bid is rejected,
        # a late decline closed, a missing module refused, an existing one served.
        closed = Replies(rejects=(Reject("no-such-job", "bidding has closed"),))
        stream = await open_stream(mallory.host, x.peer_id, BID_PROTOCOL)
        await stream.send(Answers(bids=(unknown_bid,)))
        assert await stream.receive(Replies) == closed
        stream = await open_stream(mallory.host, x.peer_id, BID_PROTOCOL)
        await stream.send(Answers(declines=(DeclineMessage("no-such-job", "busy"),)))
        assert await stream.receive(Replies) == Replies()
        await stream.send(Answers(bids=(unknown_bid,)))  # the same stream serves the next
        assert await stream.receive(Replies) == closed
        stream = await open_stream(mallory.host, x.peer_id, BLOB_PROTOCOL)
        await stream.send(BlobGet(SOME_MODULE))
        assert isinstance(await stream.receive(Failure), Failure)
        stream = await open_stream(mallory.host, x.peer_id, BLOB_PROTOCOL)
        module = job.spec.task.module
        await stream.send(BlobGet(module))
        meta = await stream.receive(BlobMeta)
        data = b""
        while isinstance(chunk := await stream.receive(BlobChunk, BlobEnd), BlobChunk):
            data += chunk.data
        assert len(data) == meta.size and digest_bytes(data) == module
        assert x.dropped() == drops_plus(malformed=count)

        await run_hello(x, "after\n")
        agent = await agent_of(x)
        assert agent["dropped"] == drops_plus(malformed=count)
        assert agent["connected_peers"] == 1
