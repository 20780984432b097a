"""The HTTP/1.1 server the node's API runs on (swarm.api.server), through a raw socket."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial

import httpx
import pytest
import trio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from swarm.api import server
from swarm.api.server import serve_api


class Probe:
    """What the test app saw."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.stream_ended = trio.Event()
        self.scopes: list[dict] = []
        self.body_reads: list[int] = []  # sizes handed to /upload, as it read them


def app_with(probe: Probe) -> FastAPI:
    app = FastAPI()

    @app.api_route("/json", methods=["GET", "HEAD"])
    async def json_reply(request: Request):
        probe.scopes.append(request.scope)
        return JSONResponse({"hello": "world"})

    @app.api_route("/echo", methods=["POST", "PUT"])
    async def echo(request: Request):
        return Response(await request.body(), media_type="application/octet-stream")

    @app.put("/upload")
    async def upload(request: Request):
        total = 0
        async for chunk in request.stream():
            probe.body_reads.append(len(chunk))
            total += len(chunk)
        return JSONResponse({"size": total})

    @app.get("/stream")
    async def stream_reply():
        async def body():
            try:
                await probe.release.wait()
                yield b"late chunk"
                await trio.sleep_forever()  # until the client goes away
            finally:
                probe.stream_ended.set()

        return StreamingResponse(body(), media_type="text/plain")

    @app.get("/short-stream")
    async def short_stream():
        async def body():
            yield b"one"
            yield b"two"

        return StreamingResponse(body(), media_type="text/plain")

    @app.get("/boom")
    async def boom():
        raise RuntimeError("the app failed")

    return app


async def read_response(sock, data: bytes = b"") -> tuple[bytes, bytes]:
    """One whole response (fixed length or chunked) from a raw socket: (it, what follows)."""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            if b"content-length: " in head:
                length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    end = len(head) + 4 + length
                    return data[:end], data[end:]
            elif b"0\r\n\r\n" in body:
                end = len(head) + 4 + body.index(b"0\r\n\r\n") + 5
                return data[:end], data[end:]
        with trio.fail_after(5):
            chunk = await sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk


async def closed_by_server(sock) -> bool:
    with trio.fail_after(5):
        while True:
            try:
                if await sock.recv(65536) == b"":
                    return True
            except ConnectionResetError:
                return True


@pytest.fixture
async def served(nursery, monkeypatch):
    monkeypatch.setattr(server, "KEEP_ALIVE", 1.0)
    writes: list[bytes] = []
    real_send_all = trio.SocketStream.send_all

    async def counted(self, data):
        writes.append(bytes(data))
        await real_send_all(self, data)

    monkeypatch.setattr(trio.SocketStream, "send_all", counted)  # the server's writes only
    probe = Probe()
    port = await nursery.start(partial(serve_api, app_with(probe), "127.0.0.1", 0))
    sock = trio.socket.socket()
    await sock.connect(("127.0.0.1", port))
    yield sock, writes, probe, port
    sock.close()


def request(path: str, *, method: str = "GET", headers: str = "", body: bytes = b"") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nhost: t\r\n{headers}\r\n".encode() + body


async def test_a_fixed_length_response_is_one_write_on_a_kept_connection(served):
    sock, writes, _, _ = served
    for _ in range(3):
        writes.clear()
        await sock.send(request("/json"))
        response, rest = await read_response(sock)
        assert response.startswith(b"HTTP/1.1 200 OK\r\n")
        assert response.endswith(b'{"hello":"world"}') and rest == b""
        assert writes == [response]


async def test_responses_carry_the_date(served):
    sock, _, _, _ = served
    await sock.send(request("/json"))
    response, _ = await read_response(sock)
    (date,) = [line for line in response.split(b"\r\n") if line.startswith(b"date: ")]
    sent = parsedate_to_datetime(date[6:].decode())
    assert abs((sent - datetime.now(UTC)).total_seconds()) < 5


async def test_the_app_sees_path_query_headers_and_addresses(served):
    sock, _, probe, port = served
    await sock.send(request("/json?state=running&limit=5", headers="X-Thing: Yes\r\n"))
    await read_response(sock)
    (scope,) = probe.scopes
    assert scope["method"] == "GET" and scope["path"] == "/json"
    assert scope["query_string"] == b"state=running&limit=5"
    assert (b"x-thing", b"Yes") in scope["headers"]
    assert scope["server"] == ("127.0.0.1", port)
    assert scope["client"][0] == "127.0.0.1" and scope["http_version"] == "1.1"


