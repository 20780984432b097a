"""The jobs half of the HTTP API (v1): modules, jobs, their executions, events and results.

    PUT  /api/v1/blobs                    upload a module (raw body) → {"digest": "sha256:…"}
    HEAD /api/v1/blobs/{digest}           200 if this node has it (the CLI skips the upload)
    POST /api/v1/jobs                     a job spec (JSON, module as digest) → the job, 201
    GET  /api/v1/jobs?state=&limit=       newest first
    GET  /api/v1/jobs/{id}                the job with its executions and events (id prefixes work)
    GET  /api/v1/jobs/{id}/wait?timeout=  the job once ended (long poll, at most 60 s per call)
    GET  /api/v1/jobs/{id}/executions     its executions, one per node and attempt
    GET  /api/v1/jobs/{id}/events         its event log: what happened, when, where, why
    POST /api/v1/jobs/{id}/stop           cancel the job where it runs → the job, ``stopped``
    GET  /api/v1/jobs/{id}/logs?follow=   stdout/stderr as NDJSON lines {execution_id, node_id,
                                          stream, data}: all so far, then (follow) as it comes
    GET  /api/v1/jobs/{id}/results        every execution's results as .tar.zst
    GET  /api/v1/jobs/{id}/results/{exe}  one execution's results as .tar.zst

A job is committed to the store before POST answers. Errors carry a one-line ``detail``.

The job routes are the hot path of job throughput (a client submits, then long-polls each
job), so they read the raw ``Request`` and answer prebuilt JSON bytes: FastAPI's parameter
validation and response encoding would cost more than the routes' own work.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from swarm.concurrency import StepsOnLoop
from swarm.errors import ConfigError, NotFound, SwarmError
from swarm.jobspec import JobSpec
from swarm.lifecycle import parse_job_state
from swarm.requester.logs import TextChunks, read_logs
from swarm.requester.service import RequesterService
from swarm.requester.store import EventRecord, ExecutionRecord, JobRecord

MAX_MODULE_UPLOAD = 256 * 1024 * 1024
NDJSON = "application/x-ndjson"
MAX_WAIT = 60.0


def jobs_router(requester: RequesterService | None) -> APIRouter:
    router = APIRouter()

    def need() -> RequesterService:
        if requester is None:
            raise HTTPException(
                503, "this node is not a requester: start it with --node-type requester"
            )
        return requester

    # Routes are matched in the order they are added: the hot ones (a client submits,
    # then long-polls each job) come first.
    @router.get("/jobs/{job_id}/wait")
    async def wait(request: Request) -> Response:
        timeout = _float_query(request.query_params, "timeout", 30.0)
        service = need()
        job_id = request.path_params["job_id"]
        job = await _guard_async(service.wait(job_id, max(0.0, min(timeout, MAX_WAIT))))
        return json_response(describe_json(service, job))

    def job_in(request: Request) -> JobRecord:
        """The job the path names (by id or a unique prefix), or a one-line 4xx."""
        store = need().store
        return _guard(lambda: store.get_job(request.path_params["job_id"]))

    @router.get("/jobs/{job_id}")
    async def describe(request: Request) -> Response:
        return json_response(describe_json(need(), job_in(request)))

    @router.post("/jobs", status_code=201)
    async def submit(request: Request) -> Response:
        body = await _json_object(request)
        spec = _guard(lambda: JobSpec.from_dict(body))
        service = need()
        job = _guard(lambda: service.submit(spec))
        return json_response(job_json(job), status_code=201)

    @router.get("/jobs")
    async def list_jobs(request: Request) -> Response:
        query = request.query_params
        state = query.get("state")
        limit = _int_query(query, "limit", 100)
        states = _guard(lambda: parse_job_state(state)) if state else None
        jobs = need().store.list_jobs(states, limit=min(limit, 10_000))
        return json_response([job_json(j) for j in jobs])

    @router.get("/jobs/{job_id}/executions")
    async def executions(request: Request) -> Response:
        job = job_in(request)
        return json_response([execution_json(e) for e in need().store.executions(job.id)])

    @router.get("/jobs/{job_id}/events")
    async def events(request: Request) -> Response:
        job = job_in(request)
        return json_response([event_json(e) for e in need().store.events(job.id)])

    @router.post("/jobs/{job_id}/stop")
    async def stop(request: Request) -> Response:
        service = need()
        job_id = request.path_params["job_id"]
        return json_response(describe_json(service, _guard(lambda: service.stop(job_id))))

    @router.put("/blobs")
    async def upload(request: Request) -> dict[str, str]:
        blobs = need().blobs
        size = 0
        with blobs.writer(max_size=MAX_MODULE_UPLOAD) as writer:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_MODULE_UPLOAD:
                    raise HTTPException(413, f"module is larger than {MAX_MODULE_UPLOAD} bytes")
                writer.write(chunk)
            digest = writer.commit()
        return {"digest": digest}

    @router.head("/blobs/{digest}")
    async def has_blob(digest: str) -> Response:
        blobs = need().blobs
        return Response(status_code=200 if _guard(lambda: blobs.has(digest)) else 404)

    @router.get("/jobs/{job_id}/logs")
    async def logs(job_id: str, follow: bool = False) -> StreamingResponse:
        service = need()
        job = _guard(lambda: service.store.get_job(job_id))
        return StreamingResponse(_ndjson_logs(service, job.id, follow), media_type=NDJSON)

    @router.get("/jobs/{job_id}/results")
    async def results(job_id: str) -> StreamingResponse:
        service = need()
        job = _guard(lambda: service.store.get_job(job_id))
        chunks = _guard(lambda: service.results.archive_job(job.id))
        return _archive(chunks, f"job-{job.id[:8]}.tar.zst")

    @router.get("/jobs/{job_id}/results/{execution_id}")
    async def execution_results(job_id: str, execution_id: str) -> StreamingResponse:
        service = need()
        job = _guard(lambda: service.store.get_job(job_id))
        execution = _guard(lambda: service.store.get_execution(execution_id))
        chunks = _guard(lambda: service.results.archive(job.id, execution.id))
        return _archive(chunks, f"job-{job.id[:8]}-{execution.id[:8]}.tar.zst")

    return router


async def _ndjson_logs(service: RequesterService, job_id: str, follow: bool):
    text = TextChunks()
    async for chunk in read_logs(service, job_id, follow=follow):
        line = {
            "execution_id": chunk.execution_id,
            "node_id": chunk.node_id,
            "stream": chunk.stream,
            "data": text.decode(chunk),
        }
        yield json.dumps(line, ensure_ascii=False) + "\n"


def install_error_handlers(app) -> None:
    """SwarmErrors that escape a route become a one-line JSON ``detail``."""

    @app.exception_handler(SwarmError)
    async def swarm_error(_request: Request, exc: SwarmError) -> JSONResponse:
        status = 404 if isinstance(exc, NotFound) else 400 if isinstance(exc, ConfigError) else 500
        return JSONResponse({"detail": str(exc)}, status_code=status)


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def json_response(payload: Any, *, status_code: int = 200) -> Response:
    """The bytes FastAPI's JSONResponse would send (compact UTF-8, no NaN), without its
    jsonable_encoder and response validation: ``payload`` is already plain dicts, lists,
    strings, numbers and None."""
    return Response(
        _ENCODER.encode(payload).encode(), status_code=status_code, media_type="application/json"
    )


async def _json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or a one-line 422 (400 if it is not UTF-8)."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    maintype, _, subtype = media_type.partition("/")
    if maintype != "application" or not (subtype == "json" or subtype.endswith("+json")):
        raise HTTPException(422, "the job spec must be sent as Content-Type: application/json")
    raw = await request.body()
    if not raw:
        raise HTTPException(422, "the request has no body: send the job spec as a JSON object")
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise HTTPException(422, f"the job spec is not valid JSON: {exc}") from None
    except (ValueError, RecursionError):  # not UTF-8, or nested too deep to parse
        raise HTTPException(
            400, "the job spec cannot be parsed (not UTF-8, or nested too deep): send UTF-8 JSON"
        ) from None
    if not isinstance(body, dict):
        raise HTTPException(422, 'the job spec must be a JSON object, like {"task": {...}}')
    return body


def _int_query(query: Mapping[str, str], name: str, default: int) -> int:
    return _number_query(query, name, default, int, "a whole number")


def _float_query(query: Mapping[str, str], name: str, default: float) -> float:
    return _number_query(query, name, default, float, "a number of seconds")


def _number_query(query: Mapping[str, str], name: str, default, parse, what: str):
    """The query parameter ``name`` as a number (``default`` if absent), or a one-line 422."""
    raw = query.get(name)
    if raw is None:
        return default
    try:
        return parse(raw)
    except ValueError:
        raise HTTPException(
            422, f"{name} {raw[:40]!r} is not {what}, like {name}={default:g}"
        ) from None


def _guard(call):
    try:
        return call()
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except ConfigError as exc:
        raise HTTPException(400, str(exc)) from None


async def _guard_async(awaitable):
    try:
        return await awaitable
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except ConfigError as exc:
        raise HTTPException(400, str(exc)) from None


def _archive(steps: Iterator[bytes], filename: str) -> StreamingResponse:
    return StreamingResponse(
        _packed_on_loop(steps),
        media_type="application/zstd",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def _packed_on_loop(steps: Iterator[bytes]) -> AsyncIterator[bytes]:
    """The archive's chunks, packed a step at a time on the loop while steps are quick
    (``StepsOnLoop``): Starlette would hand each ``next`` to a worker thread."""
    packing = StepsOnLoop()
    while (chunk := await packing.run(next, steps, None)) is not None:
        if chunk:
            yield chunk


def _time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def job_json(job: JobRecord) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.name,
        "state": job.state.value,
        "reason": job.reason,
        "created": _time(job.created),
        "updated": _time(job.updated),
        "spec": job.spec.to_dict(),
    }


def execution_json(execution: ExecutionRecord) -> dict[str, Any]:
    return {
        "id": execution.id,
        "node_id": execution.node_id,
        "state": execution.state.value,
        "exit_code": execution.exit_code,
        "status": execution.status,
        "message": execution.message,
        "created": _time(execution.created),
        "updated": _time(execution.updated),
    }


def event_json(event: EventRecord) -> dict[str, Any]:
    return {
        "at": _time(event.at),
        "kind": event.kind,
        "message": event.message,
        "node_id": event.node_id,
        "execution_id": event.execution_id,
    }


def describe_json(service: RequesterService, job: JobRecord) -> dict[str, Any]:
    return {
        **job_json(job),
        "executions": [execution_json(e) for e in service.store.executions(job.id)],
        "events": [event_json(e) for e in service.store.events(job.id)],
    }
