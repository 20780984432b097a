"""Placement figures: `.venv/bin/python bench/placement.py` (part of `make bench`).

1. Loss to re-award: a requester-only node A runs a long job on compute node B (C idle);
   B is then lost, and the time from the loss until A has awarded the job to C is read
   from A's event log (its clock, the same machine's). Two kinds of loss:
   - `kill -9`: the process dies, the kernel closes its connections, A sees the result
     stream break;
   - `SIGSTOP`: the process freezes with its connections open (a hung or cut-off
     machine); only missed heartbeats tell (3 of them, 2 s apart by default).
2. Placement latency with 10 compute nodes bidding: a requester-only node and 10 compute
   nodes, a tiny job at a time: submit → awarded (every node's answer in, winner chosen)
   and submit → completed.
Every node is a separate `swarm serve` process on 127.0.0.1. Goal: re-awarded <= 10 s.
"""

from __future__ import annotations

import shutil
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.jobs import pct, wait_healthy  # noqa: E402
from tests.conftest import ServeProcess  # noqa: E402
from tests.guests import hello, ticker  # noqa: E402

LOSS_ROUNDS = 3
LATENCY_RUNS = 40
BIDDERS = 10


def at(event: dict) -> float:
    return datetime.fromisoformat(event["at"]).timestamp()


def running_on(client, job_id: str) -> str | None:
    live = [e for e in client.job(job_id)["executions"] if e["state"] in ("accepted", "running")]
    return live[0]["node_id"] if live else None


def loss_to_reaward(work: Path, how: signal.Signals, round_: int) -> float:
    started: list[ServeProcess] = []

    def serve(name: str, *args: str) -> ServeProcess:
        node = ServeProcess(work / f"{how.name}-{round_}-{name}", *args).wait_ready()
        started.append(node)
        return node

    try:
        a = serve("a", "--node-type", "requester")
        b = serve("b", "--node-type", "compute", "--peer", a.address)
        wait_healthy(a, 2)
        module = work / "long.wasm"
        module.write_bytes(ticker(600, 0.1))
        with a.client() as client:
            spec = {"name": "long", "task": {"module": client.upload_module(module)}}
            job_id = client.submit(spec)["id"]
            deadline = time.monotonic() + 20
            while running_on(client, job_id) != b.peer_id:
                if time.monotonic() > deadline:
                    raise SystemExit("bench: the job never started on b")
                time.sleep(0.02)
            c = serve("c", "--node-type", "compute", "--peer", a.address)
            wait_healthy(a, 3)
            lost_at = time.time()
            b.proc.send_signal(how)
            deadline = time.monotonic() + 60
            while running_on(client, job_id) != c.peer_id:
                if time.monotonic() > deadline:
                    raise SystemExit(f"bench: the job was not re-awarded after {how.name}")
                time.sleep(0.02)
            job = client.job(job_id)
        (award,) = [
            e
            for e in job["events"]
            if e["kind"] == "execution"
            and e["node_id"] == c.peer_id
            and e["message"] == "execution accepted"
        ]
        return at(award) - lost_at
    finally:
        for node in started:
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGCONT)
            node.stop()


def placement_latency(work: Path) -> tuple[list[float], list[float]]:
    started: list[ServeProcess] = []
    try:
        a = ServeProcess(work / "lat-a", "--node-type", "requester").wait_ready()
        started.append(a)
        for i in range(BIDDERS):
            args = ("--node-type", "compute", "--peer", a.address)
            started.append(ServeProcess(work / f"lat-{i:02d}", *args).wait_ready(timeout=60))
        wait_healthy(a, BIDDERS + 1, timeout=60)
        module = work / "hello.wasm"
        module.write_bytes(hello())
        awarded, completed = [], []
        with a.client() as client:
            spec = {"name": "lat", "task": {"module": client.upload_module(module)}}
            for _ in range(BIDDERS):  # warm up: every node fetches and compiles the module
                client.wait(client.submit(spec)["id"])
            for _ in range(LATENCY_RUNS):
                t0 = time.perf_counter()
                job = client.wait(client.submit(spec)["id"])
                completed.append(time.perf_counter() - t0)
                assert job["state"] == "completed", job["reason"]
                created = at(job["events"][0])
                (award,) = [e for e in job["events"] if "awarded to" in e["message"]]
                answers = {e["node_id"] for e in job["events"] if e["kind"] == "decline"}
                assert not answers, "every node should have bid"
                awarded.append(at(award) - created)
        return sorted(awarded), sorted(completed)
    finally:
        for node in started:
            node.stop()


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="swarm-bench-placement-"))
    print("running... (about two minutes)", flush=True)
    try:
        losses = {
            how: [loss_to_reaward(work, how, i) for i in range(LOSS_ROUNDS)]
            for how in (signal.SIGKILL, signal.SIGSTOP)
        }
        awarded, completed = placement_latency(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ms = 1000
    p50_awarded, p50_completed = statistics.median(awarded), statistics.median(completed)
    print("swarm placement benchmark (separate `swarm serve` processes on 127.0.0.1)")
    for how, times in losses.items():
        shown = ", ".join(f"{t:.2f}" for t in times)
        print(
            f"  loss -> re-awarded, {how.name:<8}       median {statistics.median(times):5.2f} s"
            f"   ({shown} s; goal <= 10 s)"
        )
    print(
        f"  submit -> awarded, {BIDDERS} bidders       p50 {p50_awarded * ms:6.1f} ms"
        f"   p95 {pct(awarded, 0.95) * ms:6.1f} ms   (n={len(awarded)})"
    )
    print(
        f"  submit -> completed, {BIDDERS} bidders     p50 {p50_completed * ms:6.1f} ms"
        f"   p95 {pct(completed, 0.95) * ms:6.1f} ms"
    )


if __name__ == "__main__":
    main()
