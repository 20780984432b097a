"""Large result files go past the page cache (O_DIRECT) where writing into it is dear, and
are read back past it where it does not hold them: byte for byte, and through the cache
wherever O_DIRECT is refused or the disk falls behind."""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import threading
import time
from pathlib import Path

import pytest

from swarm.errors import StorageError
from swarm.requester.results import DIRECT_MIN, ResultStore
from swarm.storage import direct
from swarm.storage.archive import Unpacker, pack, stream_steps, unpack
from swarm.storage.direct import ALIGN, BUFFER, MIB, WRITE_BUFFER
from tests.test_outputs_steps import noise_job_download

BIG = 10**12


def o_direct_works(folder: Path) -> bool:
    """Whether ``folder``'s file system takes an O_DIRECT write (asked without swarm)."""
    probe = folder / ".probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    except OSError:
        return False
    try:
        with mmap.mmap(-1, ALIGN) as block:
            return os.write(fd, block) == ALIGN
    except OSError:
        return False
    finally:
        os.close(fd)
        probe.unlink()


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    """A folder on a file system that takes O_DIRECT, where the page cache is taken to be
    dear and the disk to keep up with any writer (the tests of those two rules set them)."""
    if not o_direct_works(tmp_path):
        pytest.skip(f"the file system of {tmp_path} refuses O_DIRECT")
    monkeypatch.setattr(direct, "CACHE_CPU", -1.0)
    monkeypatch.setattr(direct, "FALL_BEHIND", float("inf"))
    return tmp_path


def past_the_cache(size: int) -> int:
    """Bytes of a ``size``-byte file written past a dear page cache: all whole blocks but
    the first buffer's (its write is what finds the cache dear)."""
    return max(0, size - size % ALIGN - WRITE_BUFFER)


def unpack_stream(source: Path, dest: Path, *, direct_min: int | None, piece: int = 0) -> Unpacker:
    """Unpack ``source``'s result stream into ``dest``, each chunk fed whole or, with
    ``piece``, in pieces of that many bytes (as a plain tar stream)."""
    unpacker = Unpacker(dest, max_bytes=BIG, max_entries=100, direct_min=direct_min)
    for chunk in stream_steps(source):
        if chunk is None:
            continue
        if piece and not chunk.compressed:
            for i in range(0, len(chunk.data), piece):
                unpacker.feed(chunk.data[i : i + piece], compressed=False)
        else:
            unpacker.feed(chunk.data, chunk.compressed)
    unpacker.close()
    return unpacker


def noise_tree(root: Path, sizes: dict[str, int]) -> Path:
    root.mkdir()
    for name, size in sizes.items():
        (root / name).write_bytes(os.urandom(size))
    return root


def same_files(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    return names == sorted(p.name for p in b.iterdir()) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names
    )


def test_large_files_go_past_the_page_cache_and_small_ones_do_not(store):
    big = 3 * WRITE_BUFFER + 12345
    source = noise_tree(store / "src", {"big.bin": big, "small.bin": 10_000})
    unpacker = unpack_stream(source, store / "dest", direct_min=20_000)
    assert same_files(source, store / "dest")
    assert unpacker.direct_bytes == past_the_cache(big) == 2 * WRITE_BUFFER + 12288  # not the tail


def test_without_direct_min_nothing_goes_past_the_page_cache(store):
    source = noise_tree(store / "src", {"big.bin": 2 * WRITE_BUFFER})
    assert unpack_stream(source, store / "dest", direct_min=None).direct_bytes == 0


@pytest.mark.parametrize(
    "size",
    [
        2 * ALIGN,  # exactly direct_min
        2 * ALIGN + 1,
        WRITE_BUFFER - 1,
        WRITE_BUFFER,
        WRITE_BUFFER + ALIGN,
        WRITE_BUFFER + ALIGN + 1,
        2 * WRITE_BUFFER - ALIGN + 7,
    ],
)
@pytest.mark.parametrize("piece", [0, 511, 65_537])
def test_every_size_and_feeding_round_trips(store, size, piece):
    source = noise_tree(store / "src", {"a.bin": size, "b.bin": size + 3})
    unpacker = unpack_stream(source, store / "dest", direct_min=2 * ALIGN, piece=piece)
    assert same_files(source, store / "dest")
    assert unpacker.direct_bytes == past_the_cache(size) + past_the_cache(size + 3)


