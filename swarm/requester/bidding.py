"""Collecting the answers to one announce, and handing each bidder its reply.

A ``Bidding`` lives while a requester waits for answers to an announce: it knows which
compute nodes it expects to hear from (the healthy ones in the membership table), takes
every bid or decline as it arrives, and says when it has heard enough (``answered``): all
expected nodes, or a bid from the ``preferred`` node (the one whose room has just freed
up, offered to the oldest waiting job), so the requester need not wait out the whole bid
window. After the decision each bidder's
reply (an award or a reject) is handed to whoever is waiting for it: the bid stream's
handler for a remote node, the requester itself for its own compute role.
"""

from __future__ import annotations

from collections.abc import Iterable

import trio

from swarm.placement import Bid, Decline
from swarm.protocol import Award, Reject


class Bidding:
    def __init__(
        self,
        job_id: str,
        expected: Iterable[str],
        *,
        preferred: str | None = None,
        needs_data: bool = False,
    ) -> None:
        self.job_id = job_id
        self.expected = set(expected)
        self.preferred = preferred
        self.needs_data = needs_data  # the preferred node's bid counts if it holds the data
        self.answers: dict[str, Bid | Decline] = {}
        self.answered = trio.Event()
        self.preferred_answered = trio.Event()  # the preferred node's bid or decline is in
        self._replies: dict[str, Award | Reject] = {}
        self._decided = trio.Event()
        if not self.expected:
            self.answered.set()

    def answer(self, decision: Bid | Decline) -> None:
        """Record a node's answer; a node answers once (later answers are ignored)."""
        if decision.peer_id in self.answers or self._decided.is_set():
            return
        self.answers[decision.peer_id] = decision
        if decision.peer_id == self.preferred:
            self.preferred_answered.set()
        if self.expected <= self.answers.keys() or self._preferred_bid(decision):
            self.answered.set()

    def _preferred_bid(self, decision: Bid | Decline) -> bool:
        return (
            decision.peer_id == self.preferred
            and isinstance(decision, Bid)
            and (decision.has_data or not self.needs_data)
        )

    @property
    def bids(self) -> list[Bid]:
        return [a for a in self.answers.values() if isinstance(a, Bid)]

    @property
    def declines(self) -> list[Decline]:
        return [a for a in self.answers.values() if isinstance(a, Decline)]

    def decide(self, replies: dict[str, Award | Reject]) -> None:
        self._replies = replies
        self._decided.set()

    async def wait_decided(self) -> None:
        await self._decided.wait()

    def reply(self, peer_id: str) -> Award | Reject:
        """The reply addressed to ``peer_id`` once decided."""
        return self._replies.get(peer_id) or Reject(
            self.job_id, "bidding closed without a place for you"
        )

    async def reply_for(self, peer_id: str) -> Award | Reject:
        """Wait for the decision, then the reply addressed to ``peer_id``."""
        await self._decided.wait()
        return self.reply(peer_id)
