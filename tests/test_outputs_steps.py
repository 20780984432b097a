"""A result's outputs are packed (compute node) and unpacked (requester) a bounded step at
a time on the event loop while each step is quick, and in a worker thread once one is slow
(a slow disk, a chunk that expands a lot)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx
import pytest
import trio

from swarm.compute import service
from swarm.concurrency import SLOW_STEP, StepsOnLoop
from swarm.jobspec import JobSpec
from swarm.lifecycle import ExecutionState
from swarm.node import open_node
from swarm.protocol import Outputs, ResultEnd, RunEnd
from swarm.requester import results as results_module
from swarm.requester import sessions
from swarm.requester.results import ResultStore
from swarm.requester.sessions import ResultSession
from swarm.requester.store import JOBS_DB, JobStore
from swarm.storage import archive
from tests.guests import random_writer
from tests.test_p2p_security import config

SPEC = JobSpec.from_dict({"name": "out", "task": {"module": "sha256:" + "ab" * 32}})


@pytest.fixture
def session(tmp_path, monkeypatch):
    # These tests are about the wall-clock rule; a 256 KiB chunk's CPU stays far under this.
    monkeypatch.setattr(sessions, "UNPACK_CPU", 0.05)
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

    def recording_feed(self, chunk, compressed=True):
        if len(record["threads"]) in record["slow"]:
            time.sleep(1.5 * SLOW_STEP)
        record["threads"].append(threading.current_thread())
        feed(self, chunk, compressed)

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


async def test_steps_run_on_the_loop_until_one_is_slow():
    steps = StepsOnLoop()
    seen = []

    def step(delay):
        time.sleep(delay)
        seen.append(threading.current_thread())
        return delay

    for delay in (0, 0, 1.5 * SLOW_STEP, 0, 0):
        assert await steps.run(step, delay) == delay
    assert seen[:3] == [threading.main_thread()] * 3
    assert threading.main_thread() not in seen[3:]


async def test_a_step_that_uses_much_cpu_sends_the_rest_to_a_thread():
    steps = StepsOnLoop(slow=10.0, slow_cpu=0.002)
    seen = []

    def step(burn):
        until = time.thread_time() + burn
        while time.thread_time() < until:
            pass
        seen.append(threading.current_thread())

    for burn in (0, 0.006, 0, 0):
        await steps.run(step, burn)
    assert seen[:2] == [threading.main_thread()] * 2
    assert threading.main_thread() not in seen[2:]


async def test_other_tasks_run_between_steps():
    steps = StepsOnLoop()
    order = []

    async def other():
        while True:
            order.append("other")
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        for _ in range(3):
            await steps.run(order.append, "step")
        nursery.cancel_scope.cancel()
    first, last = order.index("step"), len(order) - 1 - order[::-1].index("step")
    assert "other" in order[first:last]


def test_pack_steps_bound_the_reading_of_each_step(tmp_path):
    """8 MiB of zeros compress to a few KiB: ``pack`` makes one chunk of them, in one go;
    ``pack_steps`` reads them 1 MiB a step, with the same bytes in the end."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "zeros").write_bytes(bytes(8 << 20))
    steps = list(archive.pack_steps(tmp_path / "src"))
    assert len(steps) >= 8 and all(steps[-1:]) and not any(steps[:-1])
    assert b"".join(steps) == b"".join(archive.pack(tmp_path / "src"))
    archive.unpack(steps, tmp_path / "dst", max_bytes=1 << 30, max_entries=10)
    assert (tmp_path / "dst" / "zeros").read_bytes() == bytes(8 << 20)


def record_threads(monkeypatch, module, name: str) -> list[threading.Thread]:
    """Patch ``module.name`` (a step generator) to note the thread each step runs in."""
    threads = []
    steps = getattr(module, name)

    def recording_steps(root, **kw):
        for step in steps(root, **kw):
            threads.append(threading.current_thread())
            yield step

    monkeypatch.setattr(module, name, recording_steps)
    return threads


async def test_the_compute_node_packs_on_the_loop(tmp_path, monkeypatch, chunks):
    files, _ = chunks
    threads = record_threads(monkeypatch, service, "stream_steps")

    class Channel:
        sent = []

        async def send(self, message):
            self.sent.append(message)

    await service._send_outputs(tmp_path / "source", Channel())
    assert len(threads) >= 3 and set(threads) == {threading.main_thread()}
    with archive.Unpacker(tmp_path / "dst", max_bytes=1 << 30, max_entries=10) as unpacker:
        for message in Channel.sent:
            unpacker.feed(message.data, message.compressed)
    for name, data in files.items():
        assert (tmp_path / "dst" / name).read_bytes() == data


async def noise_job_download(home: Path, blocks: int) -> Path:
    """Run a guest that writes ``blocks`` 64 KiB blocks of noise (``random_writer``) on a
    hybrid node in ``home``, download the job's results as `swarm get` does, unpack them
    under ``home / "got"``: the downloaded noise file."""
    async with open_node(config(home, "x")) as node:
        headers = {"Authorization": f"Bearer {node.config.api_token}"}
        async with httpx.AsyncClient(base_url=node.api_url, headers=headers, timeout=20) as client:
            module = bytes(random_writer(3, "noise.bin", blocks=blocks))
            digest = (await client.put("/api/v1/blobs", content=module)).json()["digest"]
            job = (await client.post("/api/v1/jobs", json={"task": {"module": digest}})).json()
            done = await client.get(f"/api/v1/jobs/{job['id']}/wait", params={"timeout": 15})
            assert done.json()["state"] == "completed"
            download = await client.get(f"/api/v1/jobs/{job['id']}/results")
    assert download.status_code == 200
    archive.unpack([download.content], home / "got", max_bytes=1 << 30, max_entries=10)
    (noise,) = (home / "got").rglob("noise.bin")
    return noise


async def test_a_results_download_is_packed_on_the_loop(tmp_path, monkeypatch):
    """`swarm get`'s archive: a hybrid node runs a guest that writes 3 MiB of noise; the
    download's pack steps all ran on the event loop, and the archive holds the file."""
    threads = record_threads(monkeypatch, results_module, "pack_steps")
    noise = await noise_job_download(tmp_path, blocks=48)
    assert len(threads) >= 3 and set(threads) == {threading.main_thread()}
    assert noise.stat().st_size == 48 * 64 * 1024
