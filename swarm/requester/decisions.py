"""What a requester does with a job after a bidding round, or when an execution ends.

Pure functions over the job's spec, its executions so far and the answers of one round:
no I/O, no clock (the caller passes ``now``). ``RequesterService`` applies what they
decide to the store and the network.

Which executions count: an execution that was *lost* (its node vanished), *cancelled*,
or that failed in a way another node may not (``retried``: the requester placed the job
again in its stead) no longer stands for the job. The job needs ``count`` standing
executions (``--target any``), or one on every node that bids (``--target all``).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from swarm.jobspec import JobSpec, Target
from swarm.lifecycle import ExecutionState
from swarm.placement import Bid, Decline, choose_awards, short_peer_id
from swarm.requester.store import ExecutionRecord

_GONE = (ExecutionState.LOST, ExecutionState.CANCELLED)
_FAILED = (ExecutionState.FAILED, ExecutionState.LOST)


class Outcome(enum.StrEnum):
    AWARD = "award"  # some bids won: the job runs (or runs on more nodes; ``missing`` wait)
    WAIT = "wait"  # nobody could take it now, but a node may later: keep it queued
    FAIL = "fail"  # nobody can take it and it may not wait: it fails with every reason
    NOTHING = "nothing"  # nothing more to place (a retry of --target all found no new node)


@dataclass(frozen=True)
class RoundDecision:
    outcome: Outcome
    awards: tuple[Bid, ...] = ()
    rejects: dict[str, str] = field(default_factory=dict)  # peer id → why not
    reason: str = ""  # for WAIT and FAIL: every node's reason, one line each
    missing: int = 0  # executions still wanted after this round's awards (the job waits)


def standing(
    executions: Iterable[ExecutionRecord], retried: Collection[str]
) -> list[ExecutionRecord]:
    """The executions that still stand for the job."""
    return [e for e in executions if e.state not in _GONE and e.id not in retried]


def decide_round(
    spec: JobSpec,
    executions: list[ExecutionRecord],
    retried: Collection[str],
    answers: Iterable[Bid | Decline],
    *,
    waited: float,
    patient: bool = False,
) -> RoundDecision:
    """Awards and rejects for one bidding round; ``waited``: seconds since submission.

    ``patient``: a round nobody answered is no reason to fail yet: the requester has just
    started and may not know the compute nodes, or nodes it expected stayed silent (a
    loaded node answers late) and it has not asked them often enough to give up.
    """
    answers = list(answers)
    bids = [a for a in answers if isinstance(a, Bid)]
    declines = [a for a in answers if isinstance(a, Decline)]
    current = standing(executions, retried)
    holders = {e.node_id for e in current}
    rejects = {b.peer_id: "it already runs this job" for b in bids if b.peer_id in holders}
    eligible = [b for b in bids if b.peer_id not in holders]
    wanted = spec.count - len(current) if spec.target is Target.ANY else len(eligible)
    failures = Counter(e.node_id for e in executions if e.state in _FAILED or e.id in retried)
    awarded, passed_over = choose_awards(spec.target, max(wanted, 0), eligible, failures)
    rejects |= {b.peer_id: "another node was chosen" for b in passed_over}
    if spec.target is Target.ALL and (awarded or current):
        return RoundDecision(Outcome.AWARD if awarded else Outcome.NOTHING, awarded, rejects)
    if wanted <= 0:
        return RoundDecision(Outcome.NOTHING, (), rejects)
    missing = wanted - len(awarded)
    if missing == 0:
        return RoundDecision(Outcome.AWARD, awarded, rejects)
    # Fewer nodes than wanted took it: wait for the rest if it may, else fail it whole
    # (a --count 5 job does not quietly run on 2).
    reason = no_placement(declines)
    if awarded:
        reason = f"{len(awarded)} of the {wanted} nodes it needs took it; " + reason
    if (patient and not answers) or may_wait(spec, waited, busy=any(d.busy for d in declines)):
        return RoundDecision(
            Outcome.AWARD if awarded else Outcome.WAIT, awarded, rejects, reason, missing
        )
    rejects |= {b.peer_id: "the job cannot get all the nodes it needs" for b in awarded}
    return RoundDecision(Outcome.FAIL, (), rejects, reason)


def may_wait(spec: JobSpec, waited: float, *, busy: bool) -> bool:
    """Whether a job no node takes now may stay queued: within its queue timeout, or, with
    none, as long as some fitting node is only busy."""
    if spec.queue_timeout > 0:
        return waited < spec.queue_timeout
    return busy


def no_placement(declines: list[Decline]) -> str:
    """Every node's reason, or what to check when no node answered at all."""
    if not declines:
        return "no compute node answered: is any node with the compute role running and connected?"
    lines = [f"node {short_peer_id(d.peer_id)}: {d.reason}" for d in declines]
    return "no node accepted the job:\n" + "\n".join(lines)


def final_state(
    executions: list[ExecutionRecord], retried: Collection[str]
) -> tuple[bool, str] | None:
    """(completed?, reason) once every standing execution has ended; None while any runs.

    None too when nothing stands (the caller is placing the job again, or fails it).
    """
    current = standing(executions, retried)
    if not current or not all(e.state.is_terminal for e in current):
        return None
    failed = [e for e in current if e.state is not ExecutionState.COMPLETED]
    reason = "; ".join(f"{short_peer_id(e.node_id)}: {e.message or e.state}" for e in failed)
    return (not failed, reason)
