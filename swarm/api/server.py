"""Serving the API inside the node's own trio loop (``swarm.api.http11``)."""

from __future__ import annotations

import trio
from fastapi import FastAPI

from swarm.api.http11 import serve_http


async def serve_api(
    app: FastAPI, host: str, port: int, *, task_status=trio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled; ``started()`` hands back the real port."""
    await serve_http(app, host, port, task_status=task_status)
