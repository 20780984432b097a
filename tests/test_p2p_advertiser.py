"""Adverts at start, as a heartbeat, and soon after a change, rate-limited.

The timing cases run the real ``Advertiser`` against a fake pubsub on trio's autojump
clock; the last case runs two real nodes in this process, with a heartbeat of a minute,
and watches one see the other's running count change as a job starts and ends.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
import trio

from swarm.jobspec import JobSpec
from swarm.models import NodeInfo, Resources, Role
from swarm.node import open_node
from swarm.p2p.advertiser import Advertiser, next_beat
from swarm.p2p.adverts import Advert, decode_advert
from swarm.p2p.drops import DropCounter
from swarm.p2p.membership import MembershipTable
from tests.guests import ticker
from tests.test_p2p_security import config, wait_until


class FakePubsub:
    """Records what is published, with the trio time it was published at."""

    my_id = None

    def __init__(self) -> None:
        self.published: list[tuple[float, Advert]] = []
        self._subscriptions = []

    def set_topic_validator(self, topic, validator, is_async_validator) -> None:
        pass

    async def subscribe(self, topic):
        send, receive = trio.open_memory_channel(0)
        self._subscriptions.append(send)  # kept open: nobody else publishes here
        return receive

    async def publish(self, topic, data: bytes) -> None:
        self.published.append((trio.current_time(), decode_advert(data)))


class Load:
    """The compute load ``describe`` reports; tests change it and notify."""

    def __init__(self) -> None:
        self.running = 0

    def describe(self) -> NodeInfo:
        return NodeInfo(
            peer_id="12D3KooWSelf",
            name="self",
            version="0",
            roles=(Role.COMPUTE,),
            resources=Resources(cpu=2, memory=1 << 30, memory_free=1 << 29, gpus=()),
            labels={},
            allowed_paths=(),
            datasets=(),
            addresses=(),
            heartbeat=2.0,
            running=self.running,
            queued=0,
        )


async def start(nursery, *, interval: float = 2.0, change_gap: float = 0.5):
    load, pubsub = Load(), FakePubsub()
    advertiser = Advertiser(
        pubsub=pubsub,
        table=MembershipTable(self_info=load.describe(), clock=time.time),
        drops=DropCounter(),
        describe=load.describe,
        interval=interval,
        change_gap=change_gap,
        wall_clock=trio.current_time,  # the fake clock, so heartbeats fall on its multiples
    )
    await nursery.start(advertiser.run)
    return advertiser, load, pubsub


def times(pubsub: FakePubsub, since: float) -> list[float]:
    return [round(at - since, 6) for at, _ in pubsub.published]


async def test_without_changes_adverts_come_every_heartbeat(autojump_clock):
    async with trio.open_nursery() as nursery:
        _, _, pubsub = await start(nursery)
        t0 = trio.current_time()
        await trio.sleep(7)
        nursery.cancel_scope.cancel()
    assert times(pubsub, t0) == [0, 2, 4, 6]


async def test_heartbeats_fall_on_multiples_of_the_interval_whenever_the_node_starts(
    autojump_clock,
):
    await trio.sleep(0.7)
    async with trio.open_nursery() as nursery:
        _, _, pubsub = await start(nursery)
        await trio.sleep(5.5)
        nursery.cancel_scope.cancel()
    assert [round(at, 6) for at, _ in pubsub.published] == [0.7, 2, 4, 6]


@pytest.mark.parametrize(
    ("after", "interval", "beat"),
    [(0.0, 2.0, 2.0), (0.1, 2.0, 2.0), (1.999, 2.0, 2.0), (2.0, 2.0, 4.0), (7.5, 0.5, 8.0)],
)
def test_next_beat_is_the_first_multiple_of_the_interval_after(after, interval, beat):
    assert next_beat(after, interval) == beat


async def test_a_change_is_advertised_at_once_and_a_burst_makes_two_adverts(autojump_clock):
    async with trio.open_nursery() as nursery:
        advertiser, load, pubsub = await start(nursery)
        t0 = trio.current_time()
        await trio.sleep(1)
        for _ in range(100):  # a hundred jobs start within 0.2 s
            load.running += 1
            advertiser.notify_changed()
            await trio.sleep(0.002)
        await trio.sleep(5.5)
        nursery.cancel_scope.cancel()
    # At start; the first change at once; the other 99 together one gap later, then
    # heartbeats again on the clock's multiples of 2 s, skipping the one at 2 s (less
    # than a gap after the last advert).
    assert times(pubsub, t0) == [0, 1, 1.5, 4, 6]
    assert [advert.info.running for _, advert in pubsub.published] == [0, 1, 100, 100, 100]
    seqs = [advert.seq for _, advert in pubsub.published]
    assert seqs == sorted(set(seqs))


async def test_steady_changes_are_advertised_at_most_once_per_gap(autojump_clock):
    async with trio.open_nursery() as nursery:
        advertiser, load, pubsub = await start(nursery)
        t0 = trio.current_time()
        while trio.current_time() < t0 + 3:
            load.running += 1
            advertiser.notify_changed()
            await trio.sleep(0.01)
        await trio.sleep(0.25)
        nursery.cancel_scope.cancel()
    gaps = [b - a for a, b in zip(times(pubsub, t0), times(pubsub, t0)[1:], strict=False)]
    assert len(pubsub.published) == 7  # 300 changes in 3 s: the start advert and six more
    assert min(gaps) >= 0.5


async def test_a_heartbeat_shorter_than_the_gap_carries_the_changes(autojump_clock):
    async with trio.open_nursery() as nursery:
        advertiser, load, pubsub = await start(nursery, interval=0.2)
        t0 = trio.current_time()
        await trio.sleep(0.05)
        load.running = 3
        advertiser.notify_changed()
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert times(pubsub, t0) == [0, 0.2, 0.4]
    assert [advert.info.running for _, advert in pubsub.published] == [0, 3, 3]


async def test_another_node_sees_the_running_count_change_long_before_a_heartbeat(tmp_path):
    # A heartbeat of a minute: within this test, every advert after the first is one made
    # for a change.
    slow = {"heartbeat": 60.0, "lost_after": 200.0}
    a_config = dataclasses.replace(config(tmp_path, "a", roles=(Role.REQUESTER,)), **slow)
    async with open_node(a_config) as a:
        b_config = config(tmp_path, "b", roles=(Role.COMPUTE,), peers=(a.addresses[0],))
        async with open_node(dataclasses.replace(b_config, **slow)) as b:

            def running_seen_by_a() -> int | None:
                member = a.table.get(b.peer_id)
                return None if member is None else member.info.running

            # b's first advert went out before it had dialled a; the next heartbeat is a
            # minute away: poke it until a has heard it.
            with trio.move_on_after(10):
                while running_seen_by_a() is None:
                    b.advertiser.notify_changed()
                    await trio.sleep(0.3)
            assert running_seen_by_a() == 0, "a never heard of b"
            digest = a.requester.blobs.put_bytes(ticker(times=30, interval=0.1))
            started = time.monotonic()
            job = a.requester.submit(JobSpec.from_dict({"task": {"module": digest}}))
            await wait_until(lambda: running_seen_by_a() == 1, timeout=5, what="running 1")
            seen_running = time.monotonic() - started
            job = await a.requester.wait(job.id, timeout=30)
            assert job.state.value == "completed"
            ended = time.monotonic()
            await wait_until(lambda: running_seen_by_a() == 0, timeout=5, what="running 0")
            seen_idle = time.monotonic() - ended
    # The job runs for 3 s: a sees it start and end within about a change gap.
    assert seen_running < 2.5, seen_running
    assert seen_idle < 2.5, seen_idle
