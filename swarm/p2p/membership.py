"""The membership table: who else is in the swarm, and are they alive.

How this works: every node publishes an advert every ``heartbeat`` seconds (its own
interval travels in the advert). The table remembers, per peer, the newest advert and
when it arrived. From the age of that arrival it derives the status: healthy; unhealthy
once ``missed_heartbeats`` heartbeats are overdue; lost after ``lost_after`` seconds, or
after two heartbeats more than that for a node whose heartbeat is so long that it would
otherwise go from healthy straight to lost (or be lost between two adverts); the row is
dropped after ``forget_after`` seconds (at least twice the time to lost).

Adverts not newer than the one held are refused: the same one again is ``replayed``, an
older one ``outdated`` (gossip reorders; a replayed old advert looks the same). So are
adverts issued more than ``max_age`` seconds before or after the table's clock. Because
``forget_after`` exceeds ``max_age``, a replay of a forgotten node's advert is too old to
bring it back.

Pure: the clock is injected, nothing here does I/O or knows about libp2p.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from swarm.config import (
    DEFAULT_FORGET_AFTER,
    DEFAULT_LOST_AFTER,
    MISSED_HEARTBEATS,
)
from swarm.models import Member, NodeInfo, NodeStatus
from swarm.p2p.adverts import Advert
from swarm.p2p.drops import DropReason

DEFAULT_MAX_AGE = 120.0


@dataclass
class _Row:
    info: NodeInfo
    seq: int
    last_seen: float


class MembershipTable:
    def __init__(
        self,
        *,
        self_info: NodeInfo,
        clock: Callable[[], float],
        missed_heartbeats: int = MISSED_HEARTBEATS,
        lost_after: float = DEFAULT_LOST_AFTER,
        forget_after: float = DEFAULT_FORGET_AFTER,
        max_age: float = DEFAULT_MAX_AGE,
    ) -> None:
        if not max_age < forget_after:
            raise ValueError("forget_after must exceed max_age, or replays could revive nodes")
        self._self = self_info
        self._clock = clock
        self._missed = missed_heartbeats
        self._lost_after = lost_after
        self._forget_after = forget_after
        self._max_age = max_age
        self._rows: dict[str, _Row] = {}

    @property
    def self_id(self) -> str:
        return self._self.peer_id

    def set_self(self, info: NodeInfo) -> None:
        """This node's own row (always healthy, never from gossip)."""
        self._self = info

    def check(self, advert: Advert) -> DropReason | None:
        """Why ``advert`` would be refused now, or None if it would be accepted."""
        now = self._clock()
        if advert.issued_at < now - self._max_age:
            return DropReason.STALE
        if advert.issued_at > now + self._max_age:
            return DropReason.FUTURE
        row = self._rows.get(advert.info.peer_id)
        if row is not None and advert.seq == row.seq:
            return DropReason.REPLAYED
        if row is not None and advert.seq < row.seq:
            # Normal under gossip (an IWANT answer can bring an advert after its successor),
            # and also what a replay of an old advert looks like: refused either way.
            return DropReason.OUTDATED
        return None

    def observe(self, advert: Advert) -> DropReason | None:
        """Record ``advert`` if it is acceptable; otherwise say why not and change nothing.

        The caller has checked that the advert's author is the peer it describes.
        """
        if advert.info.peer_id == self.self_id:
            return DropReason.REPLAYED  # our own advert echoed back: nothing new in it
        reason = self.check(advert)
        if reason is None:
            self._rows[advert.info.peer_id] = _Row(advert.info, advert.seq, self._clock())
        return reason

    def _lost_after_for(self, heartbeat: float) -> float:
        return max(self._lost_after, (self._missed + 2) * heartbeat)

    def _forgotten(self, row: _Row, now: float) -> bool:
        lost_after = self._lost_after_for(row.info.heartbeat)
        return now - row.last_seen > max(self._forget_after, 2 * lost_after)

    def _status(self, row_age: float, heartbeat: float) -> NodeStatus:
        if row_age > self._lost_after_for(heartbeat):
            return NodeStatus.LOST
        if row_age > self._missed * heartbeat:
            return NodeStatus.UNHEALTHY
        return NodeStatus.HEALTHY

    def members(self) -> list[Member]:
        """Every known node, this one first, then by name; forgotten ones are left out."""
        now = self._clock()
        members = [Member(self._self, NodeStatus.HEALTHY, now, seq=0, is_self=True)]
        others = [
            Member(
                row.info,
                self._status(now - row.last_seen, row.info.heartbeat),
                row.last_seen,
                row.seq,
            )
            for row in self._rows.values()
            if not self._forgotten(row, now)
        ]
        others.sort(key=lambda m: (m.info.name, m.info.peer_id))
        return members + others

    def get(self, peer_id: str) -> Member | None:
        return next((m for m in self.members() if m.info.peer_id == peer_id), None)

    def prune(self) -> list[str]:
        """Drop rows silent for longer than ``forget_after``; return their peer ids."""
        now = self._clock()
        gone = [pid for pid, row in self._rows.items() if self._forgotten(row, now)]
        for peer_id in gone:
            del self._rows[peer_id]
        return gone
