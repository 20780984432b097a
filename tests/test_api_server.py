"""hypercorn as the node serves it: swarm.api.hypercorn_tuning keeps HTTP/1.1 intact."""

from __future__ import annotations

from functools import partial

import pytest
import trio
from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse
from hypercorn.config import Config
from hypercorn.trio import worker_context

from swarm.api import hypercorn_tuning
from swarm.api.server import serve_api


def app_with(release: trio.Event) -> FastAPI:
    app = FastAPI()

    @app.get("/json")
    async def json_reply():
        return JSONResponse({"hello": "world"})

    @app.get("/stream")
    async def stream_reply():
        async def body():
            await release.wait()
            yield b"late chunk"

        return StreamingResponse(body(), media_type="text/plain")

    return app


async def read_response(sock) -> bytes:
    """One whole response (fixed length or chunked) from a raw socket."""
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep and (
            (
                b"content-length: " in head
                and len(body) >= int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
            )
            or body.endswith(b"0\r\n\r\n")
        ):
            return data
        chunk = await sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk


@pytest.fixture
async def served(nursery, monkeypatch):
    monkeypatch.setattr(Config, "keep_alive_timeout", 1.0)
    writes: list[bytes] = []
    real_send_all = trio.SocketStream.send_all

    async def counted(self, data):
        writes.append(bytes(data))
        await real_send_all(self, data)

    monkeypatch.setattr(trio.SocketStream, "send_all", counted)  # the server's writes only
    release = trio.Event()
    port = await nursery.start(partial(serve_api, app_with(release), "127.0.0.1", 0))
    sock = trio.socket.socket()
    await sock.connect(("127.0.0.1", port))
    yield sock, writes, release
    sock.close()


def request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nhost: t\r\n\r\n".encode()


async def test_a_fixed_length_response_is_one_write(served):
    sock, writes, _ = served
    for _ in range(3):  # and again on the same keep-alive connection
        writes.clear()
        await sock.send(request("/json"))
        response = await read_response(sock)
        assert response.startswith(b"HTTP/1.1 200")
        assert response.endswith(b'{"hello":"world"}')
        assert writes == [response]


async def test_a_streamed_response_sends_its_head_before_its_first_chunk(served):
    sock, writes, release = served
    await sock.send(request("/stream"))
    with trio.fail_after(5):
        head = await sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")
    release.set()
    rest = b""
    while not rest.endswith(b"0\r\n\r\n"):  # the chunked body and its end
        rest += await sock.recv(65536)
    assert rest == b"a\r\nlate chunk\r\n0\r\n\r\n"


async def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(served):
    sock, _, _ = served
    for _ in range(3):  # requests closer together than the timeout keep it open
        await sock.send(request("/json"))
        await read_response(sock)
        await trio.sleep(0.2)
    started = trio.current_time()
    with trio.fail_after(5):
        assert await sock.recv(65536) == b""  # closed by the server
    assert 0.3 < trio.current_time() - started < 3


def test_another_hypercorn_version_is_left_alone(monkeypatch):
    methods = (worker_context.TrioSingleTask.restart, worker_context.TrioSingleTask.stop)
    monkeypatch.setattr(hypercorn_tuning, "_installed", False)
    monkeypatch.setattr(hypercorn_tuning, "version", lambda name: "0.19.0")
    assert hypercorn_tuning.install() is False
    assert (worker_context.TrioSingleTask.restart, worker_context.TrioSingleTask.stop) == methods
