"""A job's inputs made ready on this node just before its run: the sandbox's mounts.

Local inputs (``file://`` and ``data://``) are looked up again: the node bid on them a
moment ago, but files come and go, and one it can no longer serve fails the run as
``InputUnavailable`` (another node may still have it). URL inputs are downloaded into
the execution's work folder: every URL with the same target lands in one host folder,
under the last part of its path, and that folder is mounted read-only at the target,
so ``-i https://host/a.csv`` is ``/inputs/a.csv`` in the guest. The downloads of one
execution share one size cap and must end within a deadline (the task's timeout).

A URL is fetched from this node's own network, so by default its host (and the host of
every redirect) must resolve to public addresses only: a requester must not reach this
node's loopback services, its LAN or a cloud metadata address through it
(``fetch_private`` lifts that, ``swarm serve --fetch-private-urls``). The check resolves
the name before httpx connects, which resolves it again: a name that changes its answer
in between (DNS rebinding) is not caught.
"""

from __future__ import annotations

import ipaddress
import socket
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
    fetch_private: bool = False,
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
        await _download(downloads, cap=fetch_cap, deadline=fetch_deadline, private=fetch_private)
    return tuple(mounts)


async def _download(
    downloads: dict[Path, InputSource], *, cap: int, deadline: float, private: bool
) -> None:
    timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
    left, current = cap, ""
    hooks = {} if private else {"request": [_refuse_private_hosts]}
    async with httpx.AsyncClient(
        timeout=timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS, event_hooks=hooks
    ) as client:
        with trio.move_on_after(deadline) as scope:
            for dest, source in downloads.items():
                current = source.source
                left -= await fetch_url(client, current, dest, cap=left, sha256=source.sha256)
    if scope.cancelled_caught:
        raise MountError(f"input {current}: cannot fetch (not done within {deadline:g}s)")


async def _refuse_private_hosts(request: httpx.Request) -> None:
    """httpx hook, before every request (redirects too): the host must be public."""
    host = request.url.host
    port = request.url.port or (443 if request.url.scheme == "https" else 80)
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return  # httpx's own connect fails with the reason, as for any unreachable host
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].partition("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not address.is_global:
            named = "" if host == str(address) else f"{host} is "
            raise MountError(
                f"input {request.url}: refused ({named}{address} is not a public address;"
                " a node fetches from its own network only with --fetch-private-urls)"
            )
