"""The requester role: accept jobs, announce them, award bids, collect results.

How one job is placed (``_place``): the job is already persisted as ``pending``. The
requester publishes a signed ``JobAnnounce``, offers the job to its own compute role
in-process (a hybrid node pays no network round trip to itself), and collects answers
until every healthy compute node it knows of has answered or the bid window closes.
``swarm.placement`` ranks the bids and picks the winners; each winner gets an award on
its bid stream, the others a reject. When nobody bids:

- if some node declined only because it is busy, the job waits as ``queued`` and is
  announced again when capacity frees up (an execution of ours ends) or a second later;
- otherwise the job fails at once, with every node's reason.

Results come back through ``ResultSession``s; when every execution of a job has ended,
the job is ``completed`` (all completed) or ``failed``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from swarm.errors import NotFound, ProtocolError, SwarmError
from swarm.jobspec import JobSpec
from swarm.lifecycle import ExecutionState, JobState
from swarm.placement import Bid, Decline, choose_awards, short_peer_id
from swarm.protocol import Award, JobAnnounce, Reject, ResultStart
from swarm.requester.bidding import Bidding
from swarm.requester.results import ResultStore
from swarm.requester.sessions import ResultSession
from swarm.requester.store import JobRecord, JobStore
from swarm.storage.blobs import BlobStore

BID_WINDOW = 1.0  # seconds to wait for nodes that have not answered
REQUEUE_INTERVAL = 1.0
# Announces in flight at once. Gossipsub queues at most 32 messages per peer and drops the
# rest silently, so a burst of hundreds of announces would lose some and leave their
# bidding rounds waiting out the whole window: placements are bounded instead.
PLACEMENTS_IN_FLIGHT = 16
BUSY_PREFIX = "queue full"


@dataclass(frozen=True)
class RequesterSettings:
    peer_id: str
    addresses: tuple[str, ...] = ()
    bid_window: float = BID_WINDOW


class LocalCompute:
    """What the requester needs of its own node's compute role (``ComputeService``)."""

    def consider(self, announce: JobAnnounce) -> Bid | Decline: ...
    def release(self, job_id: str) -> None: ...
    async def execute(self, award: Award, link) -> None: ...


