"""The requester role: accept jobs, place them, keep them placed, collect results.

How one job is placed (``_place``): the job is already persisted. A hybrid node first
offers the job to its own compute role in-process (no network round trip to itself): a
one-node job that needs no data runs there at once if it has room, without an announce.
Otherwise the requester publishes a signed ``JobAnnounce`` (together with the other
rounds of the moment, see ``AnnounceBatcher``) and collects answers until every
healthy compute node it knows of has answered or the bid window closes. The pure
``swarm.requester.decisions`` then says what to do: award the best bids (the others get
a reject), keep the job *queued* (some fitting node is only busy, or the job has a queue
timeout), or fail it at once with every node's reason.

Keeping jobs placed:

- queued jobs are announced again when capacity frees up (one of our executions ends),
  when a compute node joins, and every ``requeue_interval`` seconds, oldest first, one per
  sign of room (``JobQueue``); while rounds find room to spare the next ones follow at
  once. Room freed by an ended execution goes to the oldest waiting job: the round takes
  that node's bid without waiting for the others, unless the job needs several nodes,
  ran there before, or needs data the node does not hold. Our own node's room is taken
  without announcing; a remote node is offered the job in its result's ack, and the
  swarm is asked only if it does not take it (``_offer_room``). Once every fitting node
  is busy, new jobs join the queue's end without a round until it has drained (or a
  round finds no node busy);
  a queue timeout fails the job with the reasons of its last round; a round that every
  expected node leaves unanswered is tried again a few times before the job fails;
- an execution whose node is lost (result stream cut, heartbeats missed, restarted,
  unreachable: ``_watch_loop`` asks ``liveness``) or that failed for a reason another
  node may not have is *retried*: the job is placed again, preferring nodes that have
  not failed it, up to ``retries`` times; its partial result is removed, so a result is
  stored once; a node that just lost an execution is not waited for in the next rounds;
- ``stop`` cancels every live execution (remote nodes get a ``Cancel``) and ends the job
  ``stopped``;
- after a restart, every execution that was live died with the last process (our own
  runs, and remote ones whose result stream broke with it): their jobs are placed
  again; pending and queued jobs are placed again as they were.

Results come back through ``ResultSession``s; when every standing execution of a job has
ended, the job is ``completed`` (all completed) or ``failed``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import trio

from swarm.errors import ConfigError, NotFound, ProtocolError, StorageError
from swarm.jobspec import JobSpec, Target
from swarm.lifecycle import ExecutionState, JobState
from swarm.placement import Bid, Decline, short_peer_id
from swarm.protocol import Award, Cancel, JobAnnounce, JobAnnounces, Reject, ResultStart
from swarm.requester.batching import AnnounceBatcher
from swarm.requester.bidding import Bidding
from swarm.requester.decisions import Outcome, decide_round, final_state, standing
from swarm.requester.local import LocalLink
from swarm.requester.queue import JobQueue
from swarm.requester.results import ResultStore
from swarm.requester.sessions import ResultSession
from swarm.requester.store import ExecutionRecord, JobRecord, JobStore
from swarm.storage.blobs import BlobStore

BID_WINDOW = 1.0  # seconds to wait for nodes that have not answered
OFFER_WINDOW = 0.5  # seconds a node offered a job in its result's ack has to answer
DISCOVERY = 5.0  # seconds after start in which unanswered jobs wait for nodes to be found
SILENT_ROUNDS = 3  # rounds every expected node may leave unanswered before the job fails
SUSPECT_FOR = 10.0  # seconds a node that lost an execution is not waited for in rounds
REQUEUE_INTERVAL = 1.0
WATCH_INTERVAL = 0.5
# Announces in flight at once. Gossipsub queues at most 32 messages per peer and drops the
# rest silently, so a burst of hundreds of announces would lose some and leave their
# bidding rounds waiting out the whole window: placements are bounded instead.
PLACEMENTS_IN_FLIGHT = 16
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequesterSettings:
    peer_id: str
    addresses: tuple[str, ...] = ()
    bid_window: float = BID_WINDOW
    requeue_interval: float = REQUEUE_INTERVAL


class LocalCompute(Protocol):
    """What the requester needs of its own node's compute role (``ComputeService``)."""

    def consider(self, announce: JobAnnounce) -> Bid | Decline: ...
    def release(self, job_id: str) -> None: ...
    def cancel(self, execution_id: str, requester: str) -> bool: ...
    async def execute(self, award: Award, link, *, requester: str) -> None: ...


