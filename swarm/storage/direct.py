"""Large files written past the page cache (O_DIRECT) when the page cache is dear.

A requester writes what its compute nodes send, and keeps it. Through the page cache that
normally costs little CPU (~0.02 s per 100 MiB), and a ``swarm get`` soon after is served
from memory. On some machines it costs far more: on the project VM, memory the VM has not
touched yet costs ~0.25 s of CPU per 100 MiB to write into, and the VM hands free memory
back to its host, so once results pile up most writes are of that kind
(docs/BENCHMARKS.md, 2026-11-29 late evening); a machine short of memory pays for reclaim the
same way. Written with O_DIRECT instead, the bytes go from a reused, aligned buffer to
the disk for ~0.005 s of CPU per 100 MiB, and nothing is pushed out of the page cache.

So a large file goes through the page cache a buffer at a time, and the first buffer
whose write there costs more than ``CACHE_CPU`` of CPU a MiB (about five times the usual) sends
the rest of the file past it. Each full buffer is written by a helper thread while the
caller fills the other, so the event loop that feeds a result does not wait for the disk.
A disk slower than what feeds it would hold the caller up at every buffer: the first wait
longer than ``FALL_BEHIND`` sends the rest of the file back through the page cache, which
absorbs it.

O_DIRECT wants the buffer's address, the file offset and each length aligned; ``ALIGN``
(4096) covers the disks in use, and buffers are whole multiples of it. The last partial
block goes through the page cache. A file system that refuses O_DIRECT (older tmpfs,
some network file systems), or a write refused with EINVAL, means the page cache from
there on: never a failure of its own.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

ALIGN = 4096
MIB = 1 << 20
BUFFER = MIB  # bytes read at once; a multiple of ALIGN
# Bytes gathered before one write; a multiple of ALIGN. Each full buffer is a hand-over to
# the helper thread, and the event loop and the helper then take turns at the GIL: with
# 4 MiB buffers instead of 1 MiB, a requester's CPU per 100 MiB result fell by 0.1-0.13 s
# (docs/BENCHMARKS.md, 2026-11-29 night).
WRITE_BUFFER = 4 * MIB
CACHE_CPU = 0.001  # seconds of CPU per MiB written into the page cache: dear
FALL_BEHIND = 0.005  # seconds: the caller waited this long for the disk once


_helpers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="swarm-direct")  # threads on use


def new_buffers(size: int = BUFFER) -> tuple[mmap.mmap, mmap.mmap]:
    """Two aligned buffers of ``size`` bytes (an anonymous map starts on a page), to be
    reused file after file: one is filled or read while the other is written or read
    ahead. ``WRITE_BUFFER`` for a ``LargeFile``, ``BUFFER`` for ``read_chunks``."""
    return mmap.mmap(-1, size), mmap.mmap(-1, size)


class LargeFile:
    """Writes the file open on ``fd`` (empty, at offset 0) a buffer at a time, each full
    buffer by a helper thread. Through the page cache while a buffer's write there costs
    under ``CACHE_CPU`` of CPU a MiB; past it (O_DIRECT) from the first that costs more, for the
    rest of the file. ``finish`` writes the rest, ``abandon`` waits for the write under way
    and drops the rest; then the caller closes ``fd``."""

    def __init__(self, fd: int, buffers: tuple[mmap.mmap, mmap.mmap]) -> None:
        self.fd = fd
        self.direct = False  # O_DIRECT is on
        self.direct_bytes = 0  # written past the page cache
        self._may_go_direct = True  # until O_DIRECT is refused or the disk falls behind
        self._buffers = buffers
        self._buffer = buffers[0]
        self._fill = 0
        self._writing: Future[None] | None = None  # the other buffer's write
        self._writing_direct = False  # and whether it went past the page cache

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
        started, direct_write = time.perf_counter(), self._writing_direct
        self._wait()
        if direct_write and time.perf_counter() - started > FALL_BEHIND:
            self._stay_in_cache()  # the disk cannot keep up
        buffer, size = self._buffer, len(self._buffer)
        self._writing_direct = self.direct
        self._writing = _helpers.submit(self._write_out, buffer, size)
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
        """Write what the buffer holds: its whole blocks as the rest, the tail through the
        page cache (an O_DIRECT length must be a whole number of blocks)."""
        self._wait()
        whole = self._fill - self._fill % ALIGN
        if whole:
            self._write_out(self._buffer, whole)
            tail = self._buffer[whole : self._fill]
            self._buffer[: len(tail)] = tail
            self._fill = len(tail)
        if self._fill:
            self._stay_in_cache()
            self._write_out(self._buffer, self._fill)
            self._fill = 0

    def _write_out(self, buffer: mmap.mmap, n: int) -> None:
        cpu = time.thread_time()
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
                    self._stay_in_cache()
                    continue
                if self.direct:
                    self.direct_bytes += written
                pending = pending[written:]
        finally:
            pending.release()  # not left to a traceback: the buffer must be closable
        if not self.direct and self._may_go_direct and n == len(buffer):
            if time.thread_time() - cpu > CACHE_CPU * n / MIB:  # the page cache is dear here
                self.direct = self._may_go_direct = _set_direct(self.fd, True)

    def _stay_in_cache(self) -> None:
        """The rest of the file goes through the page cache."""
        self._may_go_direct = False
        if self.direct:
            self.direct = _set_direct(self.fd, False)


def read_chunks(fd: int, size: int, buffers: tuple[mmap.mmap, mmap.mmap]) -> Iterator[memoryview]:
    """The ``size`` bytes of the file open on ``fd``, a buffer at a time, each view valid
    until the next is asked for. What the page cache holds is read from it; from the first
    buffer's worth it does not hold (a file written past it), the rest of the file is read
    past it too, the next buffer's read under way in a helper thread while the caller takes
    this one. Reading such a file through the page cache would cost what writing it there
    would have. Raises OSError (EIO, say), or EOFError if the file shrank."""
    direct = refused = False  # reading past the page cache; that was refused
    reading: Future[int] | None = None
    try:
        for index, offset in enumerate(range(0, size, BUFFER)):
            buffer = buffers[index % 2]
            want = min(BUFFER, size - offset)
            try:
                if reading is not None:
                    reading, done = None, reading
                    got = done.result()
                else:
                    got = _read_cached(fd, buffer, want, offset)
                    if got < want:
                        direct = not refused and (direct or _set_direct(fd, True))
                        got = _read_at(fd, buffer, want, offset, direct)
            except OSError as exc:  # a read past the cache refused: the rest through it
                if not (direct and exc.errno == errno.EINVAL):
                    raise
                direct, refused = _set_direct(fd, False), True
                got = _read_at(fd, buffer, want, offset, False)
            if got < want:
                raise EOFError(f"the file ended {size - offset - got} bytes early")
            if direct and offset + BUFFER < size:
                ahead = min(BUFFER, size - offset - BUFFER)
                other = buffers[(index + 1) % 2]
                reading = _helpers.submit(_read_at, fd, other, ahead, offset + BUFFER, True)
            with memoryview(buffer) as view:
                yield view[:want]
    finally:
        if reading is not None:  # the caller gave up: the buffer stays in use till then
            try:
                reading.result()
            except OSError:
                pass
        if direct:
            _set_direct(fd, False)


def _read_cached(fd: int, buffer: mmap.mmap, want: int, offset: int) -> int:
    """Bytes read from the page cache at ``offset`` (0 for none), without waiting for the
    disk; where that cannot be asked, bytes read as usual."""
    with memoryview(buffer) as view:
        part = view[:want]
        try:
            return os.preadv(fd, [part], offset, os.RWF_NOWAIT)
        except BlockingIOError:
            return 0
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            return os.preadv(fd, [part], offset)
        finally:
            part.release()


def _read_at(fd: int, buffer: mmap.mmap, want: int, offset: int, direct: bool) -> int:
    """Read ``want`` bytes at ``offset`` (aligned) into ``buffer``; past the page cache, a
    length rounded up to whole blocks (the file's end stops it). Bytes read."""
    length = -(-want // ALIGN) * ALIGN if direct else want
    with memoryview(buffer) as view:
        part, got = view[:length], 0
        try:
            while got < want:
                n = os.preadv(fd, [part[got:]], offset + got)
                if not n:
                    break
                got += n
        finally:
            part.release()
    return min(got, want)


def _set_direct(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off for ``fd``; whether it is now on (False where refused)."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT if on else flags & ~os.O_DIRECT)
    except OSError:
        return False
    return on
