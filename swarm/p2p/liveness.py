"""Is the node running an execution still there? The requester's view of a peer.

A requester asks this about every node it awarded work to, a couple of times a second.
A node is gone for the execution when:

- the membership table no longer calls it healthy (it missed its heartbeats);
- its adverts say it started again since the award (a restart loses what it ran: its
  sandbox workers die with it);
- there has been no libp2p connection to it for ``disconnected_after`` seconds (a node
  that bid has dialled us; a connection that stays down means it is unreachable).

A result stream that breaks is noticed faster, where it happens (``sessions``).
"""

from __future__ import annotations

from collections.abc import Callable

from libp2p.abc import IHost
from libp2p.peer.id import ID

from swarm.models import NodeStatus
from swarm.p2p.membership import MembershipTable
from swarm.placement import short_peer_id

DISCONNECTED_AFTER = 3.0


class PeerLiveness:
    def __init__(
        self,
        *,
        host: IHost,
        table: MembershipTable,
        clock: Callable[[], float],
        disconnected_after: float = DISCONNECTED_AFTER,
    ) -> None:
        self._host = host
        self._table = table
        self._clock = clock
        self._disconnected_after = disconnected_after
        self._down_since: dict[str, float] = {}

    def boot(self, peer_id: str) -> float | None:
        """When the node last started, by its own adverts (None if it has not advertised)."""
        member = self._table.get(peer_id)
        return member.info.started if member is not None else None

    def problem(self, peer_id: str, boot_at_award: float | None) -> str | None:
        """Why the node can no longer be counted on, or None while it seems fine."""
        name = short_peer_id(peer_id)
        member = self._table.get(peer_id)
        if member is not None and member.status is not NodeStatus.HEALTHY:
            return f"node {name} stopped sending heartbeats ({member.status})"
        if (
            member is not None
            and boot_at_award is not None
            and member.info.started != boot_at_award
        ):
            return f"node {name} restarted"
        now = self._clock()
        if self._host.get_network().get_connections(ID.from_base58(peer_id)):
            self._down_since.pop(peer_id, None)
            return None
        since = self._down_since.setdefault(peer_id, now)
        if now - since >= self._disconnected_after:
            return f"node {name} has been unreachable for {now - since:.0f} s"
        return None

    def forget(self, peer_id: str) -> None:
        self._down_since.pop(peer_id, None)