def test_a_file_system_that_refuses_o_direct_gets_the_file_through_the_cache(store, monkeypatch):
    real_fcntl = direct.fcntl.fcntl

    def refuse_o_direct(fd, command, arg=0):
        if command == direct.fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_fcntl(fd, command, arg)

    monkeypatch.setattr(direct.fcntl, "fcntl", refuse_o_direct)
    source = noise_tree(store / "src", {"big.bin": 2 * WRITE_BUFFER + 5})
    unpacker = unpack_stream(source, store / "dest", direct_min=ALIGN)
    assert same_files(source, store / "dest")
    assert unpacker.direct_bytes == 0


def test_a_write_refused_halfway_finishes_through_the_cache(store, monkeypatch):
    real_write = os.write
    direct_writes = []

    def refuse_the_second_direct_one(fd, data):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            direct_writes.append(len(data))
            if len(direct_writes) == 2:
                raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(direct.os, "write", refuse_the_second_direct_one)
    source = noise_tree(store / "src", {"big.bin": 4 * WRITE_BUFFER + 100})
    unpacker = unpack_stream(source, store / "dest", direct_min=ALIGN)
    assert same_files(source, store / "dest")
    assert unpacker.direct_bytes == WRITE_BUFFER  # the second buffer only; the rest went back


def test_a_full_disk_is_a_storage_error_and_leaves_no_file_open(store, monkeypatch):
    def disk_full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(direct.os, "write", disk_full)
    source = noise_tree(store / "src", {"big.bin": 2 * WRITE_BUFFER})
    open_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(StorageError, match="No space left"):
        unpack_stream(source, store / "dest", direct_min=ALIGN)
    assert len(os.listdir("/proc/self/fd")) == open_before


def test_the_requesters_result_store_writes_large_outputs_past_the_cache(store):
    source = noise_tree(store / "src", {"big.bin": DIRECT_MIN + 1, "count.txt": 30})
    writer = ResultStore(store / "results").writer("a1b2c3", "d4e5f6")
    unpacker = writer.outputs()
    for chunk in stream_steps(source):
        if chunk is not None:
            unpacker.feed(chunk.data, chunk.compressed)
    unpacker.close()
    writer.close()
    assert same_files(source, writer.folder / "outputs")
    assert unpacker.direct_bytes == past_the_cache(DIRECT_MIN + 1)  # none of count.txt


def test_full_buffers_are_written_beside_the_caller(store, monkeypatch):
    """The thread that unpacks (a node's event loop) does not wait for the disk: full
    buffers are written by a helper thread; only the file's last piece by the caller."""
    real_write = os.write
    writers = []

    def write(fd, data):
        writers.append(threading.current_thread())
        return real_write(fd, data)

    monkeypatch.setattr(direct.os, "write", write)
    source = noise_tree(store / "src", {"big.bin": 3 * WRITE_BUFFER + 100})
    unpack_stream(source, store / "dest", direct_min=ALIGN)
    assert same_files(source, store / "dest")
    me = threading.current_thread()
    assert len(writers) == 4 and me not in writers[:3] and writers[3] is me


def test_a_disk_slower_than_its_writer_gets_the_rest_of_the_file_through_the_cache(
    store, monkeypatch
):
    real_write = os.write
    monkeypatch.setattr(direct, "FALL_BEHIND", 0.005)

    def slow_disk(fd, data):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            time.sleep(0.05)  # a 4 MiB write at 80 MB/s; the caller fills a buffer at once
        return real_write(fd, data)

    monkeypatch.setattr(direct.os, "write", slow_disk)
    source = noise_tree(store / "src", {"big.bin": 6 * WRITE_BUFFER})
    unpacker = unpack_stream(source, store / "dest", direct_min=ALIGN)
    assert same_files(source, store / "dest")
    # the second buffer went past the cache; the caller then waited for it: the rest did not
    assert unpacker.direct_bytes == WRITE_BUFFER


