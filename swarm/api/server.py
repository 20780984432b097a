"""A small HTTP/1.1 server for the node's ASGI app, on trio, parsing with httptools.

Why not hypercorn (measured on this project's 2-core VM, one keep-alive client, server
CPU per request; docs/BENCHMARKS.md, Jobs, 2026-11-29 noon): a bare trio socket loop
answering with canned bytes costs ~0.2 ms; hypercorn's trio worker, even with two of its
methods replaced, ~0.8 ms for a bare ASGI app and ~0.9 ms through FastAPI; this server
~0.25 ms and ~0.4 ms. h11's pure-Python parser, a task and a keep-alive timer per request
and hypercorn's event layers made the difference. A job costs its client two requests
(submit, wait), and a hybrid node's one thread is the sustained benchmark's bottleneck.

What it does, and no more (the API is all it serves):

- HTTP/1.1 keep-alive, one request at a time per connection (a pipelined request waits
  for the response before it); HTTP/1.0 and ``Connection: close`` close after the answer.
- Requests: parsed by httptools (llhttp, node.js's parser); a body is read from the socket
  only when the app asks for it (``receive``), so a large upload streams with back
  pressure. ``Expect: 100-continue`` is answered when the app first reads the body.
- Responses: a declared ``content-length`` body goes out as it comes, the head with the
  first part in one write; without one the body is sent chunked. HEAD gets no body.
- Limits: a request head over ``MAX_HEAD`` bytes gets 431, unparseable bytes get 400, an
  upgrade request (WebSocket) 400, and the connection is closed. An idle keep-alive
  connection is closed after ``KEEP_ALIVE`` seconds. A request whose body the app left
  unread closes its connection.
- After its body, ``receive`` waits for the client to go away and then says
  ``http.disconnect`` (Starlette's streamed responses listen for it).
- An app that raises before it answers gets a 500 for its client; after, the connection
  is closed. Nothing a client sends can end the server.
- At most ``MAX_CONNECTIONS`` connections at once: one more is answered 503 and closed
  at once. Connections are accepted before any token is checked, and each holds a file
  descriptor, which the node's libp2p side needs too: without a cap, a local client
  opening connections until the process runs out of descriptors would cut the node off
  from its swarm.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from functools import partial
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools
import trio

logger = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024  # bytes of request line and headers
KEEP_ALIVE = 5.0  # seconds an idle connection stays open (hypercorn's default)
READ_SIZE = 64 * 1024
LINGER = 1.0  # seconds to read what a client still sends after its answer (see _linger)
LINGER_BYTES = 16 * 1024 * 1024
MAX_CONNECTIONS = 512  # open at once; the CLI holds one, the web UI a few, the bench 8
REFUSE_LINGER = 0.2  # seconds a connection over the cap is kept to deliver its 503

ASGIApp = Callable[
    [dict[str, Any], Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]],
    Awaitable[None],
]

_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


class _Date:
    """The ``date`` header's value (RFC 9110 asks an origin server with a clock for it),
    formatted once a second."""

    second = -1
    value = b""

    @classmethod
    def now(cls) -> bytes:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.value = second, formatdate(second, usegmt=True).encode()
        return cls.value


def _status_line(status: int) -> bytes:
    """A response's first lines: its status, and the date every response carries."""
    return b"HTTP/1.1 %d %s\r\ndate: %s\r\n" % (status, _REASONS.get(status, b""), _Date.now())


async def serve_api(
    app: ASGIApp, host: str, port: int, *, task_status=trio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled; ``started()`` hands back the real port.

    The caller checks that the port is free first (``swarm.node.check_port_free``): a bind
    error here would surface as a bare ``OSError``."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(partial(_serve_connection, app, _Open()), listeners)


class _Open:
    """How many connections are being served."""

    def __init__(self) -> None:
        self.count = 0


async def _serve_connection(app: ASGIApp, open_now: _Open, stream: trio.SocketStream) -> None:
    try:
        if open_now.count >= MAX_CONNECTIONS:
            await _refuse_busy(stream)
            return
        open_now.count += 1
        try:
            await _Connection(app, stream).run()
        finally:
            open_now.count -= 1
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass  # the client went away
    except Exception:
        logger.exception("HTTP connection failed")
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)


