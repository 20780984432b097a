"""Sandbox figures, in one run: `make bench` or `.venv/bin/python bench/exec.py`.

1. 100 MB word count: the Go example through the sandbox (`Executor.run`, cached module,
   warm worker) vs the same module in a bare wasmtime script (no epochs, no worker, no
   caps) vs native `wc -w`.
2. The Go module's start: cold (compile), cached on disk (new worker), cached in memory.
3. End to end `Executor.run` of a hello module, warm and cached.
Targets: sandbox <= 1.1x bare wasmtime on 100 MB; cached hello run <= 10 ms.
"""

from __future__ import annotations

import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
import wasmtime

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from swarm.executor import Mount, RunSpec, RunStatus, open_executor  # noqa: E402
from tests import guests  # noqa: E402

WORDCOUNT = ROOT / "examples" / "wordcount-go" / "main.wasm"
DATA = ROOT / "bench" / "data" / "100mb"
REPEAT = 3


def make_data() -> int:
    target = DATA / "words.txt"
    if not target.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        rng = random.Random(1)
        vocab = [
            bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randint(1, 12)))
            for _ in range(5000)
        ]
        block = b"".join(
            rng.choice(vocab) + rng.choice([b" ", b"\n", b"  ", b"\t"]) for _ in range(170_000)
        )
        with target.open("wb") as out:
            while out.tell() < 100 * 1024 * 1024:
                out.write(block)
    return target.stat().st_size


def bare_wasmtime(module_bytes: bytes, out_dir: Path) -> list[float]:
    """The same module in the plainest wasmtime script: compile once, then time runs."""
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, module_bytes)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    times = []
    for _ in range(REPEAT):
        wasi = wasmtime.WasiConfig()
        wasi.argv = ["main.wasm"]
        wasi.preopen_dir(str(DATA), "/inputs", fs_mutable=False)
        wasi.preopen_dir(str(out_dir), "/outputs", fs_mutable=True)
        wasi.stdout_file = str(out_dir / "stdout")
        store = wasmtime.Store(engine)
        store.set_wasi(wasi)
        t0 = time.perf_counter()
        try:
            linker.instantiate(store, module).exports(store)["_start"](store)
        except wasmtime.ExitTrap as exc:
            assert exc.code == 0
        times.append(time.perf_counter() - t0)
    return times


async def timed_run(executor, spec: RunSpec) -> tuple[float, str]:
    t0 = time.perf_counter()
    result = await executor.run(spec)
    elapsed = time.perf_counter() - t0
    assert result.status == RunStatus.COMPLETED, result
    return elapsed, result.module_source


async def sandbox_figures(work: Path) -> dict:
    figures = {}
    cache = work / "cache"
    wc_spec = RunSpec(module=WORDCOUNT, outputs_dir=work / "o", mounts=(Mount(DATA),))
    samples = Mount(ROOT / "examples" / "wordcount-go" / "data")
    small = RunSpec(module=WORDCOUNT, outputs_dir=work / "s", mounts=(samples,))

    async with open_executor(cache_dir=cache, max_workers=1, warm=1) as ex:
        await ex.warm_up()
        figures["go_cold"] = await timed_run(ex, small)
    async with open_executor(cache_dir=cache, max_workers=1, warm=1) as ex:
        await ex.warm_up()
        figures["go_disk"] = await timed_run(ex, small)
        figures["go_memory"] = await timed_run(ex, small)
        figures["wc_100mb"] = [(await timed_run(ex, wc_spec))[0] for _ in range(REPEAT)]

    hello = work / "hello.wasm"
    hello.write_bytes(guests.hello())
    async with open_executor(cache_dir=cache, max_workers=1, warm=1) as ex:
        await ex.warm_up()
        spec = RunSpec(module=hello, outputs_dir=work / "h")
        figures["hello_first"] = await timed_run(ex, spec)
        figures["hello"] = sorted([(await timed_run(ex, spec))[0] for _ in range(300)])
    return figures


def main() -> None:
    if not WORDCOUNT.exists():
        sys.exit("bench: build the examples first (`make examples`)")
    size = make_data()
    work = Path(tempfile.mkdtemp(prefix="swarm-bench-"))
    try:
        figures = trio.run(sandbox_figures, work)
        bare = bare_wasmtime(WORDCOUNT.read_bytes(), work)
        wc = []
        for _ in range(REPEAT):
            t0 = time.perf_counter()
            subprocess.run(["wc", "-w", str(DATA / "words.txt")], check=True, capture_output=True)
            wc.append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = statistics.median
    sandbox, bare_s = med(figures["wc_100mb"]), med(bare)
    hello = figures["hello"]
    print(f"swarm sandbox benchmark (median of {REPEAT}; {size / 2**20:.0f} MiB input)")
    print(f"  word count 100 MB   sandbox  {sandbox:7.3f} s")
    print(
        f"                      bare     {bare_s:7.3f} s   "
        f"sandbox/bare = {sandbox / bare_s:.3f}x (target <= 1.1x)"
    )
    print(f"                      wc -w    {med(wc):7.3f} s")
    print(
        "  Go module start     cold (compile)  {:8.1f} ms  [{}]".format(
            figures["go_cold"][0] * 1e3, figures["go_cold"][1]
        )
    )
    print(
        "                      disk cache      {:8.1f} ms  [{}]".format(
            figures["go_disk"][0] * 1e3, figures["go_disk"][1]
        )
    )
    print(
        "                      memory cache    {:8.1f} ms  [{}]".format(
            figures["go_memory"][0] * 1e3, figures["go_memory"][1]
        )
    )
    print(
        "  hello end to end    first run       {:8.2f} ms  [{}]".format(
            figures["hello_first"][0] * 1e3, figures["hello_first"][1]
        )
    )
    print(
        f"                      cached p50 {med(hello) * 1e3:.2f} ms, "
        f"p95 {hello[int(len(hello) * 0.95)] * 1e3:.2f} ms"
        f" over {len(hello)} runs (target <= 10 ms)"
    )


if __name__ == "__main__":
    main()
