"""The job and execution lifecycles: every pair of states, allowed or refused."""

from __future__ import annotations

import itertools

import pytest

from swarm.errors import ConfigError, IllegalTransition, SwarmError
from swarm.lifecycle import (
    EXECUTION_TRANSITIONS,
    JOB_TRANSITIONS,
    ExecutionState,
    JobState,
    check_execution_transition,
    check_job_transition,
    parse_job_state,
)

J, E = JobState, ExecutionState

# The intended tables, written out again independently of the module.
JOB_ALLOWED = {
    (J.PENDING, J.QUEUED),
    (J.PENDING, J.RUNNING),
    (J.PENDING, J.FAILED),
    (J.PENDING, J.STOPPED),
    (J.QUEUED, J.PENDING),
    (J.QUEUED, J.RUNNING),
    (J.QUEUED, J.FAILED),
    (J.QUEUED, J.STOPPED),
    (J.RUNNING, J.COMPLETED),
    (J.RUNNING, J.FAILED),
    (J.RUNNING, J.STOPPED),
    (J.RUNNING, J.QUEUED),
}
EXECUTION_ALLOWED = {
    (E.BIDDING, E.ACCEPTED),
    (E.BIDDING, E.CANCELLED),
    (E.BIDDING, E.LOST),
    (E.BIDDING, E.FAILED),
    (E.ACCEPTED, E.RUNNING),
    (E.ACCEPTED, E.COMPLETED),
    (E.ACCEPTED, E.FAILED),
    (E.ACCEPTED, E.CANCELLED),
    (E.ACCEPTED, E.LOST),
    (E.RUNNING, E.COMPLETED),
    (E.RUNNING, E.FAILED),
    (E.RUNNING, E.CANCELLED),
    (E.RUNNING, E.LOST),
}


@pytest.mark.parametrize("old,new", list(itertools.product(JobState, JobState)))
def test_job_transitions(old, new):
    if (old, new) in JOB_ALLOWED:
        check_job_transition(old, new)
    else:
        with pytest.raises(IllegalTransition, match=f"from {old} to {new}"):
            check_job_transition(old, new)


@pytest.mark.parametrize("old,new", list(itertools.product(ExecutionState, ExecutionState)))
def test_execution_transitions(old, new):
    if (old, new) in EXECUTION_ALLOWED:
        check_execution_transition(old, new)
    else:
        with pytest.raises(IllegalTransition, match=f"from {old} to {new}"):
            check_execution_transition(old, new)


def test_terminal_states():
    assert {s for s in JobState if s.is_terminal} == {J.COMPLETED, J.FAILED, J.STOPPED}
    assert {s for s in ExecutionState if s.is_terminal} == {
        E.COMPLETED,
        E.FAILED,
        E.CANCELLED,
        E.LOST,
    }


def test_every_state_is_in_its_table_and_targets_are_states():
    assert set(JOB_TRANSITIONS) == set(JobState)
    assert set(EXECUTION_TRANSITIONS) == set(ExecutionState)
    assert all(new in JobState for targets in JOB_TRANSITIONS.values() for new in targets)


def test_every_live_state_can_reach_a_terminal_one():
    for table, states in ((JOB_TRANSITIONS, JobState), (EXECUTION_TRANSITIONS, ExecutionState)):
        for state in states:
            seen, frontier = {state}, [state]
            while frontier:
                for new in table[frontier.pop()]:
                    if new not in seen:
                        seen.add(new)
                        frontier.append(new)
            assert any(s.is_terminal for s in seen), state


@pytest.mark.parametrize(
    "old,new,words",
    [
        (J.COMPLETED, J.RUNNING, "completed is final"),
        (J.RUNNING, J.RUNNING, "already running"),
        (J.PENDING, J.COMPLETED, "allowed next: failed, queued, running, stopped"),
    ],
)
def test_messages_say_why(old, new, words):
    with pytest.raises(IllegalTransition) as caught:
        check_job_transition(old, new, subject="job 1234abcd")
    assert str(caught.value).startswith("job 1234abcd cannot go from")
    assert words in str(caught.value)
    assert isinstance(caught.value, SwarmError) and "\n" not in str(caught.value)


def test_states_are_strings():
    assert J.RUNNING == "running" and f"{E.LOST}" == "lost"


@pytest.mark.parametrize("text,state", [("running", J.RUNNING), (" Queued ", J.QUEUED)])
def test_parse_job_state(text, state):
    assert parse_job_state(text) is state


def test_parse_job_state_lists_the_states():
    with pytest.raises(ConfigError, match="use one of pending, queued, running"):
        parse_job_state("done")
