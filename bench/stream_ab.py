"""Result streaming, two or more versions of swarm side by side, in the same minutes.

    .venv/bin/python bench/stream_ab.py OLD_CHECKOUT NEW_CHECKOUT [--rounds N] [--delete]

On this shared machine the speed of a 100 MiB transfer moves by a third from one minute to
the next, so two versions measured one after the other tell little. Here each checkout
(a `git worktree` or clone of swarm; its code runs the nodes, through PYTHONPATH) gets a
swarm of its own, requester A and compute B, all running at once, and a raw libp2p stream
(`bench/raw_stream.py`) runs beside them. Each round takes one 100 MiB result from every
swarm, in rotating order, and one raw transfer. Printed per round, then as medians: MB/s
without the guest's run (as `bench/jobs.py`), the ratio to the same round's raw transfer,
and the CPU the two nodes used per result, A's split into its event loop and its other
threads. Results are kept on A, as in `bench/jobs.py`, unless ``--delete``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.jobs import wait_healthy  # noqa: E402
from bench.raw_stream import RawStream  # noqa: E402
from tests.conftest import ServeProcess  # noqa: E402
from tests.guests import random_writer  # noqa: E402

MIB = 1024 * 1024
TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of process ``pid``: its main thread's, and its other threads' together."""
    main = other = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        seconds = (int(fields[11]) + int(fields[12])) / TICK
        if int(tid) == pid:
            main += seconds
        else:
            other += seconds
    return main, other


class Version:
    """One checkout's swarm: requester A and compute B."""

    def __init__(self, name: str, code: Path, work: Path, module: Path, keep: bool) -> None:
        self.name, self.keep = name, keep
        env = dict(os.environ, PYTHONPATH=str(code))
        self.a = ServeProcess(work / f"{name}-a", "--node-type", "requester", env=env)
        self.a.wait_ready()
        self.b = ServeProcess(
            work / f"{name}-b", "--node-type", "compute", "--peer", self.a.address, env=env
        ).wait_ready()
        wait_healthy(self.a, 2)
        self.client = self.a.client()
        self.spec = {"name": "big", "task": {"module": self.client.upload_module(module)}}
        self.rates: list[float] = []
        self.ratios: list[float] = []
        self.cpus: list[tuple[float, float, float]] = []  # A's loop, A's other threads, B

    def result(self) -> float:
        """MB/s of one 100 MiB result, the guest's run left out."""
        before = (*cpu(self.a.proc.pid), sum(cpu(self.b.proc.pid)))
        started = time.perf_counter()
        job = self.client.wait(self.client.submit(self.spec)["id"])
        elapsed = time.perf_counter() - started
        after = (*cpu(self.a.proc.pid), sum(cpu(self.b.proc.pid)))
        if job["state"] != "completed":
            raise SystemExit(f"stream_ab: {self.name}'s job {job['state']}: {job['reason']}")
        (event,) = [e["message"] for e in job["events"] if e["kind"] == "result"]
        run = float(event.split(" ms")[0].rsplit(", ", 1)[1]) / 1000  # "…, 812.3 ms, …"
        self.cpus.append(tuple(y - x for x, y in zip(before, after, strict=True)))
        if not self.keep:
            shutil.rmtree(self.a.home / "results", ignore_errors=True)
        return 100 * MIB / (elapsed - run) / 1e6

    def stop(self) -> None:
        self.client.close()
        for node in (self.a, self.b):
            node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", nargs="+", type=Path, help="swarm checkouts to compare")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--delete", action="store_true", help="remove each result on A")
    args = parser.parse_args()
    names = [f"{i}:{path.name}" for i, path in enumerate(args.checkouts)]
    for path in args.checkouts:
        if not (path / "swarm" / "__init__.py").is_file():
            raise SystemExit(f"stream_ab: {path} is not a swarm checkout (no swarm/)")
    work = Path(tempfile.mkdtemp(prefix="swarm-bench-ab-"))
    module = work / "big.wasm"
    module.write_bytes(random_writer(3, "big.bin", blocks=1600))  # 100 MiB of noise
    versions: list[Version] = []
    try:
        for name, path in zip(names, args.checkouts, strict=True):
            versions.append(Version(name, path.resolve(), work, module, not args.delete))
        with RawStream() as raw:
            for version in versions:  # warm: module fetch, compile cache, streams
                version.result()
            raw.transfer()
            raws = []
            for round_ in range(args.rounds):
                turn = round_ % len(versions)
                order = versions[turn:] + versions[:turn]
                raws.append(raw.transfer())
                for version in order:
                    version.rates.append(version.result())
                    version.ratios.append(version.rates[-1] / raws[-1])
                print(
                    f"round {round_}: raw {raws[-1]:.0f} MB/s  "
                    + "  ".join(f"{v.name} {v.rates[-1]:.0f}" for v in versions),
                    flush=True,
                )
        print(f"medians over {args.rounds} rounds (raw {statistics.median(raws):.1f} MB/s):")
        for v in versions:
            loop, others, b = (statistics.median(c) for c in zip(*v.cpus[1:], strict=True))
            print(
                f"  {v.name:24} {statistics.median(v.rates):6.1f} MB/s  ratio "
                f"{statistics.median(v.ratios):.2f}  CPU per result: A loop {loop:.2f} s,"
                f" A other threads {others:.2f} s, B {b:.2f} s"
            )
    finally:
        for version in versions:
            version.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