async def _refuse_busy(stream: trio.SocketStream) -> None:
    """503 for a connection over the cap, sent at once (the client may not have sent its
    request yet), then a short linger: closing on unread bytes would reset the connection
    and could lose the answer, and a refused connection must not hold its descriptor long."""
    body = json.dumps(
        {"detail": f"the node is serving {MAX_CONNECTIONS} connections: retry after closing some"}
    ).encode()
    with trio.move_on_after(REFUSE_LINGER):
        await stream.send_all(
            _status_line(503) + b"content-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\nretry-after: 1\r\n\r\n%s" % (len(body), body)
        )
        await stream.send_eof()
        while await stream.receive_some(READ_SIZE):
            pass


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Request:
    """One request as the parser delivers it."""

    __slots__ = ("scope", "body", "complete", "expect_continue", "keep_alive")

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope
        self.body: list[bytes] = []
        self.complete = False
        self.expect_continue = False
        self.keep_alive = True


class _Connection:
    def __init__(self, app: ASGIApp, stream: trio.SocketStream) -> None:
        self.app = app
        self.stream = stream
        self.parser = httptools.HttpRequestParser(self)
        self.ready: list[_Request] = []  # parsed heads, oldest first
        self.current: _Request | None = None  # the request the parser is in
        self.eof = False
        self.in_head = True  # the parser is in (or waiting for) a request head
        self.head_bytes = 0  # bytes read since that head began
        self.head_size = 0  # bytes of its request line and headers
        sock = stream.socket
        self.client = _address(sock.getpeername())
        self.server = _address(sock.getsockname())
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []

    # -- parser callbacks (httptools calls these from feed_data) ----------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self.head_bytes = self.head_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._grow_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))
        self._grow_head(len(name) + len(value) + 4)

    def _grow_head(self, size: int) -> None:
        self.head_size += size
        if self.head_size > MAX_HEAD:
            raise _BadRequest(431, f"request head longer than {MAX_HEAD} bytes")

    def on_headers_complete(self) -> None:
        try:
            parsed = httptools.parse_url(self._url)
        except httptools.HttpParserInvalidURLError:
            raise _BadRequest(400, "malformed request target") from None
        path = parsed.path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": self.parser.get_http_version(),
            "method": self.parser.get_method().decode("ascii"),
            "scheme": "http",
            "path": path,
            "raw_path": parsed.path,
            "query_string": parsed.query or b"",
            "root_path": "",
            "headers": self._headers,
            "client": self.client,
            "server": self.server,
            "state": {},
        }
        request = _Request(scope)
        request.keep_alive = self.parser.should_keep_alive()
        request.expect_continue = any(
            name == b"expect" and value.lower() == b"100-continue" for name, value in self._headers
        )
        self.current = request
        self.ready.append(request)
        self.in_head = False

    def on_body(self, body: bytes) -> None:
        self.current.body.append(body)

    def on_message_complete(self) -> None:
        self.current.complete = True
        self.in_head = True

    # -- reading ----------------------------------------------------------------------

    async def _read(self) -> None:
        """Read once from the socket and parse it; sets ``eof`` when the client is gone."""
        data = await self.stream.receive_some(READ_SIZE)
        if not data:
            self.eof = True
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise _BadRequest(400, "protocol upgrades are not served here") from None
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _BadRequest):
                raise exc.__context__ from None
            raise
        except httptools.HttpParserError as exc:
            raise _BadRequest(400, f"malformed HTTP request: {exc}") from None
        if self.in_head:  # a head that never ends (one endless header, say)
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD:
                raise _BadRequest(431, f"request head longer than {MAX_HEAD} bytes")

    async def run(self) -> None:
        waiting = trio.CancelScope()  # the time a client has to send its next request head
        with waiting:
            while True:
                if not self.ready:
                    waiting.deadline = trio.current_time() + KEEP_ALIVE
                    while not self.ready:
                        if self.eof:
                            return
                        try:
                            await self._read()
                        except _BadRequest as exc:
                            await self._refuse(exc)
                            await self._linger()  # the rest of a bad head may be coming
                            return
                    waiting.deadline = float("inf")
                request = self.ready.pop(0)
                if not await self._respond(request):
                    if not request.complete:
                        await self._linger()
                    return

    async def _linger(self) -> None:
        """Before closing on bytes not read (an upload the app answered without reading, a
        401 or 413; the rest of a refused head): closing a socket with unread bytes makes
        the kernel reset the connection, and the client may then lose the answer. Say we are
        done, and read what still comes, briefly."""
        with trio.move_on_after(LINGER):
            await self.stream.send_eof()
            left = LINGER_BYTES
            while not self.eof and left > 0:
                data = await self.stream.receive_some(READ_SIZE)
                self.eof = not data
                left -= len(data)

    async def _refuse(self, exc: _BadRequest) -> None:
        body = json.dumps({"detail": str(exc)}).encode()
        await self.stream.send_all(
            _status_line(exc.status)
            + b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (len(body), body)
        )

    # -- one request ------------------------------------------------------------------

    async def _respond(self, request: _Request) -> bool:
        """Run the app for ``request``; True if the connection can take the next one."""
        exchange = _Exchange(self, request)
        try:
            await self.app(request.scope, exchange.receive, exchange.send)
        except _BadRequest as exc:  # the body turned out malformed while the app read it
            if not exchange.started:
                await self._refuse(exc)
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        except Exception:
            logger.exception(
                "the API app raised on %s %s", request.scope["method"], request.scope["path"]
            )
            if not exchange.started:
                await self._refuse(_BadRequest(500, "internal error; see the node's log"))
            return False
        if not exchange.started:
            await self._refuse(_BadRequest(500, "the app sent no response"))
            return False
        if not exchange.finished:
            return False
        return request.keep_alive and request.complete and not self.eof


