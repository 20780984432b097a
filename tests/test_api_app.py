"""The HTTP API: bearer-token auth and the JSON shapes, on a fake node and over HTTP."""

from __future__ import annotations

import httpx
import pytest
import trio

from swarm.api.app import create_app
from swarm.api.server import serve_api
from swarm.models import Member, NodeInfo, NodeStatus, Resources, Role
from swarm.p2p.drops import DropCounter, DropReason

TOKEN = "s3cret"


def info(peer_id: str, name: str) -> NodeInfo:
    return NodeInfo(
        peer_id=peer_id,
        name=name,
        version="0.1.0",
        roles=(Role.COMPUTE, Role.REQUESTER),
        resources=Resources(cpu=4, memory=8 << 30, memory_free=4 << 30),
        labels={"zone": "eu"},
        addresses=(f"/ip4/127.0.0.1/tcp/1/p2p/{peer_id}",),
    )


class FakeNode:
    """What the API reads from a node, without a node."""

    def __init__(self) -> None:
        self.drops = DropCounter()
        self.drops.count(DropReason.FORGED)

    def describe(self) -> NodeInfo:
        return info("12D3me", "me")

    def members(self) -> list[Member]:
        return [
            Member(self.describe(), NodeStatus.HEALTHY, 1_800_000_000.0, seq=0, is_self=True),
            Member(info("12D3other", "other"), NodeStatus.LOST, 1_800_000_000.25, seq=7),
        ]

    def dropped(self) -> dict[str, int]:
        return self.drops.snapshot()

    def connected_peers(self) -> int:
        return 1


def client(token: str | None, *, headers: dict | None = None) -> httpx.AsyncClient:
    app = create_app(FakeNode(), token=token)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://node", headers=headers or {}
    )


@pytest.mark.parametrize("path", ["/api/v1/agent", "/api/v1/nodes"])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ],
)
async def test_requests_without_the_token_get_401(path, headers):
    async with client(TOKEN, headers=headers) as http:
        response = await http.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "SWARM_API_TOKEN" in response.json()["detail"]


async def test_agent_describes_this_node_with_drop_counters():
    async with client(TOKEN, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        agent = (await http.get("/api/v1/agent")).json()
    assert agent["peer_id"] == "12D3me"
    assert agent["name"] == "me"
    assert agent["version"] == "0.1.0"
    assert agent["roles"] == ["compute", "requester"]
    assert agent["addresses"] == ["/ip4/127.0.0.1/tcp/1/p2p/12D3me"]
    assert agent["connected_peers"] == 1
    assert agent["dropped"]["forged"] == 1 and agent["dropped"]["malformed"] == 0


async def test_nodes_lists_the_table_with_the_documented_fields():
    async with client(TOKEN, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        nodes = (await http.get("/api/v1/nodes")).json()
    assert [n["name"] for n in nodes] == ["me", "other"]
    other = nodes[1]
    for key in ("peer_id", "name", "roles", "labels", "status", "resources", "allowed_paths"):
        assert key in other
    for key in ("datasets", "addresses", "last_seen"):
        assert key in other
    assert other["status"] == "lost" and not other["self"] and nodes[0]["self"]
    assert other["last_seen"] == "2027-01-15T08:00:00.250000+00:00"
    assert {"cpu", "memory", "gpu"} <= set(other["resources"])
    assert other["labels"] == {"zone": "eu"}


async def test_no_token_means_no_auth():
    async with client(None) as http:
        assert (await http.get("/api/v1/agent")).status_code == 200


async def test_served_over_http_on_a_free_port():
    app = create_app(FakeNode(), token=TOKEN)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_api, app, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/api/v1/nodes")).status_code == 401
            response = await http.get("/api/v1/nodes", headers={"Authorization": f"Bearer {TOKEN}"})
            assert response.status_code == 200 and len(response.json()) == 2
        nursery.cancel_scope.cancel()
