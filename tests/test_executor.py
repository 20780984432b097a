"""The sandbox against real wasmtime: how runs end, limits, escapes, cancellation, caching."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from swarm.errors import ModuleError, MountError
from swarm.executor import Limits, Mount, RunSpec, RunStatus, open_executor
from tests import guests

MiB = 1024 * 1024


@pytest.fixture
async def executor(tmp_path):
    async with open_executor(cache_dir=tmp_path / "cache", max_workers=2, warm=1) as ex:
        yield ex


@pytest.fixture
def module(tmp_path):
    """Write module bytes to a file; returns its path."""
    counter = iter(range(10_000))

    def write(data: bytes) -> Path:
        path = tmp_path / f"m{next(counter)}.wasm"
        path.write_bytes(data)
        return path

    return write


def spec(tmp_path: Path, module_path: Path, **kw) -> RunSpec:
    outputs = tmp_path / f"out-{module_path.stem}"
    return RunSpec(module=module_path, outputs_dir=outputs, **kw)


async def test_return_from_start_is_exit_0(executor, module, tmp_path):
    result = await executor.run(
        spec(tmp_path, module(guests.hello()), stdout_path=tmp_path / "stdout")
    )
    assert (result.status, result.exit_code, result.message) == (RunStatus.COMPLETED, 0, "")
    assert (tmp_path / "stdout").read_bytes() == b"hello\n"
    assert result.stdout_bytes == 6


@pytest.mark.parametrize("code", [0, 3, 125])
async def test_proc_exit_code_is_the_exit_code(executor, module, tmp_path, code):
    result = await executor.run(spec(tmp_path, module(guests.exit_with(code))))
    assert result.exit_code == code
    assert result.status == (RunStatus.COMPLETED if code == 0 else RunStatus.FAILED)


async def test_exit_codes_wasi_reserves_are_a_failure(executor, module, tmp_path):
    # wasmtime refuses proc_exit codes of 126 and above (reserved for the host).
    result = await executor.run(spec(tmp_path, module(guests.exit_with(255))))
    assert (result.status, result.exit_code) == (RunStatus.FAILED, None)
    assert "invalid exit status" in result.message


async def test_trap_is_a_failure_with_its_message(executor, module, tmp_path):
    result = await executor.run(spec(tmp_path, module(guests.trap())))
    assert result.status == RunStatus.FAILED
    assert result.exit_code is None and result.shell_exit_code == 134
    assert "unreachable" in result.message


async def test_spin_loop_stops_at_timeout_and_worker_is_reused(executor, module, tmp_path):
    t0 = time.monotonic()
    result = await executor.run(spec(tmp_path, module(guests.spin()), limits=Limits(timeout=0.5)))
    elapsed = time.monotonic() - t0
    assert result.status == RunStatus.TIMEOUT and result.shell_exit_code == 124
    assert 0.5 <= elapsed < 1.5
    after = await executor.run(spec(tmp_path, module(guests.hello())))
    assert after.status == RunStatus.COMPLETED


async def test_guest_blocked_in_sleep_still_stops_at_timeout(executor, module, tmp_path):
    t0 = time.monotonic()
    result = await executor.run(
        spec(tmp_path, module(guests.sleeper(30)), limits=Limits(timeout=0.5))
    )
    elapsed = time.monotonic() - t0
    assert result.status == RunStatus.TIMEOUT
    assert elapsed < 1.5, f"took {elapsed:.2f}s for a 0.5s timeout"
    after = await executor.run(spec(tmp_path, module(guests.hello())))
    assert after.status == RunStatus.COMPLETED


async def test_memory_growth_stops_at_the_cap(executor, module, tmp_path):
    result = await executor.run(
        spec(tmp_path, module(guests.memory_hog(exit_code=7)), limits=Limits(memory=64 * MiB))
    )
    assert result.status == RunStatus.OUT_OF_MEMORY
    assert result.exit_code == 7
    assert 63 * MiB <= result.memory_bytes <= 64 * MiB


async def test_declared_memory_over_the_cap_is_out_of_memory(executor, module, tmp_path):
    result = await executor.run(spec(tmp_path, module(guests.huge_minimum_memory())))
    assert result.status == RunStatus.OUT_OF_MEMORY
    assert result.memory_bytes == 0


async def test_stdout_flood_is_capped_and_stopped_by_timeout(executor, module, tmp_path):
    send, receive = trio.open_memory_channel(1000)
    received = 0

    async def drain():
        nonlocal received
        async for chunk in receive:
            received += len(chunk.data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        async with send:
            result = await executor.run(
                spec(
                    tmp_path,
                    module(guests.flood()),
                    limits=Limits(timeout=1, stdout=1 * MiB),
                    stdout_path=tmp_path / "stdout",
                ),
                output=send,
            )
    assert result.status == RunStatus.TIMEOUT
    assert result.stdout_truncated and result.stdout_bytes == 1 * MiB
    assert (tmp_path / "stdout").stat().st_size == 1 * MiB
    assert received == 1 * MiB


async def test_outputs_over_cap_stop_the_guest(executor, module, tmp_path):
    # /outputs is the second preopen after stdio: fd 3 (no input mounts here).
    result = await executor.run(
        spec(
            tmp_path,
            module(guests.file_writer(3, "big.bin", blocks=100_000)),
            limits=Limits(timeout=20, outputs=2 * MiB, stdout=MiB, stderr=MiB),
        )
    )
    assert result.status == RunStatus.OUTPUT_LIMIT
    # RLIMIT_FSIZE holds any single file to max(caps) + 1 byte, whatever the polling missed.
    assert (tmp_path / "out-m0" / "big.bin").stat().st_size <= 2 * MiB + 1


async def test_outputs_are_written_to_the_host_dir(executor, module, tmp_path):
    result = await executor.run(spec(tmp_path, module(guests.file_writer(3, "r.bin", blocks=2))))
    assert result.status == RunStatus.COMPLETED
    assert (tmp_path / "out-m0" / "r.bin").stat().st_size == 2 * 65536
    assert result.outputs_bytes == 2 * 65536


@pytest.fixture
def inputs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("original")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_text("do not read")
    (data / "escape").symlink_to(secret)
    (data / "escape-file").symlink_to(secret / "key.txt")
    return data


ESCAPES = [
    ("../secret/key.txt", {}),
    ("/etc/passwd", {}),
    ("escape/key.txt", {}),
    ("escape-file", {}),
    ("escape/key.txt", {"follow": False}),
]


@pytest.mark.parametrize("path,flags", ESCAPES)
async def test_escape_attempts_are_refused(executor, module, tmp_path, inputs, path, flags):
    # Input mounted at /inputs is fd 3; /outputs is fd 4.
    probe = module(guests.open_probe(3, path, **flags))
    result = await executor.run(spec(tmp_path, probe, mounts=(Mount(inputs),)))
    assert result.status == RunStatus.FAILED and result.exit_code not in (0, None)


async def test_inputs_are_read_only_unless_asked(executor, module, tmp_path, inputs):
    readable = await executor.run(
        spec(tmp_path, module(guests.open_probe(3, "a.txt")), mounts=(Mount(inputs),))
    )
    assert readable.exit_code == 0
    for probe in (
        guests.open_probe(3, "new.txt", create=True, write=True),
        guests.open_probe(3, "a.txt", truncate=True, write=True),
        guests.open_probe(3, "a.txt", write=True),
    ):
        result = await executor.run(spec(tmp_path, module(probe), mounts=(Mount(inputs),)))
        assert result.exit_code not in (0, None)
    assert (inputs / "a.txt").read_text() == "original"
    assert not (inputs / "new.txt").exists()
    writable = await executor.run(
        spec(
            tmp_path,
            module(guests.open_probe(3, "new.txt", create=True, write=True)),
            mounts=(Mount(inputs, writable=True),),
        )
    )
    assert writable.exit_code == 0 and (inputs / "new.txt").exists()


async def test_a_file_mount_appears_under_its_target(executor, module, tmp_path, inputs):
    probe = module(guests.open_probe(3, "a.txt"))
    result = await executor.run(spec(tmp_path, probe, mounts=(Mount(inputs / "a.txt"),)))
    assert result.exit_code == 0
    probe = module(guests.open_probe(3, "renamed.txt"))
    result = await executor.run(
        spec(tmp_path, probe, mounts=(Mount(inputs / "a.txt", "/data/renamed.txt"),))
    )
    assert result.exit_code == 0


async def test_missing_input_is_a_mount_error(executor, module, tmp_path):
    with pytest.raises(MountError, match="does not exist"):
        await executor.run(
            spec(tmp_path, module(guests.hello()), mounts=(Mount(tmp_path / "nope"),))
        )


async def test_cancelling_the_caller_stops_the_guest_promptly(executor, module, tmp_path):
    for guest in (guests.spin(), guests.sleeper(60)):
        t0 = time.monotonic()
        with trio.move_on_after(0.3):
            await executor.run(spec(tmp_path, module(guest), limits=Limits(timeout=60)))
        assert time.monotonic() - t0 < 0.6
    # The killed workers are replaced: the next run works.
    result = await executor.run(spec(tmp_path, module(guests.hello())))
    assert result.status == RunStatus.COMPLETED


async def test_output_is_delivered_live(executor, module, tmp_path):
    send, receive = trio.open_memory_channel(100)
    arrivals = []

    async def drain():
        async for chunk in receive:
            arrivals.append((time.monotonic(), chunk.data))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        async with send:
            await executor.run(spec(tmp_path, module(guests.ticker(3, 0.3))), output=send)
        finished = time.monotonic()
    assert b"".join(data for _, data in arrivals) == b"tick\n" * 3
    assert finished - arrivals[0][0] > 0.5, "the first tick arrived only at the end"


@pytest.mark.parametrize(
    "guest,message",
    [
        (b"not wasm at all", "not a WebAssembly module"),
        (b"\0asm\x01\0\0\0\xff\xff", "not a valid WebAssembly module"),
        (b"\0asm\x0d\0\x01\0", "component"),
        (guests.no_start(), "no exported function '_start'"),
        (guests.foreign_import(), "env.launch_missiles"),
    ],
)
async def test_bad_modules_are_clear_errors(executor, module, tmp_path, guest, message):
    with pytest.raises(ModuleError, match=message):
        await executor.run(spec(tmp_path, module(guest)))


async def test_entry_point_can_be_chosen(executor, module, tmp_path):
    result = await executor.run(spec(tmp_path, module(guests.no_start()), entry_point="main"))
    assert result.status == RunStatus.COMPLETED


async def test_compiled_modules_are_cached_in_memory_and_on_disk(module, tmp_path):
    path = module(guests.hello())
    sources = []
    for _ in range(2):  # a fresh executor means fresh worker processes
        async with open_executor(cache_dir=tmp_path / "cache", max_workers=1, warm=0) as ex:
            for _ in range(2):
                sources.append((await ex.run(spec(tmp_path, path))).module_source)
    assert sources == ["compiled", "memory", "disk", "memory"]
    assert len(list((tmp_path / "cache").glob("*.cwasm"))) == 1


async def test_hostile_guests_leave_the_executor_healthy(executor, module, tmp_path):
    hostile = [guests.trap(), guests.memory_hog(), guests.flood(2), guests.spin()]
    results = []

    async def run(guest: bytes) -> None:
        limits = Limits(timeout=0.5, memory=32 * MiB, stderr=MiB)
        results.append((await executor.run(spec(tmp_path, module(guest), limits=limits))).status)

    async with trio.open_nursery() as nursery:
        for guest in hostile:
            nursery.start_soon(run, guest)
    # the trap fails, the memory hog runs out of memory, the flood and the spin time out
    expected = [RunStatus.FAILED, RunStatus.OUT_OF_MEMORY, RunStatus.TIMEOUT, RunStatus.TIMEOUT]
    assert sorted(results) == sorted(expected)
    result = await executor.run(spec(tmp_path, module(guests.hello())))
    assert result.status == RunStatus.COMPLETED


async def test_never_more_workers_than_runs_at_once(module, tmp_path, monkeypatch):
    # Warm workers wait for the next runs, but no more of them than can run at once: one
    # beyond that could only sit idle, and each costs a Python start-up and its memory.
    from swarm.executor import pool

    spawned = []
    spawn = pool._WorkerProcess.spawn.__func__

    async def counted(cls, cache_dir):
        worker = await spawn(cls, cache_dir)
        spawned.append(worker.process.pid)
        return worker

    monkeypatch.setattr(pool._WorkerProcess, "spawn", classmethod(counted))
    async with open_executor(cache_dir=tmp_path / "cache", max_workers=2, warm=2) as executor:
        await executor.warm_up()
        assert len(spawned) == 2
        for _ in range(3):
            async with trio.open_nursery() as nursery:
                for _ in range(2):
                    nursery.start_soon(executor.run, spec(tmp_path, module(guests.hello())))
        await executor.warm_up()  # any spawn under way has finished
        assert len(spawned) == 2, "a worker was started that no run could use"
        assert len(executor._idle) == 2


async def test_workers_outlive_the_thread_that_started_them(module, tmp_path, monkeypatch):
    # trio starts processes from its thread cache, whose threads end when idle; a worker
    # must not die with that thread (PR_SET_PDEATHSIG did exactly that, 10 s in).
    from trio._core import _thread_cache

    # Long enough for the worker to start (and set up any death signal) before the
    # spawning thread ends, short enough for a quick test.
    monkeypatch.setattr(_thread_cache, "IDLE_TIMEOUT", 1.5)
    async with open_executor(cache_dir=tmp_path / "cache", max_workers=1, warm=1) as executor:
        while not executor._idle:
            await trio.sleep(0.02)
        await trio.sleep(1.8)  # the spawning thread has ended by now
        (worker,) = executor._idle
        assert worker.process.poll() is None, "the warm worker died with its spawning thread"
        result = await executor.run(spec(tmp_path, module(guests.hello())))
        assert result.status == RunStatus.COMPLETED


def test_workers_die_with_their_node(tmp_path):
    # A node killed with SIGKILL cannot clean up: its workers must notice on their own.
    script = (
        "import sys, trio\n"
        "from swarm.executor import open_executor\n"
        "async def main():\n"
        "    async with open_executor(max_workers=1, warm=1) as ex:\n"
        "        while not ex._idle:\n"
        "            await trio.sleep(0.05)\n"
        "        print(ex._idle[0].process.pid, flush=True)\n"
        "        await trio.sleep(60)\n"
        "trio.run(main)\n"
    )
    node = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        worker_pid = int(node.stdout.readline())
        node.kill()
        node.wait()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and _alive(worker_pid):
            time.sleep(0.05)
        assert not _alive(worker_pid), "the worker outlived its node"
    finally:
        node.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too (its new parent, init, reaps it in its own time).
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