class Liveness(Protocol):
    """Whether a remote node running an execution is still there (``PeerLiveness``)."""

    def boot(self, peer_id: str) -> float | None: ...
    def problem(self, peer_id: str, boot_at_award: float | None) -> str | None: ...


@dataclass(frozen=True)
class _Watch:
    job_id: str
    node_id: str
    boot: float | None  # the node's start time when it was awarded the execution


class RequesterService:
    def __init__(
        self,
        *,
        settings: RequesterSettings,
        store: JobStore,
        results: ResultStore,
        blobs: BlobStore,
        publish: Callable[[JobAnnounces], Awaitable[None]],
        compute_peers: Callable[[], set[str]],
        liveness: Liveness,
        send_cancel: Callable[[str, Cancel], Awaitable[None]],
        local_compute: LocalCompute | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.results = results
        self.blobs = blobs
        self._announcer = AnnounceBatcher(publish)
        self._compute_peers = compute_peers
        self._liveness = liveness
        self._send_cancel = send_cancel
        self._local = local_compute
        self._clock = clock
        self._bidding: dict[str, Bidding] = {}
        self._placing: Counter[str] = Counter()  # placements scheduled or bidding, per job
        self._silent: Counter[str] = Counter()  # rounds in a row nobody answered, per job
        self._lost_nodes: dict[str, float] = {}  # node → when an execution on it was lost
        self._queue = JobQueue()
        self._room_on: deque[str] = deque(maxlen=64)  # nodes whose room just freed up
        self._placements = trio.CapacityLimiter(PLACEMENTS_IN_FLIGHT)
        self._watched: dict[str, _Watch] = {}  # execution id → its remote node
        self._offers: dict[str, JobAnnounce] = {}  # execution id → job for its result's ack
        self._sessions: dict[str, ResultSession] = {}
        self._job_ended: dict[str, trio.Event] = {}
        self._log_events: dict[str, trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self._started = clock()
        self._saturated = False  # the last round found every fitting node busy

    @property
    def peer_id(self) -> str:
        return self.settings.peer_id

    # --- running -------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; what a restart interrupted is placed again first."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._started = self._clock()
            self._recover()
            nursery.start_soon(self._announcer.run)
            nursery.start_soon(self._requeue_loop)
            nursery.start_soon(self._watch_loop)
            task_status.started()
            await trio.sleep_forever()

    def _recover(self) -> None:
        states = [JobState.PENDING, JobState.QUEUED, JobState.RUNNING]
        for job in self.store.jobs_in_states(states):
            if job.state is JobState.PENDING:
                self._schedule(job.id)
            elif job.state is JobState.QUEUED:
                self._enqueue(job, job.reason)
            else:
                live = [e for e in self.store.executions(job.id) if not e.state.is_terminal]
                for execution in live:
                    self._lose(execution, "the requester restarted during the run", suspect=False)
                if not live:  # every result arrived just before the restart
                    self._finish_if_done(job.id)
        self._queue.wake.set()

    # --- the API's side --------------------------------------------------------------

    def submit(self, spec: JobSpec) -> JobRecord:
        """Persist the job (committed before this returns), then place it in the background."""
        if spec.task.module_digest is None or not self.blobs.has(spec.task.module):
            raise NotFound(f"module {spec.task.module} is not on this node: upload it first")
        job = self.store.create_job(spec)
        if self._must_queue():
            return self._join_line(job)
        self._schedule(job.id)
        return job

    def _must_queue(self) -> bool:
        """Every fitting node was busy and jobs are waiting: a new job joins the line (first
        come, first served) rather than ask a swarm that has just said no."""
        return self._saturated and len(self._queue) > 0

    def _join_line(self, job: JobRecord) -> JobRecord:
        job = self.store.set_job_state(
            job.id, JobState.QUEUED, f"waiting behind {len(self._queue)} queued jobs"
        )
        self._enqueue(job, job.reason)
        return job

    async def wait(self, job_id: str, timeout: float) -> JobRecord:
        """The job once it has ended, or as it is after ``timeout`` seconds."""
        job = self.store.get_job(job_id)
        if not job.state.is_terminal:
            event = self._job_ended.setdefault(job.id, trio.Event())
            with trio.move_on_after(timeout):
                await event.wait()
            job = self.store.get_job(job.id)
        return job

    def stop(self, job_id: str) -> JobRecord:
        """Cancel the job: live executions are stopped where they run; it ends ``stopped``."""
        job = self.store.get_job(job_id)
        if job.state.is_terminal:
            raise ConfigError(f"job {job.id} has already ended ({job.state}): nothing to stop")
        self._queue.remove(job.id)
        self._cancel_live(job.id, "the job was stopped")
        job = self.store.set_job_state(job.id, JobState.STOPPED, "stopped by the user")
        self._ended(job.id)
        return job

    def log_event(self, job_id: str) -> trio.Event:
        """Set when the job's stdout/stderr grows or the job ends (for `swarm logs -f`)."""
        return self._log_events.setdefault(job_id, trio.Event())

    # --- placement -------------------------------------------------------------------

    def _schedule(self, job_id: str, room_on: str | None = None) -> None:
        self._placing[job_id] += 1  # counted before it starts: never neither queued nor placing
        self._nursery.start_soon(self._place, job_id, room_on)

    def _may_prefer(self, job: JobRecord, node: str, peers: set[str]) -> bool:
        """Whether ``node``'s bid alone may place ``job`` (no other node's answer awaited):
        a one-node job that has not run on it before, from this node or a healthy ``peer``."""
        if job.spec.count != 1 or job.spec.target is not Target.ANY:
            return False
        if node != self.peer_id and node not in peers:
            return False
        return all(e.node_id != node for e in self.store.executions(job.id))

    def _enqueue(self, job: JobRecord, reason: str, *, back: bool = False) -> None:
        timeout = job.spec.queue_timeout
        deadline = job.created + timeout if timeout > 0 else math.inf
        self._queue.add(job.id, deadline=deadline, reason=reason, back=back)

    async def _place(self, job_id: str, room_on: str | None = None) -> Outcome | None:
        """One placement round (the caller has counted it in ``_placing``); ``room_on``: the
        node whose room has just freed up for this job, if any."""
        try:
            async with self._placements:
                return await self._announce_and_award(job_id, room_on)
        finally:
            self._placed(job_id)

    def _placed(self, job_id: str) -> None:
        """A round counted in ``_placing`` is over."""
        self._placing[job_id] -= 1
        if not self._placing[job_id]:
            del self._placing[job_id]

    async def _announce_and_award(self, job_id: str, room_on: str | None) -> Outcome | None:
        while (current := self._bidding.get(job_id)) is not None:
            await current.wait_decided()  # one round at a time per job
        job = self.store.get_job(job_id)
        if job.state.is_terminal:
            return None
        if job.state is JobState.PENDING and self._must_queue():
            self._join_line(job)  # the swarm filled up while this job waited for its round
            return Outcome.WAIT
        announce = self._announce(job)
        peers = self._compute_peers() - {self.peer_id}
        if room_on is not None and not self._may_prefer(job, room_on, peers):
            room_on = None
        if room_on is None and self._local is not None and not job.spec.task.inputs:
            # Any node will do for a job that reads no data, and ours costs no network: with
            # room here it runs here, and the swarm is asked only when we have none.
            if self._may_prefer(job, self.peer_id, peers):
                room_on = self.peer_id
        bidding = self._open_bidding(job, peers, room_on)
        try:
            await self._collect(announce, bidding)
        finally:
            del self._bidding[job.id]
        return self._decide(job.id, bidding)

    def _open_bidding(self, job: JobRecord, peers: set[str], preferred: str | None) -> Bidding:
        # A node just lost is not waited for (it may still answer, and is heard if it does),
        # unless there is no one else to wait for.
        bidding = Bidding(
            job.id,
            (peers - self._suspects()) or peers,
            preferred=preferred,
            needs_data=bool(job.spec.task.inputs),
        )
        self._bidding[job.id] = bidding
        return bidding

    def _announce(self, job: JobRecord) -> JobAnnounce:
        spec = job.spec
        return JobAnnounce(
            job_id=job.id,
            requester=self.peer_id,
            seq=time.time_ns(),
            module=spec.task.module,
            module_size=self.blobs.size(spec.task.module),
            resources=spec.resources,
            constraints=spec.constraints,
            inputs=spec.task.inputs,
            target=spec.target,
            count=spec.count,
            addresses=self.settings.addresses,
        )

    async def _collect(self, announce: JobAnnounce, bidding: Bidding) -> None:
        """Our own compute role's answer, then the swarm's unless ours settles it (our own
        room, freed for this job, needs no one else's answer)."""
        if self._local is not None:
            bidding.answer(self._local.consider(announce))
        if bidding.expected and not bidding.answered.is_set():
            await self._announcer.publish(announce)
        with trio.move_on_after(self.settings.bid_window):
            await bidding.answered.wait()

    def _offer_room(self, execution: ExecutionRecord) -> bool:
        """Offer the oldest waiting job to the remote node whose result has just ended, in
        that result's ack (``take_offers``); False if there is none it may take alone.

        The node answers on its bid stream as if the job had been announced, so the
        round is the one a room-freed node gets anyway, without the gossip message, the
        other nodes' answers and the announce batcher's gap. Only if the node does not
        settle it within ``OFFER_WINDOW`` is the swarm asked (``_collect``), unless it
        answered that it is busy: its room went to another job meanwhile, so no room was
        lost, and the job goes back to its place in line.
        """
        node = execution.node_id
        if node == self.peer_id:
            return False
        job_id = self._queue.oldest_for(node)
        if job_id is None or job_id in self._bidding:
            return False
        job = self.store.get_job(job_id)
        peers = self._compute_peers() - {self.peer_id}
        if job.state.is_terminal or not self._may_prefer(job, node, peers):
            return False
        self._queue.remove(job_id)
        announce = self._announce(job)
        bidding = self._open_bidding(job, peers, node)
        self._placing[job.id] += 1
        self._offers[execution.id] = announce
        self._nursery.start_soon(self._offered, execution.id, announce, bidding)
        return True

    def take_offers(self, execution_id: str) -> tuple[JobAnnounce, ...]:
        """The jobs offered to the node of ``execution_id``, for its result's ack."""
        announce = self._offers.pop(execution_id, None)
        return () if announce is None else (announce,)

    async def _offered(self, execution_id: str, announce: JobAnnounce, bidding: Bidding) -> None:
        job_id = announce.job_id
        try:
            try:
                with trio.move_on_after(OFFER_WINDOW):
                    await bidding.preferred_answered.wait()
                self._offers.pop(execution_id, None)  # (if the ack never took it)
                answer = bidding.answers.get(bidding.preferred)
                # Busy: the room went to another job meanwhile; this one keeps its place
                # in line for the next room. Anything else (it does not fit, or silence):
                # everyone is asked.
                busy = isinstance(answer, Decline) and answer.busy
                if not bidding.answered.is_set() and not busy:
                    await self._collect(announce, bidding)
            finally:
                del self._bidding[job_id]
            self._decide(job_id, bidding)
        finally:
            self._placed(job_id)

    def _decide(self, job_id: str, bidding: Bidding) -> Outcome:
        job = self.store.get_job(job_id)  # afresh: it may have been stopped meanwhile
        self._record_declines(job, bidding.declines)
        if job.state.is_terminal:
            bidding.decide({p: Reject(job.id, f"the job is {job.state}") for p in bidding.answers})
            self._answer_local(bidding)
            return Outcome.NOTHING
        decision = decide_round(
            job.spec,
            self.store.executions(job.id),
            self.store.retried(job.id),
            bidding.answers.values(),
            waited=self._clock() - job.created,
            patient=self._clock() - self._started < DISCOVERY
            or (bool(bidding.expected) and self._silent[job.id] < SILENT_ROUNDS),
        )
        if bidding.answers:
            self._silent.pop(job.id, None)
        else:
            self._silent[job.id] += 1
        replies: dict[str, Award | Reject] = {
            peer: Reject(job.id, why) for peer, why in decision.rejects.items()
        }
        room = any(b.capacity > 0 or b.peer_id in decision.rejects for b in bidding.bids)
        busy = any(d.busy for d in bidding.declines)
        if room and len(self._queue):
            self._queue.wake.set()  # a node has room to spare: the next queued job may have it
        # Saturated until the line drains (or a round finds nobody busy): while queued jobs
        # are let go as room frees up, new jobs wait behind them instead of asking first.
        if busy and not room and decision.outcome is not Outcome.FAIL:
            self._saturated = True
        elif not busy or not len(self._queue):
            self._saturated = False
        if not len(self._queue):
            self._room_on.clear()  # room noted for waiting jobs: none wait any more
        if decision.outcome is Outcome.AWARD:
            for bid in decision.awards:
                execution = self.store.add_execution(job.id, bid.peer_id, ExecutionState.ACCEPTED)
                replies[bid.peer_id] = Award(job.id, execution.id, job.spec)
                if bid.peer_id != self.peer_id:
                    self._watched[execution.id] = _Watch(
                        job.id, bid.peer_id, self._liveness.boot(bid.peer_id)
                    )
            names = ", ".join(short_peer_id(b.peer_id) for b in decision.awards)
            if job.state is JobState.RUNNING:
                self.store.add_event(job.id, "award", f"also awarded to {names}")
            else:
                self.store.set_job_state(job.id, JobState.RUNNING, f"awarded to {names}")
            if decision.missing:  # more nodes wanted: the rest waits in the queue
                self.store.add_event(job.id, "queued", _waiting(decision.reason))
                self._enqueue(job, decision.reason, back=not busy)
        elif decision.outcome is Outcome.WAIT:
            if job.state is JobState.PENDING:
                self.store.set_job_state(job.id, JobState.QUEUED, _waiting(decision.reason))
            # A job that only met busy nodes keeps its place in line; one no node could
            # take at all goes to the back, not to hold up the jobs behind it.
            self._enqueue(job, decision.reason, back=not busy)
        elif decision.outcome is Outcome.FAIL:
            bidding.decide(replies)
            self._answer_local(bidding)
            self._fail(job, decision.reason)
            return decision.outcome
        bidding.decide(replies)
        self._answer_local(bidding)
        if decision.outcome is Outcome.NOTHING:
            self._finish_if_done(job.id)
        return decision.outcome

    def _suspects(self) -> set[str]:
        now = self._clock()
        for peer, at in list(self._lost_nodes.items()):
            if now - at >= SUSPECT_FOR:
                del self._lost_nodes[peer]
        return set(self._lost_nodes)

    def _record_declines(self, job: JobRecord, declines: list[Decline]) -> None:
        """Log each node's reason, once per reason (a queued job is announced often); note
        the nodes that cannot take the job at all, so their room goes to other jobs."""
        if not declines:
            return  # (most rounds: no need to read the job's events)
        for decline in declines:
            if not decline.busy:
                self._queue.unfit(job.id, decline.peer_id)
        seen = {(e.node_id, e.message) for e in self.store.events(job.id) if e.kind == "decline"}
        for decline in declines:
            if (decline.peer_id, decline.reason) not in seen:
                self.store.add_event(job.id, "decline", decline.reason, node_id=decline.peer_id)

    def _answer_local(self, bidding: Bidding) -> None:
        if self._local is None or self.peer_id not in bidding.answers:
            return
        reply = bidding.reply(self.peer_id)
        if isinstance(reply, Award):
            self._nursery.start_soon(
                partial(self._local.execute, reply, LocalLink(self), requester=self.peer_id)
            )
        elif isinstance(bidding.answers[self.peer_id], Bid):
            self._local.release(bidding.job_id)

    async def handle_bid(self, peer_id: str, decision: Bid | Decline) -> Award | Reject | None:
        """A remote node's answer; returns its reply once decided (None for a decline)."""
        bidding = self._bidding.get(decision.job_id)
        if bidding is None:
            return (
                None
                if isinstance(decision, Decline)
                else Reject(decision.job_id, "bidding has closed")
            )
        bidding.answer(decision)
        if isinstance(decision, Decline):
            return None
        return await bidding.reply_for(peer_id)

    async def _requeue_loop(self) -> None:
        """Announce queued jobs again as capacity frees up or nodes join, oldest first."""
        while True:
            with trio.move_on_after(self.settings.requeue_interval):
                await self._queue.wake.wait()
            self._queue.rewake()
            self._expire_queued()
            # Rounds run on their own: room that frees up meanwhile is used at once. A node
            # whose room has just freed up is offered the oldest job it can take; the rest
            # of the batch (at least one job when no room was offered) is asked of all.
            offered = 0
            while self._room_on and offered < PLACEMENTS_IN_FLIGHT:
                node = self._room_on.popleft()
                job_id = self._queue.take_for(node)
                if job_id is not None:
                    self._schedule(job_id, node)
                    offered += 1
            for job_id in self._queue.next_batch(
                self._compute_peers(), PLACEMENTS_IN_FLIGHT - offered, at_least=int(not offered)
            ):
                self._schedule(job_id)

    def _expire_queued(self) -> None:
        for job_id in self._queue.expired(self._clock()):
            job = self.store.get_job(job_id)
            if not job.state.is_terminal:
                reasons = self._queue.reason(job_id) or job.reason
                timeout = job.spec.queue_timeout
                self._fail(
                    job, f"still not placed after its queue timeout ({timeout:g} s); " + reasons
                )

    # --- keeping jobs placed -----------------------------------------------------------

    async def _watch_loop(self) -> None:
        while True:
            await trio.sleep(WATCH_INTERVAL)
            for execution_id, watch in list(self._watched.items()):
                reason = self._liveness.problem(watch.node_id, watch.boot)
                if reason is None or execution_id not in self._watched:
                    continue
                session = self._sessions.get(execution_id)
                if session is not None:
                    session.abort(reason)  # calls _lose
                else:
                    self._lose(self.store.get_execution(execution_id), reason)

    def _lose(self, execution: ExecutionRecord, reason: str, *, suspect: bool = True) -> None:
        """The execution's node is gone (or its result broke off): place the job again."""
        self._watched.pop(execution.id, None)
        self._sessions.pop(execution.id, None)
        if execution.state.is_terminal:
            return
        execution = self.store.set_execution_state(
            execution.id, ExecutionState.LOST, message=reason
        )
        if suspect and execution.node_id != self.peer_id:
            self._lost_nodes[execution.node_id] = self._clock()
        self.results.discard(execution.job_id, execution.id)
        self._queue.freed()
        self._retry(execution, reason)

    def _retry(self, execution: ExecutionRecord, reason: str) -> None:
        job = self.store.get_job(execution.job_id)
        if job.state.is_terminal:
            return
        used, allowed = len(self.store.retried(job.id)), job.spec.retries
        if used >= allowed:
            self._fail(job, f"{reason}; no retries left ({allowed} allowed)")
            return
        self.store.add_event(
            job.id,
            "retry",
            f"{reason}: placing the job again (retry {used + 1} of {allowed})",
            execution_id=execution.id,
            node_id=execution.node_id,
        )
        retried = self.store.retried(job.id)
        live = [
            e for e in standing(self.store.executions(job.id), retried) if not e.state.is_terminal
        ]
        if not live and job.state is JobState.RUNNING:
            self.store.set_job_state(job.id, JobState.QUEUED, f"placing it again: {reason}")
        self._schedule(job.id)

    def _fail(self, job: JobRecord, reason: str) -> None:
        self._queue.remove(job.id)
        self._cancel_live(job.id, "the job failed")
        self.store.set_job_state(job.id, JobState.FAILED, reason)
        self._ended(job.id)

    def _cancel_live(self, job_id: str, reason: str) -> None:
        for execution in self.store.executions(job_id):
            if execution.state.is_terminal:
                continue
            self.store.set_execution_state(execution.id, ExecutionState.CANCELLED, message=reason)
            self._watched.pop(execution.id, None)
            session = self._sessions.pop(execution.id, None)
            if session is not None:
                session.withdraw()
            if execution.node_id == self.peer_id and self._local is not None:
                self._local.cancel(execution.id, self.peer_id)
            else:
                cancel = Cancel(job_id, execution.id)
                self._nursery.start_soon(self._send_cancel, execution.node_id, cancel)
            self._queue.freed()

    # --- results -------------------------------------------------------------------

    def open_session(self, peer_id: str, start: ResultStart) -> ResultSession:
        """Begin receiving an execution's results; only its awarded node may send them."""
        try:
            execution = self.store.get_execution(start.execution_id)
        except NotFound:
            raise ProtocolError(f"results for unknown execution {start.execution_id}") from None
        if execution.node_id != peer_id or execution.job_id != start.job_id:
            raise ProtocolError(
                f"{short_peer_id(peer_id)} sent results for an execution it was not awarded"
            )
        if execution.state is not ExecutionState.ACCEPTED:
            raise ProtocolError(
                f"execution {execution.id[:8]} is {execution.state}, not awaiting results"
            )
        job = self.store.get_job(execution.job_id)
        try:
            writer = self.results.writer(job.id, execution.id, caps=job.spec.task.caps)
        except StorageError as exc:  # e.g. a full disk: another node's run would not help
            self.store.set_execution_state(execution.id, ExecutionState.FAILED, message=str(exc))
            self._watched.pop(execution.id, None)
            self._queue.freed()
            self._fail(job, f"results cannot be stored on this node: {exc}")
            raise
        execution = self.store.set_execution_state(execution.id, ExecutionState.RUNNING)
        session = ResultSession(
            store=self.store,
            execution=execution,
            writer=writer,
            on_log=self._logged,
            on_end=self._execution_ended,
            on_lost=self._lose,
        )
        self._sessions[execution.id] = session
        return session

    def _logged(self, job_id: str) -> None:
        event = self._log_events.pop(job_id, None)
        if event is not None:
            event.set()

    def _execution_ended(self, execution: ExecutionRecord, retryable: bool) -> None:
        self._watched.pop(execution.id, None)
        self._sessions.pop(execution.id, None)
        if retryable or not self._offer_room(execution):
            self._queue.freed()
            if len(self._queue):
                self._room_on.append(execution.node_id)
        if retryable:
            self._retry(execution, f"{short_peer_id(execution.node_id)}: {execution.message}")
        self._finish_if_done(execution.job_id)

    def _finish_if_done(self, job_id: str) -> None:
        job = self.store.get_job(job_id)
        if job.state.is_terminal or job_id in self._placing or job_id in self._queue:
            return
        done = final_state(self.store.executions(job_id), self.store.retried(job_id))
        if done is None:
            return
        ok, reason = done
        self.store.set_job_state(job_id, JobState.COMPLETED if ok else JobState.FAILED, reason)
        self._ended(job_id)

    def _ended(self, job_id: str) -> None:
        self._queue.forget(job_id)
        self._silent.pop(job_id, None)
        for events in (self._job_ended, self._log_events):
            event = events.pop(job_id, None)
            if event is not None:
                event.set()


def _waiting(reason: str) -> str:
    return "waiting for a node that can take it; " + reason
