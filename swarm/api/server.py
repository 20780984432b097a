"""Serving the API with hypercorn's trio worker, inside the node's own trio loop."""

from __future__ import annotations

from functools import partial

import trio
from fastapi import FastAPI
from hypercorn.config import Config
from hypercorn.trio import serve

from swarm.api import hypercorn_tuning


async def serve_api(
    app: FastAPI, host: str, port: int, *, task_status=trio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled; ``started()`` hands back the real port.

    The caller checks that the port is free first (a bind error inside hypercorn
    surfaces as a nested exception group, not as a message a user can act on).
    """
    hypercorn_tuning.install()
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.errorlog = None  # the node prints its own banner; no hypercorn log lines
    config.accesslog = None
    config.graceful_timeout = 0.5  # shutdown must finish within 2 s

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(serve, app, config, shutdown_trigger=trio.sleep_forever)
        )
        task_status.started(int(binds[0].rsplit(":", 1)[1]))
