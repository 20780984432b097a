"""The web UI: one static page served by the node, and the summaries it polls.

    GET /                          the page; served without a token because it holds no data
    GET /ui/{app,chart}.js, /ui/style.css   its script and style (no build step, no CDN)
    GET /api/v1/ui/jobs?state=&limit=   jobs newest first (state: one, or a,b,c), each
                                        with its executions' nodes and exit codes, and
                                        its duration once ended
    GET /api/v1/ui/stats?minutes=       jobs ended per minute with their latency, and how
                                        many jobs are in each state

How the token flows: `swarm serve --web-ui` prints ``http://HOST:PORT/#token=TOKEN``. A
URL fragment is never sent to the server, so the token stays out of any request line or
log. The page moves it to sessionStorage, removes it from the address bar, and sends it
as ``Authorization: Bearer`` on every /api/v1 call, exactly like the CLI; when it has no
token, or the node refuses it, the page asks for one. The page itself only renders data
with ``textContent``, and its Content-Security-Policy allows no inline script, so a job
that prints ``<script>`` shows text and runs nothing.

The summaries read the requester's store in a fixed number of queries per poll (one for
the jobs, one for all their executions), whatever the number of jobs, in a worker thread
so that a long list never stalls the node's event loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib.resources import files
from statistics import median
from typing import Any

import trio
from fastapi import APIRouter, HTTPException, Response

from swarm.errors import ConfigError
from swarm.lifecycle import JobState, parse_job_state
from swarm.requester.service import RequesterService
from swarm.requester.store import ExecutionRecord, JobRecord

_ASSETS = {  # the only files served: no path from a request ever reaches the file system
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "chart.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_HEADERS = {
    # No inline script or style, nothing from elsewhere: injected markup could not run.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
MAX_JOBS = 1000
MAX_MINUTES = 24 * 60


def page_router() -> APIRouter:
    """The page and its assets, read once from the package."""
    static = files("swarm.api") / "static"
    assets = {name: (static / name).read_bytes() for name in _ASSETS}
    router = APIRouter()

    def asset(name: str) -> Response:
        return Response(assets[name], media_type=_ASSETS[name], headers=_HEADERS)

    @router.get("/", include_in_schema=False)
    async def index() -> Response:
        return asset("index.html")

    @router.get("/ui/{name}", include_in_schema=False)
    async def static_file(name: str) -> Response:
        if name not in assets or name == "index.html":
            raise HTTPException(404, f"no such file: {name}")
        return asset(name)

    return router


def summary_router(requester: RequesterService | None) -> APIRouter:
    """The summaries the page polls; mount it under the token-checked /api/v1 router."""
    router = APIRouter(prefix="/ui")

    def need() -> RequesterService:
        if requester is None:
            raise HTTPException(
                503, "this node is not a requester: it keeps no jobs (--node-type requester)"
            )
        return requester

    @router.get("/jobs")
    async def jobs(state: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        store = need().store
        try:  # one state or several, comma-separated: "pending,queued,running"
            states = [parse_job_state(s) for s in state.split(",")] if state else None
        except ConfigError as exc:
            raise HTTPException(400, str(exc)) from None

        def read() -> list[dict[str, Any]]:
            records = store.list_jobs(states, limit=max(1, min(limit, MAX_JOBS)))
            executions = store.executions_of(job.id for job in records)
            return [job_summary(job, executions[job.id]) for job in records]

        # A thousand jobs take tens of milliseconds to read: not on the node's event loop.
        return await trio.to_thread.run_sync(read)

    @router.get("/stats")
    async def stats(minutes: int = 30) -> dict[str, Any]:
        store = need().store
        minutes = max(1, min(minutes, MAX_MINUTES))
        start = (time.time() // 60 - minutes + 1) * 60

        def read() -> dict[str, Any]:
            return {
                "minutes": per_minute(store.ended_since(start), start=start, minutes=minutes),
                "states": {str(state): count for state, count in store.count_by_state().items()},
            }

        return await trio.to_thread.run_sync(read)

    return router


def job_summary(job: JobRecord, executions: list[ExecutionRecord]) -> dict[str, Any]:
    """One row of the jobs table."""
    spec = job.spec
    return {
        "id": job.id,
        "name": job.name,
        "state": job.state.value,
        "reason": job.reason,
        "created": _time(job.created),
        "updated": _time(job.updated),
        "module": spec.task.module,
        "target": spec.target.value,
        "count": spec.count,
        # None while the job lives: the page counts the time itself from `created`.
        "duration": round(job.updated - job.created, 3) if job.state.is_terminal else None,
        "executions": [
            {
                "id": e.id,
                "node_id": e.node_id,
                "state": e.state.value,
                "exit_code": e.exit_code,
            }
            for e in executions
        ],
    }


def per_minute(
    ended: Iterable[tuple[JobState, float, float]], *, start: float, minutes: int
) -> list[dict[str, Any]]:
    """Bucket ended jobs by the minute they ended in: counts by final state and latency
    (submit to end, seconds: median and max). ``start`` is the first bucket's start."""
    buckets: list[dict[str, Any]] = [
        {"start": _time(start + 60 * i), "completed": 0, "failed": 0, "stopped": 0, "_l": []}
        for i in range(minutes)
    ]
    for state, created, updated in ended:
        index = int((updated - start) // 60)
        if 0 <= index < minutes:
            bucket = buckets[index]
            bucket[state.value] += 1
            bucket["_l"].append(updated - created)
    for bucket in buckets:
        latencies = bucket.pop("_l")
        bucket["latency_median"] = round(median(latencies), 3) if latencies else None
        bucket["latency_max"] = round(max(latencies), 3) if latencies else None
    return buckets


def _time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")
