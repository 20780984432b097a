"""Job figures, in one run: `.venv/bin/python bench/jobs.py` (part of `make bench`).

1. submit → completed latency (p50, p95) of a tiny module, one job at a time:
   on a hybrid node alone, and on a 3-node swarm (requester-only A; compute B and C).
2. Sustained jobs/s on the 3-node swarm (hybrid A + compute B, C): N jobs submitted
   concurrently, from the first submit to the last completion, after a warm-up burst
   that ran on all three nodes.
3. Result streaming: 100 MB of /outputs from compute B to requester A, MB/s, against a
   raw libp2p stream between two hosts on the same machine: eleven transfers of each,
   taken in pairs one right after the other; the ratio is the median of the pairs'.
   (On the shared 2-core machine single pairs range from 0.4 to 1.4 for the same code,
   and the median of five moved by 0.1 from run to run: docs/BENCHMARKS.md, 2026-11-29
   night.)
Every node is a separate `swarm serve` process on 127.0.0.1.
Goals: p50 <= 20 ms hybrid, <= 50 ms across nodes; >= 100 jobs/s; streaming >= 0.7x raw.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.raw_stream import RawStream  # noqa: E402
from tests.conftest import ServeProcess  # noqa: E402
from tests.guests import hello, random_writer  # noqa: E402

LATENCY_RUNS = 60
WARM_JOBS = 40
STREAM_PAIRS = 11
THROUGHPUT_JOBS = int(os.environ.get("BENCH_JOBS", "400"))


def wait_healthy(node: ServeProcess, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = node.statuses()
        if len(statuses) == count and set(statuses.values()) == {"healthy"}:
            return
        time.sleep(0.05)
    raise SystemExit(f"bench: nodes did not all become healthy: {node.statuses()}")


def latency(node: ServeProcess, module: Path) -> list[float]:
    times = []
    with node.client() as client:
        digest = client.upload_module(module)
        spec = {"name": "lat", "task": {"module": digest}}
        for _ in range(5):  # warm up: compile cache, connections
            client.wait(client.submit(spec)["id"])
        for _ in range(LATENCY_RUNS):
            t0 = time.perf_counter()
            job = client.wait(client.submit(spec)["id"])
            times.append(time.perf_counter() - t0)
            assert job["state"] == "completed", job["reason"]
    return sorted(times)


def throughput(node: ServeProcess, module: Path, jobs: int) -> float:
    with node.client() as client:
        digest = client.upload_module(module)
        spec = {"name": "tp", "task": {"module": digest}}
        # Warm every node, not just this one: a burst overflows onto the others, which
        # fetch the module and compile it in their sandbox workers once (one-off costs,
        # not the sustained rate).
        nodes: set[str] = set()
        for _ in range(5):
            burst = [client.submit(spec)["id"] for _ in range(WARM_JOBS)]
            nodes |= {e["node_id"] for i in burst for e in client.wait(i)["executions"]}
            if len(nodes) == 3:
                break
        else:
            raise SystemExit(f"bench: warm-up bursts ran on {len(nodes)} of the 3 nodes")

    local = threading.local()

    def submit(_):
        if not hasattr(local, "client"):  # one connection per submitting thread
            local.client = node.client()
        return local.client.submit(spec)["id"]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(submit, range(jobs)))
    with node.client() as client:
        client.timeout = 60
        for job_id in ids:
            job = client.wait(job_id)
            assert job["state"] == "completed", job["reason"]
    return jobs / (time.perf_counter() - t0)


def streaming(requester: ServeProcess, module: Path) -> tuple[float, float, float, list[float]]:
    """100 MiB results, each next to one raw-stream transfer (alternating which goes
    first), so that both are measured in the same seconds: medians of (MB/s submit to
    completed, MB/s with the guest's own run time taken out, raw MB/s) and the pairs' ratios."""
    size = 100 * 1024 * 1024
    end_to_end, without_run, raw, ratios = [], [], [], []
    with requester.client() as client, RawStream() as stream:
        digest = client.upload_module(module)
        spec = {"name": "big", "task": {"module": digest}, "constraints": ["node=compute"]}

        def result() -> tuple[float, float]:
            t0 = time.perf_counter()
            job = client.wait(client.submit(spec)["id"])
            elapsed = time.perf_counter() - t0
            assert job["state"] == "completed", job["reason"]
            (event,) = [e["message"] for e in job["events"] if e["kind"] == "result"]
            # "completed, exit code 0, 812.3 ms, …"
            run = float(event.split(" ms")[0].rsplit(", ", 1)[1]) / 1000
            return size / elapsed / 1e6, size / (elapsed - run) / 1e6

        result()  # warm: module fetch, compile cache, streams
        stream.transfer()
        for i in range(STREAM_PAIRS):
            if i % 2:
                ours = result()
                raw.append(stream.transfer())
            else:
                raw.append(stream.transfer())
                ours = result()
            end_to_end.append(ours[0])
            without_run.append(ours[1])
            ratios.append(ours[1] / raw[-1])
    medians = tuple(statistics.median(v) for v in (end_to_end, without_run, raw))
    return (*medians, ratios)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="swarm-bench-jobs-"))
    print("running... (about a minute)", flush=True)
    tiny = work / "hello.wasm"
    tiny.write_bytes(hello())
    big = work / "big.wasm"
    big.write_bytes(random_writer(3, "big.bin", blocks=1600))  # 1600 x 64 KiB = 100 MiB of noise
    started: list[ServeProcess] = []

    def serve(name: str, *args: str) -> ServeProcess:
        node = ServeProcess(work / name, *args).wait_ready()
        started.append(node)
        return node

    try:
        hybrid = serve("solo")
        solo = latency(hybrid, tiny)
        hybrid.stop()

        a = serve("a", "--node-type", "requester")
        b = serve("b", "--node-type", "compute", "--peer", a.address, "--labels", "node=compute")
        c = serve("c", "--node-type", "compute", "--peer", a.address)
        wait_healthy(a, 3)
        remote = latency(a, tiny)
        stream_end_to_end, stream_mbs, raw, ratios = streaming(a, big)
        for node in (a, b, c):
            node.stop()
        shutil.rmtree(a.home / "results", ignore_errors=True)  # 400 MiB: not kept meanwhile

        h = serve("h")
        serve("hb", "--node-type", "compute", "--peer", h.address)
        serve("hc", "--node-type", "compute", "--peer", h.address)
        wait_healthy(h, 3)
        rate = throughput(h, tiny, THROUGHPUT_JOBS)
    finally:
        for node in started:
            node.stop()
        shutil.rmtree(work, ignore_errors=True)  # ~100 MiB of results per streaming run

    ms = 1000
    print("swarm jobs benchmark (separate `swarm serve` processes on 127.0.0.1)")
    print(
        f"  submit -> completed, hybrid node   p50 {statistics.median(solo) * ms:6.1f} ms"
        f"   p95 {pct(solo, 0.95) * ms:6.1f} ms   (goal p50 <= 20 ms; n={len(solo)})"
    )
    print(
        f"  submit -> completed, 3-node swarm  p50 {statistics.median(remote) * ms:6.1f} ms"
        f"   p95 {pct(remote, 0.95) * ms:6.1f} ms   (goal p50 <= 50 ms; n={len(remote)})"
    )
    print(
        f"  sustained, 3-node swarm            {rate:6.1f} jobs/s "
        f"({THROUGHPUT_JOBS} jobs; goal >= 100)"
    )
    print(
        f"  result streaming, 100 MiB outputs  {stream_mbs:6.1f} MB/s without the guest's run"
        f" ({stream_end_to_end:.1f} MB/s submit to completed)"
    )
    ratio = statistics.median(ratios)
    print(
        f"  raw libp2p stream, same host       {raw:6.1f} MB/s   ratio {ratio:.2f}"
        f" (goal >= 0.7; median of the pairs' {', '.join(f'{r:.2f}' for r in ratios)})"
    )


if __name__ == "__main__":
    main()
