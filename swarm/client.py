"""Python client of a node's HTTP API (the CLI uses it; so can anyone).

    from swarm.client import Client
    with Client.from_environment() as client:
        for node in client.nodes():
            print(node["name"], node["status"])

``from_environment`` finds the node the way the CLI does: the ``SWARM_API_HOST``,
``SWARM_API_PORT`` and ``SWARM_API_TOKEN`` variables if set, else the `swarm.run` file
in ``$SWARM_HOME``, else in ``~/.swarm``.

The client speaks plain HTTP/1.1 to the node with the standard library's
``http.client``, over keep-alive connections it keeps for reuse (one per thread at a
time: a ``Client`` may be shared between threads). A job's submit and wait are two
small requests, and a script may make thousands: measured against the node's API, a
request cost the client ~0.9 ms of CPU through httpx and ~0.2 ms this way, which on a
machine that also runs the node is CPU the node does not get.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from swarm.config import DEFAULT_API_PORT, DEFAULT_HOME
from swarm.errors import ApiError, ConfigError
from swarm.home import RUN_FILE, read_run_file
from swarm.storage.archive import Unpacker
from swarm.storage.blobs import digest_bytes


class Client:
    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout  # seconds to connect, and for each read of an answer
        url = urlsplit(self.base_url)
        if url.scheme != "http" or not url.hostname:
            raise ConfigError(f"{base_url!r} is not a node's API address: use http://HOST:PORT")
        self._connections = _Connections(url.hostname, url.port or 80)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Client:
        host, port, token = find_node(os.environ if environ is None else environ)
        base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        return cls(base, token)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._connections.close()

    def agent(self) -> dict[str, Any]:
        """This node: peer id, name, version, roles, addresses, resources, drop counters."""
        return self._get("/api/v1/agent")

    def nodes(self) -> list[dict[str, Any]]:
        """The node's membership table: every node it knows, with status and last_seen."""
        return self._get("/api/v1/nodes")

    # --- jobs ------------------------------------------------------------------------

    def upload_module(self, path: Path) -> str:
        """Send a module to the node (unless it has it already); returns its sha256 id."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"module {path} cannot be read ({exc.strerror}): check the path"
            ) from exc
        digest = digest_bytes(data)
        if self._request("HEAD", f"/api/v1/blobs/{digest}", ok=(200, 404)).status == 200:
            return digest
        return self._request("PUT", "/api/v1/blobs", body=data).json()["digest"]

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Submit a job spec (module given as a sha256 id); the node has stored it on return."""
        return self._request("POST", "/api/v1/jobs", json=spec).json()

    def job(self, job_id: str) -> dict[str, Any]:
        """A job with its executions and events; a unique prefix of the id is enough."""
        return self._get(_job_path(job_id))

    def jobs(self, *, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if state:
            params["state"] = state
        return self._request("GET", f"/api/v1/jobs?{urlencode(params)}").json()

    def wait(self, job_id: str, *, poll: float = 30.0) -> dict[str, Any]:
        """Block until the job has ended; returns it (with executions and events)."""
        while True:
            path = f"{_job_path(job_id, 'wait')}?{urlencode({'timeout': poll})}"
            job = self._request("GET", path, timeout=poll + 15).json()
            if job["state"] in ("completed", "failed", "stopped"):
                return job
            job_id = job["id"]

    def stop(self, job_id: str) -> dict[str, Any]:
        """Cancel the job wherever it runs; returns it, ``stopped``."""
        return self._request("POST", _job_path(job_id, "stop")).json()

    def logs(self, job_id: str, *, follow: bool = False) -> Iterator[dict[str, Any]]:
        """The job's stdout/stderr chunks ({execution_id, node_id, stream, data}); with
        ``follow``, as they arrive, until the job ends."""
        path = f"{_job_path(job_id, 'logs')}?follow={'true' if follow else 'false'}"
        try:
            with self._stream("GET", path) as response:
                while line := response.readline():
                    if line.strip():
                        yield json.loads(line)
        except (OSError, http.client.HTTPException) as exc:
            raise ApiError(
                f"lost the node at {self.base_url} while reading logs ({type(exc).__name__})"
            ) from exc

    def download_results(self, job: dict[str, Any], output_dir: Path) -> Path:
        """Write ``job-<id8>/`` under ``output_dir``: stdout, stderr, exitCode, outputs/ for
        one execution, or one such folder per node when the job ran on several."""
        target = output_dir / f"job-{job['id'][:8]}"
        if target.exists():
            raise ConfigError(f"{target} already exists: remove it or choose --output-dir")
        output_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".swarm-get-", dir=output_dir))
        try:
            unpacker = Unpacker(staging / "all", max_bytes=1 << 40, max_entries=1 << 20)
            try:
                with self._stream("GET", f"/api/v1/jobs/{job['id']}/results") as response:
                    while chunk := response.read(_CHUNK):
                        unpacker.feed(chunk)
            except (OSError, http.client.HTTPException) as exc:
                raise ApiError(
                    f"lost the node at {self.base_url} while downloading results "
                    f"({type(exc).__name__})"
                ) from exc
            unpacker.close()
            folders = sorted(p for p in (staging / "all").iterdir() if p.is_dir())
            if not folders:
                raise ApiError(f"job {job['id']} has no results yet (state: {job['state']})")
            if len(folders) == 1:
                folders[0].rename(target)
            else:
                target.mkdir()
                nodes = {e["id"]: e["node_id"] for e in job.get("executions", [])}
                for folder in folders:
                    node = nodes.get(folder.name, folder.name)
                    folder.rename(target / f"node-{node[-8:]}-{folder.name[:8]}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    # --- plumbing -------------------------------------------------------------------

    def _get(self, path: str) -> Any:
        response = self._request("GET", path)
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                f"the node at {self.base_url} answered {path} with something that is not JSON: "
                "is SWARM_API_PORT the port of a swarm node's API?"
            ) from None

    def _request(
        self,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...] = (),
        json: Any = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> _Answer:
        headers = dict(self._headers)
        if json is not None:
            body = _json_bytes(json)
            headers["Content-Type"] = "application/json"
        try:
            answer = self._connections.exchange(
                method, path, body, headers, timeout=timeout or self.timeout
            )
        except (OSError, http.client.HTTPException) as exc:
            raise ApiError(
                f"cannot reach the node at {self.base_url} ({type(exc).__name__}): "
                "is `swarm serve` running there?"
            ) from exc
        if answer.status not in ok:
            self._check(answer.status, answer.body, path)
        return answer

    @contextmanager
    def _stream(self, method: str, path: str) -> Iterator[http.client.HTTPResponse]:
        """An answer read as it comes (no time limit once connected): logs, archives."""
        with self._connections.streaming(
            method, path, self._headers, connect_timeout=self.timeout
        ) as response:
            if response.status >= 400:
                self._check(response.status, response.read(), path)
            yield response

    def _check(self, status: int, body: bytes, what: str) -> None:
        if status == 401:
            raise ApiError(
                f"the node at {self.base_url} refused the API token: "
                "use SWARM_API_TOKEN from that node's swarm.run"
            )
        if status >= 400:
            try:
                detail = json.loads(body).get("detail")
            except (ValueError, AttributeError):
                detail = None
            if isinstance(detail, str) and detail:
                raise ApiError(detail.splitlines()[0])
            raise ApiError(f"the node at {self.base_url} answered {status} for {what}")


