"""When a requester gives up on the node running an execution (on a fake clock and host)."""

from __future__ import annotations

from dataclasses import replace

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from swarm.p2p.adverts import Advert
from swarm.p2p.liveness import PeerLiveness
from swarm.p2p.membership import MembershipTable
from tests.test_membership import FakeClock, info

PEER = str(ID.from_pubkey(create_new_key_pair().public_key))
SHORT = f"{PEER[:6]}…{PEER[-6:]}"


class FakeNetwork:
    def __init__(self) -> None:
        self.connected: set[str] = {PEER}

    def get_connections(self, peer: ID) -> list[object]:
        return [object()] if str(peer) in self.connected else []


class FakeHost:
    def __init__(self) -> None:
        self.network = FakeNetwork()

    def get_network(self) -> FakeNetwork:
        return self.network


def setup(started: float = 100.0):
    clock = FakeClock()
    table = MembershipTable(self_info=info("me"), clock=clock)
    host = FakeHost()
    liveness = PeerLiveness(host=host, table=table, clock=clock, disconnected_after=3.0)

    def advertise(started: float = started) -> None:
        table.observe(Advert(replace(info(PEER), started=started), seq=int(clock.now * 1e9)))

    advertise()
    return clock, host, liveness, advertise


def test_a_healthy_connected_node_is_fine():
    clock, _host, liveness, advertise = setup()
    boot = liveness.boot(PEER)
    assert boot == 100.0
    for _ in range(10):
        clock.now += 1.9
        advertise()
        assert liveness.problem(PEER, boot) is None


def test_missed_heartbeats():
    clock, _host, liveness, _advertise = setup()
    clock.now += 6.1  # three 2 s heartbeats overdue
    assert liveness.problem(PEER, 100.0) == f"node {SHORT} stopped sending heartbeats (unhealthy)"


def test_a_restart_loses_what_the_node_ran():
    clock, _host, liveness, advertise = setup()
    clock.now += 1
    advertise(started=clock.now)
    assert liveness.problem(PEER, 100.0) == f"node {SHORT} restarted"


def test_unreachable_for_a_while():
    clock, host, liveness, advertise = setup()
    host.network.connected.clear()
    assert liveness.problem(PEER, 100.0) is None  # a blip is not a loss
    clock.now += 1.5
    advertise()
    assert liveness.problem(PEER, 100.0) is None
    host.network.connected.add(PEER)  # back again: the clock starts over
    assert liveness.problem(PEER, 100.0) is None
    host.network.connected.clear()
    assert liveness.problem(PEER, 100.0) is None
    clock.now += 3.0
    advertise()
    assert liveness.problem(PEER, 100.0) == f"node {SHORT} has been unreachable for 3 s"


def test_a_node_that_never_advertised_is_judged_by_its_connection():
    clock = FakeClock()
    table = MembershipTable(self_info=info("me"), clock=clock)
    host = FakeHost()
    liveness = PeerLiveness(host=host, table=table, clock=clock)
    assert liveness.boot(PEER) is None
    assert liveness.problem(PEER, None) is None
    host.network.connected.clear()
    liveness.problem(PEER, None)
    clock.now += 5
    assert "unreachable" in liveness.problem(PEER, None)
