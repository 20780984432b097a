"""Reading a job's stdout and stderr while it grows: what `swarm logs [--follow]` shows.

The result store is the one source: each execution's stdout and stderr files are read
from the offset reached so far, so a reader misses nothing and sees nothing twice, however
far it falls behind (no buffer of chunks to overflow). Following waits on the
requester's log event, set whenever a chunk of the job arrives or the job ends, and stops
once the job has ended and everything written has been read. An execution whose node was
lost has its partial output removed (a retry starts afresh); what was read of it before
stays read.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator
from dataclasses import dataclass

import trio

from swarm.errors import NotFound
from swarm.requester.results import STREAMS
from swarm.requester.service import RequesterService

POLL = 1.0  # seconds between looks even without an event (new executions, a lost node)
CHUNK = 256 * 1024


@dataclass(frozen=True)
class LogChunk:
    execution_id: str
    node_id: str
    stream: str  # "stdout" | "stderr"
    data: bytes


async def read_logs(
    requester: RequesterService, job_id: str, *, follow: bool
) -> AsyncIterator[LogChunk]:
    """Every chunk of the job's stdout/stderr so far, then (``follow``) as it comes."""
    job_id = requester.store.get_job(job_id).id
    offsets: dict[tuple[str, str], int] = {}
    while True:
        changed = requester.log_event(job_id)  # taken before reading: no wake-up is missed
        ended = requester.store.get_job(job_id).state.is_terminal
        for execution in requester.store.executions(job_id):
            for stream in STREAMS:
                key = (execution.id, stream)
                while True:
                    try:
                        data = requester.results.read(
                            job_id, execution.id, stream, offsets.get(key, 0), CHUNK
                        )
                    except NotFound:  # not started yet, or lost and removed
                        break
                    if not data:
                        break
                    offsets[key] = offsets.get(key, 0) + len(data)
                    yield LogChunk(execution.id, execution.node_id, stream, data)
        if ended or not follow:
            return
        with trio.move_on_after(POLL):
            await changed.wait()


class TextChunks:
    """Bytes chunks → text, per (execution, stream): a UTF-8 character split between two
    chunks is decoded whole; invalid bytes become U+FFFD."""

    def __init__(self) -> None:
        self._decoders: dict[tuple[str, str], codecs.IncrementalDecoder] = {}

    def decode(self, chunk: LogChunk) -> str:
        key = (chunk.execution_id, chunk.stream)
        decoder = self._decoders.get(key)
        if decoder is None:
            decoder = self._decoders[key] = codecs.getincrementaldecoder("utf-8")("replace")
        return decoder.decode(chunk.data)
