"""The requester's result store: what each execution produced, as the user gets it.

    results/<job id>/<execution id>/stdout     the guest's stdout, appended as it streams in
                                   /stderr
                                   /exitCode   "<code>\\n", written once the run ended
                                   /outputs/   the unpacked /outputs archive

The layout is the one ``swarm wasm exec`` writes locally, so ``swarm get`` hands the
same folder to the user. Ids are checked before they become paths. A compute node is
not trusted to respect the job's caps: the writer enforces them again, and a node that
sends more is a ``ProtocolError``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from swarm.errors import ConfigError, NotFound, ProtocolError, StorageError
from swarm.executor.local import EXIT_CODE, OUTPUTS, STDERR, STDOUT
from swarm.jobspec import OutputCaps
from swarm.storage.archive import STREAM_CHUNK_OUTPUT, Unpacker, pack_steps

STREAMS = (STDOUT, STDERR)
# Result files this large are written past the page cache where it is dear to write into
# (swarm.storage.direct); smaller ones (a count.txt) always go through it.
DIRECT_MIN = 8 * 1024 * 1024
_ID = re.compile(r"[0-9a-f][0-9a-f-]{0,63}")


@dataclass(frozen=True)
class OutputFile:
    path: str  # relative to outputs/, with '/' separators
    size: int


@dataclass(frozen=True)
class ResultInfo:
    """What is stored for one execution, for the API to list."""

    job_id: str
    execution_id: str
    path: Path
    stdout_size: int
    stderr_size: int
    exit_code: int | None  # None until the run has ended
    outputs: tuple[OutputFile, ...]


class ResultStore:
    """Result folders under ``root`` (usually ``<home>/results``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the result store {root}: {exc.strerror}") from exc

    def folder(self, job_id: str, execution_id: str) -> Path:
        """Where an execution's result lives (whether or not it exists yet)."""
        return self.root / _checked(job_id, "job") / _checked(execution_id, "execution")

    def writer(
        self, job_id: str, execution_id: str, *, caps: OutputCaps = OutputCaps()
    ) -> ResultWriter:
        """Start an execution's result afresh (a partial one from a cut stream is dropped)."""
        folder = self.folder(job_id, execution_id)
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)  # the store's folder too, if removed
            try:
                folder.mkdir()
            except FileExistsError:
                shutil.rmtree(folder)
                folder.mkdir()
        except OSError as exc:
            raise StorageError(f"cannot create {folder}: {exc.strerror}") from exc
        return ResultWriter(folder, caps)

    def discard(self, job_id: str, execution_id: str) -> None:
        """Remove an execution's (partial) result: a lost execution leaves none behind."""
        shutil.rmtree(self.folder(job_id, execution_id), ignore_errors=True)

    def executions(self, job_id: str) -> list[str]:
        """Ids of the executions of ``job_id`` that have a result folder, sorted."""
        job_folder = self.root / _checked(job_id, "job")
        if not job_folder.is_dir():
            return []
        return sorted(p.name for p in job_folder.iterdir() if p.is_dir() and _ID.fullmatch(p.name))

    def result(self, job_id: str, execution_id: str) -> ResultInfo:
        """Sizes, exit code and output files of one execution's result."""
        folder = self._existing(job_id, execution_id)
        outputs_dir = folder / OUTPUTS
        outputs = []
        if outputs_dir.is_dir():
            for dirpath, _dirs, files in os.walk(outputs_dir):
                for name in files:
                    path = Path(dirpath) / name
                    relative = path.relative_to(outputs_dir).as_posix()
                    outputs.append(OutputFile(relative, path.lstat().st_size))
        return ResultInfo(
            job_id=job_id,
            execution_id=execution_id,
            path=folder,
            stdout_size=_size(folder / STDOUT),
            stderr_size=_size(folder / STDERR),
            exit_code=_read_exit_code(folder / EXIT_CODE),
            outputs=tuple(sorted(outputs, key=lambda f: f.path)),
        )

    def read(
        self, job_id: str, execution_id: str, stream: str, offset: int = 0, limit: int = 1 << 20
    ) -> bytes:
        """Up to ``limit`` bytes of stdout or stderr from ``offset`` (for `logs -f`)."""
        if stream not in STREAMS:
            raise ConfigError(f"unknown stream {stream!r}: use stdout or stderr")
        path = self._existing(job_id, execution_id) / stream
        try:
            with path.open("rb") as source:
                source.seek(max(offset, 0))
                return source.read(max(limit, 0))
        except FileNotFoundError:
            return b""

    def archive(self, job_id: str, execution_id: str) -> Iterator[bytes]:
        """One execution's folder as a ``.tar.zst`` stream, for download, in steps of
        bounded work (``pack_steps``: b"" for a step with nothing ready)."""
        return pack_steps(self._existing(job_id, execution_id))

    def archive_job(self, job_id: str) -> Iterator[bytes]:
        """Every execution's folder of a job, one directory each, as ``archive`` does."""
        job_folder = self.root / _checked(job_id, "job")
        if not job_folder.is_dir():
            raise NotFound(f"job {job_id} has no results yet")
        return pack_steps(job_folder)

    def _existing(self, job_id: str, execution_id: str) -> Path:
        folder = self.folder(job_id, execution_id)
        if not folder.is_dir():
            raise NotFound(f"no results for execution {execution_id} of job {job_id} yet")
        return folder


