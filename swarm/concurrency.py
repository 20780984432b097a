"""Structured-concurrency pieces shared by every service of a node."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import trio

T = TypeVar("T")
SLOW_STEP = 0.02  # seconds


@asynccontextmanager
async def open_nursery() -> AsyncIterator[trio.Nursery]:
    """A trio nursery whose lone failure is raised as itself, not inside a group.

    Nurseries are an implementation detail of the services that own them; callers should
    see ``ModuleError``, not ``ExceptionGroup[ExceptionGroup[ModuleError]]``. Several
    concurrent failures still arrive as a group.
    """
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        lone: BaseException = group
        while isinstance(lone, BaseExceptionGroup) and len(lone.exceptions) == 1:
            lone = lone.exceptions[0]
        if lone is group:
            raise
        raise lone from lone.__cause__


class StepsOnLoop:
    """Runs the blocking steps of one piece of work (packing or unpacking a result's
    outputs, a chunk at a time) on the event loop while each is quick, and in a worker
    thread from the first that is not.

    A worker thread per small step costs more than the step itself: the thread and the busy
    loop take turns at the GIL at every point where C code (zstd, a read, a write) lets it
    go. Measured on 100 MiB results on a busy host, per-chunk threads cost 0.1-0.3 s more
    CPU and 11-24 % of the speed; on a quieter one the two came out level
    (docs/BENCHMARKS.md, 2026-11-29 evening). On the loop, the other
    tasks get a turn after every step. A step slower than ``slow`` seconds (a slow disk, data
    that decompresses a hundredfold) sends the rest to a thread, so the loop is held up once
    at most; so does one that used more than ``slow_cpu`` seconds of CPU, if given (writes
    into memory the machine has not touched yet cost ten times the usual on this VM, and
    belong beside the loop, not on it).
    """

    def __init__(self, slow: float = SLOW_STEP, *, slow_cpu: float | None = None) -> None:
        self.slow, self.slow_cpu = slow, slow_cpu
        self.in_thread = False

    async def run(self, step: Callable[..., T], *args: object) -> T:
        if self.in_thread:
            return await trio.to_thread.run_sync(step, *args)
        started, cpu = time.perf_counter(), time.thread_time()
        result = step(*args)
        if time.perf_counter() - started > self.slow or (
            self.slow_cpu is not None and time.thread_time() - cpu > self.slow_cpu
        ):
            self.in_thread = True
        await trio.lowlevel.checkpoint()
        return result