async def test_a_percent_encoded_path_is_decoded_for_routing(served):
    sock, _, probe, _ = served
    await sock.send(request("/%6Ason"))
    response, _ = await read_response(sock)
    assert response.startswith(b"HTTP/1.1 200")
    assert probe.scopes[0]["raw_path"] == b"/%6Ason"


async def test_pipelined_requests_are_answered_in_order(served):
    sock, _, _, _ = served
    await sock.send(
        request("/echo", method="POST", headers="content-length: 5\r\n", body=b"first")
        + request("/echo", method="POST", headers="content-length: 6\r\n", body=b"second")
    )
    first, rest = await read_response(sock)
    second, rest = await read_response(sock, rest)
    assert first.endswith(b"\r\n\r\nfirst") and second.endswith(b"\r\n\r\nsecond")


async def test_a_chunked_request_body_reaches_the_app(served):
    sock, _, _, _ = served
    body = b"4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n"
    await sock.send(
        request("/echo", method="POST", headers="transfer-encoding: chunked\r\n", body=body)
    )
    response, _ = await read_response(sock)
    assert response.endswith(b"\r\n\r\nabcdefg")


async def test_a_body_is_read_from_the_socket_only_as_the_app_asks(served):
    """Back pressure: a 4 MiB upload arrives in pieces, not buffered whole by the server."""
    sock, _, probe, port = served
    size = 4 * 1024 * 1024
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        response = await http.put("/upload", content=b"x" * size)
    assert response.json() == {"size": size}
    assert len(probe.body_reads) > 4 and max(probe.body_reads) <= server.READ_SIZE


async def test_expect_100_continue_is_answered_when_the_app_reads_the_body(served):
    sock, _, _, _ = served
    await sock.send(
        request("/echo", method="PUT", headers="content-length: 4\r\nexpect: 100-continue\r\n")
    )
    with trio.fail_after(5):
        assert await sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
    await sock.send(b"data")
    response, _ = await read_response(sock)
    assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"data")


async def test_a_streamed_response_sends_its_head_before_its_first_chunk(served):
    sock, _, probe, _ = served
    await sock.send(request("/stream"))
    with trio.fail_after(5):
        head = await sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    probe.release.set()
    with trio.fail_after(5):
        assert await sock.recv(65536) == b"a\r\nlate chunk\r\n"
    assert not probe.stream_ended.is_set()
    sock.close()  # the client goes away: the app hears of it and its stream ends
    with trio.fail_after(5):
        await probe.stream_ended.wait()


async def test_a_streamed_response_ends_with_its_last_chunk_and_keeps_the_connection(served):
    sock, _, _, _ = served
    for _ in range(2):
        await sock.send(request("/short-stream"))
        response, rest = await read_response(sock)
        assert response.endswith(b"\r\n\r\n3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n") and rest == b""


async def test_head_gets_the_head_only(served):
    sock, _, _, _ = served
    await sock.send(request("/json", method="HEAD") + request("/json"))
    with trio.fail_after(5):
        data = b""
        while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b'{"hello":"world"}'):
            data += await sock.recv(65536)
    head, second = data.split(b"\r\n\r\n", 1)
    assert b"content-length: 17" in head and second.startswith(b"HTTP/1.1 200")


async def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(served):
    sock, _, _, _ = served
    for _ in range(3):  # requests closer together than the timeout keep it open
        await sock.send(request("/json"))
        await read_response(sock)
        await trio.sleep(0.2)
    started = trio.current_time()
    assert await closed_by_server(sock)
    assert 0.8 < trio.current_time() - started < 3


async def test_a_trickled_request_head_does_not_hold_the_connection(served):
    """A head sent a byte at a time must still be complete within the keep-alive time."""
    sock, _, _, _ = served
    started = trio.current_time()
    with trio.move_on_after(4):
        for byte in b"GET /json HTTP/1.1\r\nhost: t\r\nx-slow: " + b"a" * 100:
            try:
                await sock.send(bytes([byte]))
            except OSError:  # closed by the server
                break
            await trio.sleep(0.1)
    assert await closed_by_server(sock)
    assert trio.current_time() - started < 3


async def test_connection_close_and_http_1_0_close_after_the_answer(served):
    sock, _, _, port = served
    await sock.send(request("/json", headers="connection: close\r\n"))
    response, _ = await read_response(sock)
    assert b"connection: close" in response
    assert await closed_by_server(sock)
    old = trio.socket.socket()
    await old.connect(("127.0.0.1", port))
    await old.send(b"GET /json HTTP/1.0\r\n\r\n")
    response, _ = await read_response(old)
    assert response.startswith(b"HTTP/1.1 200") and await closed_by_server(old)
    old.close()


