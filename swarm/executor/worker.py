"""A sandbox worker process: ``python -m swarm.executor.worker CACHE_DIR``.

The parent (``swarm.executor.pool``) talks to it over stdin/stdout in length-prefixed
msgpack frames (``swarm.wire``). One run at a time:

    parent → worker   {"op": "run", ...request...}
    worker → parent   {"ev": "ready"}                            once, at start
                      {"ev": "error", "message": ...}            the module cannot run
                      {"ev": "start", "module_source": ...}      module loaded, guest starting
                      {"ev": "out", "stream": ..., "data": ...}  live stdout/stderr
                      {"ev": "done", ...}                        how the run ended

A separate process is the outer wall of the sandbox: a guest blocked in a host call
cannot be interrupted by epochs, so the parent kills the worker at its hard deadline, and
nothing a guest does (or a crash of wasmtime itself) can take the node down with it.

A worker dies with its parent, even while a guest spins: the ticker thread exits the
process once it has been re-parented. (Not ``PR_SET_PDEATHSIG``: it fires when the
*thread* that forked the child ends, and trio forks from its thread cache, whose threads
end after 10 s idle: workers were killed mid-run.)

The ticker ticks every ``TICK`` only while a guest runs. An idle worker (each compute
node keeps two warm) wakes every ``_IDLE_WAKE`` just to look for its parent: 100 wake-ups
a second cost two idle workers about 1 % of a core, as much as the idle node itself.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import wasmtime

from swarm.errors import ModuleError
from swarm.executor.guest import TICK, OutputSink, OutputsWatch, Watchdog, run_guest
from swarm.executor.modules import ModuleCache, make_engine
from swarm.wire import FrameDecoder, frame

_FLUSH_EVERY = 2  # ticks: live output reaches the parent within ~20 ms
_MEASURE_EVERY = 10  # ticks: /outputs is measured every ~100 ms
_PARENT_EVERY = 10  # ticks: a worker outlives its parent by ~100 ms at most
# Seconds between parent checks while no guest runs: a backstop only, since an idle
# worker sits reading its stdin, which ends (EOF) the moment its node dies. Each wake-up
# costs a little CPU, twice per compute node, in every idle node of a swarm.
_IDLE_WAKE = 2.0


class Worker:
    def __init__(self, cache_dir: Path | None, events: int):
        self.parent = os.getppid()
        self.engine = make_engine()
        self.linker = wasmtime.Linker(self.engine)
        self.linker.define_wasi()
        self.cache = ModuleCache(self.engine, cache_dir)
        self.watchdog = Watchdog()
        self._events = events
        self._write_lock = threading.Lock()
        self._active: tuple[list[OutputSink], OutputsWatch] | None = None
        self._started = threading.Event()  # set when a run begins: the idle ticker wakes up
        threading.Thread(target=self._tick, name="epoch-ticker", daemon=True).start()

    def emit(self, event: dict[str, Any]) -> None:
        data = frame(event)
        with self._write_lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self._events, view) :]

    def _tick(self) -> None:
        """Advance the epoch; flush live output; measure /outputs while a guest runs.

        Idle, it only checks for its parent every ``_IDLE_WAKE`` (the main thread's read of
        stdin ends when the parent dies): epochs matter only to a running guest (whose
        deadline counts from when it starts), and a run wakes it.
        """
        count = 0
        while True:
            if self._active is None:
                self._started.wait(_IDLE_WAKE)
                self._started.clear()
                if os.getppid() != self.parent:
                    os._exit(0)
                if self._active is None:
                    continue
            time.sleep(TICK)
            self.engine.increment_epoch()
            count += 1
            if count % _PARENT_EVERY == 0 and os.getppid() != self.parent:
                os._exit(0)  # the node is gone: so is whatever it asked us to run
            active = self._active
            if active is None:
                continue
            sinks, watch = active
            if count % _FLUSH_EVERY == 0:
                for sink in sinks:
                    sink.flush()
            if count % _MEASURE_EVERY == 0:
                watch.check()

    def handle(self, request: dict[str, Any]) -> None:
        try:
            loaded = self.cache.load(Path(request["module"]), request["entry"])
        except ModuleError as exc:
            self.emit({"ev": "error", "message": str(exc)})
            return
        try:  # here, not in the node: a few file system calls off the node's event loop
            os.makedirs(request["outputs_dir"], exist_ok=True)
        except OSError as exc:
            self.emit({"ev": "error", "message": f"cannot create the outputs folder: {exc}"})
            return
        self.emit({"ev": "start", "module_source": loaded.source})
        sinks = (
            OutputSink("stdout", request["stdout_cap"], request["stdout_path"], self.emit),
            OutputSink("stderr", request["stderr_cap"], request["stderr_path"], self.emit),
        )
        watch = OutputsWatch(
            request["outputs_dir"],
            request["outputs_cap"],
            request["output_files_cap"],
            self.watchdog,
        )
        self._active = (list(sinks), watch)
        self._started.set()
        try:
            done = run_guest(self.linker, loaded, request, sinks, self.watchdog)
        finally:
            self._active = None
            for sink in sinks:
                sink.close()
        self.emit(done)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-size writes fail with EFBIG instead
    os.nice(5)  # the node's own event loop stays responsive next to a busy guest
    events = os.dup(1)  # the event pipe; stray prints go to stderr, never into the pipe
    os.dup2(2, 1)
    cache_dir = Path(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] else None
    worker = Worker(cache_dir, events)
    worker.emit({"ev": "ready"})
    decoder = FrameDecoder()
    while data := os.read(0, 1 << 16):
        for request in decoder.feed(data):
            worker.handle(request)


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # the parent is gone: nothing left to report to
        os._exit(0)
