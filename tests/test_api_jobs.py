"""The jobs half of the HTTP API, on a real in-process node: every route and its errors."""

from __future__ import annotations

import json

import httpx
import trio

from swarm.node import open_node
from tests.guests import exit_with, hello, ticker
from tests.test_p2p_security import config


async def get(client: httpx.AsyncClient, path: str, **kw) -> httpx.Response:
    return await client.get(f"/api/v1{path}", **kw)


async def test_job_routes(tmp_path):
    async with open_node(config(tmp_path, "x")) as x:
        headers = {"Authorization": f"Bearer {x.config.api_token}"}
        async with httpx.AsyncClient(base_url=x.api_url, headers=headers, timeout=10) as client:
            digest = (await client.put("/api/v1/blobs", content=bytes(hello("hi\n")))).json()[
                "digest"
            ]
            assert (await client.head(f"/api/v1/blobs/{digest}")).status_code == 200
            job = (await client.post("/api/v1/jobs", json={"task": {"module": digest}})).json()
            done = (await get(client, f"/jobs/{job['id'][:8]}/wait", params={"timeout": 10})).json()
            assert done["state"] == "completed"

            executions = (await get(client, f"/jobs/{job['id']}/executions")).json()
            assert [(e["node_id"], e["state"], e["exit_code"]) for e in executions] == [
                (x.peer_id, "completed", 0)
            ]
            events = (await get(client, f"/jobs/{job['id']}/events")).json()
            assert events[0]["kind"] == "created" and events[-1]["message"].endswith("completed")
            assert events == done["events"]

            logs = await get(client, f"/jobs/{job['id']}/logs")
            assert logs.headers["content-type"].startswith("application/x-ndjson")
            lines = [json.loads(line) for line in logs.text.splitlines()]
            assert lines == [
                {
                    "execution_id": executions[0]["id"],
                    "node_id": x.peer_id,
                    "stream": "stdout",
                    "data": "hi\n",
                }
            ]

            stop = await client.post(f"/api/v1/jobs/{job['id']}/stop")
            assert stop.status_code == 400
            assert stop.json()["detail"] == (
                f"job {job['id']} has already ended (completed): nothing to stop"
            )
            for path in ("/jobs/0000", "/jobs/0000/executions", "/jobs/0000/events"):
                missing = await get(client, path)
                assert missing.status_code == 404 and "no job" in missing.json()["detail"]

            # A failing job and a stopped one, as the list shows them (newest first).
            bad = await client.put("/api/v1/blobs", content=bytes(exit_with(3)))
            failed = (
                await client.post("/api/v1/jobs", json={"task": {"module": bad.json()["digest"]}})
            ).json()
            slow = await client.put("/api/v1/blobs", content=bytes(ticker(100, 0.2)))
            running = (
                await client.post("/api/v1/jobs", json={"task": {"module": slow.json()["digest"]}})
            ).json()
            with trio.fail_after(10):
                while x.compute.running == 0:
                    await trio.sleep(0.02)
            stopped = (await client.post(f"/api/v1/jobs/{running['id']}/stop")).json()
            assert stopped["state"] == "stopped"
            assert [e["state"] for e in stopped["executions"]] == ["cancelled"]
            await get(client, f"/jobs/{failed['id']}/wait", params={"timeout": 10})
            listed = (await get(client, "/jobs")).json()
            assert [(j["id"], j["state"]) for j in listed] == [
                (running["id"], "stopped"),
                (failed["id"], "failed"),
                (job["id"], "completed"),
            ]
            only_failed = (await get(client, "/jobs", params={"state": "failed"})).json()
            assert [j["id"] for j in only_failed] == [failed["id"]]
            with trio.fail_after(5):
                while x.compute.running:
                    await trio.sleep(0.02)  # the stopped guest has really stopped


async def test_bad_requests_get_a_one_line_detail(tmp_path):
    async with open_node(config(tmp_path, "x")) as x:
        headers = {"Authorization": f"Bearer {x.config.api_token}"}
        async with httpx.AsyncClient(base_url=x.api_url, headers=headers, timeout=10) as client:
            digest = (await client.put("/api/v1/blobs", content=bytes(hello()))).json()["digest"]
            spec = json.dumps({"task": {"module": digest}}).encode()
            as_json = {"Content-Type": "application/json"}
            bodies = [
                (b"", as_json, 422, "no body"),
                (spec, {"Content-Type": "text/plain"}, 422, "application/json"),
                (b"{", as_json, 422, "not valid JSON"),
                (b"[1]", as_json, 422, "JSON object"),
                (b'{"name": "\xff"}', as_json, 400, "UTF-8"),
                (b"[" * 100_000, as_json, 400, "UTF-8"),
                (b'{"task": {}}', as_json, 400, "task.module is missing"),
                (spec[:-1] + b', "name": "\\ud800"}', as_json, 400, "not valid Unicode"),
            ]
            for body, kind, status, words in bodies:
                response = await client.post("/api/v1/jobs", content=body, headers=kind)
                detail = response.json()["detail"]
                assert response.status_code == status, (body[:20], response.text)
                assert words in detail and "\n" not in detail, (body[:20], detail)
            for path, words in [
                ("/jobs?limit=ten", "limit 'ten' is not a whole number"),
                ("/jobs/0000/wait?timeout=soon", "timeout 'soon' is not a number"),
            ]:
                response = await get(client, path)
                assert response.status_code == 422 and words in response.json()["detail"]
            assert (await get(client, "/jobs")).json() == []  # nothing bad was stored

            # The token is checked before the body is read.
            refused = await client.post(
                "/api/v1/jobs", content=b"{", headers={**as_json, "Authorization": "Bearer no"}
            )
            assert refused.status_code == 401

            # Hot routes answer the bytes FastAPI's JSONResponse would: compact UTF-8.
            created = await client.post("/api/v1/jobs", content=spec, headers=as_json)
            assert created.status_code == 201
            assert created.headers["content-type"] == "application/json"
            job = created.json()
            assert (
                created.content
                == json.dumps(job, ensure_ascii=False, separators=(",", ":")).encode()
            )
            described = await get(client, f"/jobs/{job['id']}")
            assert described.headers["content-type"] == "application/json"
            assert described.json()["id"] == job["id"]
