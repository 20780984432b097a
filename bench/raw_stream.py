"""Baseline for result streaming: a raw libp2p stream between two processes on this host.

`python bench/raw_stream.py` prints MB/s for 100 MiB sent in 1 MiB writes over one stream,
with the same host setup swarm uses (Noise, yamux, TCP on 127.0.0.1), read as swarm's
framed streams read (``READ_SIZE`` at a time), with the C allocator set as `swarm serve`
sets it (``swarm.allocator``). `bench/jobs.py`
takes single transfers from a ``RawStream`` between its own, so both figures are measured
in the same minutes.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import multiaddr
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from swarm.allocator import keep_freed_memory  # noqa: E402
from swarm.p2p.host import listen_addresses, open_host  # noqa: E402
from swarm.p2p.streams import READ_SIZE  # noqa: E402

PROTOCOL = TProtocol("/swarm-bench/raw/1.0.0")
SIZE = 100 * 1024 * 1024
CHUNK = 1024 * 1024


async def serve() -> None:
    async with open_host(key_pair=create_new_key_pair(), host="127.0.0.1", port=0) as host:

        async def sink(stream) -> None:
            got = 0
            while got < SIZE:
                data = await stream.read(READ_SIZE)
                if not data:
                    break
                got += len(data)
            await stream.write(got.to_bytes(8, "big"))
            await stream.close()

        host.set_stream_handler(PROTOCOL, sink)
        print(listen_addresses(host)[0], flush=True)
        await trio.sleep_forever()


class RawStream:
    """A sender host in this process, connected to a sink host in another, kept open so
    that single transfers can be taken between other measurements (``transfer``)."""

    def __enter__(self) -> RawStream:
        keep_freed_memory()  # as `swarm serve` does, in both processes of the raw stream
        self._server = subprocess.Popen(
            [sys.executable, __file__, "serve"], stdout=subprocess.PIPE, text=True
        )
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        address = self._server.stdout.readline().strip()
        self._thread = threading.Thread(target=self._run, args=(address,), daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failed is not None:
            self.__exit__()
            raise RuntimeError(f"raw stream: could not connect to {address!r}") from self._failed
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._thread.is_alive() and self._failed is None:
            trio.from_thread.run_sync(self._stop.cancel, trio_token=self._token)
        self._thread.join()
        self._server.kill()
        self._server.wait()

    def transfer(self) -> float:
        """MB/s of one 100 MiB transfer in 1 MiB writes on a new stream."""
        return trio.from_thread.run(self._transfer, trio_token=self._token)

    def _run(self, address: str) -> None:
        try:
            trio.run(self._main, address)
        except BaseException as exc:  # noqa: BLE001 (reported by __enter__)
            self._failed = exc
            self._ready.set()

    async def _main(self, address: str) -> None:
        async with open_host(key_pair=create_new_key_pair(), host="127.0.0.1", port=0) as host:
            self._info = info_from_p2p_addr(multiaddr.Multiaddr(address))
            await host.connect(self._info)
            self._host = host
            self._block = bytes(range(256)) * (CHUNK // 256)
            self._token = trio.lowlevel.current_trio_token()
            with trio.CancelScope() as self._stop:
                self._ready.set()
                await trio.sleep_forever()

    async def _transfer(self) -> float:
        stream = await self._host.new_stream(self._info.peer_id, [PROTOCOL])
        t0 = time.perf_counter()
        for _ in range(SIZE // CHUNK):
            await stream.write(self._block)
        reply = await stream.read(8)
        rate = SIZE / (time.perf_counter() - t0) / 1e6
        assert int.from_bytes(reply, "big") == SIZE
        await stream.close()
        return rate


def measure() -> float:
    """Median MB/s of three 100 MiB transfers (after one to warm up) to another process."""
    with RawStream() as raw:
        raw.transfer()
        return statistics.median(raw.transfer() for _ in range(3))


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        keep_freed_memory()
        trio.run(serve)
    else:
        print(f"raw libp2p stream: {measure():.1f} MB/s (100 MiB, 1 MiB writes)")
