"""Python client of a node's HTTP API (the CLI uses it; so can anyone).

    from swarm.client import Client
    with Client.from_environment() as client:
        for node in client.nodes():
            print(node["name"], node["status"])

``from_environment`` finds the node the way the CLI does: the ``SWARM_API_HOST``,
``SWARM_API_PORT`` and ``SWARM_API_TOKEN`` variables if set, else the `swarm.run` file
in ``$SWARM_HOME``, else in ``~/.swarm``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from swarm.config import DEFAULT_API_PORT, DEFAULT_HOME
from swarm.errors import ApiError, ConfigError
from swarm.home import RUN_FILE, read_run_file
from swarm.storage.archive import Unpacker
from swarm.storage.blobs import digest_bytes


class Client:
    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

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
        self._http.close()

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
        if self._request("HEAD", f"/api/v1/blobs/{digest}", ok=(200, 404)).status_code == 200:
            return digest
        return self._request("PUT", "/api/v1/blobs", content=data).json()["digest"]

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
        return self._request("GET", "/api/v1/jobs", params=params).json()

    def wait(self, job_id: str, *, poll: float = 30.0) -> dict[str, Any]:
        """Block until the job has ended; returns it (with executions and events)."""
        while True:
            job = self._request(
                "GET", _job_path(job_id, "wait"), params={"timeout": poll}, timeout=poll + 15
            ).json()
            if job["state"] in ("completed", "failed", "stopped"):
                return job
            job_id = job["id"]

    def stop(self, job_id: str) -> dict[str, Any]:
        """Cancel the job wherever it runs; returns it, ``stopped``."""
        return self._request("POST", _job_path(job_id, "stop")).json()

    def logs(self, job_id: str, *, follow: bool = False) -> Iterator[dict[str, Any]]:
        """The job's stdout/stderr chunks ({execution_id, node_id, stream, data}); with
        ``follow``, as they arrive, until the job ends."""
        path = _job_path(job_id, "logs")
        try:
            with self._http.stream(
                "GET", path, params={"follow": follow}, timeout=httpx.Timeout(10.0, read=None)
            ) as response:
                self._check(response, path)
                for line in response.iter_lines():
                    if line:
                        yield json.loads(line)
        except httpx.HTTPError as exc:
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
            with self._http.stream(
                "GET", f"/api/v1/jobs/{job['id']}/results", timeout=None
            ) as response:
                self._check(response, "results")
                for chunk in response.iter_bytes():
                    unpacker.feed(chunk)
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

    def _request(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kw) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ApiError(
                f"cannot reach the node at {self.base_url} ({type(exc).__name__}): "
                "is `swarm serve` running there?"
            ) from exc
        if response.status_code not in ok:
            self._check(response, path)
        return response

    def _check(self, response: httpx.Response, what: str) -> None:
        if response.status_code == 401:
            raise ApiError(
                f"the node at {self.base_url} refused the API token: "
                "use SWARM_API_TOKEN from that node's swarm.run"
            )
        if response.is_error:
            response.read()
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = None
            if isinstance(detail, str) and detail:
                raise ApiError(detail.splitlines()[0] if response.status_code != 200 else detail)
            raise ApiError(
                f"the node at {self.base_url} answered {response.status_code} for {what}"
            )


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
