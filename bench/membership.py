"""Membership figures: `.venv/bin/python bench/membership.py [N ...] [--topology T]`.

For each N (default 3, 10, 20) it starts N `swarm serve` processes on 127.0.0.1 and
prints:

1. convergence: from the last node's start until every node lists all N as healthy;
2. advert reach: for adverts issued once all nodes are up and seen by every other node,
   the time from issue (the advert's sequence number is its issue time in ns) until the
   last node recorded it, and the time per receiving node; over several heartbeats;
3. per-node RSS and idle CPU (over a quiet window, no API calls during it). The CPU
   figure is a node's whole process tree, the node process and its sandbox workers (a
   compute node keeps two warm), since they idle on its behalf; the node process alone
   is shown too. RSS is the node process's, and its tree's summed (shared pages twice).

Topology: `seed` (every node bootstraps from node 0: the simplest real set-up, default)
or `tree` (node i bootstraps from a random earlier node). Targets: an advert reaches 20
nodes within 1 s; idle CPU <= 2 % per node.

`--compare CHECKOUT` (another version of the code, e.g. a `git worktree` of the commit
before a change) runs every odd-numbered node on that code instead, in the same swarm,
and prints idle CPU for the two halves apart (the seed, node 0, left out of both; with
`--flip`, the even-numbered nodes run the other code). Both halves are measured in the
same seconds on the same host, which makes a fairer comparison on a shared machine than
runs one after the other.
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


def cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """CPU time of ``pid`` (plus that of its children it has waited for, if ``reaped``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    if reaped:
        ticks += int(fields[13]) + int(fields[14])  # cutime + cstime
    return ticks / CLOCK_TICKS


def descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        for task in Path(f"/proc/{stack.pop()}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue  # gone meanwhile
            found += children
            stack += children
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and all its descendants, living or reaped."""
    total = 0.0
    for member in [pid, *descendants(pid)]:
        try:
            total += cpu_seconds(member, reaped=True)
        except OSError:
            pass  # exited between the listing and the read: counted in its parent's cutime
    return total


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_swarm(
    n: int, base: Path, topology: str, rng: random.Random, envs: list[dict[str, str] | None]
) -> list[ServeProcess]:
    nodes: list[ServeProcess] = []
    for i in range(n):
        peers = []
        if i > 0:
            seed = 0 if topology == "seed" else rng.randrange(i)
            peers = ["--peer", nodes[seed].address]
        node = ServeProcess(base / f"n{i:02d}", *peers, env=envs[i])
        nodes.append(node.wait_ready(timeout=60))
    return nodes


def code_of(n: int, compare: Path | None, flip: bool) -> list[bool]:
    """For each node, whether it runs the compared code (odd nodes, or even with flip)."""
    return [compare is not None and i % 2 == (0 if flip else 1) for i in range(n)]


def environments(others: list[bool], compare: Path | None) -> list[dict[str, str] | None]:
    """The other code comes first on the import path of the nodes that run it."""
    other = {**os.environ, "PYTHONPATH": str(compare)} if compare is not None else None
    return [other if it else None for it in others]


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


def idle_cpu(nodes: list[ServeProcess], window: float) -> tuple[list[float], list[float]]:
    """(% of a core per node's process tree, % per node process alone) over ``window``."""
    pids = [node.proc.pid for node in nodes]
    before = [(tree_cpu_seconds(pid), cpu_seconds(pid)) for pid in pids]
    time.sleep(window)
    after = [(tree_cpu_seconds(pid), cpu_seconds(pid)) for pid in pids]
    tree = [100 * (a[0] - b[0]) / window for a, b in zip(after, before, strict=True)]
    alone = [100 * (a[1] - b[1]) / window for a, b in zip(after, before, strict=True)]
    return tree, alone


def ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    values = sorted(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return (
        f"p50 {1000 * statistics.median(values):6.1f} ms  p95 {1000 * p95:6.1f} ms  "
        f"max {1000 * values[-1]:6.1f} ms  (n={len(values)})"
    )


def halves(cpu: list[float], others: list[bool]) -> str:
    """Idle CPU of this code's nodes and the compared code's, node 0 left out of both."""
    parts = []
    for label, which in (("this code", False), ("compared", True)):
        values = [c for i, (c, o) in enumerate(zip(cpu, others, strict=True)) if i and o == which]
        parts.append(
            f"{label} (n={len(values)}) median {statistics.median(values):.2f} %, "
            f"mean {statistics.mean(values):.2f} %, max {max(values):.2f} %"
        )
    return "; ".join(parts)


def run(
    n: int, topology: str, idle_window: float, compare: Path | None = None, flip: bool = False
) -> None:
    base = Path(tempfile.mkdtemp(prefix=f"swarm-bench-{n}-"))
    nodes: list[ServeProcess] = []
    others = code_of(n, compare, flip)
    try:
        launched = time.monotonic()
        nodes = start_swarm(n, base, topology, random.Random(n), environments(others, compare))
        startup = time.monotonic() - launched
        converged = wait_converged(nodes, timeout=60)
        per_receiver, complete = reach_samples(nodes, time.time(), rounds=6, pause=2.1)
        workers = statistics.median(len(descendants(node.proc.pid)) for node in nodes)
        cpu, node_cpu = idle_cpu(nodes, idle_window)
        rss = [rss_mib(node.proc.pid) for node in nodes]
        tree_rss = [
            sum(rss_mib(pid) for pid in [node.proc.pid, *descendants(node.proc.pid)])
            for node in nodes
        ]
        print(f"N={n:<3} {topology} topology, heartbeat 2 s")
        print(f"  start {n} processes   {startup:6.1f} s (one after the other)")
        print(f"  all list all healthy  {converged:6.2f} s after the last one started")
        print(f"  advert reaches all    {ms(complete)}")
        print(f"  advert per receiver   {ms(per_receiver)}")
        print(
            f"  RSS per node          median {statistics.median(rss):.0f} MiB, "
            f"max {max(rss):.0f} MiB (node process; with its workers, summed: median "
            f"{statistics.median(tree_rss):.0f} MiB)"
        )
        print(
            f"  idle CPU per node     median {statistics.median(cpu):.2f} %, "
            f"max {max(cpu):.2f} % (over {idle_window:.0f} s; node process and its "
            f"{workers:.0f} sandbox workers)"
        )
        print(
            f"    node process alone  median {statistics.median(node_cpu):.2f} %, "
            f"max {max(node_cpu):.2f} %"
        )
        if compare is not None:
            seed = "the compared code" if others[0] else "this code"
            print(f"  compared with {compare} (node 0 on {seed}):")
            print(f"    {halves(cpu, others)}")
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
    parser.add_argument("--compare", type=Path, help="another checkout of swarm to run on half")
    parser.add_argument("--flip", action="store_true", help="the compared code on even nodes")
    args = parser.parse_args()
    if args.compare is not None and not (args.compare / "swarm" / "__init__.py").is_file():
        raise SystemExit(f"--compare {args.compare}: no swarm package there; give a checkout")
    if args.compare is not None and min(args.sizes) < 3:
        raise SystemExit("--compare needs at least 3 nodes (node 0 is left out of both halves)")
    print("swarm membership benchmark (separate processes on 127.0.0.1)")
    for n in args.sizes:
        run(n, args.topology, args.idle_window, args.compare, args.flip)


if __name__ == "__main__":
    main()
