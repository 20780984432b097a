"""The compute role: decide bids, run awarded executions, send results back.

A compute node bids only for what it can start now: a bid reserves a job slot and the
job's resources (CPU, memory, GPUs), so two announces arriving together cannot both be
promised the last of them. The reservation is released on a reject, or carried by the
awarded execution until its guest has run (delivering the outputs afterwards overlaps
with the next run). A node with no room declines as *busy*; the requester keeps the
job queued and asks again when capacity frees up, so a busy node never holds a job an
idle one could run.

Every execution runs in its own cancel scope: the requester that awarded it may cancel
it (``swarm job stop``), which stops the guest at once.

How the node reaches the requester (in-process for a hybrid node's own jobs, libp2p
streams otherwise) is a ``RequesterLink``; this module does not know which.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import trio

from swarm.compute.inputs import input_facts
from swarm.compute.provision import DEFAULT_FETCH_CAP, prepare_mounts
from swarm.compute.scratch import OUTPUTS, ScratchFolders
from swarm.concurrency import StepsOnLoop, open_nursery
from swarm.config import Dataset
from swarm.errors import SwarmError
from swarm.executor import Executor, OutputChunk, RunResult, RunSpec
from swarm.jobspec import ResourceRequest
from swarm.models import AllowedPath, Role
from swarm.placement import Bid, Decline, NodeView, decide_bid, node_labels
from swarm.protocol import Award, JobAnnounce, Log, Outputs, ResultEnd, RunEnd
from swarm.storage.archive import StreamChunk, stream_steps
from swarm.storage.blobs import BlobStore

MAX_MODULE_SIZE = 256 * 1024 * 1024
logger = logging.getLogger(__name__)


class ResultChannel(Protocol):
    async def send(self, message: Log | RunEnd | Outputs | ResultEnd) -> None: ...


class RequesterLink(Protocol):
    """How a compute node reaches the requester that awarded it an execution."""

    async def fetch_module(self, digest: str, blobs: BlobStore) -> None:
        """Put the module ``digest`` into ``blobs`` (verified), or raise SwarmError."""

    def open_results(self, award: Award) -> AbstractAsyncContextManager[ResultChannel]:
        """A channel for one execution's results; leaving it waits for the requester's ack."""


@dataclass(frozen=True)
class ComputeSettings:
    peer_id: str
    name: str
    cpu: int
    memory: int
    gpus: int
    labels: Mapping[str, str]
    allowed_paths: tuple[AllowedPath, ...]
    datasets: tuple[Dataset, ...] = ()
    fetch_cap: int = DEFAULT_FETCH_CAP  # bytes the URL inputs of one execution may download
    fetch_private_urls: bool = False  # URL inputs may reach loopback/private/link-local hosts
    max_jobs: int = 1
    trusted_requesters: frozenset[str] | None = None


class ComputeService:
    def __init__(
        self,
        *,
        settings: ComputeSettings,
        executor: Executor,
        blobs: BlobStore,
        work_dir: Path,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        """``on_change`` is called whenever ``running`` or ``queued`` changes."""
        self.settings = settings
        self._on_change = on_change or (lambda: None)
        self.executor = executor
        self.blobs = blobs
        self.work_dir = work_dir
        self._scratch = ScratchFolders(work_dir)
        self._bids: dict[str, ResourceRequest] = {}  # job id → reserved by an open bid
        self._runs: dict[str, ResourceRequest] = {}  # execution id → reserved by its run
        self._cancels: dict[str, tuple[str, trio.CancelScope]] = {}  # execution → requester
        self._labels = node_labels(
            settings.labels,
            name=settings.name,
            os_name=platform.system().lower(),
            arch=platform.machine().lower(),
            gpus=settings.gpus,
        )

    @property
    def running(self) -> int:
        """Executions whose guest is running or about to (their resources are reserved)."""
        return len(self._runs)

    @property
    def queued(self) -> int:
        """Bids out, awaiting the requester's answer (each holds a reservation)."""
        return len(self._bids)

    def view(self) -> NodeView:
        s = self.settings
        reserved = [*self._bids.values(), *self._runs.values()]
        return NodeView(
            peer_id=s.peer_id,
            roles=frozenset({Role.COMPUTE}),
            cpu=s.cpu,
            memory=s.memory,
            gpu=s.gpus,
            free_cpu=s.cpu - sum(r.cpu for r in reserved),
            free_memory=s.memory - sum(r.memory for r in reserved),
            free_gpu=s.gpus - sum(r.gpu for r in reserved),
            labels=self._labels,
            allowed_paths=s.allowed_paths,
            datasets=tuple(dataset.name for dataset in s.datasets),
            running=self.running,
            queued=self.queued,
            max_jobs=s.max_jobs,
            trusted_requesters=s.trusted_requesters,
        )

    def consider(self, announce: JobAnnounce) -> Bid | Decline:
        """Bid or decline; a bid reserves room until ``release`` or ``execute``."""
        if announce.job_id in self._bids:  # announced again before our first bid was answered
            return Decline(announce.job_id, self.settings.peer_id, "already bidding", busy=True)
        s = self.settings
        facts = input_facts((i.source for i in announce.inputs), s.allowed_paths, s.datasets)
        decision = decide_bid(announce.offer(), self.view(), facts)
        if isinstance(decision, Bid):
            self._bids[announce.job_id] = announce.resources
            self._on_change()
        return decision

    def release(self, job_id: str) -> None:
        """The bid for ``job_id`` was rejected or went unanswered."""
        if self._bids.pop(job_id, None) is not None:
            self._on_change()

    def cancel(self, execution_id: str, requester: str) -> bool:
        """Stop an execution for the requester that awarded it; False if there is none."""
        entry = self._cancels.get(execution_id)
        if entry is None or entry[0] != requester:
            return False
        entry[1].cancel()
        return True

    async def execute(self, award: Award, link: RequesterLink, *, requester: str) -> None:
        """Run one awarded execution to its end and deliver its results over ``link``.

        ``requester`` is the peer id of the awarding requester: only it may cancel.
        """
        resources = self._bids.pop(award.job_id, None) or award.spec.resources
        self._runs[award.execution_id] = resources
        self._on_change()
        with trio.CancelScope() as scope:
            self._cancels[award.execution_id] = (requester, scope)
            try:
                await self._run(award, link)
            except SwarmError as exc:  # the requester is gone or refused: nothing to tell
                logger.warning("execution %s ended without delivery: %s", award.execution_id, exc)
            finally:
                self._runs.pop(award.execution_id, None)
                del self._cancels[award.execution_id]
                self._on_change()
        if scope.cancelled_caught:
            logger.info("execution %s cancelled by its requester", award.execution_id)

    async def _run(self, award: Award, link: RequesterLink) -> None:
        work = self._scratch.take(award.execution_id)
        try:
            async with link.open_results(award) as results:
                try:
                    result = await self._guest(award, work, link, results)
                except SwarmError as exc:  # the job could not run here: say why
                    self._runs.pop(award.execution_id, None)
                    await results.send(_run_end_without_run(str(exc), retryable=exc.retryable))
                else:
                    await results.send(_run_end(result))
                    if result.outputs_bytes or _has_entries(work / OUTPUTS):
                        await _send_outputs(work / OUTPUTS, results)
                    # (an empty /outputs sends no archive: the requester makes the empty folder)
                await results.send(ResultEnd())
        finally:
            await self._scratch.give_back(work)

    async def _guest(
        self, award: Award, work: Path, link: RequesterLink, results: ResultChannel
    ) -> RunResult:
        task = award.spec.task
        if not self.blobs.has(task.module):
            await link.fetch_module(task.module, self.blobs)
        mounts = await prepare_mounts(
            task.inputs,
            allowed_paths=self.settings.allowed_paths,
            datasets=self.settings.datasets,
            work=work,
            fetch_cap=self.settings.fetch_cap,
            fetch_private=self.settings.fetch_private_urls,
            fetch_deadline=task.timeout,
        )
        run_spec = RunSpec(
            module=self.blobs.path(task.module),
            outputs_dir=work / OUTPUTS,
            mounts=mounts,
            args=task.args,
            env=task.env,
            entry_point=task.entry_point,
            limits=task.limits(),
        )
        send, receive = trio.open_memory_channel[OutputChunk](64)
        async with open_nursery() as nursery:
            nursery.start_soon(_forward_logs, receive, results)
            async with send:
                try:
                    return await self.executor.run(run_spec, output=send)
                finally:  # the guest is done: its room is free for the next one
                    self._runs.pop(award.execution_id, None)
                    self._on_change()


