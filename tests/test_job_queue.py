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


def test_oldest_names_the_first_in_line_and_leaves_it_there():
    queue = JobQueue()
    assert queue.oldest() is None
    for job_id in ("a", "b", "c"):
        queue.add(job_id)
    queue.remove("a")  # stopped (or offered to a node) while queued
    queue.add("c", back=True)  # to the back: its old entry in line is stale now
    assert queue.oldest() == "b" and "b" in queue
    queue.remove("b")
    assert queue.oldest() == "c"
    assert queue.next_batch(set(), limit=16) == ["c"]
    assert queue.oldest() is None


def test_room_on_a_node_goes_to_the_oldest_job_it_has_not_declined_as_unfit():
    queue = JobQueue()
    for job_id in ("gpu", "any1", "any2"):
        queue.add(job_id)
    queue.unfit("gpu", "cpu-node")  # it declined: no GPU
    assert queue.oldest_for("cpu-node") == "any1"
    assert queue.oldest_for("gpu-node") == "gpu"
    for _ in range(2):
        queue.freed()
    assert queue.take_for("cpu-node") == "any1"  # uses up one freed room
    assert queue.take_for("cpu-node") == "any2"
    assert queue.take_for("cpu-node") is None  # nothing it can take: the room stays unused
    assert queue.next_batch(set(), limit=16, at_least=0) == []  # both rooms were used
    assert queue.next_batch(set(), limit=16) == ["gpu"]  # a periodic look asks all
    queue.add("gpu")
    queue.forget("gpu")  # ended: what nodes said of it goes too
    queue.add("gpu")
    assert queue.oldest_for("cpu-node") == "gpu"


def test_a_job_that_met_only_busy_nodes_goes_back_to_its_place():
    queue = JobQueue()
    for i in range(5):
        queue.add(f"j{i}")
    queue.freed()
    assert queue.next_batch(set(), limit=16) == ["j0"]
    queue.add("j5")  # a newer job joins the line meanwhile
    queue.add("j0", reason="every node was busy")  # its round placed nothing
    for _ in range(2):
        queue.freed()
    assert queue.next_batch(set(), limit=16) == ["j0", "j1"]  # not behind j4 and j5
    queue.remove("j2")  # stopped while queued
    queue.add("j2")  # (had it come back, it would have its place again)
    queue.forget("j3")  # ended
    for _ in range(10):
        queue.freed()
    assert queue.next_batch(set(), limit=16) == ["j2", "j4", "j5"]
    assert len(queue) == 0


def test_a_job_no_node_could_take_goes_to_the_back():
    queue = JobQueue()
    for job_id in ("fits-nowhere", "a", "b"):
        queue.add(job_id)
    assert queue.next_batch(set(), limit=16) == ["fits-nowhere"]
    queue.add("fits-nowhere", reason="no node has zone=ap", back=True)
    assert queue.next_batch(set(), limit=16) == ["a"]  # one look each: it holds no one up
    assert queue.next_batch(set(), limit=16) == ["b"]
    assert queue.next_batch(set(), limit=16) == ["fits-nowhere"]
    queue.add("fits-nowhere", back=True)
    queue.remove("fits-nowhere")  # (its entry in the line stays behind, stale)
    queue.add("c")
    queue.add("fits-nowhere", back=True)  # behind c, whatever the stale entry says
    queue.freed()
    queue.freed()
    assert queue.next_batch(set(), limit=16) == ["c", "fits-nowhere"]


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