class ResultWriter:
    """Receives one execution's result as it streams in. Use as a context manager."""

    def __init__(self, folder: Path, caps: OutputCaps) -> None:
        self.folder, self.caps = folder, caps
        self._files: dict[str, BinaryIO] = {}
        self._sizes = {STDOUT: 0, STDERR: 0}
        self._limits = {STDOUT: caps.stdout, STDERR: caps.stderr}
        for stream in STREAMS:  # present even if the guest writes nothing
            self._files[stream] = (folder / stream).open("ab", buffering=0)

    def append(self, stream: str, data: bytes) -> None:
        """Add a chunk of stdout or stderr; readers see it at once."""
        if stream not in STREAMS:
            raise ProtocolError(f"unknown output stream {stream!r}: expected stdout or stderr")
        self._sizes[stream] += len(data)
        if self._sizes[stream] > self._limits[stream]:
            raise ProtocolError(f"{stream} grew past the job's cap of {self._limits[stream]} bytes")
        try:
            self._files[stream].write(data)
        except OSError as exc:
            raise StorageError(f"cannot write {self.folder / stream}: {exc.strerror}") from exc

    def set_exit_code(self, code: int) -> None:
        """Record the exit code. Readers see no code (no file, or an empty one) or the
        whole of it: it is one write of a few bytes."""
        try:
            descriptor = os.open(
                self.folder / EXIT_CODE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666
            )
            try:
                os.write(descriptor, f"{int(code)}\n".encode())
            finally:
                os.close(descriptor)
        except OSError as exc:
            raise StorageError(f"cannot write {self.folder / EXIT_CODE}: {exc.strerror}") from exc

    def outputs(self) -> Unpacker:
        """An Unpacker for the outputs archive, bounded by the job's caps, and each
        compressed chunk by what an honest packer puts in one (``STREAM_CHUNK_OUTPUT``):
        a chunk is unpacked on the event loop, in bounded time. Files of ``DIRECT_MIN``
        bytes or more may be written past the page cache (``swarm.storage.direct``)."""
        return Unpacker(
            self.folder / OUTPUTS,
            max_bytes=self.caps.outputs,
            max_entries=self.caps.output_files,
            max_chunk_output=STREAM_CHUNK_OUTPUT,
            direct_min=DIRECT_MIN,
        )

    def empty_outputs(self) -> None:
        """An empty ``outputs/``, for a run that wrote none (no archive was sent)."""
        try:
            (self.folder / OUTPUTS).mkdir(exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {self.folder / OUTPUTS}: {exc.strerror}") from exc

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _checked(identifier: str, noun: str) -> str:
    if not isinstance(identifier, str) or not _ID.fullmatch(identifier):
        raise ConfigError(f"{identifier!r} is not a {noun} id: ids are hex digits and dashes")
    return identifier


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_exit_code(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
