"""The requester's SQLite job store: records, prefixes, lifecycle checks, durability."""

from __future__ import annotations

import itertools
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from swarm.errors import ConfigError, IllegalTransition, NotFound, StorageError
from swarm.jobspec import JobSpec
from swarm.lifecycle import ExecutionState, JobState
from swarm.requester.store import JOBS_DB, SCHEMA_VERSION, JobStore

ROOT = Path(__file__).resolve().parent.parent
DIGEST = "sha256:" + "cd" * 32
SPEC = JobSpec.from_dict({"name": "wc", "task": {"module": DIGEST, "inputs": ["/data"]}})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def store(tmp_path):
    with JobStore(tmp_path / JOBS_DB, clock=FakeClock()) as store:
        yield store


def test_create_and_get_a_job(store):
    job = store.create_job(SPEC)
    assert job.state is JobState.PENDING and job.spec == SPEC and job.name == "wc"
    assert job.created == job.updated == 1001.0 and job.reason == ""
    assert store.get_job(job.id) == job
    assert [(e.kind, e.message) for e in store.events(job.id)] == [("created", "job wc submitted")]


def test_settings_of_the_database(store):
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert store._db.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    db.close()


def test_prefixes(store):
    jobs = [store.create_job(SPEC) for _ in range(40)]
    target = jobs[0]
    unique = next(
        target.id[:n]
        for n in range(4, 37)
        if sum(j.id.startswith(target.id[:n]) for j in jobs) == 1
    )
    assert store.get_job(unique) == target
    assert store.get_job(unique.upper()) == target  # ids are shown lowercase; typing is free
    assert store.get_job(f"  {target.id} ") == target


def test_ambiguous_prefix_lists_candidates(store, monkeypatch):
    ids = iter(["abcd1111-0000-4000-8000-000000000000", "abcd2222-0000-4000-8000-000000000000"])
    monkeypatch.setattr("swarm.requester.store.uuid.uuid4", lambda: next(ids))
    store.create_job(SPEC)
    store.create_job(SPEC)
    with pytest.raises(ConfigError, match=r"matches several \(abcd1111…, abcd2222…\): give more"):
        store.get_job("abcd")
    assert store.get_job("abcd2").id.startswith("abcd2222")


@pytest.mark.parametrize(
    "text,error,words",
    [
        ("abc", ConfigError, "too short: give at least 4 characters"),
        ("ffff", NotFound, "no job 'ffff' on this requester: check the id"),
        ("ab%d", NotFound, "ids are made of hex digits and dashes"),
        ("ab_d", NotFound, "ids are made of hex digits and dashes"),
        ("", NotFound, "ids are made of"),
    ],
)
def test_bad_ids(store, text, error, words):
    store.create_job(SPEC)
    with pytest.raises(error, match=words.replace("(", r"\(")):
        store.get_job(text)


def test_list_jobs_newest_first_with_state_filter_and_limit(store):
    jobs = [store.create_job(SPEC) for _ in range(5)]
    store.set_job_state(jobs[1].id, JobState.RUNNING)
    store.set_job_state(jobs[3].id, JobState.FAILED, "no node accepted")
    assert [j.id for j in store.list_jobs()] == [j.id for j in reversed(jobs)]
    assert [j.id for j in store.list_jobs(limit=2)] == [jobs[4].id, jobs[3].id]
    assert [j.id for j in store.list_jobs(JobState.RUNNING)] == [jobs[1].id]
    both = store.list_jobs([JobState.RUNNING, JobState.FAILED])
    assert [j.id for j in both] == [jobs[3].id, jobs[1].id]
    assert store.list_jobs([]) == []


def test_set_job_state_is_checked_and_logged(store):
    job = store.create_job(SPEC)
    queued = store.set_job_state(job.id, JobState.QUEUED, "no node accepted yet")
    assert queued.state is JobState.QUEUED and queued.reason == "no node accepted yet"
    assert queued.updated > job.updated
    with pytest.raises(IllegalTransition, match="cannot go from queued to completed"):
        store.set_job_state(job.id, JobState.COMPLETED)
    assert store.get_job(job.id).state is JobState.QUEUED  # rolled back, not half-done
    assert [e.message for e in store.events(job.id)][-1] == "pending → queued: no node accepted yet"
    with pytest.raises(NotFound):
        store.set_job_state("0000", JobState.RUNNING)


def test_jobs_in_states_oldest_first(store):
    jobs = [store.create_job(SPEC) for _ in range(4)]
    store.set_job_state(jobs[0].id, JobState.RUNNING)
    store.set_job_state(jobs[2].id, JobState.STOPPED)
    live = store.jobs_in_states([JobState.PENDING, JobState.QUEUED, JobState.RUNNING])
    assert [j.id for j in live] == [jobs[0].id, jobs[1].id, jobs[3].id]