def test_a_slow_write_into_the_page_cache_is_no_sign_of_a_slow_disk(store, monkeypatch):
    """The wait for the write that found the cache dear (slow, as such writes are) does
    not send the file back into the cache: only a wait for a write past it does."""
    real_write = os.write
    monkeypatch.setattr(direct, "FALL_BEHIND", 0.05)

    def slow_cache(fd, data):
        if not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            time.sleep(0.1)
        return real_write(fd, data)

    monkeypatch.setattr(direct.os, "write", slow_cache)
    source = noise_tree(store / "src", {"big.bin": 4 * WRITE_BUFFER})
    unpacker = unpack_stream(source, store / "dest", direct_min=ALIGN)
    assert same_files(source, store / "dest")
    assert unpacker.direct_bytes == past_the_cache(4 * WRITE_BUFFER)


class CpuClock:
    """``time`` for swarm.storage.direct, with each write into the page cache costing
    ``per_write`` seconds of CPU."""

    def __init__(self, per_write: float) -> None:
        self.per_write, self.now, self.reads = per_write, 0.0, 0
        self.perf_counter = time.perf_counter

    def thread_time(self) -> float:
        self.reads += 1
        if self.reads % 2 == 0:  # read before and after each write: the write's cost between
            self.now += self.per_write
        return self.now


@pytest.mark.parametrize(
    "cpu_per_write, direct_bytes",
    [  # a MiB's write costing half the mark (0.2 ms is usual); as in cold memory on the VM
        (0.0005 * WRITE_BUFFER / MIB, 0),
        (0.0025 * WRITE_BUFFER / MIB, past_the_cache(5 * WRITE_BUFFER)),
    ],
)
def test_the_page_cache_is_left_only_where_writing_into_it_is_dear(
    store, monkeypatch, cpu_per_write, direct_bytes
):
    monkeypatch.setattr(direct, "CACHE_CPU", 0.001)
    monkeypatch.setattr(direct, "time", CpuClock(cpu_per_write))
    source = noise_tree(store / "src", {"big.bin": 5 * WRITE_BUFFER})
    unpacker = unpack_stream(source, store / "dest", direct_min=ALIGN)
    assert same_files(source, store / "dest")
    assert unpacker.direct_bytes == direct_bytes


