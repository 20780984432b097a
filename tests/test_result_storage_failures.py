"""A requester that cannot store a result says so in the job, instead of leaving it
running for ever; a result store whose folder was removed is made again."""

from __future__ import annotations

import shutil

import httpx

from swarm.errors import StorageError
from swarm.node import open_node
from swarm.requester.results import ResultStore
from tests.guests import hello
from tests.test_p2p_security import config


async def run_job(client: httpx.AsyncClient, digest: str) -> dict:
    job = (await client.post("/api/v1/jobs", json={"task": {"module": digest}})).json()
    wait = await client.get(f"/api/v1/jobs/{job['id']}/wait", params={"timeout": 10})
    return wait.json()


async def test_a_removed_result_store_is_made_again(tmp_path):
    async with open_node(config(tmp_path, "x")) as node:
        headers = {"Authorization": f"Bearer {node.config.api_token}"}
        async with httpx.AsyncClient(base_url=node.api_url, headers=headers, timeout=20) as client:
            digest = (await client.put("/api/v1/blobs", content=bytes(hello("hi\n")))).json()
            assert (await run_job(client, digest["digest"]))["state"] == "completed"
            shutil.rmtree(node.config.home / "results")
            job = await run_job(client, digest["digest"])
            assert job["state"] == "completed", job
            out = await client.get(f"/api/v1/jobs/{job['id']}/results")
            assert out.status_code == 200


async def test_a_result_that_cannot_be_stored_fails_the_job(tmp_path, monkeypatch):
    def full_disk(self, job_id, execution_id, **kw):
        raise StorageError(f"cannot create {self.root / job_id}: No space left on device")

    monkeypatch.setattr(ResultStore, "writer", full_disk)
    async with open_node(config(tmp_path, "x")) as node:
        headers = {"Authorization": f"Bearer {node.config.api_token}"}
        async with httpx.AsyncClient(base_url=node.api_url, headers=headers, timeout=20) as client:
            digest = (await client.put("/api/v1/blobs", content=bytes(hello("hi\n")))).json()
            job = await run_job(client, digest["digest"])
    assert job["state"] == "failed"
    assert job["reason"].startswith("results cannot be stored on this node: cannot create")
    assert "No space left on device" in job["reason"]
    assert [e["state"] for e in job["executions"]] == ["failed"]
