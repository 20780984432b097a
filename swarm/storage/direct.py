"""Large files written past the page cache (O_DIRECT): the results a requester keeps.

A requester writes what its compute nodes send and keeps it. Through the page cache, a
100 MiB result takes 100 MiB of memory that nobody reads soon, and pushes out the data
the node serves to its jobs. Written with O_DIRECT, the bytes go from one reused, aligned
buffer to the disk. Measured on the project VM (docs/BENCHMARKS.md, 2026-11-29 late):
100 MiB cost ~0.005 s of CPU this way, against 0.02 s through the page cache into memory
in use and 0.25 s into memory the VM has not touched yet. That VM hands free memory back
to its host, so once results pile up, most writes are of the second kind.

A full buffer is written by a helper thread while the caller fills the other one, so the
event loop that feeds a result does not wait for the disk (~0.6 ms per MiB here). A disk
slower than what feeds it would hold the caller up at every buffer; the first wait longer
than ``FALL_BEHIND`` sends the rest of the file through the page cache, which absorbs it.

O_DIRECT wants the buffer's address, the file offset and each length aligned; ``ALIGN``
(4096) covers the disks in use. The last partial block goes through the page cache. A
file system that refuses O_DIRECT (older tmpfs, some network file systems), or a write
refused with EINVAL, means the file is written through the page cache from there on:
never a failure of its own.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor

ALIGN = 4096
BUFFER = 1 << 20  # bytes gathered before one write; a multiple of ALIGN
FALL_BEHIND = 0.005  # seconds: the caller waited this long for the disk once


_writers: ThreadPoolExecutor | None = None


def _writer() -> ThreadPoolExecutor:
    global _writers
    if _writers is None:
        _writers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="swarm-direct")
    return _writers


def new_buffers() -> tuple[mmap.mmap, mmap.mmap]:
    """Two aligned buffers (an anonymous map starts on a page), to be reused file after
    file: one fills while the other is written."""
    return mmap.mmap(-1, BUFFER), mmap.mmap(-1, BUFFER)


class DirectFile:
    """Writes the file open on ``fd`` (empty, at offset 0) in ``ALIGN``-ed pieces from
    ``buffers``, past the page cache where the file system allows it. ``finish`` writes
    the rest, ``abandon`` waits for the write under way and drops the rest; then the
    caller closes ``fd``."""

    def __init__(self, fd: int, buffers: tuple[mmap.mmap, mmap.mmap]) -> None:
        self.fd = fd
        self.direct = _set_direct(fd, True)
        self.direct_bytes = 0  # written past the page cache
        self._buffers = buffers
        self._buffer = buffers[0]
        self._fill = 0
        self._writing: Future[None] | None = None  # the other buffer's write

    def write(self, data: memoryview) -> None:
        size = len(self._buffer)
        while data:
            take = min(len(data), size - self._fill)
            self._buffer[self._fill : self._fill + take] = data[:take]
            self._fill += take
            data = data[take:]
            if self._fill == size:
                self._hand_over()

    def _hand_over(self) -> None:
        """Have the full buffer written by a helper thread, and fill the other one."""
        started = time.perf_counter()
        self._wait()
        if self.direct and time.perf_counter() - started > FALL_BEHIND:
            self.direct = _set_direct(self.fd, False)  # the disk cannot keep up
        buffer, size = self._buffer, len(self._buffer)
        self._writing = _writer().submit(self._write_out, buffer, size)
        self._buffer = self._buffers[1] if buffer is self._buffers[0] else self._buffers[0]
        self._fill = 0

    def _wait(self) -> None:
        """Wait for the write under way; its error is raised here."""
        if self._writing is not None:
            writing, self._writing = self._writing, None
            writing.result()

    def abandon(self) -> None:
        """Wait for the write under way, whatever comes of it (the file is being given up)."""
        try:
            self._wait()
        except OSError:
            pass

    def finish(self) -> None:
        """Write what the buffer holds: its whole blocks as before, the tail through the
        page cache (an O_DIRECT length must be a whole number of blocks)."""
        self._wait()
        whole = self._fill - self._fill % ALIGN
        if whole:
            self._write_out(self._buffer, whole)
            tail = self._buffer[whole : self._fill]
            self._buffer[: len(tail)] = tail
            self._fill = len(tail)
        if self._fill:
            if self.direct:
                self.direct = _set_direct(self.fd, False)
            self._write_out(self._buffer, self._fill)
            self._fill = 0

    def _write_out(self, buffer: mmap.mmap, n: int) -> None:
        pending = memoryview(buffer)[:n]
        try:
            while pending:
                try:
                    written = os.write(self.fd, pending)
                except OSError as exc:
                    # refused for this file or this piece (e.g. left unaligned by a short
                    # write): the rest goes through the page cache
                    if not (self.direct and exc.errno == errno.EINVAL):
                        raise
                    self.direct = _set_direct(self.fd, False)
                    continue
                if self.direct:
                    self.direct_bytes += written
                pending = pending[written:]
        finally:
            pending.release()  # not left to a traceback: the buffer must be closable


def _set_direct(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off for ``fd``; whether it is now on (False where refused)."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT if on else flags & ~os.O_DIRECT)
    except OSError:
        return False
    return on
