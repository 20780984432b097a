"""The requester's pure decisions: what one bidding round leads to, and when a job is done."""

from __future__ import annotations

from dataclasses import replace

import pytest

from swarm.jobspec import JobSpec
from swarm.lifecycle import ExecutionState
from swarm.placement import Bid, Decline
from swarm.requester.decisions import Outcome, decide_round, final_state, standing
from swarm.requester.store import ExecutionRecord

E = ExecutionState


def spec(**fields) -> JobSpec:
    return JobSpec.from_dict({"task": {"module": "sha256:" + "a" * 64}, **fields})


def bid(peer: str, capacity: float = 0.5, has_data: bool = False) -> Bid:
    return Bid("job", peer, has_data, capacity, 0)


def decline(peer: str, reason: str = "label zone=us does not match zone=eu", busy=False):
    return Decline("job", peer, reason, busy)


def execution(node: str, state: ExecutionState, id: str | None = None) -> ExecutionRecord:
    return ExecutionRecord(id or f"x-{node}", "job", node, state, None, None, "", 0.0, 0.0)


@pytest.mark.parametrize(
    "fields,executions,retried,answers,outcome,awarded",
    [
        # A first round: the best bid wins, the others are told why not.
        ({}, [], (), [bid("a", 0.2), bid("b", 0.9), decline("c")], Outcome.AWARD, ["b"]),
        ({"count": 2}, [], (), [bid("a"), bid("b"), bid("c", 0.9)], Outcome.AWARD, ["c", "a"]),
        ({"type": "ops"}, [], (), [bid("a"), bid("b"), decline("c")], Outcome.AWARD, ["a", "b"]),
        # Nobody: fail at once, unless a node is only busy or the job may queue.
        ({}, [], (), [decline("a"), decline("b")], Outcome.FAIL, []),
        ({}, [], (), [decline("a"), decline("b", "busy: 2 of 2", True)], Outcome.WAIT, []),
        ({"queue_timeout": "1m"}, [], (), [decline("a")], Outcome.WAIT, []),
        ({}, [], (), [], Outcome.FAIL, []),
        # A retry after a lost node: the lost one no longer stands; among equally free
        # nodes, one that did not fail the job is preferred (free capacity comes first).
        ({}, [execution("a", E.LOST)], (), [bid("a"), bid("b")], Outcome.AWARD, ["b"]),
        ({}, [execution("a", E.LOST)], (), [bid("a", 0.9), bid("b")], Outcome.AWARD, ["a"]),
        # --count 2, one still running: only one more is wanted, not on the running node.
        (
            {"count": 2},
            [execution("a", E.RUNNING), execution("b", E.LOST)],
            (),
            [bid("a", 0.9), bid("b"), bid("c")],
            Outcome.AWARD,
            ["c"],
        ),
        # A retryable failure counts as a failure of that node, and is replaced.
        ({}, [execution("a", E.FAILED, "x1")], ("x1",), [bid("a"), bid("b")], Outcome.AWARD, ["b"]),
        # --target all retried: only nodes without a standing execution are new.
        (
            {"type": "ops"},
            [execution("a", E.COMPLETED), execution("b", E.LOST)],
            (),
            [bid("a"), bid("c")],
            Outcome.AWARD,
            ["c"],
        ),
        (
            {"type": "ops"},
            [execution("a", E.COMPLETED), execution("b", E.LOST)],
            (),
            [bid("a"), decline("b")],
            Outcome.NOTHING,
            [],
        ),
    ],
)
def test_rounds(fields, executions, retried, answers, outcome, awarded):
    decision = decide_round(spec(**fields), executions, retried, answers, waited=0.0)
    assert decision.outcome is outcome
    assert [b.peer_id for b in decision.awards] == awarded
    bidders = {a.peer_id for a in answers if isinstance(a, Bid)}
    assert set(decision.rejects) == bidders - set(awarded)


def test_fewer_bidders_than_count_fail_the_job_whole_or_wait_for_the_rest():
    answers = [bid("a"), bid("b"), decline("c")]
    decision = decide_round(spec(count=3), [], (), answers, waited=0.0)
    assert decision.outcome is Outcome.FAIL and decision.awards == ()
    assert set(decision.rejects) == {"a", "b"}
    assert decision.reason.startswith("2 of the 3 nodes it needs took it; no node accepted")
    busy = [bid("a"), decline("c", "busy: 2 of 2 job slots in use", True)]
    decision = decide_round(spec(count=3), [], (), busy, waited=0.0)
    assert (decision.outcome, [b.peer_id for b in decision.awards]) == (Outcome.AWARD, ["a"])
    assert decision.missing == 2


def test_a_failed_round_lists_every_node_s_reason_one_line_each():
    answers = [decline("12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), decline("b", "needs 1 GPU, has 0")]
    decision = decide_round(spec(), [], (), answers, waited=0.0)
    assert decision.reason.splitlines() == [
        "no node accepted the job:",
        "node 12D3Ko…AAAAAA: label zone=us does not match zone=eu",
        "node b: needs 1 GPU, has 0",
    ]


def test_nobody_answering_says_what_to_check_unless_the_requester_is_patient():
    decision = decide_round(spec(), [], (), [], waited=0.0)
    assert decision.outcome is Outcome.FAIL
    assert decision.reason.startswith("no compute node answered")
    assert decide_round(spec(), [], (), [], waited=0.0, patient=True).outcome is Outcome.WAIT
    # patience is for silence only: reasons given are final
    answers = [decline("a")]
    assert decide_round(spec(), [], (), answers, waited=0.0, patient=True).outcome is Outcome.FAIL


def test_a_queue_timeout_bounds_waiting_even_for_busy_nodes():
    busy = [decline("a", "busy: 2 of 2 job slots in use", True)]
    timed = spec(queue_timeout=10)
    assert decide_round(timed, [], (), busy, waited=9.0).outcome is Outcome.WAIT
    assert decide_round(timed, [], (), busy, waited=10.0).outcome is Outcome.FAIL
    assert decide_round(spec(), [], (), busy, waited=1e6).outcome is Outcome.WAIT


def test_final_state_waits_for_every_standing_execution():
    lost = execution("a", E.LOST)
    running = execution("b", E.RUNNING)
    assert final_state([lost, running], ()) is None
    assert final_state([lost, replace(running, state=E.COMPLETED)], ()) == (True, "")
    failed = replace(running, state=E.FAILED, message="exit code 3")
    assert final_state([lost, failed], ()) == (False, "b: exit code 3")
    assert final_state([lost], ()) is None  # nothing stands: being placed again
    assert standing([lost, failed], {failed.id}) == []
