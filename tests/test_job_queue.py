"""The requester's queue bookkeeping: order, deadlines, and how much to try again."""

from __future__ import annotations

import math

from swarm.requester.queue import JobQueue


def test_oldest_first_and_a_job_keeps_its_place():
    queue = JobQueue()
    for job_id in ("a", "b", "c"):
        queue.add(job_id)
    queue.add("a", reason="still no node")  # queued again after another round
    assert queue.next_batch(set(), limit=16) == ["a"]  # nothing freed: one look
    assert queue.reason("a") == "still no node"
    assert "a" not in queue and len(queue) == 2


def test_as_many_as_room_appeared_and_never_more_than_the_limit():
    queue = JobQueue()
    for i in range(20):
        queue.add(f"j{i}")
    queue.freed()
    queue.freed()
    assert queue.next_batch({"n1"}, limit=16) == ["j0", "j1", "j2"]  # 2 freed + 1 joined
    assert queue.next_batch({"n1"}, limit=16) == ["j3"]  # nothing new: one
    for _ in range(30):
        queue.freed()
    assert len(queue.next_batch({"n1", "n2"}, limit=16)) == 16


def test_deadlines_and_forgetting():
    queue = JobQueue()
    queue.add("short", deadline=10.0, reason="r")
    queue.add("forever", deadline=math.inf)
    assert queue.expired(9.9) == []
    assert queue.expired(10.0) == ["short"] and "short" not in queue
    assert queue.reason("short") == "r"  # kept for the failure message
    queue.forget("short")
    assert queue.reason("short") == ""
    assert queue.expired(1e12) == [] and "forever" in queue


async def test_freed_wakes_the_loop():
    queue = JobQueue()
    event = queue.rewake()
    assert not event.is_set()
    queue.freed()
    assert event.is_set() and queue.wake is event
    assert not queue.rewake().is_set()
