"""The compute role: decide bids, run awarded executions, send results back.

A compute node reserves a place when it bids, so two announces arriving together cannot
both be promised its last slot; the place is released on a reject or turned into a
queued execution on an award. Executions wait for one of ``max_jobs`` run slots; a node
holds at most ``QUEUE_DEPTH`` per slot waiting (declining as "queue full" beyond that),
and requesters rank bids by free capacity, so work goes to idle nodes first.

How the node reaches the requester (in-process for a hybrid node's own jobs, libp2p
streams otherwise) is a ``RequesterLink``; this module does not know which.
"""

from __future__ import annotations

import logging
import platform
import shutil
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import trio

from swarm.compute.inputs import input_facts
from swarm.compute.provision import DEFAULT_FETCH_CAP, prepare_mounts
from swarm.concurrency import open_nursery
from swarm.config import Dataset
from swarm.errors import SwarmError
from swarm.executor import Executor, OutputChunk, RunResult, RunSpec
from swarm.jobspec import JobSpec
from swarm.models import AllowedPath, Role
from swarm.placement import Bid, Decline, NodeView, decide_bid, node_labels
from swarm.protocol import Award, JobAnnounce, Log, Outputs, ResultEnd, RunEnd
from swarm.storage.archive import pack
from swarm.storage.blobs import BlobStore

MAX_MODULE_SIZE = 256 * 1024 * 1024
QUEUE_DEPTH = 4  # executions that may wait per run slot before the node declines as busy
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
    max_jobs: int = 1
    trusted_requesters: frozenset[str] | None = None


class ComputeService:
    def __init__(
        self, *, settings: ComputeSettings, executor: Executor, blobs: BlobStore, work_dir: Path
    ) -> None:
        self.settings = settings
        self.executor = executor
        self.blobs = blobs
        self.work_dir = work_dir
        self.running = 0
        self.waiting = 0
        self._reserved: set[str] = set()
        self._slots = trio.Semaphore(settings.max_jobs)
        self._labels = node_labels(
            settings.labels,
            name=settings.name,
            os_name=platform.system().lower(),
            arch=platform.machine().lower(),
            gpus=settings.gpus,
        )

    @property
    def queued(self) -> int:
        """Executions promised (bids out) or waiting for a run slot."""
        return self.waiting + len(self._reserved)

    def view(self) -> NodeView:
        s = self.settings
        return NodeView(
            peer_id=s.peer_id,
            roles=frozenset({Role.COMPUTE}),
            free_cpu=s.cpu,
            free_memory=s.memory,
            free_gpu=s.gpus,
            labels=self._labels,
            allowed_paths=s.allowed_paths,
            datasets=tuple(dataset.name for dataset in s.datasets),
            running=self.running,
            queued=self.queued,
            max_jobs=s.max_jobs + QUEUE_DEPTH * s.max_jobs,  # run slots plus the waiting line
            trusted_requesters=s.trusted_requesters,
        )

    def consider(self, announce: JobAnnounce) -> Bid | Decline:
        """Bid or decline; a bid reserves a place until ``release`` or ``execute``."""
        s = self.settings
        facts = input_facts((i.source for i in announce.inputs), s.allowed_paths, s.datasets)
        decision = decide_bid(announce.offer(), self.view(), facts)
        if isinstance(decision, Bid):
            self._reserved.add(announce.job_id)
        return decision

    def release(self, job_id: str) -> None:
        """The bid for ``job_id`` was rejected or went unanswered."""
        self._reserved.discard(job_id)

    async def execute(self, award: Award, link: RequesterLink) -> None:
        """Run one awarded execution to its end and deliver its results over ``link``.

        A run slot is held only while the guest runs: fetching the module and talking to
        the requester (round trips, not work) overlap with other executions' runs.
        """
        self._reserved.discard(award.job_id)
        self.waiting += 1
        slot = _Slot(self)
        try:
            await self._run(award, link, slot)
        except SwarmError as exc:  # the requester is gone or refused: nothing to tell
            logger.warning("execution %s ended without delivery: %s", award.execution_id, exc)
        finally:
            if not slot.taken:
                self.waiting -= 1

    async def _run(self, award: Award, link: RequesterLink, slot: _Slot) -> None:
        work = self.work_dir / award.execution_id
        try:
            async with link.open_results(award) as results:
                try:
                    result = await self._guest(award.spec, work, link, results, slot)
                except SwarmError as exc:  # the job could not run here: say why
                    await results.send(_run_end_without_run(str(exc)))
                else:
                    await results.send(_run_end(result))
                    chunks = pack(work / "outputs")
                    while (chunk := await trio.to_thread.run_sync(next, chunks, None)) is not None:
                        await results.send(Outputs(chunk))
                await results.send(ResultEnd())
        finally:
            await trio.to_thread.run_sync(shutil.rmtree, work, True)

    async def _guest(
        self, spec: JobSpec, work: Path, link, results: ResultChannel, slot: _Slot
    ) -> RunResult:
        task = spec.task
        if not self.blobs.has(task.module):
            await link.fetch_module(task.module, self.blobs)
        mounts = await prepare_mounts(
            task.inputs,
            allowed_paths=self.settings.allowed_paths,
            datasets=self.settings.datasets,
            work=work,
            fetch_cap=self.settings.fetch_cap,
            fetch_deadline=task.timeout,
        )
        run_spec = RunSpec(
            module=self.blobs.path(task.module),
            outputs_dir=work / "outputs",
            mounts=mounts,
            args=task.args,
            env=task.env,
            entry_point=task.entry_point,
            limits=task.limits(),
        )
        send, receive = trio.open_memory_channel[OutputChunk](64)
        async with open_nursery() as nursery:
            nursery.start_soon(_forward_logs, receive, results)
            async with send, slot:
                return await self.executor.run(run_spec, output=send)


class _Slot:
    """One execution's hold on a run slot of ``service``, taken at most once."""

    def __init__(self, service: ComputeService) -> None:
        self.service = service
        self.taken = False

    async def __aenter__(self) -> None:
        await self.service._slots.acquire()
        self.taken = True
        self.service.waiting -= 1
        self.service.running += 1

    async def __aexit__(self, *exc_info: object) -> None:
        self.service.running -= 1
        self.service._slots.release()


async def _forward_logs(receive: trio.MemoryReceiveChannel, results: ResultChannel) -> None:
    async with receive:
        async for chunk in receive:
            await results.send(Log(stream=chunk.stream, data=chunk.data))


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


def _run_end_without_run(message: str) -> RunEnd:
    return RunEnd("failed", None, message, 0.0, 0, 0, False, False, 0)
