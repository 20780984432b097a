"""Download one URL input to a file: streamed, size-capped, optionally hash-checked.

The body is streamed to disk in chunks, counting (decoded) bytes as they come, so a
server that sends more than it announced, or announces nothing, still stops at the cap.
The sha256 is computed on the way. Every failure is a one-line ``MountError`` that
starts with ``input <url>:`` and leaves no partial file behind. The caller owns the
``httpx.AsyncClient`` (timeouts, redirects) and the overall deadline.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
from pathlib import Path

import httpx
import trio

from swarm.errors import MountError, StorageError
from swarm.executor.spec import format_size

CHUNK = 1 << 20


async def fetch_url(
    client: httpx.AsyncClient, url: str, dest: Path, *, cap: int, sha256: str | None = None
) -> int:
    """Write the body of ``url`` to ``dest`` (a new file); return its size in bytes."""
    digest = hashlib.sha256()
    size = 0
    created = False
    try:
        async with client.stream("GET", url) as response:
            if not response.is_success:
                status = f"HTTP {response.status_code} {response.reason_phrase}".strip()
                raise MountError(f"input {url}: cannot fetch ({status})")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > cap:
                raise _too_large(url, cap)
            async with await trio.open_file(dest, "xb") as out:
                created = True
                async for chunk in response.aiter_bytes(CHUNK):
                    size += len(chunk)
                    if size > cap:
                        raise _too_large(url, cap)
                    digest.update(chunk)
                    await out.write(chunk)
    except BaseException as exc:
        if created:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_remove, dest)
        if isinstance(exc, httpx.HTTPError | httpx.InvalidURL):
            raise MountError(f"input {url}: cannot fetch ({_reason(exc)})") from exc
        if isinstance(exc, OSError):  # writing the file: the node's own disk
            raise StorageError(
                f"input {url}: cannot store the download on this node ({exc.strerror or exc})"
            ) from exc
        raise
    if sha256 is not None and digest.hexdigest() != sha256:
        await trio.to_thread.run_sync(_remove, dest)
        raise MountError(
            f"input {url}: sha256 mismatch (expected {sha256}, got {digest.hexdigest()})"
        )
    return size


def _too_large(url: str, cap: int) -> MountError:
    return MountError(
        f"input {url}: too large (over the {format_size(cap)} left for downloads "
        "of this execution on this node)"
    )


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _reason(exc: BaseException) -> str:
    """A few plain words for why a request failed: 'connection refused', 'timed out'."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.TooManyRedirects):
        return "too many redirects"
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error: {cause.reason or cause}"
        if isinstance(cause, socket.gaierror):
            return "host not found"
        if isinstance(cause, OSError) and cause.errno is not None and cause.errno > 0:
            return os.strerror(cause.errno).lower()  # e.g. connection refused
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _causes(exc: BaseException):
    """``exc``, its causes and contexts, and the members of exception groups among them."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)