_CHUNK = 1 << 16
_json_bytes = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class _Answer:
    """A whole answer: status and body."""

    __slots__ = ("status", "body")

    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body

    def json(self) -> Any:
        return json.loads(self.body)


# Seconds a connection may sit idle and still be reused. A node closes one idle for
# swarm.api.server.KEEP_ALIVE (5 s); a request sent on one about to close would race the
# close, and a submit cannot be sent again (the node may have taken it).
IDLE_REUSE = 3.0


class _Connections:
    """Keep-alive HTTP/1.1 connections to one node. A request takes an idle one (or opens
    one) for itself and gives it back once the answer is read, so threads can share them.
    A connection idle for more than ``IDLE_REUSE`` is not reused, and one the node has
    closed while it sat idle (a restart, say) is noticed before use and replaced; a
    request that meets one closed in that very moment is sent again on a new connection
    only if it changes nothing (GET, HEAD)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []  # and when given back
        self._lock = threading.Lock()
        self._closed = False

    def exchange(
        self, method: str, path: str, body: bytes | None, headers: dict, *, timeout: float
    ) -> _Answer:
        while True:
            connection, reused = self._take(timeout)
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                answer = _Answer(response.status, response.read())
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                connection.close()
                if reused and method in ("GET", "HEAD"):
                    continue
                raise
            except BaseException:
                connection.close()
                raise
            self._give_back(connection, response)
            return answer

    @contextmanager
    def streaming(
        self, method: str, path: str, headers: dict, *, connect_timeout: float
    ) -> Iterator[http.client.HTTPResponse]:
        connection, _ = self._take(connect_timeout)
        try:
            if connection.sock is None:
                connection.connect()
            connection.sock.settimeout(None)  # an answer may take its time (logs -f)
            connection.request(method, path, headers=headers)
            response = connection.getresponse()
            yield response
        except BaseException:
            connection.close()
            raise
        self._give_back(connection, response)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection, _ in idle:
            connection.close()

    def _take(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        while True:
            with self._lock:
                if not self._idle:
                    break
                idle, since = self._idle.pop()
            if time.monotonic() - since <= IDLE_REUSE and not _closed_by_peer(idle):
                idle.sock.settimeout(timeout)
                return idle, True
            idle.close()
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout), False

    def _give_back(
        self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse
    ) -> None:
        if response.will_close or not response.isclosed() or connection.sock is None:
            connection.close()  # (an answer not read to its end leaves the connection unusable)
            return
        with self._lock:
            if not self._closed:
                self._idle.append((connection, time.monotonic()))
                return
        connection.close()


def _closed_by_peer(connection: http.client.HTTPConnection) -> bool:
    """An idle connection is readable only if the node closed it (or broke the protocol)."""
    sock = connection.sock
    if sock is None:
        return True
    try:
        if hasattr(select, "poll"):  # (select.select refuses descriptors past 1023)
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


_JOB_ID = re.compile(r"[0-9a-fA-F-]{1,64}")


def _job_path(job_id: str, *rest: str) -> str:
    """The API path of a job, for an id or prefix the user typed (never a path of its own)."""
    job_id = job_id.strip()
    if not job_id:
        raise ConfigError("give a job id, or a unique prefix of one (at least 4 characters)")
    if not _JOB_ID.fullmatch(job_id):
        raise ConfigError(
            f"{job_id!r} is not a job id: ids are hex digits and dashes, like 23fdd718"
        )
    return "/".join(("/api/v1/jobs", quote(job_id, safe=""), *rest))


def find_node(environ: Mapping[str, str]) -> tuple[str, int, str | None]:
    """(host, port, token) of the node the CLI should talk to."""
    if environ.get("SWARM_API_HOST") or environ.get("SWARM_API_PORT"):
        source = "the SWARM_API_* variables"
        values = dict(environ)
    else:
        for path in _run_file_candidates(environ):
            if path.is_file():
                source, values = str(path), read_run_file(path)
                break
        else:
            raise ApiError(
                "no running node found: start one with `swarm serve` "
                "(then `source ~/.swarm/swarm.run`), or set SWARM_API_HOST and SWARM_API_PORT"
            )
    host = values.get("SWARM_API_HOST") or "127.0.0.1"
    port_text = values.get("SWARM_API_PORT") or str(DEFAULT_API_PORT)
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(
            f"SWARM_API_PORT {port_text!r} (from {source}) is not a port number"
        ) from None
    return host, port, values.get("SWARM_API_TOKEN") or None


def _run_file_candidates(environ: Mapping[str, str]) -> list[Path]:
    homes = [environ.get("SWARM_HOME"), DEFAULT_HOME]
    return [Path(home).expanduser() / RUN_FILE for home in homes if home]