async def test_an_answer_before_the_body_is_read_reaches_the_client(served):
    """The app answers without reading an upload (a 401 would): the connection closes, but
    not before the client has had the answer (unread bytes make the kernel reset it)."""
    sock, _, _, _ = served
    body = b"x" * (256 * 1024)
    await sock.send(request("/json", headers=f"content-length: {4 * len(body)}\r\n") + body)
    await trio.sleep(0.3)  # the server answers meanwhile, and is done with the connection
    response, rest = await read_response(sock)
    assert response.startswith(b"HTTP/1.1 200") and rest == b""
    with trio.fail_after(5):  # an orderly end (FIN), not a reset
        assert await sock.recv(65536) == b""


async def test_an_unread_body_cut_short_keeps_nothing_waiting(served):
    sock, _, _, port = served
    await sock.send(request("/json", headers="content-length: 1000\r\n", body=b"partial"))
    response, _ = await read_response(sock)
    assert response.startswith(b"HTTP/1.1 200")
    sock.close()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        assert (await http.get("/json")).status_code == 200


@pytest.mark.parametrize(
    "garbage, status",
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls hello\r\n\r\n", 400),
        (b"GET /json HTTP/1.1\r\nbad header line\r\n\r\n", 400),
        (b"GET http://[::1 HTTP/1.1\r\n\r\n", 400),
        (b"GET /json HTTP/1.1\r\ncontent-length: nope\r\n\r\n", 400),
        (
            b"POST /echo HTTP/1.1\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n"
            b"0\r\n\r\nGET /json HTTP/1.1\r\n\r\n",
            400,
        ),
        (b"GET /json HTTP/1.1\r\nx-big: " + b"a" * (70 * 1024) + b"\r\n\r\n", 431),
        (b"GET /json HTTP/1.1\r\nx-endless: " + b"a" * (70 * 1024), 431),
        (b"GET /ws HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n", 400),
    ],
    ids=["tls", "header", "target", "length", "smuggling", "too-long", "endless", "upgrade"],
)
async def test_bad_requests_get_a_one_line_error_and_the_server_keeps_serving(
    served, garbage, status
):
    sock, _, _, port = served
    await sock.send(garbage)
    response, _ = await read_response(sock)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status) and b"\r\ndate: " in head
    detail = json.loads(body)["detail"]
    assert "\n" not in detail and detail
    assert await closed_by_server(sock)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        assert (await http.get("/json")).json() == {"hello": "world"}


async def test_an_app_that_raises_gives_500_and_the_server_keeps_serving(served):
    sock, _, _, port = served
    await sock.send(request("/boom"))
    response, _ = await read_response(sock)
    assert response.startswith(b"HTTP/1.1 500")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        assert (await http.get("/json")).status_code == 200


async def test_many_clients_at_once(served):
    _, _, _, port = served
    results = []

    async def one(http):
        for _ in range(10):
            results.append((await http.get("/json")).json())

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(one, http)
    assert results == [{"hello": "world"}] * 80


async def test_a_port_in_use_is_an_error_before_serving(nursery):
    port = await nursery.start(partial(serve_api, FastAPI(), "127.0.0.1", 0))
    with pytest.raises(OSError):
        await nursery.start(partial(serve_api, FastAPI(), "127.0.0.1", port))


async def test_a_connection_over_the_cap_gets_503_and_a_freed_place_is_served(served, monkeypatch):
    sock, _, _, port = served
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 2)
    second = trio.socket.socket()
    await second.connect(("127.0.0.1", port))
    for kept in (sock, second):  # both served, and kept open
        await kept.send(request("/json"))
        response, _ = await read_response(kept)
        assert response.startswith(b"HTTP/1.1 200 OK\r\n")

    over = trio.socket.socket()
    await over.connect(("127.0.0.1", port))
    await over.send(request("/json"))
    response, _ = await read_response(over)
    assert response.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"retry-after: 1\r\n" in response
    assert b"serving 2 connections" in response
    assert await closed_by_server(over)
    over.close()

    second.close()
    with trio.fail_after(5):
        while True:  # the server notices the close on its next read
            again = trio.socket.socket()
            await again.connect(("127.0.0.1", port))
            await again.send(request("/json"))
            response, _ = await read_response(again)
            again.close()
            if response.startswith(b"HTTP/1.1 200 OK\r\n"):
                break
            await trio.sleep(0.05)
    await sock.send(request("/json"))  # the first one was never disturbed
    response, _ = await read_response(sock)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
