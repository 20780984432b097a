"""Two per-request costs of hypercorn's trio worker (HTTP/1.1), taken out.

Measured on hypercorn 0.18.0 (a trivial app, one keep-alive client, this project's
2-core VM): a request costs the server ~1.1-1.7 ms of CPU, of which a bare trio socket
loop doing the same reads and writes costs ~0.5-0.8 ms; the server makes ~12.5
``epoll_wait`` calls per request (one per scheduler round) where the bare loop makes 2.
Two things in hypercorn cause most of the difference:

- the connection's keep-alive timer is a task, stopped when a request comes in and
  started again when the response is done. Starting it is a ``nursery.start`` (the caller
  waits for the task to run) behind a lock: several scheduler rounds per request.
  ``_restart`` starts the same task with ``start_soon`` and a cancel scope made up front,
  so nobody waits; the timer behaves as before (it still closes a connection left idle
  for ``keep_alive_timeout``);
- the response head and body are two socket writes (so two reads for the client), and
  the end of a length-declared body a third, empty one. ``_stream_send`` keeps the head
  of a response that declares its length and sends it with the body, in one write, and
  skips the empty one. A response without a length (streamed: archives, log
  follow) gets its head at once, as before: its first chunk may be a long time coming.

Together: ~25-33 % less server CPU per request (micro-benchmark, a server process and a
keep-alive client), and the hybrid node's CPU per job in the sustained benchmark lower in
11 of 12 paired rounds (docs/BENCHMARKS.md, Jobs, 2026-11-29).

Both replace methods of hypercorn classes, so ``install`` does it only for the version
they were written against (pinned in pyproject.toml); any other leaves hypercorn as it is.
"""

from __future__ import annotations

from importlib.metadata import version
from itertools import chain

import h11
import trio
from hypercorn.events import RawData
from hypercorn.protocol import h11 as hypercorn_h11
from hypercorn.protocol.events import Body, EndBody, Response
from hypercorn.trio import worker_context

FOR_VERSION = "0.18.0"
_installed = False


def install() -> bool:
    """Put both changes in place (once); False if hypercorn is not the expected version."""
    global _installed
    if _installed:
        return True
    if version("hypercorn") != FOR_VERSION:
        return False
    worker_context.TrioSingleTask.restart = _restart
    worker_context.TrioSingleTask.stop = _stop
    hypercorn_h11.H11Protocol.stream_send = _stream_send
    _installed = True
    return True


async def _restart(self, task_group, action) -> None:
    if self._handle is not None:
        self._handle.cancel()
    scope = trio.CancelScope()

    async def run() -> None:
        with scope:
            await action()

    task_group._nursery.start_soon(run)
    self._handle = scope


async def _stop(self) -> None:
    if self._handle is not None:
        self._handle.cancel()
    self._handle = None


_original_stream_send = hypercorn_h11.H11Protocol.stream_send


async def _stream_send(self, event) -> None:
    head = self.__dict__.pop("_swarm_head", None)
    if isinstance(event, Response) and event.status_code >= 200:
        headers = list(chain(event.headers, self.config.response_headers("h11")))
        if self.keep_alive_requests >= self.config.keep_alive_max_requests:
            headers.append((b"connection", b"close"))
        data = _h11_bytes(self, h11.Response(headers=headers, status_code=event.status_code))
        if any(name.lower() == b"content-length" for name, _ in headers):
            self._swarm_head = data  # goes out with the body
        elif data:
            await self.send(RawData(data=data))
        return
    if head is not None:
        if isinstance(event, Body):
            await self.send(RawData(data=head + _h11_bytes(self, h11.Data(data=event.data))))
            return
        if isinstance(event, EndBody):
            await self.send(RawData(data=head + _h11_bytes(self, h11.EndOfMessage())))
            return
        await self.send(RawData(data=head))
    if isinstance(event, EndBody):  # a length-declared body's end is no bytes: no write
        data = _h11_bytes(self, h11.EndOfMessage())
        if data:
            await self.send(RawData(data=data))
        return
    await _original_stream_send(self, event)


def _h11_bytes(self, event) -> bytes:
    """``event`` as bytes (hypercorn's ``_send_h11_event`` without the write)."""
    try:
        return self.connection.send(event) or b""
    except h11.LocalProtocolError:
        if self.connection.their_state != h11.ERROR:
            raise
        return b""
