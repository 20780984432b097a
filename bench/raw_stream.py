"""Baseline for result streaming: a raw libp2p stream between two processes on this host.

`python bench/raw_stream.py` prints MB/s for 100 MiB sent in 1 MiB writes over one stream,
with the same host setup swarm uses (Noise, yamux, TCP on 127.0.0.1). `bench/jobs.py`
calls ``measure()``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import multiaddr
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from swarm.p2p.host import listen_addresses, open_host  # noqa: E402

PROTOCOL = TProtocol("/swarm-bench/raw/1.0.0")
SIZE = 100 * 1024 * 1024
CHUNK = 1024 * 1024


async def serve() -> None:
    async with open_host(key_pair=create_new_key_pair(), host="127.0.0.1", port=0) as host:

        async def sink(stream) -> None:
            got = 0
            while got < SIZE:
                data = await stream.read(CHUNK)
                if not data:
                    break
                got += len(data)
            await stream.write(got.to_bytes(8, "big"))
            await stream.close()

        host.set_stream_handler(PROTOCOL, sink)
        print(listen_addresses(host)[0], flush=True)
        await trio.sleep_forever()


async def send(address: str) -> float:
    async with open_host(key_pair=create_new_key_pair(), host="127.0.0.1", port=0) as host:
        info = info_from_p2p_addr(multiaddr.Multiaddr(address))
        await host.connect(info)
        block = bytes(range(256)) * (CHUNK // 256)
        rates = []
        for _ in range(3):
            stream = await host.new_stream(info.peer_id, [PROTOCOL])
            t0 = time.perf_counter()
            for _ in range(SIZE // CHUNK):
                await stream.write(block)
            reply = await stream.read(8)
            rates.append(SIZE / (time.perf_counter() - t0) / 1e6)
            assert int.from_bytes(reply, "big") == SIZE
            await stream.close()
        return sorted(rates)[1]


def measure() -> float:
    """Median MB/s of three 100 MiB transfers to a server in another process."""
    server = subprocess.Popen(
        [sys.executable, __file__, "serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        address = server.stdout.readline().strip()
        return trio.run(send, address)
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        trio.run(serve)
    else:
        print(f"raw libp2p stream: {measure():.1f} MB/s (100 MiB, 1 MiB writes)")