class _Exchange:
    """The ``receive`` and ``send`` of one request."""

    __slots__ = (
        "connection", "request", "head", "body_done", "started", "finished", "chunked", "is_head",
        "left",
    )  # fmt: skip

    def __init__(self, connection: _Connection, request: _Request) -> None:
        self.connection = connection
        self.request = request
        self.head = b""
        self.body_done = False  # the last of the request body was handed to the app
        self.started = False  # http.response.start seen
        self.finished = False  # the whole response is written
        self.chunked = False
        self.is_head = request.scope["method"] == "HEAD"
        self.left: int | None = None  # body bytes still due, if a length was declared

    async def receive(self) -> dict[str, Any]:
        request, connection = self.request, self.connection
        if not self.body_done:
            if request.expect_continue and not self.started:
                request.expect_continue = False
                if not request.body and not request.complete:
                    await connection.stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            while not request.body and not request.complete and not connection.eof:
                await connection._read()
            if request.body or request.complete:
                body = b"".join(request.body)
                request.body.clear()
                self.body_done = request.complete
                return {"type": "http.request", "body": body, "more_body": not request.complete}
        # the body is all read (or cut off): wait for the client to go away. Reading stops
        # at the answer, or at a pipelined next request (its bytes wait in the socket).
        while not connection.eof and not self.finished and not connection.ready:
            await connection._read()
        if not connection.eof:
            await trio.sleep_forever()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            status = message["status"]
            lines = [_status_line(status)]
            length = None
            for name, value in message.get("headers", ()):
                if name.lower() == b"content-length":
                    length = int(value)
                lines.append(b"%s: %s\r\n" % (name, value))
            if length is None and status not in (204, 304) and not self.is_head:
                self.chunked = True
                lines.append(b"transfer-encoding: chunked\r\n")
            if not self.request.keep_alive:
                lines.append(b"connection: close\r\n")
            lines.append(b"\r\n")
            self.head = b"".join(lines)
            self.left = length
            if self.chunked:  # a streamed body may be long in coming: the head goes now
                await self._write(self.head)
                self.head = b""
        elif kind == "http.response.body":
            if not self.started or self.finished:
                raise RuntimeError("http.response.body outside a response")
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if self.is_head:
                body = b""
            elif self.chunked:
                body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + (
                    b"" if more else b"0\r\n\r\n"
                )
            elif self.left is not None:
                self.left -= len(body)
                if self.left < 0:
                    raise RuntimeError("response body longer than its content-length")
            if self.head:
                body, self.head = self.head + body, b""
            if body:
                await self._write(body)
            if not more:
                self.finished = True
                if self.left and not self.is_head:
                    raise RuntimeError("response body shorter than its content-length")

    async def _write(self, data: bytes) -> None:
        await self.connection.stream.send_all(data)


def _address(address: Any) -> tuple[str, int] | None:
    if isinstance(address, tuple) and len(address) >= 2:
        return (str(address[0]), int(address[1]))
    return None
