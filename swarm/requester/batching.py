"""Announces made at the same moment travel together, in one signed gossip message.

Every placement round publishes its job's announce. A burst of rounds (a burst of
submits, or queued jobs let go as room frees up) would cost one signed gossip message
per job, and one answer exchange per job from every compute node. ``AnnounceBatcher``
sends from one task: it wakes when an announce is waiting, yields once so that every
round reaching its publish in the same pass of the scheduler joins, and sends what has
gathered (at most ``MAX_BATCH`` announces and half gossip's size limit per message).
While a message is being sent, the next one gathers. A lone job goes out alone, with no
added wait.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from swarm import schema
from swarm.protocol import MAX_ANNOUNCES, MAX_BATCH, JobAnnounce, JobAnnounces

logger = logging.getLogger(__name__)


@dataclass
class _Waiting:
    announce: JobAnnounce
    size: int
    sent: trio.Event = field(default_factory=trio.Event)


class AnnounceBatcher:
    def __init__(
        self,
        send: Callable[[JobAnnounces], Awaitable[None]],
        *,
        max_batch: int = MAX_BATCH,
        max_bytes: int = MAX_ANNOUNCES // 2,  # the rest is room for the message's framing
    ) -> None:
        self._send = send
        self._max_batch = max_batch
        self._max_bytes = max_bytes
        self._waiting: list[_Waiting] = []
        self._wake = trio.Event()
        self.messages_sent = 0

    async def publish(self, announce: JobAnnounce) -> None:
        """Returns once the message holding ``announce`` has gone out (or failed to: the
        round then hears nothing and waits out its bid window, as for a lost message)."""
        waiting = _Waiting(announce, len(schema.encode(announce)))
        self._waiting.append(waiting)
        self._wake.set()
        await waiting.sent.wait()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            await trio.lowlevel.checkpoint()  # the rounds of this pass join the batch
            while self._waiting:
                batch = self._take()
                try:
                    await self._send(JobAnnounces(tuple(w.announce for w in batch)))
                    self.messages_sent += 1
                except Exception:
                    logger.warning("an announce message could not be sent", exc_info=True)
                finally:
                    for waiting in batch:
                        waiting.sent.set()

    def _take(self) -> list[_Waiting]:
        batch, size = [], 0
        while self._waiting and len(batch) < self._max_batch:
            if batch and size + self._waiting[0].size > self._max_bytes:
                break
            waiting = self._waiting.pop(0)
            batch.append(waiting)
            size += waiting.size
        return batch
