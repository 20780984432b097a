"""The HTTP API (v1): routes, bearer-token auth and the JSON shapes.

Every /api/v1 route requires ``Authorization: Bearer <token>`` when the node has a token
(the one in `swarm.run`); without a valid one the answer is 401. The web UI's page and
assets (``web_ui``, see ``swarm.api.ui``) need none: they hold no data. The app only
reads the node through the small ``NodeView`` protocol, so tests can serve it a fake.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any, Protocol

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request

from swarm.api.jobs import install_error_handlers, jobs_router
from swarm.api.ui import page_router, summary_router
from swarm.models import Member, NodeInfo
from swarm.p2p.adverts import node_info_to_map


class NodeView(Protocol):
    def describe(self) -> NodeInfo: ...

    def members(self) -> list[Member]: ...

    def dropped(self) -> dict[str, int]: ...

    def connected_peers(self) -> int: ...


def create_app(node: NodeView, *, token: str | None, web_ui: bool = False) -> FastAPI:
    """The API app; with ``web_ui`` also the page at ``/`` and the summaries it polls."""

    expected = None if token is None else token.encode()

    async def require_token(request: Request) -> None:
        # async: FastAPI would run a plain `def` dependency in a worker thread, per request
        if expected is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong bearer token: use SWARM_API_TOKEN from swarm.run",
                headers={"WWW-Authenticate": "Bearer"},
            )

    router = APIRouter()

    @router.get("/agent")
    async def agent() -> dict[str, Any]:
        """This node: identity, roles, addresses, resources, and gossip drop counters."""
        return {
            **node_info_to_map(node.describe()),
            "connected_peers": node.connected_peers(),
            "dropped": node.dropped(),
        }

    @router.get("/nodes")
    async def nodes() -> list[dict[str, Any]]:
        """The membership table, this node first."""
        return [member_to_json(member) for member in node.members()]

    requester = getattr(node, "requester", None)
    authorized = [Depends(require_token)]
    app = FastAPI(title="swarm", docs_url=None, redoc_url=None, openapi_url=None)
    # The job routes first, each router straight under the app: routes are matched in
    # order, and each level of include_router nesting adds a matching pass to every request.
    app.include_router(jobs_router(requester), prefix="/api/v1", dependencies=authorized)
    app.include_router(router, prefix="/api/v1", dependencies=authorized)
    if web_ui:
        app.include_router(summary_router(requester), prefix="/api/v1", dependencies=authorized)
        app.include_router(page_router())  # no token: the page holds no data, the API does
    install_error_handlers(app)
    return app


def member_to_json(member: Member) -> dict[str, Any]:
    return {
        **node_info_to_map(member.info),
        "status": member.status.value,
        "last_seen": datetime.fromtimestamp(member.last_seen, UTC).isoformat(
            timespec="microseconds"
        ),
        "seq": member.seq,
        "self": member.is_self,
    }
