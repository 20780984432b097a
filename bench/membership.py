"""Membership figures: `.venv/bin/python bench/membership.py [N ...] [--topology T]`.

For each N (default 3, 10, 20) it starts N `swarm serve` processes on 127.0.0.1 and
prints:

1. convergence: from the last node's start until every node lists all N as healthy;
2. advert reach: for adverts issued once all nodes are up and seen by every other node,
   the time from issue (the advert's sequence number is its issue time in ns) until the
   last node recorded it, and the time per receiving node; over several heartbeats;
3. per-node RSS and idle CPU (over a quiet window, no API calls during it).

Topology: `seed` (every node bootstraps from node 0: the simplest real set-up, default)
or `tree` (node i bootstraps from a random earlier node). Targets: an advert reaches 20
nodes within 1 s; idle CPU <= 2 % per node.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import ServeProcess  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_swarm(n: int, base: Path, topology: str, rng: random.Random) -> list[ServeProcess]:
    nodes: list[ServeProcess] = []
    for i in range(n):
        peers = []
        if i > 0:
            seed = 0 if topology == "seed" else rng.randrange(i)
            peers = ["--peer", nodes[seed].address]
        nodes.append(ServeProcess(base / f"n{i:02d}", *peers).wait_ready(timeout=60))
    return nodes


def wait_converged(nodes: list[ServeProcess], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if all(
            len(table) == len(nodes) and set(table.values()) == {"healthy"}
            for table in (node.statuses() for node in nodes)
        ):
            return time.monotonic() - started
        time.sleep(0.2)
    raise SystemExit(f"{len(nodes)} nodes did not converge within {timeout}s")


def reach_samples(nodes: list[ServeProcess], since: float, rounds: int, pause: float):
    """(per-receiver delays, reach-all delays) in seconds, from several table snapshots.

    Only adverts issued after ``since`` (wall clock) count: earlier ones may have waited
    for their receiver to join, which is join latency, not propagation.
    """
    per_receiver: list[float] = []
    reach_all: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        for node in nodes:
            for entry in node.nodes():
                if entry["self"] or entry["seq"] / 1e9 < since:
                    continue
                seen = datetime.fromisoformat(entry["last_seen"]).timestamp()
                delay = seen - entry["seq"] / 1e9
                per_receiver.append(delay)
                reach_all.setdefault((entry["peer_id"], entry["seq"]), []).append(delay)
        time.sleep(pause)
    complete = [max(d) for d in reach_all.values() if len(d) == len(nodes) - 1]
    return per_receiver, complete


def idle_cpu(nodes: list[ServeProcess], window: float) -> list[float]:
    before = [cpu_seconds(node.proc.pid) for node in nodes]
    time.sleep(window)
    after = [cpu_seconds(node.proc.pid) for node in nodes]
    return [100 * (a - b) / window for a, b in zip(after, before, strict=True)]


def ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    values = sorted(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return (
        f"p50 {1000 * statistics.median(values):6.1f} ms  p95 {1000 * p95:6.1f} ms  "
        f"max {1000 * values[-1]:6.1f} ms  (n={len(values)})"
    )


def run(n: int, topology: str, idle_window: float) -> None:
    base = Path(tempfile.mkdtemp(prefix=f"swarm-bench-{n}-"))
    nodes: list[ServeProcess] = []
    try:
        launched = time.monotonic()
        nodes = start_swarm(n, base, topology, random.Random(n))
        startup = time.monotonic() - launched
        converged = wait_converged(nodes, timeout=60)
        per_receiver, complete = reach_samples(nodes, time.time(), rounds=6, pause=2.1)
        cpu = idle_cpu(nodes, idle_window)
        rss = [rss_mib(node.proc.pid) for node in nodes]
        print(f"N={n:<3} {topology} topology, heartbeat 2 s")
        print(f"  start {n} processes   {startup:6.1f} s (one after the other)")
        print(f"  all list all healthy  {converged:6.2f} s after the last one started")
        print(f"  advert reaches all    {ms(complete)}")
        print(f"  advert per receiver   {ms(per_receiver)}")
        print(
            f"  RSS per node          median {statistics.median(rss):.0f} MiB, "
            f"max {max(rss):.0f} MiB"
        )
        print(
            f"  idle CPU per node     median {statistics.median(cpu):.2f} %, "
            f"max {max(cpu):.2f} % (over {idle_window:.0f} s)"
        )
        sys.stdout.flush()
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[3, 10, 20])
    parser.add_argument("--topology", choices=["seed", "tree"], default="seed")
    parser.add_argument("--idle-window", type=float, default=10.0)
    args = parser.parse_args()
    print("swarm membership benchmark (separate processes on 127.0.0.1)")
    for n in args.sizes:
        run(n, args.topology, args.idle_window)


if __name__ == "__main__":
    main()
