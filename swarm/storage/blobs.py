"""The content-addressed blob store: modules (and later other blobs) by sha256.

A blob's id is ``sha256:<64 lowercase hex>`` of its bytes, and it lives at
``<root>/sha256/<first 2 hex>/<hex>``. Ids are checked against that exact form before
they touch the filesystem, so an id can never be a path. Every write goes to a temporary
file under ``<root>/tmp`` (same filesystem), is hashed as it is written, flushed to disk,
and renamed into place only when complete: a crash leaves a stray temporary file, never a
truncated blob under a good name. Synchronous on purpose; callers off the event loop wrap
it in ``trio.to_thread.run_sync``.

Blobs are immutable and swarm never deletes one, so the store remembers the size of each
blob it has seen on disk: a job asks whether its module is there, and how big it is, a
few times on its way (submit, announce, run), and each answer would otherwise be a
``stat`` (on this project's VM one costs the event loop tens of µs under load). A blob
removed by hand behind a running node's back is still believed present; its next run
fails with a clear module error.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

from swarm.errors import ConfigError, NotFound, ProtocolError, StorageError

DIGEST_PREFIX = "sha256:"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_CHUNK = 1024 * 1024


def is_digest(text: object) -> bool:
    """True for a well-formed content id: 'sha256:' and 64 lowercase hex digits."""
    return isinstance(text, str) and _DIGEST.fullmatch(text) is not None


def check_digest(digest: str) -> str:
    """The hex part of a well-formed id, else a ConfigError saying what one looks like."""
    if not is_digest(digest):
        shown = digest if isinstance(digest, str) and len(digest) <= 80 else "that"
        raise ConfigError(f"{shown!r} is not a blob id: expected sha256: and 64 lowercase hex")
    return digest.removeprefix(DIGEST_PREFIX)


def digest_bytes(data: bytes) -> str:
    """The id ``data`` has (or would have) in a blob store."""
    return DIGEST_PREFIX + hashlib.sha256(data).hexdigest()


class BlobStore:
    """Blobs under ``root``, written atomically and addressed by their sha256."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._sizes: dict[str, int] = {}  # digest → size, for blobs seen on disk
        self._tmp = root / "tmp"
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the blob store in {root}: {exc.strerror}") from exc

    def path(self, digest: str) -> Path:
        """Where the blob is on disk; NotFound when the store does not hold it."""
        path = self._location(digest)
        if digest not in self._sizes and self._stat(digest, path) is None:
            raise NotFound(f"blob {digest} is not in this node's store: upload the module first")
        return path

    def has(self, digest: str) -> bool:
        return digest in self._sizes or self._stat(digest, self._location(digest)) is not None

    def size(self, digest: str) -> int:
        self.path(digest)  # (known from here on)
        return self._sizes[digest]

    def _stat(self, digest: str, path: Path) -> int | None:
        try:
            info = path.stat()
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        self._sizes[digest] = info.st_size
        return info.st_size

    def open(self, digest: str) -> BinaryIO:
        """The blob for reading (blobs are immutable, so a reader never sees a change)."""
        try:
            return self._location(digest).open("rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in this node's store") from None

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; returns its id (storing the same bytes twice is harmless)."""
        with self.writer() as writer:
            writer.write(data)
            return writer.commit()

    def put_file(self, path: Path) -> str:
        """Store a file's content, read in 1 MiB chunks; returns its id."""
        try:
            source = path.open("rb")
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        with source, self.writer() as writer:
            while chunk := source.read(_CHUNK):
                writer.write(chunk)
            return writer.commit()

    def writer(self, expected: str | None = None, *, max_size: int | None = None) -> BlobWriter:
        """A streamed write; with ``expected`` the bytes must hash to that id."""
        if expected is not None:
            check_digest(expected)
        return BlobWriter(self, expected, max_size)

    def _location(self, digest: str) -> Path:
        hex_digest = check_digest(digest)
        return self.root / "sha256" / hex_digest[:2] / hex_digest

    def _install(self, temporary: Path, digest: str) -> None:
        final = self._location(digest)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temporary, final)  # atomic; a concurrent writer of the same id is fine
            _fsync_dir(final.parent)
            self._stat(digest, final)
        except OSError as exc:
            raise StorageError(f"cannot store blob {digest}: {exc.strerror}") from exc


class BlobWriter:
    """Receives a blob in chunks; ``commit`` installs it, anything else discards it.

    Use as a context manager: leaving the block without ``commit`` (or with an error)
    removes the temporary file.
    """

    def __init__(self, store: BlobStore, expected: str | None, max_size: int | None) -> None:
        self._store, self._expected, self._max_size = store, expected, max_size
        self._hash = hashlib.sha256()
        self.size = 0
        self._done = False
        try:
            fd, name = tempfile.mkstemp(dir=store._tmp, prefix="blob-")
        except OSError as exc:
            raise StorageError(f"cannot write to the blob store: {exc.strerror}") from exc
        self._path = Path(name)
        self._file = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        if self._done:
            raise StorageError("this blob write is already finished")
        self.size += len(chunk)
        if self._max_size is not None and self.size > self._max_size:
            self.abort()
            raise ProtocolError(f"blob is larger than the {self._max_size} bytes announced")
        self._hash.update(chunk)
        try:
            self._file.write(chunk)
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot write to the blob store: {exc.strerror}") from exc

    def commit(self) -> str:
        """Install the blob and return its id; ProtocolError if it is not the expected one."""
        if self._done:
            raise StorageError("this blob write is already finished")
        digest = DIGEST_PREFIX + self._hash.hexdigest()
        if self._expected is not None and digest != self._expected:
            self.abort()
            raise ProtocolError(f"received blob hashes to {digest}, not {self._expected}")
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._store._install(self._path, digest)
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot store blob {digest}: {exc.strerror}") from exc
        except BaseException:
            self.abort()
            raise
        self._done = True
        return digest

    def abort(self) -> None:
        """Discard what was written (idempotent)."""
        self._done = True
        self._file.close()
        self._path.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._done:
            self.abort()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