class RequesterService:
    def __init__(
        self,
        *,
        settings: RequesterSettings,
        store: JobStore,
        results: ResultStore,
        blobs: BlobStore,
        publish: Callable[[JobAnnounce], Awaitable[None]],
        compute_peers: Callable[[], set[str]],
        local_compute: LocalCompute | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.results = results
        self.blobs = blobs
        self._publish = publish
        self._compute_peers = compute_peers
        self._local = local_compute
        self._bidding: dict[str, Bidding] = {}
        self._queued: deque[str] = deque()
        self._placements = trio.CapacityLimiter(PLACEMENTS_IN_FLIGHT)
        self._capacity_freed = trio.Event()
        self._job_ended: dict[str, trio.Event] = {}
        self._log_listeners: list[Callable[[str, str, bytes], None]] = []
        self._nursery: trio.Nursery | None = None

    # --- running -------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; jobs left pending or queued by a restart are placed again."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._recover_own_executions()
            for job in self.store.jobs_in_states([JobState.PENDING, JobState.QUEUED]):
                if job.state is JobState.PENDING:
                    nursery.start_soon(self._place, job.id)
                else:
                    self._queued.append(job.id)
            nursery.start_soon(self._requeue_loop)
            task_status.started()
            await trio.sleep_forever()

    def _recover_own_executions(self) -> None:
        """Executions this node was running itself died with its last process: mark them
        lost and place their jobs again. (Executions on other nodes may still report.)"""
        for job in self.store.jobs_in_states([JobState.RUNNING]):
            live = [e for e in self.store.executions(job.id) if not e.state.is_terminal]
            mine = [e for e in live if e.node_id == self.settings.peer_id]
            for execution in mine:
                self.store.set_execution_state(
                    execution.id, ExecutionState.LOST, message="the node restarted during the run"
                )
            if mine and len(mine) == len(live):
                self.store.set_job_state(
                    job.id, JobState.QUEUED, "its node restarted; placing it again"
                )

    # --- the API's side --------------------------------------------------------------

    def submit(self, spec: JobSpec) -> JobRecord:
        """Persist the job (committed before this returns), then place it in the background."""
        if spec.task.module_digest is None or not self.blobs.has(spec.task.module):
            raise NotFound(f"module {spec.task.module} is not on this node: upload it first")
        job = self.store.create_job(spec)
        self._nursery.start_soon(self._place, job.id)
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

    def add_log_listener(self, listener: Callable[[str, str, bytes], None]) -> None:
        self._log_listeners.append(listener)

    # --- placement -------------------------------------------------------------------

    async def _place(self, job_id: str) -> None:
        async with self._placements:
            await self._announce_and_award(job_id)

    async def _announce_and_award(self, job_id: str) -> None:
        job = self.store.get_job(job_id)
        if job.state is JobState.QUEUED:
            job = self.store.set_job_state(job_id, JobState.PENDING, "announced again")
        spec = job.spec
        announce = JobAnnounce(
            job_id=job.id,
            requester=self.settings.peer_id,
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
        bidding = Bidding(job.id, self._compute_peers() - {self.settings.peer_id})
        self._bidding[job.id] = bidding
        try:
            if bidding.expected:
                await self._publish(announce)
            if self._local is not None:
                bidding.answer(self._local.consider(announce))
            with trio.move_on_after(self.settings.bid_window):
                await bidding.all_answered.wait()
        finally:
            del self._bidding[job.id]
        self._decide(job, bidding)

    def _decide(self, job: JobRecord, bidding: Bidding) -> None:
        for answer in bidding.answers.values():
            if isinstance(answer, Decline):
                self.store.add_event(job.id, "decline", answer.reason, node_id=answer.peer_id)
        awarded, rejected = choose_awards(job.spec.target, job.spec.count, bidding.bids, {})
        replies: dict[str, Award | Reject] = {
            bid.peer_id: Reject(job.id, "another node was chosen") for bid in rejected
        }
        for bid in awarded:
            execution = self.store.add_execution(job.id, bid.peer_id, ExecutionState.ACCEPTED)
            replies[bid.peer_id] = Award(job.id, execution.id, job.spec)
        if awarded:
            names = ", ".join(short_peer_id(b.peer_id) for b in awarded)
            self.store.set_job_state(job.id, JobState.RUNNING, f"awarded to {names}")
        elif any(d.reason.startswith(BUSY_PREFIX) for d in bidding.declines):
            self.store.set_job_state(job.id, JobState.QUEUED, "every fitting node is busy")
            self._queued.append(job.id)
        else:
            self.store.set_job_state(job.id, JobState.FAILED, _no_placement(bidding))
            self._ended(job.id)
        bidding.decide(replies)
        self._answer_local(bidding)

    def _answer_local(self, bidding: Bidding) -> None:
        peer_id = self.settings.peer_id
        if self._local is None or peer_id not in bidding.answers:
            return
        reply = bidding._replies.get(peer_id)
        if isinstance(reply, Award):
            self._nursery.start_soon(self._local.execute, reply, LocalLink(self))
        elif isinstance(bidding.answers[peer_id], Bid):
            self._local.release(bidding.job_id)

    async def _requeue_loop(self) -> None:
        """Announce queued jobs again as capacity frees up, oldest first."""
        while True:
            with trio.move_on_after(REQUEUE_INTERVAL):
                await self._capacity_freed.wait()
            self._capacity_freed = trio.Event()
            for _ in range(min(len(self._queued), PLACEMENTS_IN_FLIGHT)):
                self._nursery.start_soon(self._place, self._queued.popleft())

    # --- bids from remote nodes ----------------------------------------------------

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
        self.store.set_execution_state(execution.id, ExecutionState.RUNNING)
        job = self.store.get_job(execution.job_id)
        return ResultSession(
            store=self.store,
            execution=execution,
            writer=self.results.writer(job.id, execution.id, caps=job.spec.task.caps),
            on_log=self._log,
            on_end=self._execution_ended,
        )

    def _log(self, job_id: str, stream: str, data: bytes) -> None:
        for listener in self._log_listeners:
            listener(job_id, stream, data)

    def _execution_ended(self, job_id: str) -> None:
        self._capacity_freed.set()
        replaced = (ExecutionState.LOST, ExecutionState.CANCELLED)
        executions = [e for e in self.store.executions(job_id) if e.state not in replaced]
        if not executions or not all(e.state.is_terminal for e in executions):
            return
        ok = all(e.state is ExecutionState.COMPLETED for e in executions)
        failed = [e for e in executions if e.state is not ExecutionState.COMPLETED]
        reason = (
            ""
            if ok
            else "; ".join(f"{short_peer_id(e.node_id)}: {e.message or e.state}" for e in failed)
        )
        self.store.set_job_state(job_id, JobState.COMPLETED if ok else JobState.FAILED, reason)
        self._ended(job_id)

    def _ended(self, job_id: str) -> None:
        event = self._job_ended.pop(job_id, None)
        if event is not None:
            event.set()


class LocalLink:
    """A hybrid node's compute role reaching its own requester: plain calls."""

    def __init__(self, requester: RequesterService) -> None:
        self.requester = requester

    async def fetch_module(self, digest: str, blobs: BlobStore) -> None:
        if not blobs.has(digest):
            with self.requester.blobs.open(digest) as source, blobs.writer(digest) as writer:
                while chunk := source.read(1 << 20):
                    writer.write(chunk)
                writer.commit()

    @asynccontextmanager
    async def open_results(self, award: Award):
        start = ResultStart(award.job_id, award.execution_id)
        session = self.requester.open_session(self.requester.settings.peer_id, start)
        try:
            yield session
        except BaseException as exc:
            session.abort(f"the run was interrupted: {exc!r}"[:300])
            raise
        except SwarmError as exc:  # pragma: no cover - BaseException above catches first
            session.abort(str(exc))
            raise


def _no_placement(bidding: Bidding) -> str:
    if not bidding.answers:
        return "no compute node answered: is any node with the compute role running and connected?"
    lines = [f"node {short_peer_id(d.peer_id)}: {d.reason}" for d in bidding.declines]
    return "no node accepted the job:\n" + "\n".join(lines)
