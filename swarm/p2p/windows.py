"""Yamux receive-window rules for swarm's streams, in place of py-libp2p's.

py-libp2p 0.8.1's rule (``YamuxStream._auto_tune_and_send_window_update``) answers nearly
every read with a WINDOW_UPDATE frame: a yamux write, a Noise encryption and a socket
send here, and the peer's work to take it in, for each message read. ``use`` puts one of
two rules in its place, on one stream:

- ``release_at_half_window``, for gossip streams: updates the go-yamux way, once half
  the receive window has been read; the window stays at the library's 256 KiB, far
  beyond what gossip needs in flight;
- ``release_in_batches``, for the job protocols' streams: reads are handed to the
  library's rule as one read once they add up to ``RELEASE_BATCH``; large reads (a bulk
  transfer) go straight through, so its window still grows. The window is at least
  256 KiB, so a peer never waits for the bytes held back.
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Callable

from libp2p.abc import INetStream
from libp2p.stream_muxer.yamux.yamux import YamuxStream

RELEASE_BATCH = 32 * 1024  # bytes read before the peer is told it may send more

Rule = Callable[..., Awaitable[None]]


def use(stream: INetStream, rule: Rule) -> None:
    """Make ``rule`` decide ``stream``'s window updates (a no-op on other muxers)."""
    muxed = getattr(stream, "muxed_stream", None)
    if isinstance(muxed, YamuxStream):
        muxed._auto_tune_and_send_window_update = types.MethodType(rule, muxed)  # type: ignore[method-assign]


async def release_at_half_window(self: YamuxStream, *, bytes_read: int = 0) -> None:
    async with self.window_lock:
        self._pending_recv_release += bytes_read
        release = self._pending_recv_release
        if release < self.target_recv_window // 2:
            return
        self._pending_recv_release = 0
        self.recv_window += release
    await self.send_window_update(release, skip_lock=True)


async def release_in_batches(self: YamuxStream, *, bytes_read: int = 0) -> None:
    held = getattr(self, "_swarm_unreleased", 0) + bytes_read
    if held < RELEASE_BATCH:
        self._swarm_unreleased = held
        return
    self._swarm_unreleased = 0
    await YamuxStream._auto_tune_and_send_window_update(self, bytes_read=held)
