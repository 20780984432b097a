"""AnnounceBatcher: announces published at the same moment share one message."""

from __future__ import annotations

import trio

from swarm.jobspec import ResourceRequest
from swarm.protocol import JobAnnounce, JobAnnounces
from swarm.requester.batching import AnnounceBatcher


def announce(job_id: str, constraints: tuple[str, ...] = ()) -> JobAnnounce:
    return JobAnnounce(
        job_id, "requester", 1, "sha256:" + "ab" * 32, 10, ResourceRequest(), constraints
    )


class Gossip:
    def __init__(self, *, fail_first: bool = False) -> None:
        self.messages: list[list[str]] = []
        self.fail_first = fail_first
        self.sending = trio.Event()  # set once the first send has begun

    async def send(self, message: JobAnnounces) -> None:
        self.sending.set()
        await trio.sleep(0.01)  # a publish takes a while: more gather meanwhile
        if self.fail_first:
            self.fail_first = False
            raise RuntimeError("gossip is down")
        self.messages.append([a.job_id for a in message.announces])


async def publish_all(batcher: AnnounceBatcher, job_ids, returned: list[str]) -> None:
    async def one(job_id: str) -> None:
        await batcher.publish(announce(job_id))
        returned.append(job_id)

    async with trio.open_nursery() as nursery:
        for job_id in job_ids:
            nursery.start_soon(one, job_id)


async def test_announces_of_one_moment_share_a_message_and_a_lone_one_goes_alone():
    gossip = Gossip()
    batcher = AnnounceBatcher(gossip.send, max_batch=4)
    returned: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        await publish_all(batcher, [f"j{i}" for i in range(10)], returned)
        assert sorted(returned) == sorted(f"j{i}" for i in range(10))
        # at most 4 per message, each announce once (trio starts tasks in any order)
        assert [len(m) for m in gossip.messages] == [4, 4, 2]
        assert sorted(sum(gossip.messages, [])) == sorted(f"j{i}" for i in range(10))

        await trio.sleep(0.05)
        await batcher.publish(announce("alone"))
        assert gossip.messages[-1] == ["alone"]
        assert batcher.messages_sent == 4
        nursery.cancel_scope.cancel()


async def test_announces_sent_while_a_message_is_on_its_way_form_the_next_one():
    gossip = Gossip()
    batcher = AnnounceBatcher(gossip.send)
    returned: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        nursery.start_soon(publish_all, batcher, ["a"], returned)
        await gossip.sending.wait()  # "a" is being sent
        await publish_all(batcher, ["b", "c", "d"], returned)
        assert [sorted(m) for m in gossip.messages] == [["a"], ["b", "c", "d"]]
        nursery.cancel_scope.cancel()


async def test_a_message_is_kept_under_its_size_limit():
    gossip = Gossip()
    big = ("x" * 1000,) * 20  # about 20 kB encoded
    batcher = AnnounceBatcher(gossip.send, max_bytes=50_000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        async with trio.open_nursery() as publishers:
            for i in range(5):
                publishers.start_soon(batcher.publish, announce(f"big{i}", big))
        assert [len(m) for m in gossip.messages] == [2, 2, 1]
        nursery.cancel_scope.cancel()


async def test_a_failed_send_releases_its_publishers_and_the_next_message_goes_out():
    gossip = Gossip(fail_first=True)
    batcher = AnnounceBatcher(gossip.send)
    returned: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        with trio.fail_after(2):
            await publish_all(batcher, ["lost-1", "lost-2"], returned)
            await publish_all(batcher, ["next"], returned)
        assert sorted(returned) == ["lost-1", "lost-2", "next"]
        assert gossip.messages == [["next"]]
        nursery.cancel_scope.cancel()


async def test_a_busy_requester_sends_at_most_one_message_per_gap_and_holds_no_longer(
    autojump_clock,
):
    sent_at: list[float] = []

    async def send(message: JobAnnounces) -> None:
        sent_at.append(trio.current_time())
        gossip.append([a.job_id for a in message.announces])

    gossip: list[list[str]] = []
    batcher = AnnounceBatcher(send, min_gap=0.01)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        start = trio.current_time()
        await batcher.publish(announce("first"))  # after a quiet moment: at once
        for job in ("a", "b", "c"):  # rounds 2 ms apart, right after it
            await trio.sleep(0.002)
            nursery.start_soon(batcher.publish, announce(job))
        await trio.sleep(0.05)
        assert gossip == [["first"], ["a", "b", "c"]]
        assert [round(t - start, 4) for t in sent_at] == [0.0, 0.01]
        await trio.sleep(1)
        await batcher.publish(announce("later"))  # quiet again: at once
        assert gossip[-1] == ["later"] and sent_at[-1] == trio.current_time()
        nursery.cancel_scope.cancel()
