"""The requester's queue: jobs no node could take yet, and when to try them again.

A job waits here, oldest first, with the deadline its queue timeout sets (none when it
only waits for a busy node) and the reasons of its last round. A job handed out for a
round in which a node it fits was only busy comes back to its own place in the line:
under load many rounds find every node busy, and a job sent to the back each time could
wait for the whole line again and again. A job that no node could take at all (its
constraints, or no answer) goes to the back, so that it does not hold up the jobs behind
it while it waits for a node that may never come.

Trying again is worth it when room appeared: an execution ended (``freed``) or a compute
node joined (``joined``); ``next_batch`` hands out that many jobs (at least one, so a
periodic look still makes progress), and the requester asks again at once while rounds
succeed. Room on a known node goes to the oldest job that node has not declined as
*unfit* (``take_for``): a job at the front that only a busy node can run (say, the one GPU
node) must not hold up the jobs behind it that the free node can.

Pure bookkeeping: no clock (the caller passes ``now``) and no I/O; ``wake`` is the one
trio object, the event the requester's loop waits on.
"""

from __future__ import annotations

import heapq
import itertools
import math

import trio


class JobQueue:
    def __init__(self) -> None:
        self._deadlines: dict[str, float] = {}  # job id → when its queue timeout ends
        self._places: dict[str, int] = {}  # job id → its place in line, kept until it ends
        self._line: list[tuple[int, str]] = []  # heap of (place, job id); stale entries skipped
        self._counter = itertools.count()
        self._reasons: dict[str, str] = {}  # job id → why its last round placed nothing
        self._freed = 0
        self._peers: set[str] = set()
        self._unfit: dict[str, set[str]] = {}  # job id → nodes that cannot take it
        self.wake = trio.Event()

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._deadlines

    def __len__(self) -> int:
        return len(self._deadlines)

    def add(
        self, job_id: str, *, deadline: float = math.inf, reason: str = "", back: bool = False
    ) -> None:
        """Queue a job (again): at the place it had before, or at the ``back`` of the line."""
        if job_id not in self._deadlines:
            self._deadlines[job_id] = deadline
            if back or job_id not in self._places:
                self._places[job_id] = next(self._counter)
            heapq.heappush(self._line, (self._places[job_id], job_id))
        if reason:
            self._reasons[job_id] = reason

    def oldest(self) -> str | None:
        """The job first in line (it stays in the queue)."""
        while self._line:
            place, job_id = self._line[0]
            if job_id in self._deadlines and self._places[job_id] == place:
                return job_id
            heapq.heappop(self._line)  # stale
        return None

    def oldest_for(self, node: str, *, scan: int = 64) -> str | None:
        """The first job in line that ``node`` has not declined as unfit, among the first
        ``scan`` (it stays in the queue)."""
        job_id = self.oldest()
        if job_id is None or node not in self._unfit.get(job_id, ()):
            return job_id
        for place, job_id in heapq.nsmallest(scan, self._line):  # (only past an unfit front)
            live = job_id in self._deadlines and self._places[job_id] == place
            if live and node not in self._unfit.get(job_id, ()):
                return job_id
        return None

    def take_for(self, node: str) -> str | None:
        """``oldest_for(node)``, removed from the queue, for room freed on ``node`` (it
        uses up that room's share of ``next_batch``)."""
        job_id = self.oldest_for(node)
        if job_id is not None:
            del self._deadlines[job_id]
            self._freed = max(0, self._freed - 1)
        return job_id

    def remove(self, job_id: str) -> None:
        self._deadlines.pop(job_id, None)

    def forget(self, job_id: str) -> None:
        """The job has ended: nothing of it stays."""
        self._deadlines.pop(job_id, None)
        self._reasons.pop(job_id, None)
        self._places.pop(job_id, None)
        self._unfit.pop(job_id, None)

    def unfit(self, job_id: str, node: str) -> None:
        """``node`` declined ``job_id`` for a reason other than being busy (kept until the
        job ends; a node that changed still hears of the job in the periodic rounds)."""
        self._unfit.setdefault(job_id, set()).add(node)

    def reason(self, job_id: str) -> str:
        return self._reasons.get(job_id, "")

    def freed(self) -> None:
        """Room appeared (an execution ended): wake the loop."""
        self._freed += 1
        self.wake.set()

    def expired(self, now: float) -> list[str]:
        """Jobs whose queue timeout has passed, removed from the queue."""
        gone = [job_id for job_id, deadline in self._deadlines.items() if now >= deadline]
        for job_id in gone:
            del self._deadlines[job_id]
        return gone

    def next_batch(self, peers: set[str], limit: int, *, at_least: int = 1) -> list[str]:
        """The oldest jobs to announce again, removed from the queue: as many as there is
        new room for (executions ended, compute nodes joined), at least ``at_least``."""
        joined, self._peers = peers - self._peers, peers
        budget = min(max(at_least, self._freed + len(joined)), limit)
        self._freed = 0
        batch: list[str] = []
        while self._line and len(batch) < budget:
            place, job_id = heapq.heappop(self._line)
            if job_id in self._deadlines and self._places[job_id] == place:  # else: stale
                del self._deadlines[job_id]
                batch.append(job_id)
        return batch

    def rewake(self) -> trio.Event:
        """A fresh event to wait on (the loop calls this each time it wakes)."""
        self.wake = trio.Event()
        return self.wake
