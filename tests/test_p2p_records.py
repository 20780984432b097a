"""This node's signed peer record for gossip RPCs: made once per few seconds, not per RPC."""

from __future__ import annotations

import libp2p.pubsub.gossipsub as libp2p_gossipsub
import libp2p.pubsub.pubsub as libp2p_pubsub

import swarm.p2p.gossip  # noqa: F401  (installs the cache)
from swarm.p2p.records import CachedRecord


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_record_is_reused_until_refresh_then_asked_again():
    made = []

    def make(host):
        made.append(host)
        return f"record {len(made)}".encode(), True

    clock, host, other = Clock(), object(), object()
    cached = CachedRecord(make, refresh=5.0, clock=clock)
    assert cached(host) == (b"record 1", True)
    clock.now = 4.9
    assert cached(host) == (b"record 1", False)
    assert cached(other) == (b"record 2", True)  # per host
    clock.now = 5.0
    assert cached(host) == (b"record 3", True)
    assert made == [host, other, host]


def test_the_pubsub_modules_use_one_cache():
    assert isinstance(libp2p_pubsub.env_to_send_in_RPC, CachedRecord)
    assert libp2p_gossipsub.env_to_send_in_RPC is libp2p_pubsub.env_to_send_in_RPC
