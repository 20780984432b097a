"""A hostile requester against a compute node: bad replies are dropped, counted, harmless.

Mallory (a bare libp2p host with gossip) announces jobs to an in-process compute node and
answers its bids, module downloads and results badly: awards for another job or module,
garbage, silence, a module whose bytes do not match its hash, garbage instead of an ack,
an ack offering another requester's job, hostile cancel requests. Each bad message is
counted as malformed (a peer hanging up is not), the node's reservations are all
released, and a well-behaved job from the same requester still runs.
"""

from __future__ import annotations

import time

import multiaddr
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

from swarm import schema
from swarm.jobspec import JobSpec, ResourceRequest
from swarm.models import Role
from swarm.node import open_node
from swarm.p2p.drops import DropCounter
from swarm.p2p.gossip import JOBS_TOPIC, open_gossip
from swarm.p2p.host import listen_addresses, open_host
from swarm.p2p.streams import FramedStream, open_stream, serve_protocol
from swarm.protocol import (
    BID_PROTOCOL,
    BLOB_PROTOCOL,
    CANCEL_PROTOCOL,
    RESULT_PROTOCOL,
    Ack,
    Answers,
    Award,
    BlobChunk,
    BlobEnd,
    BlobGet,
    BlobMeta,
    Cancel,
    Failure,
    JobAnnounce,
    JobAnnounces,
    Log,
    Outputs,
    Replies,
    ResultEnd,
    ResultStart,
    RunEnd,
)
from swarm.storage.blobs import digest_bytes
from tests.guests import hello
from tests.test_jobs_hostile import NO_DROPS
from tests.test_p2p_security import config, wait_until

MODULE = hello("from mallory\n")
DIGEST = digest_bytes(MODULE)
OTHER = digest_bytes(b"another module")


def spec(module: str = DIGEST) -> JobSpec:
    return JobSpec.from_dict({"name": "hostile", "task": {"module": module}})


class Mallory:
    """Announces jobs and plays each one's requester side as ``script[job_id]`` says."""

    def __init__(self, host, pubsub) -> None:
        self.host, self.pubsub = host, pubsub
        self.script: dict[str, str] = {}
        self.bids: list[str] = []
        self.results: dict[str, list] = {}
        self.executions = 0

    async def announce(self, job_id: str, behaviour: str) -> None:
        self.script[job_id] = behaviour
        message = self.job(job_id)
        await self.pubsub.publish(JOBS_TOPIC, schema.encode(JobAnnounces((message,))))

    def job(self, job_id: str, requester: str | None = None) -> JobAnnounce:
        return JobAnnounce(
            job_id=job_id,
            requester=requester or str(self.host.get_id()),
            seq=time.time_ns(),
            module=DIGEST,
            module_size=len(MODULE),
            resources=ResourceRequest(cpu=0.1, memory=64 << 20),
            addresses=tuple(listen_addresses(self.host)),
        )

    async def on_bid(self, stream: FramedStream) -> None:
        answers = await stream.receive(Answers)
        (answer,) = answers.bids
        assert not answers.declines, answers
        self.bids.append(answer.job_id)
        behaviour = self.script[answer.job_id]
        self.executions += 1
        award = Award(answer.job_id, f"exec-{self.executions:04d}", spec())
        if behaviour == "award for another job":
            await stream.send(Replies((Award("some-other-job", award.execution_id, spec()),)))
        elif behaviour == "award for another module":
            await stream.send(Replies((Award(answer.job_id, award.execution_id, spec(OTHER)),)))
        elif behaviour == "award twice":
            await stream.send(Replies((award, award)))
        elif behaviour == "garbage":
            await stream.send_raw(b"\x00\x00\x00\x04\xc1\xc1\xc1\xc1")
        elif behaviour == "hang up":
            await stream.reset()
        else:  # "wrong module bytes", "garbage ack", "good"
            await stream.send(Replies((award,)))

    async def on_blob(self, stream: FramedStream) -> None:
        request = await stream.receive(BlobGet)
        wrong = any(b == "wrong module bytes" for b in self.script.values())
        data = b"\0asm not the module you hashed" if wrong else MODULE
        await stream.send(BlobMeta(len(data)))
        await stream.send(BlobChunk(data))
        await stream.send(BlobEnd())
        assert request.digest == DIGEST

    async def on_result(self, stream: FramedStream) -> None:
        start = await stream.receive(ResultStart)  # the rest follows without a reply
        received = self.results.setdefault(start.job_id, [])
        while not isinstance(
            message := await stream.receive(Log, RunEnd, Outputs, ResultEnd), ResultEnd
        ):
            received.append(message)
        behaviour = self.script[start.job_id]
        if behaviour == "garbage ack":
            await stream.send_raw(b"\x00\x00\x00\x02\xc1\xc1")
        elif behaviour.startswith("offer "):  # "offer JOB" or "offer JOB as REQUESTER"
            _, job_id, *rest = behaviour.split()
            self.script[job_id] = "good"
            await stream.send(Ack(offers=(self.job(job_id, rest[-1] if rest else None),)))
        else:
            await stream.send(Ack())


