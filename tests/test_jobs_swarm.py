"""Jobs across a swarm of separate `swarm serve` processes on loopback."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from swarm.client import Client
from swarm.compute.scratch import is_spare
from tests.guests import hello
from tests.test_examples import WORDCOUNT, built_examples, expected_count_txt, python_word_counts
from tests.test_jobs_cli import swarm

__all__ = ["built_examples"]


def wait_until(predicate, *, timeout: float = 10.0, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def all_healthy(node, count: int) -> bool:
    statuses = node.statuses()
    return len(statuses) == count and set(statuses.values()) == {"healthy"}


@pytest.fixture
def data(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.txt").write_text("the cod swims where the data lives\n")
    (folder / "b.txt").write_text("small results flow back\n")
    return folder


def spec_for(module_digest: str, *, inputs=(), target="batch") -> dict:
    return {
        "name": "t",
        "type": target,
        "task": {
            "module": module_digest,
            "inputs": [{"source": s, "target": "/inputs"} for s in inputs],
        },
    }


def scratch_left(node) -> list[Path]:
    """What is left in a node's scratch folder: runs remove theirs when they end, or keep
    it, emptied, as a spare for the next run."""
    work = node.home / "work"
    return [p for p in work.iterdir() if not is_spare(p)] if work.is_dir() else []


def test_a_job_runs_only_where_its_data_is(serve, tmp_path, data):
    a = serve("a", "--node-type", "requester")
    b = serve(
        "b", "--node-type", "compute", "--peer", a.address, "--allow-listed-local-paths", str(data)
    )
    c = serve("c", "--node-type", "compute", "--peer", a.address)
    wait_until(lambda: all_healthy(a, 3), what="a to see b and c")

    run = swarm(a, "wasm", "run", "-i", f"file://{data}", str(WORDCOUNT), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    job_id = run.stdout.split("Job ID: ")[1].split()[0]
    job = json.loads(swarm(a, "describe", job_id, "-o", "json", cwd=tmp_path).stdout)
    (execution,) = job["executions"]
    assert execution["node_id"] == b.peer_id and execution["state"] == "completed"
    declines = [e for e in job["events"] if e["kind"] == "decline"]
    assert [(d["node_id"], "allow-list" in d["message"]) for d in declines] == [(c.peer_id, True)]

    swarm(a, "get", job_id, cwd=tmp_path)
    folder = tmp_path / f"job-{job_id[:8]}"
    counts = python_word_counts(data)
    assert (folder / "stdout").read_text() == f"Total word count:  {sum(counts.values())}\n"
    assert (folder / "outputs" / "count.txt").read_text() == expected_count_txt(counts)


def test_target_all_runs_on_every_node_holding_the_data(serve, tmp_path, data):
    a = serve("a", "--node-type", "requester")
    b = serve(
        "b", "--node-type", "compute", "--peer", a.address, "--allow-listed-local-paths", str(data)
    )
    c = serve(
        "c", "--node-type", "compute", "--peer", b.address, "--allow-listed-local-paths", str(data)
    )
    wait_until(lambda: all_healthy(a, 3), what="a to see b and c")

    run = swarm(
        a, "wasm", "run", "--target", "all", "-i", f"file://{data}", str(WORDCOUNT), cwd=tmp_path
    )
    assert run.returncode == 0, run.stdout + run.stderr
    job_id = run.stdout.split("Job ID: ")[1].split()[0]
    job = json.loads(swarm(a, "describe", job_id, "-o", "json", cwd=tmp_path).stdout)
    assert sorted(e["node_id"] for e in job["executions"]) == sorted([b.peer_id, c.peer_id])
    assert {e["state"] for e in job["executions"]} == {"completed"}

    swarm(a, "get", job_id, cwd=tmp_path)
    folders = sorted((tmp_path / f"job-{job_id[:8]}").iterdir())
    assert len(folders) == 2
    for folder in folders:
        assert (folder / "exitCode").read_text() == "0\n"
        assert (folder / "outputs" / "count.txt").read_text() == expected_count_txt(
            python_word_counts(data)
        )
    wait_until(  # the scratch space, outputs and all, is removed after each run
        lambda: not any(scratch_left(n) for n in (b, c)),
        what="the compute nodes to clean their scratch space",
    )


def test_200_concurrent_jobs_all_complete_once(serve, tmp_path):
    a = serve("a", "--max-jobs", "2")
    b = serve("b", "--node-type", "compute", "--peer", a.address, "--max-jobs", "2")
    c = serve("c", "--node-type", "compute", "--peer", a.address, "--max-jobs", "2")
    wait_until(lambda: all_healthy(a, 3), what="a to see b and c")
    module = tmp_path / "hello.wasm"
    module.write_bytes(hello("ok\n"))

    with a.client() as client:
        digest = client.upload_module(module)

    def submit(_):
        with a.client() as client:
            return client.submit(spec_for(digest))["id"]

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(submit, range(200)))
    assert len(set(ids)) == 200

    with Client(a.client().base_url, a.exports["SWARM_API_TOKEN"], timeout=60) as client:
        jobs = [client.wait(job_id) for job_id in ids]
        listed = client.jobs(limit=1000)
    assert {j["state"] for j in jobs} == {"completed"}, [
        j["reason"] for j in jobs if j["state"] != "completed"
    ][:3]
    # None duplicated: one completed execution and one stored result per job. (A retry
    # leaves a lost execution behind, with its reason, and no result.)
    retried = [e for j in jobs for e in j["executions"] if e["state"] != "completed"]
    assert all(e["state"] == "lost" for e in retried), retried
    assert all([e["state"] for e in j["executions"]].count("completed") == 1 for j in jobs)
    results = a.home / "results"
    assert all(len(list((results / job_id).iterdir())) == 1 for job_id in ids)
    wait_until(  # every node cleaned its scratch space after each run
        lambda: not any(scratch_left(n) for n in (a, b, c)),
        what="the nodes to clean their scratch space",
    )
    assert len(retried) <= 2, [e["message"] for e in retried]  # a rare loss, not a pattern
    assert sorted(j["id"] for j in listed) == sorted(ids)  # none lost
    nodes = {e["node_id"] for j in jobs for e in j["executions"] if e["state"] == "completed"}
    assert nodes <= {a.peer_id, b.peer_id, c.peer_id}
    assert len(nodes) >= 2, "the work was not spread over the swarm"


def test_a_requester_killed_with_sigkill_keeps_every_accepted_job(serve, tmp_path):
    a = serve("a")
    module = tmp_path / "hello.wasm"
    module.write_bytes(hello())
    with a.client() as client:
        digest = client.upload_module(module)
        ids = [client.submit(spec_for(digest))["id"] for _ in range(20)]
    a.stop()  # SIGKILL, straight after the last answer
    restarted = serve("a")
    assert restarted.peer_id == a.peer_id
    with restarted.client() as client:
        listed = {j["id"] for j in client.jobs(limit=100)}
        assert listed == set(ids)
        states = {client.wait(job_id)["state"] for job_id in ids}
    assert states == {"completed"}  # pending ones were placed again after the restart
