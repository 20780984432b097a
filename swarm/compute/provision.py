"""A job's inputs made ready on this node just before its run: the sandbox's mounts.

Local inputs (``file://`` and ``data://``) are looked up again: the node bid on them a
moment ago, but files come and go, and one it can no longer serve fails the run as
``InputUnavailable`` (another node may still have it). URL inputs are downloaded into
the execution's work folder: every URL with the same target lands in one host folder,
under the last part of its path, and that folder is mounted read-only at the target,
so ``-i https://host/a.csv`` is ``/inputs/a.csv`` in the guest. The downloads of one
execution share one size cap and must end within a deadline (the task's timeout).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import httpx
import trio

from swarm.compute.inputs import input_facts
from swarm.config import Dataset
from swarm.errors import InputUnavailable, MountError
from swarm.executor.mounts import normalize_target
from swarm.executor.spec import Mount
from swarm.jobspec import InputSource
from swarm.models import AllowedPath
from swarm.placement import input_problem
from swarm.storage.fetch import fetch_url
from swarm.storage.sources import SourceKind, source_kind, url_file_name

DEFAULT_FETCH_CAP = 1 << 30  # bytes all URL inputs of one execution may download
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0  # seconds without a byte before a download is given up
MAX_REDIRECTS = 5


async def prepare_mounts(
    inputs: Iterable[InputSource],
    *,
    allowed_paths: tuple[AllowedPath, ...],
    datasets: Iterable[Dataset],
    work: Path,
    fetch_cap: int = DEFAULT_FETCH_CAP,
    fetch_deadline: float,
) -> tuple[Mount, ...]:
    """The mounts for ``inputs``, downloading URL inputs under ``work``; MountError if not."""
    inputs = tuple(inputs)
    facts = input_facts((i.source for i in inputs), allowed_paths, datasets)
    for source in inputs:
        if (problem := input_problem(source, facts.get(source.source))) is not None:
            if source_kind(source.source) is SourceKind.URL:
                raise MountError(problem)
            raise InputUnavailable(problem)
    mounts: list[Mount] = []
    folders: dict[str, Path] = {}  # guest target → host folder of its downloads
    downloads: dict[Path, InputSource] = {}
    for source in inputs:
        if source_kind(source.source) is not SourceKind.URL:
            path = facts[source.source].path
            assert path is not None  # input_problem saw to it
            mounts.append(Mount(Path(path), source.target, source.writable))
            continue
        target = normalize_target(source.target)
        if target not in folders:
            folders[target] = work / "inputs" / str(len(folders))
            folders[target].mkdir(parents=True)
            mounts.append(Mount(folders[target], target))
        dest = folders[target] / url_file_name(source.source)
        if dest in downloads:
            raise MountError(f"two inputs are mounted at {target}/{dest.name}")
        downloads[dest] = source
    if downloads:
        await _download(downloads, cap=fetch_cap, deadline=fetch_deadline)
    return tuple(mounts)


async def _download(downloads: dict[Path, InputSource], *, cap: int, deadline: float) -> None:
    timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
    left, current = cap, ""
    async with httpx.AsyncClient(
        timeout=timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS
    ) as client:
        with trio.move_on_after(deadline) as scope:
            for dest, source in downloads.items():
                current = source.source
                left -= await fetch_url(client, current, dest, cap=left, sha256=source.sha256)
    if scope.cancelled_caught:
        raise MountError(f"input {current}: cannot fetch (not done within {deadline:g}s)")
