"""Three `swarm serve` processes in a chain (B peers A, C peers B), with default timings.

Each lists all three as healthy within 5 s; after `kill -9` of A the others show it
unhealthy, then lost, within 20 s; A restarted with the same home (and port) comes back
with the same peer id and is healthy again everywhere.
"""

from __future__ import annotations

import signal
import time


def poll(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"not within {timeout}s: {what}")


def all_healthy(nodes, peer_ids) -> bool:
    expected = dict.fromkeys(peer_ids, "healthy")
    return all(node.statuses() == expected for node in nodes)


def test_three_node_chain_membership_kill_and_restart(serve):
    a = serve("a")
    b = serve("b", "--peer", a.address)
    c = serve("c", "--peer", b.address)
    peer_ids = {a.peer_id, b.peer_id, c.peer_id}
    assert len(peer_ids) == 3

    poll(lambda: all_healthy((a, b, c), peer_ids), 5, "every node lists all three healthy")
    assert [n["name"] for n in c.nodes()] == ["c", "a", "b"]  # this node first, then by name

    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    killed = time.monotonic()
    first_seen: dict[tuple[str, str], float] = {}

    def a_lost_everywhere() -> bool:
        for name, node in (("b", b), ("c", c)):
            status = node.statuses().get(a.peer_id)
            first_seen.setdefault((name, status), time.monotonic() - killed)
        return all((name, "lost") in first_seen for name in ("b", "c"))

    poll(a_lost_everywhere, 20, "b and c see a lost", interval=0.2)
    for name in ("b", "c"):
        assert first_seen[(name, "unhealthy")] < first_seen[(name, "lost")] <= 20
        assert 5 <= first_seen[(name, "lost")]  # not before 15 s of silence (minus slack)
    assert b.statuses()[c.peer_id] == c.statuses()[b.peer_id] == "healthy"

    restarted = serve("a", swarm_port=a.swarm_port)
    assert restarted.peer_id == a.peer_id
    poll(lambda: all_healthy((restarted, b, c), peer_ids), 15, "a healthy again everywhere")
    for node in (b, c):
        assert node.stderr == []  # peers dying and coming back is not an error worth a line
