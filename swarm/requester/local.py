"""A hybrid node's compute role reaching its own requester: plain calls, no network.

The compute role talks to whoever awarded it an execution through a ``RequesterLink``
(``swarm.compute.service``); for the node's own jobs that is this class: the module is
copied from the requester's blob store (usually the very same store), and results go
straight into a ``ResultSession``.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from swarm.errors import SwarmError
from swarm.protocol import Award, ResultStart
from swarm.storage.blobs import BlobStore

if TYPE_CHECKING:
    from swarm.requester.service import RequesterService


class LocalLink:
    """A hybrid node's compute role reaching its own requester: plain calls."""

    def __init__(self, requester: RequesterService) -> None:
        self.requester = requester

    async def fetch_module(self, digest: str, blobs: BlobStore) -> None:
        if not blobs.has(digest):
            with self.requester.blobs.open(digest) as source, blobs.writer(digest) as writer:
                while chunk := source.read(1 << 20):
                    writer.write(chunk)
                writer.commit()

    @asynccontextmanager
    async def open_results(self, award: Award):
        start = ResultStart(award.job_id, award.execution_id)
        session = self.requester.open_session(self.requester.peer_id, start)
        try:
            yield session
        except BaseException as exc:
            reason = (
                str(exc) if isinstance(exc, SwarmError) else f"the run was interrupted: {exc!r}"
            )
            session.abort(reason[:300])
            raise
