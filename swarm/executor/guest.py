"""One guest run inside a worker process.

How a run is kept in bounds, from the inside (the worker process is the outer wall: the
parent kills it when a guest blocks in a host call past its deadline):

- memory: ``Store.set_limits`` makes ``memory.grow`` fail past the cap;
- time: the engine's epoch is advanced every ``TICK`` by the worker's ticker thread, and
  the store's epoch-deadline callback stops the guest at its deadline or when the ticker
  asks it to (outputs over their cap). wasmtime-py has no wrapper for that callback, so
  it is installed through the raw C binding, as in the spikes;
- stdout/stderr: custom WASI sinks keep at most the cap (the rest is counted, dropped and
  flagged) and hand chunks to the worker's event pipe for live delivery;
- /outputs: RLIMIT_FSIZE bounds any single file, the ticker measures the tree.
"""

from __future__ import annotations

import ctypes
import os
import resource
import threading
import time
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import _bindings, _ffi

from swarm.executor.modules import LoadedModule
from swarm.executor.spec import format_size

TICK = 0.01  # seconds per epoch tick: timeout resolution
Emit = Callable[[dict[str, Any]], None]


class OutputSink:
    """A WASI stdout/stderr that keeps ``cap`` bytes, streams them, counts the rest."""

    def __init__(self, stream: str, cap: int, path: str | None, emit: Emit):
        self.stream, self.cap, self.emit = stream, cap, emit
        self.kept = 0
        self.truncated = False
        self._file = open(path, "wb") if path else None  # noqa: SIM115 - closed in close()
        self._pending = bytearray()
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        """Called by wasmtime on the guest's thread for every write."""
        room = self.cap - self.kept
        if len(data) > room:
            self.truncated = True
            data = data[: max(room, 0)]
        if not data:
            return
        with self._lock:
            self.kept += len(data)
            if self._file is not None:
                self._file.write(data)
            self._pending += data
            if len(self._pending) >= 64 * 1024:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._pending:
            self.emit({"ev": "out", "stream": self.stream, "data": bytes(self._pending)})
            self._pending.clear()
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()


_CALLBACK_T = _bindings._wasmtime_store_epoch_deadline_callback.argtypes[1]
_FINALIZER_T = _bindings._wasmtime_store_epoch_deadline_callback.argtypes[3]
_NO_FINALIZER = ctypes.cast(None, _FINALIZER_T)
_CONTINUE = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE


class Watchdog:
    """Stops the running guest at its deadline, or at once after ``stop(reason)``.

    ``stop`` may be called from any thread; the guest notices at its next epoch tick.
    """

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.reason: str | None = None

    def arm(self, store: wasmtime.Store, timeout: float) -> None:
        self.deadline, self.reason = time.monotonic() + timeout, None

        def on_deadline(_ctx, _data, delta, kind):  # runs on the guest's thread
            try:
                if self.reason is None and time.monotonic() >= self.deadline:
                    self.reason = "timeout"
                if self.reason is not None:
                    return _error(f"guest stopped: {self.reason}".encode())
                delta[0], kind[0] = 1, _CONTINUE
                return 0
            except BaseException:  # an exception must never cross the C boundary
                return _error(b"guest stopped: watchdog failure")

        thunk = _CALLBACK_T(on_deadline)
        store._swarm_watchdog = thunk  # the C side holds a raw pointer: keep the thunk alive
        _ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), thunk, None, _NO_FINALIZER)
        store.set_epoch_deadline(1)

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason


def _error(message: bytes) -> int:
    return ctypes.cast(_ffi.wasmtime_error_new(message), ctypes.c_void_p).value or 0


def tree_size(root: str, max_entries: int) -> tuple[int, int]:
    """(bytes, entries) below ``root``, never following symlinks; stops past max_entries."""
    total = entries = 0
    stack = [root]
    while stack and entries <= max_entries:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    entries += 1
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue  # removed while we looked
    return total, entries


class OutputsWatch:
    """Polled by the worker's ticker: stops the guest when /outputs outgrows its caps."""

    def __init__(self, root: str, cap: int, max_entries: int, watchdog: Watchdog):
        self.root, self.cap, self.max_entries, self.watchdog = root, cap, max_entries, watchdog

    def over(self) -> bool:
        size, entries = tree_size(self.root, self.max_entries)
        return size > self.cap or entries > self.max_entries

    def check(self) -> None:
        if self.over():
            self.watchdog.stop("output_limit")


