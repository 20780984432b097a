"""Announces made at the same moment travel together, in one signed gossip message.

Every placement round publishes its job's announce. A burst of rounds (a burst of
submits, or queued jobs let go as room frees up) would cost one signed gossip message
per job, and one answer exchange per job from every compute node. ``AnnounceBatcher``
sends from one task: it wakes when an announce is waiting, yields once so that every
round reaching its publish in the same pass of the scheduler joins, and sends what has
gathered (at most ``MAX_BATCH`` announces and half gossip's size limit per message).
While a message is being sent, the next one gathers, and it goes out no sooner than
``min_gap`` after it: a busy requester sends at most one message per ``min_gap``, holding
what its rounds announce meanwhile (at most that long). A lone job, or the first after a
quiet moment, goes out at once.

Why wait at all: under a steady stream of submits rounds reach their publish one at a
time, so without it nearly every message held one announce (measured: 330 announces in
300 messages), and each message costs every compute node a gossip read, a forward, an
answers exchange and its reply (about ten libp2p frames across the swarm, each some
0.3 ms of CPU at both ends). With 10 ms the sustained benchmark's compute nodes spent
about half the CPU per job (7.9 -> 3.8 ms, alternating runs).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from swarm import schema
from swarm.protocol import MAX_ANNOUNCES, MAX_BATCH, JobAnnounce, JobAnnounces

logger = logging.getLogger(__name__)
MIN_GAP = 0.01  # seconds from one message to the next: a busy requester's gather time


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
        min_gap: float = MIN_GAP,
    ) -> None:
        self._send = send
        self._min_gap = min_gap
        self._sent_at = float("-inf")  # trio clock
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
                # Right after a message, the next gathers for the rest of ``min_gap``.
                await trio.sleep_until(self._sent_at + self._min_gap)
                self._sent_at = trio.current_time()
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
