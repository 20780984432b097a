"""Directory trees as a stream of compressed bytes: how ``/outputs`` travels home.

The format is a POSIX (pax) tar stream compressed with zstd level 1: a ``.tar.zst`` that
``tar --zstd -xf`` also reads. zstd was chosen by measurement (docs/BENCHMARKS.md):
tar + zlib level 1 packs mixed data at about 80 MB/s on the project machine, slower than
the network; zstd level 1 packs and unpacks at several hundred MB/s, and passes data that
does not compress at about 1 GB/s.

Between nodes the same tar stream travels in ``stream_steps`` chunks instead: file data
that zstd cannot shrink goes plain, the rest as zstd frames, each chunk marked.

``pack`` never follows symlinks: it stores regular files and directories only, and
skips everything else. ``Unpacker`` takes the stream in chunks as it arrives and trusts
nothing in it: every name must be relative without ``..``, only files and directories
are accepted (no links, devices or fifos), and sizes and entry counts are checked against
the caller's caps *before* anything is written. Decompression is pushed through a
bounded buffer, so a small hostile stream cannot expand into memory. Any violation is a
``ProtocolError``; a stream that ends before the tar end marker is one too.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import zstandard

from swarm.errors import ProtocolError, StorageError
from swarm.storage import direct

CHUNK = 1024 * 1024
LEVEL = 1
_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_MAX_NAME = 4096
_MAX_PAX = 16 * 1024
_META_PER_ENTRY = 2 * _BLOCK + _MAX_PAX + _BLOCK  # pax header + data, header, padding
_MAX_TRAILER = 64 * 1024  # zero padding after the end marker (tar pads to 10 KiB records)
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_TYPE_NAMES = {
    tarfile.SYMTYPE: "a symlink",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a fifo",
}


def pack(root: Path, *, chunk_size: int = CHUNK) -> Iterator[bytes]:
    """The tree under ``root`` as compressed chunks of about ``chunk_size`` bytes."""
    return (chunk for chunk in pack_steps(root, chunk_size=chunk_size) if chunk)


def pack_steps(root: Path, *, chunk_size: int = CHUNK) -> Iterator[bytes]:
    """``pack`` in steps of bounded work, for a caller on an event loop: each step reads
    about ``chunk_size`` bytes of the tree at most, and yields the next compressed chunk
    if one is ready, else ``b""``."""
    for step in _steps(root, chunk_size=chunk_size, plain=False, chunk_input=None):
        yield b"" if step is None else step.data


@dataclass(frozen=True)
class StreamChunk:
    """A piece of a result stream: zstd-compressed tar bytes, or plain tar bytes."""

    data: bytes
    compressed: bool


PROBE = 16 * 1024  # bytes of a piece that are compressed to judge the whole piece
_WORTH_IT = 0.9  # a piece is compressed if its probe shrinks below this fraction
# A result stream's compressed chunk never stands for more than STREAM_CHUNK_OUTPUT bytes
# of tar, so a requester can refuse one that does and unpack every chunk in bounded time:
# the packer ends a chunk after _STREAM_CHUNK_INPUT bytes of input, however well they
# compress (a chunk's output also carries up to one CHUNK its decoder held back before).
STREAM_CHUNK_OUTPUT = 32 * CHUNK
_STREAM_CHUNK_INPUT = 16 * CHUNK


def stream_steps(root: Path, *, chunk_size: int = CHUNK) -> Iterator[StreamChunk | None]:
    """The tree as a result stream, in steps of bounded work (as ``pack_steps``; None for a
    step with nothing ready): the same tar stream, but a piece of file data that does not
    compress (noise, media, archives: its first ``PROBE`` bytes shrink by less than 10 %)
    goes as it is, not through zstd. zstd costs about 1 ms per MiB at each end even on
    data it cannot shrink. The compressed runs between plain pieces are whole zstd frames:
    a decoder has given out all of a frame once it has read its end, which a flushed block
    does not ensure (python-zstandard's writer can hold the tail of one back).
    ``Unpacker.feed(data, compressed=...)`` takes the stream back."""
    return _steps(root, chunk_size=chunk_size, plain=True, chunk_input=_STREAM_CHUNK_INPUT)


def _steps(
    root: Path, *, chunk_size: int, plain: bool, chunk_input: int | None
) -> Iterator[StreamChunk | None]:
    """The packer: with ``plain``, pieces that do not compress go plain; with
    ``chunk_input``, a compressed chunk is ended after that many bytes of input."""
    if not root.is_dir() or root.is_symlink():
        raise StorageError(f"cannot pack {root}: it is not a directory")
    zstd = zstandard.ZstdCompressor(level=LEVEL, write_checksum=True)
    probe = zstandard.ZstdCompressor(level=LEVEL)  # its own context: zstd's is mid-frame
    compressor, fed = zstd.compressobj(), False
    pending: list[bytes] = []
    size = read = taken = 0  # compressed bytes waiting; input this step; input this chunk
    for piece in _tar_stream(root):
        read += len(piece)
        if plain and _shrinks_little(piece, probe):
            if fed:
                pending.append(compressor.flush())
                yield StreamChunk(b"".join(pending), True)
                compressor, fed = zstd.compressobj(), False
            pending, size, read, taken = [], 0, 0, 0
            yield StreamChunk(bytes(piece), False)
            continue
        fed = True
        taken += len(piece)
        out = compressor.compress(piece)
        if out:
            pending.append(out)
            size += len(out)
        full = chunk_input is not None and taken >= chunk_input
        if full:  # everything taken so far must be decodable from this chunk
            pending.append(compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
        if full or size >= chunk_size:
            yield StreamChunk(b"".join(pending), True)
            pending, size, read, taken = [], 0, 0, 0
        elif read >= chunk_size:
            yield None
            read = 0
    if fed:
        pending.append(compressor.flush())
        yield StreamChunk(b"".join(pending), True)


def _shrinks_little(piece: bytes, probe: zstandard.ZstdCompressor) -> bool:
    return len(piece) >= PROBE and len(probe.compress(piece[:PROBE])) > _WORTH_IT * PROBE


# Files this large are read by ``direct.read_chunks``: past the page cache where it does not
# hold them (a large result written past it), with the next piece read meanwhile.
_LARGE = 8 * CHUNK


def _tar_stream(root: Path) -> Iterator[bytes]:
    buffer = bytearray(CHUNK)
    large_buffers: tuple[mmap.mmap, mmap.mmap] | None = None
    for relative, path, dir_info in _walk(root, ""):
        if dir_info is not None:
            yield _header(relative, tarfile.DIRTYPE, 0, dir_info)
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP):  # vanished, or now a symlink: skip
                continue
            raise StorageError(f"cannot pack {path}: {exc.strerror}") from exc
        with open(fd, "rb", buffering=0) as source:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                continue
            yield _header(relative, tarfile.REGTYPE, info.st_size, info)
            left = info.st_size
            if left >= _LARGE:
                if large_buffers is None:
                    large_buffers = direct.new_buffers()
                try:
                    yield from direct.read_chunks(fd, left, large_buffers)
                except EOFError:
                    raise StorageError(f"{path} shrank while it was being packed") from None
                except OSError as exc:
                    raise StorageError(f"cannot read {path}: {exc.strerror}") from exc
                left = 0
            while left:
                n = source.readinto(memoryview(buffer)[: min(left, CHUNK)])
                if not n:
                    raise StorageError(f"{path} shrank while it was being packed")
                left -= n
                yield memoryview(buffer)[:n]  # consumed before the next read refills it
            if info.st_size % _BLOCK:
                yield bytes(_BLOCK - info.st_size % _BLOCK)
    yield _ZERO_BLOCK * 2


def _walk(folder: Path, prefix: str) -> Iterator[tuple[str, Path, os.stat_result | None]]:
    """(name in the archive, host path, stat for a directory / None for a file), depth
    first, in name order; symlinks and special files are left out."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(f"cannot pack {folder}: {exc.strerror}") from exc
    for entry in entries:
        relative = prefix + entry.name
        try:
            if entry.is_dir(follow_symlinks=False):
                info = entry.stat(follow_symlinks=False)
                yield relative, Path(entry.path), info
                yield from _walk(Path(entry.path), relative + "/")
            elif entry.is_file(follow_symlinks=False):
                yield relative, Path(entry.path), None
        except FileNotFoundError:
            continue


def _header(name: str, kind: bytes, size: int, info: os.stat_result) -> bytes:
    entry = tarfile.TarInfo(name)
    entry.type, entry.size = kind, size
    entry.mode = stat.S_IMODE(info.st_mode)
    entry.mtime = int(info.st_mtime)
    return entry.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


@dataclass(frozen=True)
class UnpackSummary:
    files: int
    directories: int
    bytes: int  # file content, uncompressed


class Unpacker:
    """Unpacks a ``pack`` stream into ``dest`` (created; must not hold anything yet).

    ``feed`` each chunk as it arrives, then ``close``. Files are created 0644 and
    directories 0755 whatever the archive says; modification times are not restored.
    Files of ``direct_min`` bytes or more, if given, are written past the page cache where
    that is cheaper (``swarm.storage.direct``); ``direct_bytes`` says how much went so.
    """

    def __init__(
        self,
        dest: Path,
        *,
        max_bytes: int,
        max_entries: int,
        max_chunk_output: int | None = None,
        direct_min: int | None = None,
    ) -> None:
        try:
            dest.mkdir(parents=True, exist_ok=True)
            if any(dest.iterdir()):
                raise StorageError(f"cannot unpack into {dest}: it is not empty")
        except OSError as exc:
            raise StorageError(f"cannot unpack into {dest}: {exc.strerror}") from exc
        self.dest = dest
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self.max_chunk_output = max_chunk_output  # tar bytes one compressed chunk may give
        self.direct_min = direct_min
        self.direct_bytes = 0
        self._tar = _TarReader(self)
        self._stream = zstandard.ZstdDecompressor().stream_writer(
            self._tar, write_size=CHUNK, closefd=False
        )
        self._failed: ProtocolError | None = None
        self.files = self.directories = self.bytes = 0

    def feed(self, chunk: bytes, compressed: bool = True) -> None:
        """Unpack what ``chunk`` completes; ProtocolError on anything unsafe or malformed.
        A chunk of a ``stream_steps`` stream that is not ``compressed`` is plain tar bytes."""
        if self._failed is not None:
            raise ProtocolError(f"archive already refused: {self._failed}")
        try:
            if compressed:
                self._tar.output_left = self.max_chunk_output
                self._stream.write(chunk)
            else:
                self._tar.output_left = None
                self._tar.write(chunk)
        except zstandard.ZstdError as exc:
            self._fail(ProtocolError(f"archive is not valid zstd data: {exc}"))
        except ProtocolError as exc:
            self._fail(exc)
        except BaseException:
            self.abort()
            raise

    def close(self) -> UnpackSummary:
        """Check the archive was complete and return what it held."""
        if self._failed is not None:
            raise ProtocolError(f"archive already refused: {self._failed}")
        if not self._tar.ended:
            self._fail(ProtocolError("archive ended early: the stream was cut off"))
        self._tar.release()
        return UnpackSummary(files=self.files, directories=self.directories, bytes=self.bytes)

    def abort(self) -> None:
        """Close any half-written file; what was unpacked stays for the caller to remove."""
        self._tar.close_file(finish=False)
        self._tar.release()

    def _fail(self, error: ProtocolError) -> None:
        self._failed = error
        self.abort()
        raise error

    def __enter__(self) -> Unpacker:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


class _TarReader:
    """The tar state machine, fed decompressed bytes by zstandard's stream writer."""

    def __init__(self, owner: Unpacker) -> None:
        self._owner = owner
        self._block = bytearray()  # a header being assembled
        self._meta: bytearray | None = None  # pax or long-name data being collected
        self._meta_kind = b""
        self._meta_budget = (owner.max_entries + 2) * _META_PER_ENTRY
        self._pending: dict[str, str] = {}  # from a pax or long-name entry, for the next one
        self._fd: int | None = None
        self._direct: direct.LargeFile | None = None  # the open file, if large
        self._direct_buffers: tuple[mmap.mmap, mmap.mmap] | None = None  # for large files
        self._left = 0  # bytes of the current entry's data still to come
        self._skip = 0  # padding still to skip
        self._zeros = 0  # zero blocks seen (two end the archive)
        self._trailer = 0
        self.output_left: int | None = None  # bytes the chunk being fed may still give
        self.ended = False

    def write(self, data: bytes) -> int:
        if self.output_left is not None:
            self.output_left -= len(data)
            if self.output_left < 0:
                raise ProtocolError(
                    f"a chunk of the archive expands past {self._owner.max_chunk_output} bytes"
                )
        view, pos, end = memoryview(data), 0, len(data)
        while pos < end:
            if self.ended:
                self._check_trailer(view[pos:])
                break
            if self._left:
                take = min(self._left, end - pos)
                self._take(view[pos : pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._finish_entry()
            elif self._skip:
                take = min(self._skip, end - pos)
                pos += take
                self._skip -= take
            else:
                take = min(_BLOCK - len(self._block), end - pos)
                self._block += view[pos : pos + take]
                pos += take
                if len(self._block) == _BLOCK:
                    block = bytes(self._block)
                    self._block.clear()
                    self._on_header(block)
        return len(data)

    def _check_trailer(self, rest: memoryview) -> None:
        self._trailer += len(rest)
        if self._trailer > _MAX_TRAILER or bytes(rest).count(0) != len(rest):
            raise ProtocolError("archive has data after its end marker")

    def _spend_meta(self, n: int) -> None:
        self._meta_budget -= n
        if self._meta_budget < 0:
            raise ProtocolError("archive holds far more headers than entries: refused")

    def _on_header(self, block: bytes) -> None:
        self._spend_meta(_BLOCK)
        if block == _ZERO_BLOCK:
            self._zeros += 1
            self.ended = self._zeros == 2
            return
        if self._zeros:
            raise ProtocolError("archive has a lone zero block in the middle")
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise ProtocolError(f"archive has a bad tar header: {exc}") from None
        pending, self._pending = self._pending, {}
        name = pending.get("path", info.name)
        size = _pax_size(pending["size"]) if "size" in pending else info.size
        kind = info.type
        if kind in (tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME):
            if pending:
                raise ProtocolError("archive has two extended headers in a row")
            limit = _MAX_PAX if kind == tarfile.XHDTYPE else _MAX_NAME + 1
            if size > limit:
                raise ProtocolError(f"archive has an extended header of {size} bytes: refused")
            self._spend_meta(size)
            self._meta, self._meta_kind = bytearray(), kind
            self._start_data(size)
        elif kind == tarfile.DIRTYPE:
            if size:
                raise ProtocolError(f"archive directory {name!r} claims {size} bytes of data")
            relative = _safe_name(name)
            if relative:
                self._count_entry()
                self._owner.directories += 1
                self._make_dirs(self._owner.dest / relative, relative)
        elif kind in _FILE_TYPES:
            relative = _safe_name(name)
            if not relative:
                raise ProtocolError("archive has a file with an empty name")
            self._count_entry()
            owner = self._owner
            if owner.bytes + size > owner.max_bytes:
                raise ProtocolError(
                    f"archive holds more than {owner.max_bytes} bytes of files: refused"
                )
            owner.bytes += size
            owner.files += 1
            self._open_file(relative, size)
            self._start_data(size)
        else:
            what = _TYPE_NAMES.get(kind, f"of unsupported type {kind!r}")
            raise ProtocolError(f"archive entry {name!r} is {what}: only files and folders")

    def _count_entry(self) -> None:
        owner = self._owner
        if owner.files + owner.directories >= owner.max_entries:
            raise ProtocolError(f"archive holds more than {owner.max_entries} entries: refused")

    def _start_data(self, size: int) -> None:
        self._left = size
        self._skip = -size % _BLOCK
        if not size:
            self._finish_entry()

    def _take(self, data: memoryview) -> None:
        if self._meta is not None:
            self._meta += data
            return
        try:
            if self._direct is not None:
                self._direct.write(data)
                return
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            raise StorageError(f"cannot write into {self._owner.dest}: {exc.strerror}") from exc

    def _finish_entry(self) -> None:
        if self._meta is None:
            self.close_file()
            return
        data, self._meta = bytes(self._meta), None
        if self._meta_kind == tarfile.GNUTYPE_LONGNAME:
            self._pending = {"path": data.rstrip(b"\0").decode("utf-8", "surrogateescape")}
        else:
            self._pending = _parse_pax(data)

    def _make_dirs(self, path: Path, relative: str) -> None:
        try:
            os.makedirs(path, mode=0o755, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ProtocolError(f"archive folder {relative!r} clashes with a file") from None
        except OSError as exc:
            raise StorageError(f"cannot create {path}: {exc.strerror}") from exc

    def _open_file(self, relative: str, size: int) -> None:
        path = self._owner.dest / relative
        self._make_dirs(path.parent, relative.rpartition("/")[0])
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self._fd = os.open(path, flags, 0o644)
        except (FileExistsError, IsADirectoryError, NotADirectoryError):
            raise ProtocolError(f"archive holds {relative!r} twice") from None
        except OSError as exc:
            raise StorageError(f"cannot create {path}: {exc.strerror}") from exc
        direct_min = self._owner.direct_min
        if direct_min is not None and size >= direct_min:
            if self._direct_buffers is None:
                self._direct_buffers = direct.new_buffers(direct.WRITE_BUFFER)
            self._direct = direct.LargeFile(self._fd, self._direct_buffers)

    def close_file(self, *, finish: bool = True) -> None:
        """Close the file being written; ``finish=False`` drops what is not written yet."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        writer, self._direct = self._direct, None
        try:
            if writer is not None:
                if finish:
                    writer.finish()
                else:
                    writer.abandon()
                self._owner.direct_bytes += writer.direct_bytes
        except OSError as exc:
            raise StorageError(f"cannot write into {self._owner.dest}: {exc.strerror}") from exc
        finally:
            os.close(fd)

    def release(self) -> None:
        """Give back the buffers of large files (the unpacking is over)."""
        if self._direct_buffers is not None:
            for buffer in self._direct_buffers:
                buffer.close()
            self._direct_buffers = None


def _safe_name(name: str) -> str:
    """A member name as a relative path inside the destination, or ProtocolError."""
    if len(name) > _MAX_NAME or "\x00" in name:
        raise ProtocolError("archive has an entry name that is too long or holds NUL")
    if name.startswith("/"):
        raise ProtocolError(f"archive entry {name!r} is an absolute path: refused")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ProtocolError(f"archive entry {name!r} climbs out with '..': refused")
    return "/".join(parts)


def _parse_pax(data: bytes) -> dict[str, str]:
    """pax records ``"<len> <key>=<value>\\n"``; only path and size matter here."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos, pos + 20)
        length_text = data[pos:space]
        if space < 0 or not length_text.isdigit():
            raise ProtocolError("archive has a malformed pax header")
        record = data[pos : pos + int(length_text)]
        if len(record) != int(length_text) or not record.endswith(b"\n"):
            raise ProtocolError("archive has a malformed pax record")
        key, equals, value = record[len(length_text) + 1 : -1].partition(b"=")
        if not equals:
            raise ProtocolError("archive has a pax record without '='")
        if key.startswith(b"GNU.sparse"):
            raise ProtocolError("archive holds a sparse file: not supported")
        if key in (b"path", b"size"):
            fields[key.decode()] = value.decode("utf-8", "surrogateescape")
        pos += len(record)
    return fields


def _pax_size(text: str) -> int:
    if not text.isdigit():
        raise ProtocolError(f"archive has a bad pax size {text[:20]!r}")
    return int(text)


def unpack(
    chunks: Iterable[bytes], dest: Path, *, max_bytes: int, max_entries: int
) -> UnpackSummary:
    """Unpack a whole stream of chunks (see ``Unpacker``)."""
    unpacker = Unpacker(dest, max_bytes=max_bytes, max_entries=max_entries)
    try:
        for chunk in chunks:
            unpacker.feed(chunk)
        return unpacker.close()
    finally:
        unpacker.abort()