def run_guest(
    linker: wasmtime.Linker,
    loaded: LoadedModule,
    request: dict[str, Any],
    sinks: tuple[OutputSink, OutputSink],
    watchdog: Watchdog,
) -> dict[str, Any]:
    """Run one module to its end; return the 'done' event (status, exit code, sizes)."""
    stdout, stderr = sinks
    wasi = wasmtime.WasiConfig()
    wasi.argv = list(request["argv"])
    wasi.env = [list(pair) for pair in request["env"]]
    for host, guest, writable in request["preopens"]:
        wasi.preopen_dir(host, guest, fs_mutable=writable)
    wasi.preopen_dir(request["outputs_dir"], "/outputs", fs_mutable=True)
    wasi.stdout_custom = stdout.write
    wasi.stderr_custom = stderr.write
    store = wasmtime.Store(linker.engine)
    store.set_wasi(wasi)  # without it a WASI module aborts the whole process
    memory_cap = request["memory"]
    store.set_limits(
        memory_size=memory_cap, table_elements=1 << 20, instances=8, tables=16, memories=4
    )
    watchdog.arm(store, request["timeout"])

    exit_code, status, message, instance = None, "failed", "", None
    started = time.perf_counter()
    with _file_size_limit(
        max(request["outputs_cap"], request["stdout_cap"], request["stderr_cap"]) + 1
    ):
        try:
            instance = linker.instantiate(store, loaded.module)
            instance.exports(store)[request["entry"]](store)
            exit_code = 0
        except wasmtime.ExitTrap as exc:
            exit_code = exc.code
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            message = _first_line(exc)
            if watchdog.reason is not None:
                status = watchdog.reason
                message = _stop_message(watchdog.reason, request)
            elif instance is None and "memory" in message and "limit" in message.lower():
                status = "out_of_memory"  # its declared minimum memory is over the cap
    wall = time.perf_counter() - started
    watchdog.deadline = None

    memory_bytes = _memory_bytes(store, instance)
    if exit_code is not None:
        status = "completed" if exit_code == 0 else "failed"
    if status == "failed" and memory_cap - memory_bytes < max(memory_cap // 8, 8 << 20):
        status = "out_of_memory"  # it failed with its memory at the cap: grow was refused
        message = message or f"memory limit of {format_size(memory_cap)} reached"
    outputs_bytes, entries = tree_size(request["outputs_dir"], request["output_files_cap"])
    if outputs_bytes > request["outputs_cap"] or entries > request["output_files_cap"]:
        status = "output_limit"
        message = _stop_message("output_limit", request)
    return {
        "ev": "done",
        "status": status,
        "exit_code": exit_code,
        "message": message,
        "wall": wall,
        "stdout_bytes": stdout.kept,
        "stderr_bytes": stderr.kept,
        "stdout_truncated": stdout.truncated,
        "stderr_truncated": stderr.truncated,
        "outputs_bytes": outputs_bytes,
        "memory_bytes": memory_bytes,
        "module_source": loaded.source,
    }


def _stop_message(reason: str, request: dict[str, Any]) -> str:
    if reason == "timeout":
        return f"timed out after {request['timeout']:g}s"
    return (
        f"/outputs outgrew its cap of {format_size(request['outputs_cap'])} "
        f"or {request['output_files_cap']} entries"
    )


class _file_size_limit:
    """RLIMIT_FSIZE for the run: no single file the guest writes can outgrow the caps."""

    def __init__(self, limit: int):
        self.limit = limit

    def __enter__(self):
        self.saved = resource.getrlimit(resource.RLIMIT_FSIZE)
        hard = self.saved[1]
        soft = self.limit if hard == resource.RLIM_INFINITY else min(self.limit, hard)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    def __exit__(self, *exc):
        resource.setrlimit(resource.RLIMIT_FSIZE, self.saved)


def _memory_bytes(store: wasmtime.Store, instance: wasmtime.Instance | None) -> int:
    if instance is None:
        return 0
    try:
        memory = instance.exports(store).get("memory")
        return memory.data_len(store) if isinstance(memory, wasmtime.Memory) else 0
    except wasmtime.WasmtimeError:
        return 0


def _first_line(exc: BaseException) -> str:
    """The cause of a wasmtime error in one line, without the wasm backtrace."""
    text = str(exc).strip()
    if "Caused by:" in text:
        text = text.split("Caused by:", 1)[1].strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__