def test_executions_and_their_events(store):
    job = store.create_job(SPEC)
    first = store.add_execution(job.id, "12D3KooWNodeA")
    second = store.add_execution(job.id, "12D3KooWNodeB", ExecutionState.ACCEPTED)
    assert first.state is ExecutionState.BIDDING and first.exit_code is None
    running = store.set_execution_state(second.id, ExecutionState.RUNNING)
    done = store.set_execution_state(
        second.id,
        ExecutionState.COMPLETED,
        exit_code=0,
        status="completed",
        message="ok",
        also_log=("result", "completed, exit code 0, 1.0 ms"),
    )
    assert (done.exit_code, done.status, done.message) == (0, "completed", "ok")
    assert running.updated < done.updated
    store.set_execution_state(first.id, ExecutionState.CANCELLED, message="enough winners")
    assert [e.state for e in store.executions(job.id)] == [
        ExecutionState.CANCELLED,
        ExecutionState.COMPLETED,
    ]
    assert store.get_execution(second.id[:8]) == done
    with pytest.raises(IllegalTransition, match="completed is final"):
        store.set_execution_state(second.id, ExecutionState.LOST, also_log=("result", "no"))
    log = [(e.kind, e.node_id, e.message) for e in store.events(job.id)]
    assert log[1:] == [
        ("execution", "12D3KooWNodeA", "execution bidding"),
        ("execution", "12D3KooWNodeB", "execution accepted"),
        ("execution", "12D3KooWNodeB", "accepted → running"),
        ("execution", "12D3KooWNodeB", "running → completed, exit code 0: ok"),
        ("result", "12D3KooWNodeB", "completed, exit code 0, 1.0 ms"),
        ("execution", "12D3KooWNodeA", "bidding → cancelled: enough winners"),
    ]
    assert all(e.execution_id for e in store.events(job.id)[1:])


def test_updating_one_field_keeps_the_others(store):
    job = store.create_job(SPEC)
    execution = store.add_execution(job.id, "n", ExecutionState.RUNNING)
    store.set_execution_state(execution.id, ExecutionState.FAILED, exit_code=3)
    assert store.get_execution(execution.id).exit_code == 3


def test_add_event(store):
    job = store.create_job(SPEC)
    event = store.add_event(job.id, "decline", "needs 2 GPUs, has 0", node_id="12D3KooWC")
    assert store.events(job.id)[-1] == event
    assert (event.kind, event.node_id, event.execution_id) == ("decline", "12D3KooWC", None)
    with pytest.raises(NotFound):
        store.add_event("0000-missing", "bid", "x")
    with pytest.raises(NotFound):
        store.add_execution("0000-missing", "n")
    with pytest.raises(NotFound):
        store.set_execution_state("0000-missing", ExecutionState.LOST)


def test_reopening_keeps_everything(tmp_path):
    path = tmp_path / JOBS_DB
    with JobStore(path) as store:
        job = store.create_job(SPEC)
        store.set_job_state(job.id, JobState.RUNNING, "awarded")
        execution = store.add_execution(job.id, "node", ExecutionState.ACCEPTED)
        before = (store.get_job(job.id), store.executions(job.id), store.events(job.id))
    with JobStore(path) as store:
        assert (store.get_job(job.id), store.executions(job.id), store.events(job.id)) == before
        assert store.get_execution(execution.id).node_id == "node"


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / JOBS_DB
    JobStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StorageError, match="written by a newer swarm .*: upgrade swarm"):
        JobStore(path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / JOBS_DB
    path.write_bytes(b"not sqlite" * 100)
    with pytest.raises(StorageError, match="cannot open the job store"):
        JobStore(path)


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from swarm.jobspec import JobSpec
    from swarm.requester.store import JobStore

    store = JobStore(Path(sys.argv[1]))
    spec = JobSpec.from_dict({"name": "kill", "task": {"module": "sha256:" + "ef" * 32}})
    while True:
        job = store.create_job(spec)
        print(job.id, flush=True)
    """
)


def test_every_job_reported_created_survives_kill_9(tmp_path):
    path = tmp_path / JOBS_DB
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        reported = [child.stdout.readline().strip() for _ in range(200)]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert all(reported)
    with JobStore(path) as store:
        stored = {job.id for job in store.jobs_in_states(list(JobState))}
        assert set(reported) <= stored
        assert all(store.get_job(job_id).name == "kill" for job_id in reported[-3:])


def test_ids_are_distinct(store):
    ids = {store.create_job(SPEC).id for _ in itertools.repeat(None, 100)}
    assert len(ids) == 100


def test_records_kept_in_memory_are_the_ones_on_disk(tmp_path, monkeypatch):
    # The store keeps the records it wrote or read: whatever it did, reading them back
    # must give exactly what a store opened afresh on the same file reads from disk. The
    # cache is small here, so that evictions and reloads happen too.
    import random

    from swarm.lifecycle import EXECUTION_TRANSITIONS, JOB_TRANSITIONS
    from swarm.requester import store as store_module

    monkeypatch.setattr(store_module, "_CACHED", 8)
    rng = random.Random(7)
    path = tmp_path / JOBS_DB
    jobs, executions = [], []
    with JobStore(path) as store:
        for step in range(600):
            action = rng.random()
            if action < 0.1 or not jobs:
                jobs.append(store.create_job(SPEC).id)
                jobs = jobs[-10:]  # the jobs in play: a few more than the cache holds
            elif action < 0.3:
                execution = store.add_execution(rng.choice(jobs), f"node-{step % 3}")
                executions = [*executions, execution.id][-20:]
            elif action < 0.55 and executions:
                execution = store.get_execution(rng.choice(executions))
                allowed = sorted(EXECUTION_TRANSITIONS[execution.state])
                if allowed:
                    store.set_execution_state(
                        execution.id, rng.choice(allowed), exit_code=step, message=f"m{step}"
                    )
            elif action < 0.8:
                job = store.get_job(rng.choice(jobs))
                allowed = sorted(JOB_TRANSITIONS[job.state])
                if allowed:
                    store.set_job_state(job.id, rng.choice(allowed), f"r{step}")
            else:
                with pytest.raises(IllegalTransition):  # a refused change leaves no trace
                    store.set_job_state(store.create_job(SPEC).id, JobState.COMPLETED)
            if step % 10 == 9:
                with JobStore(path) as fresh:
                    for job_id in jobs:
                        assert store.get_job(job_id) == fresh.get_job(job_id)
                        assert store.executions(job_id) == fresh.executions(job_id)
