"""The lifecycles of jobs and executions: one table each, nothing else decides.

A *job* is what a user submitted; an *execution* is one node's attempt at it (a job with
``--target all`` or ``--count 3`` has several, and a retry adds another).

Jobs::

    pending ──▶ queued ──▶ running ──▶ completed
       │  ▲        │         │  │
       │  └────────┘         │  └──▶ failed / stopped
       └──▶ running          └──▶ queued        (every live job can also fail or be stopped)

- ``pending``: persisted, being announced; bids are being collected.
- ``queued``: no node could take it yet; it waits and is announced again later
  (``queued → pending`` when that re-announce starts).
- ``running``: at least one execution was awarded. ``running → queued`` happens when
  every awarded node was lost or failed retryably and the job waits for a new award.
- ``completed``, ``failed``, ``stopped`` (by the user) are final.

Executions::

    bidding ──▶ accepted ──▶ running ──▶ completed | failed | cancelled | lost
       │           │
       │           └──▶ completed | failed | cancelled | lost
       └──▶ accepted | cancelled | lost | failed

- ``bidding``: the node bid; the requester has not decided.
- ``accepted``: awarded; the node is fetching the module or waiting for a slot.
  ``accepted → completed|failed`` is allowed because a short run can finish before the
  requester hears that it started.
- ``cancelled``: the requester withdrew it (job stopped, bid rejected, enough winners).
- ``lost``: the node vanished (missed heartbeats, broken stream) before reporting.
- ``completed``, ``failed``, ``cancelled``, ``lost`` are final.

Staying in the same state is not a transition and is refused too, so a duplicate
"completed" from the network is caught instead of being recorded twice.
Terminal states are those with no way out of them in the table.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from swarm.errors import ConfigError, IllegalTransition


class JobState(enum.StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def is_terminal(self) -> bool:
        """True for completed, failed and stopped: nothing can happen to the job any more."""
        return not JOB_TRANSITIONS[self]


class ExecutionState(enum.StrEnum):
    BIDDING = "bidding"
    ACCEPTED = "accepted"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def is_terminal(self) -> bool:
        """True for completed, failed, cancelled and lost."""
        return not EXECUTION_TRANSITIONS[self]


_J, _E = JobState, ExecutionState

JOB_TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    _J.PENDING: frozenset({_J.QUEUED, _J.RUNNING, _J.FAILED, _J.STOPPED}),
    _J.QUEUED: frozenset({_J.PENDING, _J.RUNNING, _J.FAILED, _J.STOPPED}),
    _J.RUNNING: frozenset({_J.COMPLETED, _J.FAILED, _J.STOPPED, _J.QUEUED}),
    _J.COMPLETED: frozenset(),
    _J.FAILED: frozenset(),
    _J.STOPPED: frozenset(),
}

EXECUTION_TRANSITIONS: Mapping[ExecutionState, frozenset[ExecutionState]] = {
    _E.BIDDING: frozenset({_E.ACCEPTED, _E.CANCELLED, _E.LOST, _E.FAILED}),
    _E.ACCEPTED: frozenset({_E.RUNNING, _E.COMPLETED, _E.FAILED, _E.CANCELLED, _E.LOST}),
    _E.RUNNING: frozenset({_E.COMPLETED, _E.FAILED, _E.CANCELLED, _E.LOST}),
    _E.COMPLETED: frozenset(),
    _E.FAILED: frozenset(),
    _E.CANCELLED: frozenset(),
    _E.LOST: frozenset(),
}


def check_job_transition(old: JobState, new: JobState, *, subject: str = "job") -> None:
    """Raise IllegalTransition unless the job table allows ``old → new``."""
    _check(JOB_TRANSITIONS, old, new, subject)


def check_execution_transition(
    old: ExecutionState, new: ExecutionState, *, subject: str = "execution"
) -> None:
    """Raise IllegalTransition unless the execution table allows ``old → new``."""
    _check(EXECUTION_TRANSITIONS, old, new, subject)


def _check(table: Mapping, old: enum.StrEnum, new: enum.StrEnum, subject: str) -> None:
    if new in table[old]:
        return
    if not table[old]:
        why = f"{old} is final"
    elif old == new:
        why = f"it is already {old}"
    else:
        why = "allowed next: " + ", ".join(sorted(table[old]))
    raise IllegalTransition(f"{subject} cannot go from {old} to {new} ({why})")


def parse_job_state(text: str) -> JobState:
    """'running' → JobState.RUNNING, or a ConfigError that lists the states."""
    try:
        return JobState(text.strip().lower())
    except ValueError:
        names = ", ".join(JobState)
        raise ConfigError(f"unknown job state {text!r}: use one of {names}") from None