def ended(mallory: Mallory, job_id: str) -> bool:
    """Mallory has received the job's run end (its result may still be streaming)."""
    return any(isinstance(m, RunEnd) for m in mallory.results.get(job_id, []))


async def test_bad_replies_to_a_compute_node_are_dropped_counted_and_harmless(tmp_path):
    node_config = config(tmp_path, "x", roles=(Role.COMPUTE,))
    async with open_node(node_config) as x:
        key_pair = create_new_key_pair()
        async with (
            open_host(key_pair=key_pair, host="127.0.0.1", port=0) as host,
            open_gossip(host, drops=DropCounter()) as pubsub,
        ):
            mallory = Mallory(host, pubsub)
            for protocol, handler in (
                (BID_PROTOCOL, mallory.on_bid),
                (BLOB_PROTOCOL, mallory.on_blob),
                (RESULT_PROTOCOL, mallory.on_result),
            ):
                serve_protocol(host, protocol, handler, drops=DropCounter())
            await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(x.addresses[0])))
            await pubsub.wait_for_peer(x.host.get_id())

            expected = dict(NO_DROPS)
            for job_id, behaviour, counted in (
                ("j1", "award for another job", 1),
                ("j2", "award for another module", 1),
                ("j2b", "award twice", 1),
                ("j3", "garbage", 1),
                ("j4", "hang up", 0),  # a requester going away is not a bad message
            ):
                await mallory.announce(job_id, behaviour)
                await wait_until(lambda j=job_id: j in mallory.bids, what=f"x to bid for {job_id}")
                expected["malformed"] += counted
                await wait_until(lambda e=dict(expected): x.dropped() == e, what=f"{behaviour}")
                await wait_until(lambda: x.compute.queued == 0, what="the reservation to go")

            # Module bytes that do not match the announced hash: counted, and the run
            # ends as a failure with the reason, reported to the requester.
            await mallory.announce("j5", "wrong module bytes")
            await wait_until(lambda: ended(mallory, "j5"), what="j5's result")
            expected["malformed"] += 1
            await wait_until(lambda: x.dropped() == expected, what="the wrong module counted")
            (end,) = [m for m in mallory.results["j5"] if isinstance(m, RunEnd)]
            assert end.status == "failed" and "hashes to" in end.message, end
            assert not x.compute.blobs.has(DIGEST)  # nothing unverified was kept

            # A garbage ack after a whole result.
            mallory.script["j5"] = "done"
            await mallory.announce("j6", "garbage ack")
            await wait_until(lambda: ended(mallory, "j6"), what="j6's result")
            expected["malformed"] += 1
            await wait_until(lambda: x.dropped() == expected, what="the garbage ack counted")

            # A result's ack may offer the next job, answered as if announced: an offer of
            # another requester's job is counted and ignored; one of Mallory's own gets a bid
            # (no announce) and runs.
            someone = str(ID.from_pubkey(create_new_key_pair().public_key))
            await mallory.announce("j6b", f"offer j6c as {someone}")
            await wait_until(lambda: ended(mallory, "j6b"), what="j6b's result")
            expected["malformed"] += 1
            await wait_until(lambda: x.dropped() == expected, what="another's offer counted")
            await mallory.announce("j6d", "offer j6e")
            await wait_until(lambda: ended(mallory, "j6e"), what="the offered job's result")
            assert "j6c" not in mallory.bids and "j6e" in mallory.bids

            # Cancel requests: for an execution that is not the sender's, refused politely;
            # garbage on the cancel protocol, reset and counted.
            stream = await open_stream(host, x.peer_id, CANCEL_PROTOCOL)
            await stream.send(Cancel("j6", "exec-9999"))
            assert isinstance(await stream.receive(Ack, Failure), Failure)
            stream = await open_stream(host, x.peer_id, CANCEL_PROTOCOL)
            await stream.send_raw(b"\x00\x00\x00\x01\xc1")
            expected["malformed"] += 1
            await wait_until(lambda: x.dropped() == expected, what="the cancel garbage counted")

            # Still a working node: a well-behaved job from the same requester runs.
            await mallory.announce("j7", "good")
            await wait_until(lambda: ended(mallory, "j7"), what="j7's result")
            logs = [m.data for m in mallory.results["j7"] if isinstance(m, Log)]
            (end,) = [m for m in mallory.results["j7"] if isinstance(m, RunEnd)]
            assert (end.status, end.exit_code, b"".join(logs)) == (
                "completed",
                0,
                b"from mallory\n",
            )
            await wait_until(lambda: x.compute.running == x.compute.queued == 0, what="idle")
            await trio.sleep(0.2)
            assert x.dropped() == expected
