"""The membership table on a fake clock: liveness by age, freshness by sequence number."""

from __future__ import annotations

import pytest

from swarm.models import NodeInfo, NodeStatus, Resources, Role
from swarm.p2p.adverts import Advert
from swarm.p2p.drops import DropReason
from swarm.p2p.membership import MembershipTable

T0 = 1_800_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def info(peer_id: str, *, name: str | None = None, heartbeat: float = 2.0) -> NodeInfo:
    return NodeInfo(
        peer_id=peer_id,
        name=name or peer_id,
        version="0.1.0",
        roles=(Role.COMPUTE,),
        resources=Resources(cpu=2, memory=1 << 30, memory_free=1 << 29),
        heartbeat=heartbeat,
    )


def advert(peer_id: str, at: float, **kw) -> Advert:
    return Advert(info(peer_id, **kw), seq=int(at * 1e9))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def table(clock) -> MembershipTable:
    return MembershipTable(self_info=info("me"), clock=clock)


def statuses(table: MembershipTable) -> dict[str, NodeStatus]:
    return {m.info.peer_id: m.status for m in table.members()}


def test_self_is_listed_first_and_always_healthy(table, clock):
    assert table.observe(advert("b", clock.now)) is None
    clock.now += 1000
    members = table.members()
    assert members[0].info.peer_id == "me" and members[0].is_self
    assert members[0].status is NodeStatus.HEALTHY


@pytest.mark.parametrize(
    ("silent_for", "status"),
    [
        (0.0, NodeStatus.HEALTHY),
        (5.9, NodeStatus.HEALTHY),  # fewer than 3 heartbeats of 2 s missed
        (6.1, NodeStatus.UNHEALTHY),
        (15.0, NodeStatus.UNHEALTHY),
        (15.1, NodeStatus.LOST),
        (299.0, NodeStatus.LOST),
    ],
)
def test_status_follows_the_age_of_the_last_advert(table, clock, silent_for, status):
    table.observe(advert("b", clock.now))
    clock.now += silent_for
    assert statuses(table)["b"] is status


def test_unhealthy_threshold_uses_the_senders_own_heartbeat(table, clock):
    table.observe(advert("slow", clock.now, heartbeat=4.0))
    table.observe(advert("fast", clock.now, heartbeat=0.5))
    clock.now += 7
    assert statuses(table) == {
        "me": NodeStatus.HEALTHY,
        "slow": NodeStatus.HEALTHY,  # 3 x 4 s not yet missed
        "fast": NodeStatus.UNHEALTHY,
    }


def test_a_long_heartbeat_makes_a_node_unhealthy_before_lost(table, clock):
    # With --heartbeat 10, lost at 15 s would come before unhealthy (3 x 10 s) and after a
    # single late advert: such a node is lost two heartbeats after it turned unhealthy.
    table.observe(advert("slow", clock.now, heartbeat=10.0))
    for silent_for, status in (
        (29.0, NodeStatus.HEALTHY),
        (31.0, NodeStatus.UNHEALTHY),
        (49.0, NodeStatus.UNHEALTHY),
        (51.0, NodeStatus.LOST),
        (99.0, NodeStatus.LOST),
    ):
        clock.now = T0 + silent_for
        assert statuses(table)["slow"] is status, silent_for
    clock.now = T0 + 301  # forgotten after twice the time to lost, or 300 s if later
    assert "slow" not in statuses(table)


def test_a_node_with_the_longest_heartbeat_is_forgotten_only_long_after_lost(table, clock):
    table.observe(advert("slowest", clock.now, heartbeat=60.0))
    clock.now = T0 + 301
    assert statuses(table)["slowest"] is NodeStatus.LOST
    clock.now = T0 + 601
    assert "slowest" not in statuses(table)
    assert table.prune() == ["slowest"]


def test_lost_nodes_are_forgotten_after_a_while(table, clock):
    table.observe(advert("b", clock.now))
    clock.now += 301
    assert "b" not in statuses(table)
    assert table.prune() == ["b"]
    assert table.prune() == []


def test_a_new_advert_brings_a_lost_node_back(table, clock):
    table.observe(advert("b", clock.now))
    clock.now += 20
    assert statuses(table)["b"] is NodeStatus.LOST
    assert table.observe(advert("b", clock.now)) is None
    assert statuses(table)["b"] is NodeStatus.HEALTHY


@pytest.mark.parametrize(
    ("issued_offset", "reason"),
    [
        (-121.0, DropReason.STALE),
        (-119.0, None),
        (119.0, None),
        (121.0, DropReason.FUTURE),
    ],
)
def test_adverts_far_from_our_clock_are_refused(table, clock, issued_offset, reason):
    assert table.observe(advert("b", clock.now + issued_offset)) is reason
    assert ("b" in statuses(table)) is (reason is None)


def test_replays_and_older_adverts_are_refused_and_change_nothing(table, clock):
    first = advert("b", clock.now, name="first")
    assert table.observe(first) is None
    clock.now += 10
    assert table.observe(first) is DropReason.REPLAYED
    older = Advert(info("b", name="older"), seq=first.seq - 1)
    assert table.check(older) is DropReason.OUTDATED
    assert table.observe(older) is DropReason.OUTDATED
    member = table.get("b")
    assert member.info.name == "first"
    assert member.last_seen == T0  # the replay did not refresh it
    assert member.status is NodeStatus.UNHEALTHY


def test_a_replay_cannot_revive_a_forgotten_node(table, clock):
    old = advert("b", clock.now)
    table.observe(old)
    clock.now += 301
    table.prune()
    assert table.observe(old) is DropReason.STALE
    assert "b" not in statuses(table)


def test_a_restarted_node_is_accepted_with_its_newer_sequence(table, clock):
    table.observe(advert("b", clock.now, name="before"))
    clock.now += 17
    assert table.observe(advert("b", clock.now, name="after")) is None
    assert table.get("b").info.name == "after"


def test_check_does_not_record(table, clock):
    assert table.check(advert("b", clock.now)) is None
    assert "b" not in statuses(table)


def test_others_are_sorted_by_name(table, clock):
    for peer_id, name in (("p1", "zeta"), ("p2", "alpha"), ("p3", "mid")):
        table.observe(advert(peer_id, clock.now, name=name))
    assert [m.info.name for m in table.members()] == ["me", "alpha", "mid", "zeta"]


def test_forget_after_must_exceed_max_age(clock):
    with pytest.raises(ValueError):
        MembershipTable(self_info=info("me"), clock=clock, forget_after=60, max_age=120)
