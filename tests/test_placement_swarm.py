"""Placement and resilience across separate `swarm serve` processes on loopback.

One three-node cluster serves the placement cases (GPU and label constraints, a job no
node accepts, live logs, stop); queueing, the loss of an executing node and a requester
restart each get their own nodes, since they start, kill or restart some.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import trio
from libp2p.peer.id import ID

from swarm.home import KEY_FILE
from swarm.jobspec import JobSpec
from swarm.models import Role
from swarm.node import open_node
from swarm.p2p.keys import load_or_create_identity
from swarm.placement import Decline
from swarm.requester.store import JOBS_DB, JobStore
from swarm.storage.blobs import digest_bytes
from tests.conftest import SWARM, ServeProcess
from tests.guests import exit_with, hello, ticker
from tests.test_jobs_cli import swarm
from tests.test_jobs_swarm import all_healthy, wait_until
from tests.test_p2p_security import config
from tests.test_p2p_security import wait_until as wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """n1: requester + compute, 1 GPU, zone=eu; n2: compute, zone=us; n3: compute, zone=eu."""
    base = tmp_path_factory.mktemp("cluster")
    nodes = []
    try:
        n1 = ServeProcess(base / "n1", "--gpu", "1", "--labels", "zone=eu").wait_ready()
        nodes.append(n1)
        for name, zone in (("n2", "us"), ("n3", "eu")):
            args = ("--node-type", "compute", "--labels", f"zone={zone}", "--peer", n1.address)
            nodes.append(ServeProcess(base / name, *args).wait_ready())
        wait_until(lambda: all_healthy(n1, 3), what="n1 to see n2 and n3")
        yield {node.home.name: node for node in nodes}
    finally:
        for node in nodes:
            node.stop()


def module(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / f"{name}.wasm"
    path.write_bytes(data)
    return path


def run_job(node, tmp_path, wasm: Path, *flags: str, timeout: float = 60):
    return swarm(node, "wasm", "run", *flags, str(wasm), cwd=tmp_path, timeout=timeout)


def job_id_of(run: subprocess.CompletedProcess) -> str:
    assert "Job ID: " in run.stdout, run.stdout + run.stderr
    return run.stdout.split("Job ID: ")[1].split()[0]


def describe(node, job_id: str) -> dict:
    with node.client() as client:
        return client.job(job_id)


def ran_on(node, job_id: str) -> list[str]:
    return [e["node_id"] for e in describe(node, job_id)["executions"]]


def test_constraints_place_jobs_on_matching_nodes(cluster, tmp_path):
    n1, n2, n3 = cluster["n1"], cluster["n2"], cluster["n3"]
    wasm = module(tmp_path, "hello", hello())
    cases = [
        (("--gpu", "1"), n1),  # only n1 declares a GPU
        (("--constraint", "zone=us"), n2),
        (("--constraint", "zone in (eu,ap)", "--constraint", "!gpu"), n3),
        (("--constraint", "gpu", "--constraint", "name=n1"), n1),
        (("--constraint", "zone notin (eu)"), n2),
    ]
    for flags, expected in cases:
        for _ in range(2):  # twice: the ranking cannot make it right by chance
            run = run_job(n1, tmp_path, wasm, *flags)
            assert run.returncode == 0, run.stdout + run.stderr
            assert ran_on(n1, job_id_of(run)) == [expected.peer_id], flags


def test_a_job_no_node_accepts_fails_at_once_with_every_reason(cluster, tmp_path):
    n1 = cluster["n1"]
    wasm = module(tmp_path, "hello", hello())
    started = time.monotonic()
    run = run_job(n1, tmp_path, wasm, "--constraint", "zone=ap", "--gpu", "1")
    took = time.monotonic() - started
    assert run.returncode != 0
    reasons = [line.strip() for line in run.stderr.splitlines() if line.strip().startswith("node ")]
    assert sorted(reasons) == sorted(
        [
            f"node {short(cluster['n1'].peer_id)}: label zone=eu does not match zone=ap",
            f"node {short(cluster['n2'].peer_id)}: label zone=us does not match zone=ap",
            f"node {short(cluster['n3'].peer_id)}: label zone=eu does not match zone=ap",
        ]
    ), run.stderr
    assert took < 10, f"took {took:.1f} s: it should not wait for anything"
    job = describe(n1, job_id_of(run))
    assert job["state"] == "failed" and job["executions"] == []
    declines = [e for e in job["events"] if e["kind"] == "decline"]
    assert {e["node_id"] for e in declines} == {node.peer_id for node in cluster.values()}

    # Resources: more than any node has is a reason too.
    run = run_job(n1, tmp_path, wasm, "--gpu", "2")
    assert run.returncode != 0
    assert f"node {short(n1.peer_id)}: needs 2 GPUs, has 1" in run.stderr
    assert f"node {short(cluster['n2'].peer_id)}: needs 2 GPUs, has 0" in run.stderr


def test_logs_follow_a_job_as_it_prints(cluster, tmp_path):
    n1, n2 = cluster["n1"], cluster["n2"]
    wasm = module(tmp_path, "ticker", ticker(5, 1.0, "tick\n"))
    run = run_job(n1, tmp_path, wasm, "--constraint", "name=n2", "--no-wait", "--id-only")
    job_id = run.stdout.strip()
    follow = subprocess.Popen(
        [str(SWARM), "logs", "--follow", job_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=swarm_env(n1),
    )
    arrivals = []
    for line in follow.stdout:
        arrivals.append((time.monotonic(), line))
    assert follow.wait(timeout=30) == 0, follow.stderr.read()
    assert [line for _, line in arrivals] == ["tick\n"] * 5
    # The first lines may have been printed before `logs` started; the last ones must
    # arrive about a second apart, as the guest prints them.
    times = [at for at, _ in arrivals[-3:]]
    gaps = [times[1] - times[0], times[2] - times[1]]
    assert min(gaps) > 0.5, f"lines arrived {gaps} s apart: not live"
    assert describe(n1, job_id)["state"] == "completed"
    assert ran_on(n1, job_id) == [n2.peer_id]

    # Without --follow: what is there, at once.
    logs = swarm(n1, "logs", job_id[:8], cwd=tmp_path)
    assert logs.returncode == 0 and logs.stdout == "tick\n" * 5


@pytest.mark.parametrize("where", ["n2", "n1"])  # a remote node; the hybrid node itself
def test_stop_cancels_the_running_guest(cluster, tmp_path, where):
    n1, node = cluster["n1"], cluster[where]
    wasm = module(tmp_path, "long", ticker(120, 0.5, "still here\n"))
    run = run_job(n1, tmp_path, wasm, "--constraint", f"name={where}", "--no-wait", "--id-only")
    job_id = run.stdout.strip()
    wait_until(lambda: running_count(node) == 1, what="the guest to start")
    wait_until(
        lambda: "still here" in swarm(n1, "logs", job_id, cwd=tmp_path).stdout,
        what="the guest to print",
    )

    stop = swarm(n1, "job", "stop", job_id[:8], cwd=tmp_path)
    assert stop.returncode == 0, stop.stderr
    assert f"Job {job_id} stopped." in stop.stdout
    job = describe(n1, job_id)
    assert job["state"] == "stopped"
    assert [e["state"] for e in job["executions"]] == ["cancelled"]
    wait_until(lambda: running_count(node) == 0, timeout=3, what="the guest to stop")

    again = swarm(n1, "job", "stop", job_id, cwd=tmp_path)
    assert again.returncode == 1
    assert (
        again.stderr.strip() == f"Error: job {job_id} has already ended (stopped): nothing to stop"
    )


def running_count(node) -> int:
    with node.client() as client:
        return client.agent()["running"]


def swarm_env(node) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    return env | node.exports


def short(peer_id: str) -> str:
    return f"{peer_id[:6]}…{peer_id[-6:]}"


def test_a_queued_job_runs_when_a_matching_node_joins(serve, tmp_path):
    a = serve("a", "--node-type", "requester")
    serve("b", "--node-type", "compute", "--labels", "zone=us", "--peer", a.address)
    wait_until(lambda: all_healthy(a, 2), what="a to see b")
    wasm = module(tmp_path, "hello", hello())

    waits = run_job(a, tmp_path, wasm, "-c", "zone=eu", "--queue-timeout", "60", "--no-wait")
    job_id = job_id_of(waits)
    gives_up = run_job(a, tmp_path, wasm, "-c", "zone=ap", "--queue-timeout", "2", "--no-wait")
    short_timeout = job_id_of(gives_up)
    wait_until(lambda: describe(a, job_id)["state"] == "queued", what="the job to be queued")
    assert "label zone=us does not match zone=eu" in describe(a, job_id)["reason"]

    c = serve("c", "--node-type", "compute", "--labels", "zone=eu", "--peer", a.address)
    wait_until(lambda: describe(a, job_id)["state"] == "completed", what="the job to complete")
    assert ran_on(a, job_id) == [c.peer_id]

    job = describe(a, short_timeout)
    assert job["state"] == "failed"
    assert job["reason"].startswith("still not placed after its queue timeout (2 s)")
    assert "label zone=us does not match zone=ap" in job["reason"]
    assert job["executions"] == []


def test_a_lost_node_s_execution_completes_elsewhere_once(serve, tmp_path):
    a = serve("a", "--node-type", "requester")
    b = serve("b", "--node-type", "compute", "--peer", a.address)
    c = serve("c", "--node-type", "compute", "--max-jobs", "1", "--peer", a.address)
    wait_until(lambda: all_healthy(a, 3), what="a to see b and c")
    # c is kept busy, so the jobs go to b; then c frees up and b dies.
    blocker = run_job(
        a,
        tmp_path,
        module(tmp_path, "block", ticker(100, 0.5)),
        "-c",
        "name=c",
        "--no-wait",
        "--id-only",
    ).stdout.strip()
    wait_until(lambda: running_count(c) == 1, what="c to be busy")
    wasm = module(tmp_path, "ticker", ticker(12, 0.5, "working\n"))
    moves = job_id_of(run_job(a, tmp_path, wasm, "--no-wait"))
    stays = job_id_of(run_job(a, tmp_path, wasm, "--no-wait", "-c", "name=b", "--retries", "0"))
    wait_until(lambda: running_count(b) == 2, what="both jobs to run on b")
    with a.client() as client:
        client.stop(blocker)
    wait_until(lambda: running_count(c) == 0, what="c to be free")

    b.proc.kill()  # kill -9, mid-run
    wait_until(
        lambda: describe(a, moves)["state"] == "completed",
        timeout=30,
        what="the job to complete on c",
    )
    job = describe(a, moves)
    assert [(e["node_id"], e["state"]) for e in job["executions"]] == [
        (b.peer_id, "lost"),
        (c.peer_id, "completed"),
    ]
    assert any(e["kind"] == "retry" and "retry 1 of 2" in e["message"] for e in job["events"])
    lost, completed = job["executions"]
    results = a.home / "results" / moves
    assert sorted(p.name for p in results.iterdir()) == [completed["id"]]  # stored once
    got = swarm(a, "get", moves, cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert (tmp_path / f"job-{moves[:8]}" / "stdout").read_text() == "working\n" * 12

    job = describe(a, stays)
    assert job["state"] == "failed"
    assert "no retries left (0 allowed)" in job["reason"]
    assert [e["state"] for e in job["executions"]] == ["lost"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_restarted_requester_resumes_jobs_in_every_state(serve, tmp_path):
    port = free_port()
    a = serve("a", "--node-type", "requester", swarm_port=port)
    b = serve("b", "--node-type", "compute", "--labels", "zone=eu", "--peer", a.address)
    wait_until(lambda: all_healthy(a, 2), what="a to see b")
    hello_wasm = module(tmp_path, "hello", hello("survived\n"))
    jobs = {
        "completed": job_id_of(run_job(a, tmp_path, hello_wasm)),
        "failed": job_id_of(run_job(a, tmp_path, module(tmp_path, "exit3", exit_with(3)))),
        "stopped": job_id_of(
            run_job(a, tmp_path, module(tmp_path, "t", ticker(60, 0.5)), "--no-wait")
        ),
        "running": job_id_of(
            run_job(a, tmp_path, module(tmp_path, "r", ticker(16, 0.5, "resumed\n")), "--no-wait")
        ),
        "queued": job_id_of(
            run_job(a, tmp_path, hello_wasm, "-c", "zone=ap", "--queue-timeout", "600", "--no-wait")
        ),
    }
    assert swarm(a, "job", "stop", jobs["stopped"], cwd=tmp_path).returncode == 0
    wait_until(lambda: running_count(b) == 1, what="the running job to run")
    wait_until(lambda: describe(a, jobs["queued"])["state"] == "queued", what="a queued job")
    completed_stdout = list((a.home / "results" / jobs["completed"]).glob("*/stdout"))

    a.proc.kill()  # kill -9
    a.proc.wait()
    # A job accepted just before the crash: persisted as pending, never announced.
    with JobStore(a.home / JOBS_DB) as store:
        spec = describe_spec_of(hello_wasm)
        jobs["pending"] = store.create_job(spec).id

    a = serve("a", "--node-type", "requester", swarm_port=port)
    for state in ("completed", "failed", "stopped"):
        assert describe(a, jobs[state])["state"] == state
    # A module's own non-zero exit is its result: not retried, before or after the restart.
    assert [e["exit_code"] for e in describe(a, jobs["failed"])["executions"]] == [3]
    assert [p.read_text() for p in completed_stdout] == ["survived\n"]
    wait_until(
        lambda: describe(a, jobs["pending"])["state"] == "completed",
        timeout=20,
        what="the pending job to run after the restart",
    )
    wait_until(
        lambda: describe(a, jobs["running"])["state"] == "completed",
        timeout=20,
        what="the interrupted job to run again",
    )
    running = describe(a, jobs["running"])
    assert [e["state"] for e in running["executions"]] == ["lost", "completed"]
    assert "the requester restarted during the run" in running["executions"][0]["message"]
    assert describe(a, jobs["queued"])["state"] == "queued"
    with a.client() as client:
        listed = {job["id"] for job in client.jobs()}
    assert set(jobs.values()) <= listed


def describe_spec_of(wasm: Path) -> JobSpec:
    return JobSpec.from_dict(
        {"name": "pending", "task": {"module": digest_bytes(wasm.read_bytes())}}
    )


def test_trusted_requesters_flag_is_checked(tmp_path):
    bad = subprocess.run(
        [str(SWARM), "serve", "--home", str(tmp_path / "x"), "--trusted-requesters", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("Error: --trusted-requesters 'nope' is not a peer id")
    assert "Traceback" not in bad.stderr


async def test_a_node_works_only_for_trusted_requesters(tmp_path):
    someone = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"
    async with open_node(config(tmp_path, "x", trusted_requesters=frozenset({someone}))) as x:
        digest = x.requester.blobs.put_bytes(hello())
        job = x.requester.submit(JobSpec.from_dict({"task": {"module": digest}}))
        job = await x.requester.wait(job.id, timeout=10)
        assert job.state.value == "failed"
        assert f"node {short(x.peer_id)}: requester {short(x.peer_id)} is not trusted" in job.reason

    # Trusting itself (its identity is made before it starts), it runs its own jobs.
    (tmp_path / "y").mkdir()
    key_pair = load_or_create_identity(tmp_path / "y" / KEY_FILE)
    itself = str(ID.from_pubkey(key_pair.public_key))
    async with open_node(config(tmp_path, "y", trusted_requesters=frozenset({itself}))) as y:
        digest = y.requester.blobs.put_bytes(hello())
        job = y.requester.submit(JobSpec.from_dict({"task": {"module": digest}}))
        assert (await y.requester.wait(job.id, timeout=10)).state.value == "completed"


def record_announces(a) -> list[str]:
    """The ids of the jobs ``a`` announces from now on, in order."""
    announced: list[str] = []
    publish = a.requester._announcer.publish

    async def counted(announce):
        announced.append(announce.job_id)
        await publish(announce)

    a.requester._announcer.publish = counted
    return announced


async def test_a_hybrid_runs_jobs_that_read_no_data_itself_while_it_has_room(tmp_path):
    """No announce while its own compute role has room; the swarm gets the rest."""
    hybrid = config(tmp_path, "a", max_jobs=1)
    async with open_node(hybrid) as a:
        peers = (a.addresses[0],)
        async with open_node(config(tmp_path, "b", roles=(Role.COMPUTE,), peers=peers)) as b:
            await wait_for(
                lambda: b.peer_id in a.requester._compute_peers(), timeout=10, what="a to see b"
            )
            announced = record_announces(a)
            quick = a.requester.blobs.put_bytes(hello())
            slow = a.requester.blobs.put_bytes(ticker(times=20, interval=0.1))

            def submit(digest: str):
                return a.requester.submit(JobSpec.from_dict({"task": {"module": digest}}))

            async def ran_on(job) -> list[str]:
                assert (await a.requester.wait(job.id, timeout=20)).state.value == "completed"
                return [e.node_id for e in a.requester.store.executions(job.id)]

            assert await ran_on(submit(quick)) == [a.peer_id]
            assert announced == [], "a job a's own room could take was announced"

            holds_a = submit(slow)  # a's one slot, for 2 s
            await wait_for(lambda: a.compute.running == 1, what="a to run the slow job")
            overflow = submit(quick)
            assert await ran_on(overflow) == [b.peer_id]
            assert await ran_on(holds_a) == [a.peer_id]
            assert announced == [overflow.id]


@asynccontextmanager
async def requester_and(tmp_path, *computes: dict):
    """A requester-only node and compute nodes (``config`` kwargs each) peered to it, its
    announces recorded (job ids) and its periodic requeue off: only freed room and joins
    wake its queue."""
    async with open_node(config(tmp_path, "a", roles=(Role.REQUESTER,))) as a:
        a.requester.settings = replace(a.requester.settings, requeue_interval=3600)
        a.requester._queue.wake.set()  # the loop's next wait takes the new interval
        peers = (a.addresses[0],)
        async with AsyncExitStack() as stack:
            nodes = []
            for i, kwargs in enumerate(computes):
                node_config = config(
                    tmp_path, f"c{i}", roles=(Role.COMPUTE,), peers=peers, **kwargs
                )
                nodes.append(await stack.enter_async_context(open_node(node_config)))
            await wait_for(
                lambda: {n.peer_id for n in nodes} <= a.requester._compute_peers(),
                timeout=10,
                what="a to see its compute nodes",
            )
            yield a, nodes, record_announces(a)


async def placed(a, job, node) -> None:
    """``job`` completes, on ``node`` alone."""
    assert (await a.requester.wait(job.id, timeout=20)).state.value == "completed"
    assert [e.node_id for e in a.requester.store.executions(job.id)] == [node.peer_id]


def submit_to(a, wasm: bytes, *constraints: str):
    digest = a.requester.blobs.put_bytes(wasm)
    spec = {"task": {"module": digest}, "constraints": list(constraints)}
    return a.requester.submit(JobSpec.from_dict(spec))


async def test_a_node_whose_result_frees_room_is_offered_the_next_job_in_the_ack(tmp_path):
    async with requester_and(tmp_path, {"max_jobs": 1}) as (a, (b,), announced):
        holds_b = submit_to(a, ticker(times=10, interval=0.1))
        await wait_for(lambda: b.compute.running == 1, what="b to run the slow job")
        waits = submit_to(a, hello())  # b is busy: queued
        await wait_for(lambda: waits.id in a.requester._queue, what="the quick job to queue")
        await placed(a, holds_b, b)
        await placed(a, waits, b)
        # Announced once each: b's result ack offered it the waiting job, no second round.
        assert announced == [holds_b.id, waits.id]


@dataclass(frozen=True)
class BusyPair:
    """Requester a; b (zone=us) and c (zone=eu), one job slot each, both busy: b for 0.3 s
    (``holds_b``), c longer (``holds_c``)."""

    a: Any
    b: Any
    c: Any
    announced: list[str]
    holds_b: Any
    holds_c: Any

    def submit(self, wasm: bytes, *constraints: str):
        return submit_to(self.a, wasm, *constraints)

    async def queued(self, job) -> None:
        await wait_for(lambda: job.id in self.a.requester._queue, what=f"{job.id} to queue")


@asynccontextmanager
async def busy_pair(tmp_path, c_busy: float = 1.5):
    us, eu = {"max_jobs": 1, "labels": {"zone": "us"}}, {"max_jobs": 1, "labels": {"zone": "eu"}}
    async with requester_and(tmp_path, us, eu) as (a, (b, c), announced):
        holds_c = submit_to(a, ticker(times=int(c_busy * 10), interval=0.1), "zone=eu")
        await wait_for(lambda: c.compute.running == 1, what="c to run the long job")
        holds_b = submit_to(a, ticker(times=3, interval=0.1), "zone=us")
        await wait_for(lambda: b.compute.running == 1, what="b to run the short job")
        yield BusyPair(a, b, c, announced, holds_b, holds_c)


async def test_an_offered_job_the_node_declines_goes_to_the_swarm(tmp_path):
    async with busy_pair(tmp_path) as p:
        a, b, c, announced = p.a, p.b, p.c, p.announced
        # b answers the quick job "busy" when it is first announced, then "does not fit"
        # (as a node would whose labels changed in between).
        consider, asked = b.compute.consider, []

        def b_answers(announce):
            if announce.job_id != waits.id:
                return consider(announce)
            asked.append(announce.job_id)
            if len(asked) == 1:
                return Decline(waits.id, b.peer_id, "busy: 1 of 1 job slots in use", True)
            return Decline(waits.id, b.peer_id, "does not fit", False)

        b.compute.consider = b_answers
        waits = p.submit(hello())  # both busy: queued
        await p.queued(waits)
        # b's result ack offers b the waiting job; b declines it, so the swarm is asked (c,
        # still busy); when c's room frees up, its ack offers the job to c.
        await placed(a, p.holds_b, b)
        await wait_for(lambda: announced.count(waits.id) == 2, what="the swarm to be asked")
        await placed(a, p.holds_c, c)
        await placed(a, waits, c)
        assert len(asked) == 3  # announced; offered in the ack; announced to all again
        assert announced == [p.holds_c.id, p.holds_b.id, waits.id, waits.id]
        declines = [e for e in a.requester.store.events(waits.id) if e.kind == "decline"]
        assert {(e.node_id, e.message) for e in declines} >= {(b.peer_id, "does not fit")}


async def test_an_offered_job_the_node_is_too_busy_for_keeps_its_place_unannounced(tmp_path):
    """Busy: the room went to another job first (a race the ack can lose); this one waits
    for the next room in its place, and the swarm is not asked meanwhile."""
    async with busy_pair(tmp_path) as p:
        a, b, c = p.a, p.b, p.c
        waits = p.submit(hello())  # both busy: queued
        await p.queued(waits)
        consider, offered = b.compute.consider, []

        def busy(announce):  # b's answer to the offer in its short job's ack
            if announce.job_id == waits.id:
                offered.append(announce.job_id)
                return Decline(announce.job_id, b.peer_id, "busy: 1 of 1 job slots in use", True)
            return consider(announce)

        b.compute.consider = busy
        await placed(a, p.holds_b, b)
        await wait_for(lambda: offered and waits.id in a.requester._queue, what="back in line")
        await placed(a, p.holds_c, c)
        await placed(a, waits, c)  # offered to c in turn, in its long job's ack
        assert offered == [waits.id]
        # The swarm was not asked again.
        assert p.announced == [p.holds_c.id, p.holds_b.id, waits.id]


async def test_a_job_only_a_busy_node_fits_does_not_hold_up_the_jobs_behind_it(tmp_path):
    """The front of the line fits only c, busy for seconds; b's room, freed meanwhile,
    goes to the job behind it at once, not to c's job (which b declined as unfit)."""
    async with busy_pair(tmp_path, c_busy=4.0) as p:
        a, b, c = p.a, p.b, p.c
        front = p.submit(hello(), "zone=eu")  # only c fits it
        await p.queued(front)
        behind = p.submit(hello())  # any node: queued behind it (every node is busy)
        assert a.requester.store.get_job(behind.id).state.value == "queued"
        await placed(a, p.holds_b, b)
        with trio.fail_after(2):  # well before c is free
            await placed(a, behind, b)
        # (b's room, freed again, finds no job it fits: a round may be asking about the
        # front job right now, so it is judged by its state, not by its place in line)
        assert c.compute.running == 1
        assert a.requester.store.get_job(front.id).state.value == "queued"
        await placed(a, p.holds_c, c)
        await placed(a, front, c)
