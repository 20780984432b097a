"""The Python client's HTTP/1.1 transport, against a small stand-in server on loopback.

The client is exercised against real nodes all through the suite (CLI, jobs, cluster
tests); here are the transport's own cases, which a node does not produce on demand:
connections reused and replaced, threads sharing a client, timeouts, odd answers.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import swarm.client
from swarm.api import server
from swarm.client import Client
from swarm.errors import ApiError


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StandIn

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/api/v1/agent":
            self.answer(200, {"name": "stand-in", "auth": self.headers.get("Authorization")})
        elif path == "/api/v1/nodes":  # answers, then hangs up (as at a keep-alive timeout)
            self.answer(200, [])
            self.close_connection = True
        elif path == "/api/v1/jobs/5105":
            time.sleep(1.0)
            self.answer(200, {})
        elif path.startswith("/api/v1/jobs/") and path.endswith("/logs"):
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                line = json.dumps({"stream": "stdout", "data": f"line {i}\n"}).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.write(b"0\r\n\r\n")
        elif path.startswith("/api/v1/jobs/"):
            job_id = path.rsplit("/", 1)[1]
            if job_id == "0bad":
                self.answer(404, {"detail": f"no job {job_id}\nsecond line"})
            elif job_id == "0401":
                self.answer(401, {"detail": "missing token"})
            elif job_id == "0500":
                self.answer(500, b"<html>oops</html>")
            elif job_id == "0b0b":
                self.answer(200, b"<html>not json</html>")
            else:
                self.answer(200, {"id": job_id, "state": "completed"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.answer(201, {"echo": json.loads(body), "type": self.headers["Content-Type"]})

    def answer(self, status: int, body) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class StandIn(ThreadingHTTPServer):
    daemon_threads = True
    connections = 0
    hung_up = 0

    def shutdown_request(self, request) -> None:
        super().shutdown_request(request)
        self.hung_up += 1


@pytest.fixture
def stand_in():
    server = StandIn(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def client_of(server: StandIn, **kw) -> Client:
    return Client(f"http://127.0.0.1:{server.server_address[1]}", "t0ken", **kw)


def test_calls_share_one_kept_alive_connection(stand_in):
    with client_of(stand_in) as client:
        for i in range(20):
            assert client.job(f"{i:04x}") == {"id": f"{i:04x}", "state": "completed"}
        assert client.agent() == {"name": "stand-in", "auth": "Bearer t0ken"}
        assert client.submit({"name": "x"}) == {"echo": {"name": "x"}, "type": "application/json"}
    assert stand_in.connections == 1


def test_a_connection_the_node_closed_is_replaced(stand_in):
    with client_of(stand_in) as client:
        for round in range(1, 4):
            assert client.nodes() == []  # the node hangs up after this one
            deadline = time.monotonic() + 5
            while stand_in.hung_up < round and time.monotonic() < deadline:
                time.sleep(0.01)
            assert client.submit({"n": round})["echo"] == {"n": round}  # not sent on it
            assert client.job("abcd")["id"] == "abcd"
    assert stand_in.connections == 4


def test_a_connection_idle_for_long_is_not_reused(stand_in, monkeypatch):
    """Not sent on just as the node's keep-alive timeout closes it (a submit sent so is
    lost to the client: it cannot be sent again)."""
    monkeypatch.setattr(swarm.client, "IDLE_REUSE", 0.2)
    with client_of(stand_in) as client:
        assert client.job("abcd")["id"] == "abcd"
        assert client.job("abcd")["id"] == "abcd"  # at once: the same connection
        assert stand_in.connections == 1
        time.sleep(0.3)
        assert client.submit({"n": 1})["echo"] == {"n": 1}
    assert stand_in.connections == 2


def test_connections_are_dropped_well_before_the_nodes_keep_alive_timeout():
    assert swarm.client.IDLE_REUSE <= server.KEEP_ALIVE - 1


def test_threads_can_share_a_client(stand_in):
    with client_of(stand_in) as client, ThreadPoolExecutor(8) as pool:
        ids = [f"{i:04x}" for i in range(400)]
        answers = list(pool.map(lambda job_id: client.job(job_id)["id"], ids))
    assert answers == ids
    assert stand_in.connections <= 8


def test_logs_stream_line_by_line_and_an_abandoned_stream_costs_its_connection(stand_in):
    with client_of(stand_in) as client:
        lines = [chunk["data"] for chunk in client.logs("abcd", follow=True)]
        assert lines == ["line 0\n", "line 1\n", "line 2\n"]
        assert stand_in.connections == 1  # read to its end: the connection is reused
        stream = client.logs("abcd")
        assert next(stream)["data"] == "line 0\n"
        stream.close()  # not read to its end: that connection cannot be reused
        assert client.job("abcd")["id"] == "abcd"
    assert stand_in.connections == 2


@pytest.mark.parametrize(
    ("job_id", "message"),
    [
        ("0bad", "no job 0bad"),  # the node's one-line reason
        ("0401", "refused the API token: use SWARM_API_TOKEN from that node's swarm.run"),
        ("0500", "answered 500 for /api/v1/jobs/0500"),
        ("0b0b", "answered /api/v1/jobs/0b0b with something that is not JSON"),
    ],
)
def test_odd_answers_are_one_line_errors(stand_in, job_id, message):
    with client_of(stand_in) as client, pytest.raises(ApiError) as error:
        client.job(job_id)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_no_node_and_a_slow_node_are_clear_errors(stand_in):
    with client_of(stand_in, timeout=0.3) as client:
        with pytest.raises(ApiError, match=r"cannot reach the node .*\(TimeoutError\)"):
            client.job("5105")
        assert client.job("abcd")["id"] == "abcd"  # the timed-out connection was dropped
    port = stand_in.server_address[1]
    stand_in.shutdown()
    stand_in.server_close()
    with Client(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(ApiError, match=r"cannot reach the node at http://127\.0\.0\.1:\d+ "):
            client.agent()


def test_a_bad_address_is_a_config_error():
    from swarm.errors import ConfigError

    with pytest.raises(ConfigError, match="not a node's API address"):
        Client("127.0.0.1:1234")
