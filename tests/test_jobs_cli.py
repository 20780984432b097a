"""The seed journey through the real CLI, on one hybrid node (a separate `swarm serve`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SWARM, ServeProcess
from tests.guests import hello, sleeper
from tests.test_examples import WORDCOUNT, built_examples, expected_count_txt, python_word_counts

__all__ = ["built_examples"]  # the session fixture that builds the examples
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory):
    """One hybrid node for the module's tests (each writes into its own tmp_path)."""
    base = tmp_path_factory.mktemp("hybrid")
    data = base / "data"
    data.mkdir()
    for name, text in (
        ("file1.txt", "one two three"),
        ("b c.txt", "four five\n six"),
        ("empty.txt", ""),
    ):
        (data / name).write_text(text)
    node = ServeProcess(base / "hybrid", "--allow-listed-local-paths", str(data))
    try:
        yield node.wait_ready(), data
    finally:
        node.stop()


def swarm(node, *args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    env.update(node.exports)
    return subprocess.run(
        [str(SWARM), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_seed_journey_on_a_hybrid_node(hybrid, tmp_path):
    node, data = hybrid
    run = swarm(node, "wasm", "run", "-i", f"file://{data}:/inputs", str(WORDCOUNT), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Job successfully submitted. Job ID: " in run.stdout
    assert "Job in progress" in run.stdout and "done" in run.stdout
    job_id = run.stdout.split("Job ID: ")[1].split()[0]
    assert f"swarm get {job_id}" in run.stdout and f"swarm describe {job_id}" in run.stdout

    got = swarm(node, "get", job_id[:8], cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    folder = tmp_path / f"job-{job_id[:8]}"
    counts = python_word_counts(data)
    assert (folder / "stdout").read_text() == f"Total word count:  {sum(counts.values())}\n"
    assert (folder / "outputs" / "count.txt").read_text() == expected_count_txt(counts)
    assert (folder / "exitCode").read_text() == "0\n"

    described = swarm(node, "describe", job_id[:8], "--output", "json", cwd=tmp_path)
    job = json.loads(described.stdout)
    assert job["id"] == job_id and job["state"] == "completed"
    assert job["spec"]["task"]["module"].startswith("sha256:")
    (execution,) = job["executions"]
    assert execution["state"] == "completed" and execution["exit_code"] == 0
    assert execution["node_id"] == node.peer_id
    assert any(e["kind"] == "result" for e in job["events"])

    listed = json.loads(swarm(node, "list", "--output", "json", cwd=tmp_path).stdout)
    assert [j["id"] for j in listed] == [job_id]


def test_failing_module_fails_the_job_and_keeps_its_result(hybrid, tmp_path):
    node, _ = hybrid
    empty = tmp_path / "nothing"
    empty.mkdir()
    run = swarm(node, "wasm", "run", "-i", str(empty), str(WORDCOUNT), cwd=tmp_path)
    assert run.returncode == 1
    assert "not in this node's allow-list" in run.stderr  # placement explains itself
    module = tmp_path / "hello.wasm"
    module.write_bytes(hello("hi\n"))
    run = swarm(node, "wasm", "run", "--id-only", str(module), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    job_id = run.stdout.strip()
    assert len(job_id) == 36, run.stdout
    got = swarm(node, "get", job_id, "--output-dir", "out", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    folder = tmp_path / "out" / f"job-{job_id[:8]}"
    assert (folder / "stdout").read_text() == "hi\n"
    assert (folder / "exitCode").read_text() == "0\n"
    assert (folder / "outputs").is_dir() and not any((folder / "outputs").iterdir())


def test_timeout_and_no_wait(hybrid, tmp_path):
    node, _ = hybrid
    module = tmp_path / "sleep.wasm"
    module.write_bytes(sleeper(30))
    run = swarm(node, "wasm", "run", "--timeout", "0.5", str(module), cwd=tmp_path)
    assert run.returncode == 1
    job_id = run.stdout.split("Job ID: ")[1].split()[0]
    job = json.loads(swarm(node, "describe", job_id, "-o", "json", cwd=tmp_path).stdout)
    assert job["state"] == "failed"
    assert job["executions"][0]["status"] == "timeout"
    swarm(node, "get", job_id, cwd=tmp_path)
    assert (tmp_path / f"job-{job_id[:8]}" / "exitCode").read_text() == "124\n"
    run = swarm(node, "wasm", "run", "--no-wait", "--timeout", "0.2", str(module), cwd=tmp_path)
    assert run.returncode == 0 and "Job successfully submitted" in run.stdout
    job_id = run.stdout.split("Job ID: ")[1].split()[0]
    job = json.loads(swarm(node, "describe", job_id, "-o", "json", cwd=tmp_path).stdout)
    assert job["spec"]["task"]["timeout"] == 0.2


def test_job_run_from_a_spec_file(hybrid, tmp_path):
    node, data = hybrid
    spec = tmp_path / "job.yaml"
    spec.write_text(
        f"name: count\ntype: batch\ntask:\n  module: {WORDCOUNT}\n"
        f"  inputs:\n    - source: file://{data}\n      target: /inputs\n"
    )
    run = swarm(node, "job", "run", "-f", str(spec), "--id-only", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    job = json.loads(swarm(node, "describe", run.stdout.strip(), "-o", "json", cwd=tmp_path).stdout)
    assert job["name"] == "count" and job["state"] == "completed"


@pytest.mark.parametrize(
    "args,message",
    [
        (["get", "zzzz"], "is not a job id"),
        (["get", "abcd1234"], "no job"),
        (["describe", "ab"], "at least"),
        (["get", ""], "give a job id"),
        (["describe", " "], "give a job id"),
        (["logs", "../agent"], "'../agent' is not a job id"),
        (["job", "stop", "0000"], "no job"),
        (["wasm", "run", "missing.wasm"], "missing.wasm"),
        (["job", "run", "-f", "nope.yaml"], "nope.yaml"),
    ],
)
def test_bad_job_commands_are_one_line(hybrid, tmp_path, args, message):
    node, _ = hybrid
    done = swarm(node, *args, cwd=tmp_path)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
