"""Why gossip messages are dropped, and how many were, by reason.

Dropping is the normal answer to a bad message: it is counted here (so tests and
operators can see it through ``GET /api/v1/agent``) and otherwise ignored.
"""

from __future__ import annotations

import enum
from collections import Counter


class DropReason(enum.StrEnum):
    FORGED = "forged"  # signature missing or wrong for the claimed author
    OVERSIZED = "oversized"  # larger than the topic's size cap
    MALFORMED = "malformed"  # not a valid message of the topic's schema
    AUTHOR_MISMATCH = "author_mismatch"  # signed by one peer, claims to describe another
    STALE = "stale"  # issued too long ago
    FUTURE = "future"  # issued too far in the future (clock skew or forgery)
    REPLAYED = "replayed"  # the very advert (same seq) already accepted from that node
    OUTDATED = "outdated"  # older than one already accepted: gossip delivered it late
    ERROR = "error"  # the gossip stack failed on it (library bug or hostile input)


class DropCounter:
    """Counts of dropped messages by reason."""

    def __init__(self) -> None:
        self._counts: Counter[DropReason] = Counter()

    def count(self, reason: DropReason) -> None:
        self._counts[reason] += 1

    def __getitem__(self, reason: DropReason) -> int:
        return self._counts[reason]

    def snapshot(self) -> dict[str, int]:
        """Every reason with its count (zeros included, so the shape is stable)."""
        return {reason.value: self._counts[reason] for reason in DropReason}
