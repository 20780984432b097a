"""Dataset inputs (``data://NAME[/sub/path]``): each node runs the job on its own copy.

In-process: one node hosting a dataset runs jobs on a sub path of it and declines the
paths it cannot serve. Across separate `swarm serve` processes: a dataset of the same
name on two of three nodes, a different file on each, and a `--target all` job runs on
exactly those two, each reading its own copy; then URL inputs through the same CLI.
"""

from __future__ import annotations

import hashlib
import json

from swarm.config import Dataset
from swarm.jobspec import JobSpec
from swarm.lifecycle import JobState
from swarm.node import open_node
from swarm.placement import short_peer_id
from tests.test_inputs_fetch import cat, web
from tests.test_jobs_cli import swarm
from tests.test_jobs_swarm import all_healthy, wait_until
from tests.test_p2p_security import config

__all__ = ["web"]


async def test_dataset_jobs_on_one_node(tmp_path):
    words = tmp_path / "words"
    (words / "2026").mkdir(parents=True)
    (words / "2026" / "jan.txt").write_text("january words\n")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "jan.txt").write_text("not in the dataset\n")
    (words / "escape").symlink_to(tmp_path / "secret")
    node_config = config(tmp_path, "x", datasets=(Dataset("words", words),))
    async with open_node(node_config) as node:
        digest = node.requester.blobs.put_bytes(cat("jan.txt"))

        def submit(source: str) -> str:
            inputs = [f"{source}:/inputs"]
            spec = JobSpec.from_dict({"name": "d", "task": {"module": digest, "inputs": inputs}})
            return node.requester.submit(spec).id

        sources = ("data://words/2026", "data://words/2027", "data://words/escape", "data://logs")
        jobs = {source: submit(source) for source in sources}
        ended = {source: await node.requester.wait(job, timeout=20) for source, job in jobs.items()}

        ran = ended["data://words/2026"]
        assert ran.state is JobState.COMPLETED, ran.reason
        (execution,) = node.requester.store.executions(ran.id)
        folder = node.requester.results.folder(ran.id, execution.id)
        assert (folder / "stdout").read_text() == "january words\n"
        me = f"node {short_peer_id(node.peer_id)}: "
        assert {source: (job.state, job.reason) for source, job in ended.items() if job != ran} == {
            "data://words/2027": (
                JobState.FAILED,
                f"no node accepted the job:\n{me}input data://words/2027 does not exist here",
            ),
            "data://words/escape": (
                JobState.FAILED,
                f"no node accepted the job:\n{me}input data://words/escape leads out of dataset "
                "words here",
            ),
            "data://logs": (
                JobState.FAILED,
                f"no node accepted the job:\n{me}dataset logs is not hosted here",
            ),
        }


def test_target_all_runs_on_every_node_hosting_the_dataset(serve, tmp_path, web):
    copies = {}
    for name in ("b", "c"):  # the same dataset name, different files on each node
        copies[name] = tmp_path / f"words-{name}"
        copies[name].mkdir()
        (copies[name] / "words.txt").write_text(f"the words on node {name}\n")
    module = "cat.wasm"  # in tmp_path, where the CLI runs
    (tmp_path / module).write_bytes(cat("words.txt"))
    # requester and compute, without the dataset; all fetch from the test's 127.0.0.1 server
    a = serve("a", "--fetch-private-urls")
    compute = ("--node-type", "compute", "--peer", a.address, "--fetch-private-urls")
    b = serve("b", *compute, "--data", f"words={copies['b']}", ready=False)
    c = serve("c", *compute, "--data", f"words={copies['c']}", ready=False)
    b.wait_ready(), c.wait_ready()  # started together: each start costs a process's imports
    wait_until(lambda: all_healthy(a, 3), what="a to see b and c")

    run = swarm(a, "wasm", "run", "--target", "all", "-i", "data://words", module, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    job_id = run.stdout.split("Job ID: ")[1].split()[0]
    job = json.loads(swarm(a, "describe", job_id, "-o", "json", cwd=tmp_path).stdout)
    assert sorted(e["node_id"] for e in job["executions"]) == sorted([b.peer_id, c.peer_id]), job
    assert {e["state"] for e in job["executions"]} == {"completed"}
    declines = [(e["node_id"], e["message"]) for e in job["events"] if e["kind"] == "decline"]
    assert declines == [(a.peer_id, "dataset words is not hosted here")]

    got = swarm(a, "get", job_id, cwd=tmp_path)
    assert got.returncode == 0, got.stdout + got.stderr
    folders = {p.name: p for p in (tmp_path / f"job-{job_id[:8]}").iterdir()}
    assert len(folders) == 2
    for node, name in ((b, "b"), (c, "c")):
        (folder,) = [f for key, f in folders.items() if key.startswith(f"node-{node.peer_id[-8:]}")]
        assert (folder / "stdout").read_text() == f"the words on node {name}\n"  # its own copy
        assert (folder / "exitCode").read_text() == "0\n"

    web.serve("words.txt", b"from the web\n")
    url = web.url("files/words.txt")
    digest = hashlib.sha256(b"from the web\n").hexdigest()
    fetched = swarm(a, "wasm", "run", "-i", f"{url}#sha256={digest}", module, cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    wrong = swarm(a, "wasm", "run", "-i", f"{url}#sha256={'0' * 64}:/inputs", module, cwd=tmp_path)
    assert wrong.returncode == 1
    assert f"input {url}: sha256 mismatch (expected {'0' * 64}, got {digest})" in wrong.stderr