def uncached(path: Path) -> Path:
    """``path`` with its pages out of the page cache (as after a write past it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return path


def read_all(path: Path, size: int | None = None) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # the cache gets only what is read
        size = os.fstat(fd).st_size if size is None else size
        return b"".join(bytes(c) for c in direct.read_chunks(fd, size, direct.new_buffers()))
    finally:
        os.close(fd)


@pytest.fixture
def direct_reads(monkeypatch) -> list[int]:
    """Offsets read past the page cache, in the order asked."""
    offsets: list[int] = []
    real = direct._read_at

    def spy(fd, buffer, want, offset, past_the_cache):
        if past_the_cache:
            offsets.append(offset)
        return real(fd, buffer, want, offset, past_the_cache)

    monkeypatch.setattr(direct, "_read_at", spy)
    return offsets


@pytest.mark.parametrize("size", [BUFFER, 3 * BUFFER + 5, 2 * BUFFER - ALIGN - 1])
def test_a_file_the_page_cache_does_not_hold_is_read_past_it(store, direct_reads, size):
    data = os.urandom(size)
    (store / "f").write_bytes(data)
    assert read_all(uncached(store / "f")) == data
    assert direct_reads == list(range(0, size, BUFFER))


def test_a_file_the_page_cache_holds_is_read_from_it(store, direct_reads):
    data = os.urandom(3 * BUFFER + 5)
    (store / "f").write_bytes(data)  # just written: in the cache
    assert read_all(store / "f") == data
    assert direct_reads == []


def test_a_file_half_in_the_cache_is_read_past_it_from_where_the_cache_ends(store, direct_reads):
    data = os.urandom(4 * BUFFER)
    (store / "f").write_bytes(data)
    uncached(store / "f")
    fd = os.open(store / "f", os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no read-ahead past what is read
        os.pread(fd, BUFFER, 0)  # the first buffer's worth back in the cache
    finally:
        os.close(fd)
    assert read_all(store / "f") == data
    assert direct_reads == [BUFFER, 2 * BUFFER, 3 * BUFFER]


def test_a_file_that_shrank_is_an_error(store):
    (store / "f").write_bytes(os.urandom(2 * BUFFER))
    with pytest.raises(EOFError):
        read_all(uncached(store / "f"), size=3 * BUFFER)


def test_reads_refused_past_the_cache_are_read_through_it(store, monkeypatch):
    real = os.preadv
    refused = []

    def refuse_o_direct(fd, buffers, offset, flags=0):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(offset)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, buffers, offset, flags)

    monkeypatch.setattr(direct.os, "preadv", refuse_o_direct)
    data = os.urandom(3 * BUFFER + 17)
    (store / "f").write_bytes(data)
    assert read_all(uncached(store / "f")) == data
    assert refused == [0]  # asked once: not again for every piece


def test_giving_up_a_read_past_the_cache_waits_for_the_read_under_way(store):
    (store / "f").write_bytes(os.urandom(4 * BUFFER))
    fd = os.open(uncached(store / "f"), os.O_RDONLY)
    try:
        chunks = direct.read_chunks(fd, 4 * BUFFER, direct.new_buffers())
        next(chunks)  # the second buffer's read is now under way
        chunks.close()
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT  # and the fd as it was
    finally:
        os.close(fd)


def test_a_large_result_written_past_the_cache_packs_and_round_trips(store, direct_reads):
    """What ``swarm get`` does with it: the download packs it from the store."""
    size = 2 * WRITE_BUFFER + 3
    source = noise_tree(store / "src", {"big.bin": size, "small.txt": 5})
    unpacker = unpack_stream(source, store / "stored", direct_min=ALIGN)
    assert unpacker.direct_bytes == past_the_cache(size)
    unpack(pack(store / "stored"), store / "fetched", max_bytes=BIG, max_entries=10)
    assert same_files(source, store / "fetched")
    # read past the cache from where the writes went past it (all but the first buffer)
    assert direct_reads == list(range(WRITE_BUFFER, size, BUFFER))


def test_a_result_cut_off_mid_file_leaves_no_file_open(store):
    """A stream that breaks during a large file (the session aborts its unpacker): the
    write under way is waited for, and the file closed."""
    source = noise_tree(store / "src", {"big.bin": 5 * WRITE_BUFFER})
    chunks = [c for c in stream_steps(source) if c is not None]
    open_before = len(os.listdir("/proc/self/fd"))
    unpacker = Unpacker(store / "dest", max_bytes=BIG, max_entries=10, direct_min=ALIGN)
    for chunk in chunks[: len(chunks) // 2]:
        unpacker.feed(chunk.data, chunk.compressed)
    unpacker.abort()
    assert len(os.listdir("/proc/self/fd")) == open_before
    assert unpacker.direct_bytes > 0  # it was going past the cache when cut off


def xorshift_noise(blocks: int) -> bytes:
    """What ``tests.guests.random_writer`` writes: 64 KiB blocks of xorshift64 noise."""
    x, mask, out = 88172645463325252, (1 << 64) - 1, bytearray()
    for _ in range(blocks * 8192):
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
        out += x.to_bytes(8, "little")
    return bytes(out)


async def test_a_node_stores_a_large_result_past_the_cache_and_serves_it_back(store, monkeypatch):
    """Through a real hybrid node: a guest writes 9 MiB of noise; the requester stores it
    past the page cache, and `swarm get`'s download (read back past it) holds the guest's
    bytes exactly."""
    written = []
    real_finish = direct.LargeFile.finish

    def finish(self):
        real_finish(self)
        written.append(self.direct_bytes)

    monkeypatch.setattr(direct.LargeFile, "finish", finish)
    noise = await noise_job_download(store, blocks=144)
    assert written == [past_the_cache(144 * 65536)]
    assert noise.read_bytes() == xorshift_noise(144)