async def _send_outputs(folder: Path, results: ResultChannel) -> None:
    """Send ``folder`` as an archive, packing the next chunk while the one before it is on
    its way, so packing and sending overlap instead of taking turns."""
    send, receive = trio.open_memory_channel[StreamChunk](1)
    async with open_nursery() as nursery:
        nursery.start_soon(_pack_into, folder, send)
        async with receive:
            async for chunk in receive:
                await results.send(Outputs(chunk.data, chunk.compressed))


async def _pack_into(folder: Path, send: trio.MemorySendChannel) -> None:
    steps = stream_steps(folder)
    packing = StepsOnLoop()  # each step on the loop while that stays quick
    async with send:
        while (chunk := await packing.run(next, steps, False)) is not False:
            if chunk is not None:
                await send.send(chunk)


async def _forward_logs(receive: trio.MemoryReceiveChannel, results: ResultChannel) -> None:
    async with receive:
        async for chunk in receive:
            await results.send(Log(stream=chunk.stream, data=chunk.data))


def _has_entries(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is not None
    except OSError:
        return False


def _run_end(result: RunResult) -> RunEnd:
    return RunEnd(
        status=result.status.value,
        exit_code=result.exit_code,
        message=result.message,
        wall_seconds=result.wall_seconds,
        stdout_bytes=result.stdout_bytes,
        stderr_bytes=result.stderr_bytes,
        stdout_truncated=result.stdout_truncated,
        stderr_truncated=result.stderr_truncated,
        outputs_bytes=result.outputs_bytes,
    )


def _run_end_without_run(message: str, *, retryable: bool = False) -> RunEnd:
    return RunEnd("failed", None, message, 0.0, 0, 0, False, False, 0, retryable=retryable)
