"""A result session takes an execution's outputs chunks: on the event loop while each is
quick, in a worker thread once one is slow (a slow disk, a chunk that expands a lot)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from swarm.jobspec import JobSpec
from swarm.lifecycle import ExecutionState
from swarm.protocol import Outputs, ResultEnd, RunEnd
from swarm.requester import sessions
from swarm.requester.results import ResultStore
from swarm.requester.sessions import ResultSession
from swarm.requester.store import JOBS_DB, JobStore
from swarm.storage import archive

SPEC = JobSpec.from_dict({"name": "out", "task": {"module": "sha256:" + "ab" * 32}})


@pytest.fixture
def session(tmp_path):
    ended = []
    with JobStore(tmp_path / JOBS_DB) as store:
        job = store.create_job(SPEC)
        execution = store.add_execution(job.id, "node-b", ExecutionState.ACCEPTED)
        execution = store.set_execution_state(execution.id, ExecutionState.RUNNING)
        results = ResultStore(tmp_path / "results")
        session = ResultSession(
            store=store,
            execution=execution,
            writer=results.writer(job.id, execution.id, caps=SPEC.task.caps),
            on_log=lambda job_id: None,
            on_end=lambda execution, retry: ended.append(execution.state),
            on_lost=lambda execution, reason: ended.append(reason),
        )
        session.ended = ended
        session.folder = results.folder(job.id, execution.id)
        yield session


@pytest.fixture
def chunks(tmp_path):
    """Eight files of 256 KiB noise, packed in 256 KiB chunks (about nine of them)."""
    source = tmp_path / "source"
    source.mkdir()
    files = {f"f{i}.bin": os.urandom(256 * 1024) for i in range(8)}
    for name, data in files.items():
        (source / name).write_bytes(data)
    return files, list(archive.pack(source, chunk_size=256 * 1024))


@pytest.fixture
def feeds(monkeypatch):
    """Which thread fed each chunk; ``slow`` holds chunk numbers whose feed takes 30 ms."""
    record = {"threads": [], "slow": set()}
    feed = archive.Unpacker.feed

    def recording_feed(self, chunk):
        if len(record["threads"]) in record["slow"]:
            time.sleep(1.5 * sessions.SLOW_FEED)
        record["threads"].append(threading.current_thread())
        feed(self, chunk)

    monkeypatch.setattr(archive.Unpacker, "feed", recording_feed)
    return record


def run_end(size: int) -> RunEnd:
    return RunEnd("completed", 0, "", 0.1, 0, 0, False, False, size)


async def deliver(session, chunks, size):
    await session.send(run_end(size))
    for chunk in chunks:
        await session.send(Outputs(chunk))
    await session.send(ResultEnd())


async def test_quick_chunks_are_unpacked_on_the_event_loop(session, chunks, feeds):
    files, packed = chunks
    await deliver(session, packed, sum(map(len, files.values())))
    assert len(packed) > 4
    assert feeds["threads"] == [threading.main_thread()] * len(packed)
    assert session.ended == [ExecutionState.COMPLETED]
    for name, data in files.items():
        assert (session.folder / "outputs" / name).read_bytes() == data


async def test_after_a_slow_chunk_the_rest_go_to_a_worker_thread(session, chunks, feeds):
    files, packed = chunks
    feeds["slow"] = {2}
    await deliver(session, packed, sum(map(len, files.values())))
    threads = feeds["threads"]
    assert threads[:3] == [threading.main_thread()] * 3
    assert threads[3:] and threading.main_thread() not in threads[3:]
    assert session.ended == [ExecutionState.COMPLETED]
    for name, data in files.items():
        assert (session.folder / "outputs" / name).read_bytes() == data
