"""--mdns: two nodes that know nothing of each other find each other on the LAN.

Zeroconf binds every interface by default; the test keeps it on 127.0.0.1.
"""

from __future__ import annotations

import functools
from contextlib import AsyncExitStack

import libp2p.discovery.mdns.mdns as mdns_module
import trio
import zeroconf

from swarm.config import NodeConfig
from swarm.node import open_node


async def test_nodes_find_each_other_with_mdns(tmp_path, monkeypatch):
    monkeypatch.setattr(
        mdns_module, "Zeroconf", functools.partial(zeroconf.Zeroconf, interfaces=["127.0.0.1"])
    )
    key = tmp_path / "swarm.key"
    key.write_text(f"/key/swarm/psk/1.0.0/\n/base16/\n{'5a' * 32}\n")
    async with AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(
                open_node(
                    NodeConfig(
                        home=tmp_path / name,
                        name=name,
                        swarm_host="127.0.0.1",
                        swarm_port=0,
                        api_port=0,
                        gpus=0,
                        heartbeat=0.2,
                        mdns=True,
                        swarm_key=key,
                    )
                )
            )
            for name in ("a", "b")
        ]
        with trio.fail_after(10):
            while any(len(node.members()) < 2 for node in nodes):
                await trio.sleep(0.05)
        assert {m.info.name for m in nodes[0].members()} == {"a", "b"}
