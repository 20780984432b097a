"""Bidding: when a round has heard enough to decide."""

from __future__ import annotations

from swarm.placement import Bid, Decline
from swarm.requester.bidding import Bidding


def bid(peer: str, *, has_data: bool = False) -> Bid:
    return Bid("job", peer, has_data, capacity=0.5, queue_length=0)


def decline(peer: str) -> Decline:
    return Decline("job", peer, "busy: 2 of 2 job slots in use", busy=True)


def test_a_round_waits_for_every_expected_node():
    bidding = Bidding("job", {"b", "c"})
    bidding.answer(bid("b"))
    assert not bidding.answered.is_set()
    bidding.answer(decline("c"))
    assert bidding.answered.is_set()
    assert [b.peer_id for b in bidding.bids] == ["b"]


def test_a_bid_from_the_node_whose_room_freed_up_is_enough():
    bidding = Bidding("job", {"b", "c"}, preferred="b")
    bidding.answer(decline("c"))
    assert not bidding.answered.is_set()
    bidding.answer(bid("b"))
    assert bidding.answered.is_set()


def test_the_preferred_node_declining_means_waiting_for_the_others():
    bidding = Bidding("job", {"b", "c", "d"}, preferred="b")
    bidding.answer(decline("b"))
    bidding.answer(bid("c"))
    assert not bidding.answered.is_set()
    bidding.answer(decline("d"))
    assert bidding.answered.is_set()


def test_for_a_job_with_inputs_the_preferred_bid_counts_only_with_the_data():
    bidding = Bidding("job", {"b", "c"}, preferred="b", needs_data=True)
    bidding.answer(bid("b", has_data=False))
    assert not bidding.answered.is_set()  # c may hold the data: hear it too
    with_data = Bidding("job", {"b", "c"}, preferred="b", needs_data=True)
    with_data.answer(bid("b", has_data=True))
    assert with_data.answered.is_set()


def test_a_round_with_no_one_to_wait_for_is_answered_at_once():
    assert Bidding("job", set()).answered.is_set()
