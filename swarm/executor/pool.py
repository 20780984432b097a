"""The sandbox as the rest of swarm sees it: ``open_executor`` and ``Executor.run``.

Guests run in worker processes (``swarm.executor.worker``) kept warm in a small pool, so a
run costs a pipe round trip, not a Python start-up. Each run has two deadlines: the
worker's own (epoch watchdog, which stops a guest computing in wasm and keeps the worker
reusable) and the parent's hard deadline ``timeout + HARD_GRACE``, at which the worker is
killed: that is what stops a guest blocked in a host call such as ``sleep``. A cancelled
caller kills its worker too. A killed worker is replaced in the background.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from swarm.concurrency import open_nursery
from swarm.errors import ExecutorError, ModuleError, ProtocolError
from swarm.executor.guest import tree_size
from swarm.executor.mounts import plan_preopens
from swarm.executor.spec import OutputChunk, RunResult, RunSpec, RunStatus
from swarm.wire import FrameDecoder, frame

HARD_GRACE = 0.5  # seconds past the timeout before a blocked guest's worker is killed
LOAD_TIMEOUT = 300.0  # compiling a module may take this long at most


class _WorkerProcess:
    """One worker process and its framed event pipe."""

    def __init__(self, process: trio.Process):
        self.process = process
        self._decoder = FrameDecoder(max_frame=16 * 1024 * 1024)
        self._events: list[dict[str, Any]] = []

    @classmethod
    async def spawn(cls, cache_dir: Path | None) -> _WorkerProcess:
        command = [sys.executable, "-m", "swarm.executor.worker", str(cache_dir or "")]
        try:
            process = await trio.lowlevel.open_process(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
        except OSError as exc:
            raise ExecutorError(f"cannot start a sandbox worker: {exc}") from exc
        worker = cls(process)
        try:
            with trio.fail_after(60):
                event = await worker.receive()
        except BaseException:
            worker.kill()
            raise
        if event.get("ev") != "ready":
            worker.kill()
            raise ExecutorError(f"sandbox worker started badly: {event!r}")
        return worker

    async def send(self, message: dict[str, Any]) -> None:
        try:
            await self.process.stdin.send_all(frame(message))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ExecutorError("the sandbox worker is gone; try again") from exc

    async def receive(self) -> dict[str, Any]:
        while not self._events:
            data = await self.process.stdout.receive_some(1 << 16)
            if not data:
                raise ExecutorError("the sandbox worker exited unexpectedly; try again")
            try:
                self._events.extend(self._decoder.feed(data))
            except ProtocolError as exc:
                raise ExecutorError(f"the sandbox worker sent garbage: {exc}") from exc
        return self._events.pop(0)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def kill(self) -> None:
        if self.alive:
            self.process.kill()

    async def reap(self) -> None:
        self.kill()
        with trio.CancelScope(shield=True):
            await self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                await stream.aclose()


class Executor:
    """Runs modules in the sandbox; at most ``max_workers`` at once."""

    def __init__(
        self, nursery: trio.Nursery, *, cache_dir: Path | None, max_workers: int, warm: int
    ):
        self._nursery = nursery
        self._cache_dir = cache_dir
        self._slots = trio.CapacityLimiter(max_workers)
        self._warm = min(warm, max_workers)
        self._idle: list[_WorkerProcess] = []
        self._spawning = 0
        self._busy = 0  # workers taken by a run and not yet given back

    async def run(
        self, spec: RunSpec, *, output: trio.MemorySendChannel | None = None
    ) -> RunResult:
        """Run ``spec`` to its end; stdout/stderr chunks go to ``output`` as they come.

        Raises ModuleError (the module cannot run), MountError (an input cannot be
        provided) or ExecutorError (the sandbox itself failed). Everything the guest does
        is a RunResult. Cancelling the caller stops the guest at once.
        """
        async with self._slots:
            staged: list[Path] = []

            def staging() -> Path:
                if not staged:
                    staged.append(Path(tempfile.mkdtemp(prefix="swarm-mounts-")))
                return staged[0]

            try:
                preopens = plan_preopens(spec.mounts, staging)  # (the worker makes outputs_dir)
                worker = await self._take()
                reusable = False
                try:
                    result, reusable = await self._drive(worker, spec, preopens, output)
                    return result
                except ModuleError:
                    reusable = True  # the module was refused; the worker is fine
                    raise
                finally:
                    self._give_back(worker, reusable)
            finally:
                for folder in staged:
                    shutil.rmtree(folder, ignore_errors=True)

    async def _drive(self, worker, spec, preopens, output) -> tuple[RunResult, bool]:
        limits = spec.limits
        await worker.send(
            {
                "op": "run",
                "module": os.path.abspath(spec.module),
                "entry": spec.entry_point,
                "argv": [spec.program_name, *spec.args],
                "env": [list(pair) for pair in spec.env],
                "preopens": [[p.host, p.guest, p.writable] for p in preopens],
                "outputs_dir": os.path.abspath(spec.outputs_dir),
                "memory": limits.memory,
                "timeout": limits.timeout,
                "stdout_cap": limits.stdout,
                "stderr_cap": limits.stderr,
                "outputs_cap": limits.outputs,
                "output_files_cap": limits.output_files,
                "stdout_path": str(spec.stdout_path) if spec.stdout_path else None,
                "stderr_path": str(spec.stderr_path) if spec.stderr_path else None,
            }
        )
        with trio.fail_after(LOAD_TIMEOUT):
            event = await worker.receive()
        if event["ev"] == "error":
            raise ModuleError(event["message"])
        module_source = event.get("module_source", "")
        started = time.perf_counter()
        delivered = {"stdout": 0, "stderr": 0}
        hard_deadline = limits.timeout + HARD_GRACE
        with trio.move_on_after(hard_deadline if math.isfinite(hard_deadline) else math.inf):
            while True:
                event = await worker.receive()
                if event["ev"] == "out":
                    delivered[event["stream"]] += len(event["data"])
                    output = await _deliver(output, OutputChunk(event["stream"], event["data"]))
                elif event["ev"] == "done":
                    return _result(event), True
        # The guest is blocked where epochs cannot reach it (a host call): kill the worker.
        worker.kill()
        outputs_bytes, _ = await trio.to_thread.run_sync(
            tree_size, str(spec.outputs_dir), limits.output_files
        )
        return (
            RunResult(
                status=RunStatus.TIMEOUT,
                exit_code=None,
                message=f"timed out after {limits.timeout:g}s (blocked in a host call)",
                wall_seconds=time.perf_counter() - started,
                stdout_bytes=delivered["stdout"],
                stderr_bytes=delivered["stderr"],
                outputs_bytes=outputs_bytes,
                module_source=module_source,
            ),
            False,
        )

    async def _take(self) -> _WorkerProcess:
        while self._idle:
            worker = self._idle.pop()
            if worker.alive:
                self._busy += 1
                self._top_up()
                return worker
            self._nursery.start_soon(worker.reap)
        worker = await _WorkerProcess.spawn(self._cache_dir)
        self._busy += 1
        self._top_up()
        return worker

    def _give_back(self, worker: _WorkerProcess, reusable: bool) -> None:
        self._busy -= 1
        # (A worker spawned for a run while another was spawning in the background can
        # leave one worker too many: it goes when given back.)
        if reusable and worker.alive and len(self._idle) + self._busy < self._slots.total_tokens:
            self._idle.append(worker)
        else:
            self._nursery.start_soon(worker.reap)
            self._top_up()

    def _top_up(self) -> None:
        """Keep up to ``warm`` idle workers ready, spawning in the background, but never
        more workers in all than runs at once (``max_workers``): a worker beyond that
        could only sit idle."""
        wanted = min(
            self._warm - len(self._idle) - self._spawning,
            self._slots.total_tokens - len(self._idle) - self._spawning - self._busy,
        )
        for _ in range(wanted):
            self._spawning += 1
            self._nursery.start_soon(self._spawn_idle)

    async def _spawn_idle(self) -> None:
        try:
            self._idle.append(await _WorkerProcess.spawn(self._cache_dir))
        except ExecutorError:
            pass  # the next run will try again, and report the error if it persists
        finally:
            self._spawning -= 1

    async def warm_up(self) -> None:
        """Wait until the warm workers are ready (for benchmarks and start-up)."""
        self._top_up()
        while self._spawning:
            await trio.sleep(0.01)

    async def _close(self) -> None:
        for worker in self._idle:
            await worker.reap()
        self._idle.clear()


@asynccontextmanager
async def open_executor(
    *, cache_dir: Path | None = None, max_workers: int | None = None, warm: int = 1
) -> AsyncIterator[Executor]:
    """A sandbox with up to ``max_workers`` (default: CPU count) guests at once.

    ``cache_dir`` keeps compiled modules across runs and restarts (``<home>/cache``).
    """
    async with open_nursery() as nursery:
        executor = Executor(
            nursery, cache_dir=cache_dir, max_workers=max_workers or os.cpu_count() or 1, warm=warm
        )
        executor._top_up()
        try:
            yield executor
        finally:
            nursery.cancel_scope.cancel()
            await executor._close()


async def _deliver(output: trio.MemorySendChannel | None, chunk: OutputChunk):
    """Send ``chunk`` to the caller; a caller that stopped listening gets no more."""
    if output is None:
        return None
    try:
        await output.send(chunk)
        return output
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return None


def _result(event: dict[str, Any]) -> RunResult:
    return RunResult(
        status=RunStatus(event["status"]),
        exit_code=event["exit_code"],
        message=event["message"],
        wall_seconds=event["wall"],
        stdout_bytes=event["stdout_bytes"],
        stderr_bytes=event["stderr_bytes"],
        stdout_truncated=event["stdout_truncated"],
        stderr_truncated=event["stderr_truncated"],
        outputs_bytes=event["outputs_bytes"],
        memory_bytes=event["memory_bytes"],
        module_source=event["module_source"],
    )
