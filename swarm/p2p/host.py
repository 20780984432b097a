"""A py-libp2p 0.8.1 host with swarm's security and timing defaults.

What the library would otherwise do, and what this module does instead:

- It offers plaintext (and TLS, SECIO) besides Noise, so a peer could claim any peer id:
  only Noise is offered here, which authenticates the remote peer id.
- Every dial waits 251 ms for a "happy eyeballs" race that never ends early: the delay
  is set to 0 (dials drop to a few milliseconds).
- With a swarm key, the library's pnet wraps every raw TCP connection in a Salsa20
  stream keyed with the pre-shared key (a random 8-byte nonce per direction) before
  multistream-select and Noise run inside it. A peer without the key reads noise and
  sends noise, so it never completes protocol negotiation: it gets no connection, no
  stream and no gossip. The handshake of such a peer does not fail fast, it stalls
  until a timeout, so every dial here is bounded by ``DIAL_TIMEOUT``.
- It binds its listener with SO_REUSEPORT, so a second node on the same port would
  silently share it: callers must check the port is free first (see ``swarm.node``).
  And it leaves that listener open when the host stops: ``open_host`` closes it.
- After a failed dial it refuses to dial that peer again for 60 s: ``dial`` lifts that,
  as the bootstrap loop has its own backoff.
- Its yamux sends the peer a WINDOW_UPDATE frame after every read, however small, on top
  of its usual hysteresis (``PY_YAMUX_RELEASE_ON_READ``, on by default; go-yamux has no
  such thing). An idle node of a 10-node swarm received almost four frames per gossip
  message, three of them window updates; with this off (and the buffered gossip reader
  of ``swarm.p2p.gossip``) it receives 1.4.
- Its yamux reads its ``PY_YAMUX_*`` tuning variables from the environment at every
  read (four or five ``os.getenv`` per gossip RPC received, about 5 % of an idle node's
  CPU in a 20-node swarm): each is read once, at its first use.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import libp2p.network.swarm as _libp2p_swarm
import libp2p.stream_muxer.yamux.yamux as _libp2p_yamux
import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.utils.address_validation import expand_wildcard_address

from swarm.errors import ConfigError
from swarm.p2p.keys import SwarmKey

_libp2p_swarm._HAPPY_EYEBALLS_DELAY = 0
_libp2p_yamux._yamux_release_on_read = lambda: False
_libp2p_yamux._py_yamux_env = functools.cache(_libp2p_yamux._py_yamux_env)
_libp2p_yamux._py_yamux_env_set = functools.cache(_libp2p_yamux._py_yamux_env_set)

DIAL_TIMEOUT = 5.0


def noise_only(key_pair: KeyPair) -> dict:
    """Security options offering Noise and nothing else."""
    return {
        NOISE_PROTOCOL_ID: NoiseTransport(
            key_pair, noise_privkey=create_x25519_key_pair().private_key
        )
    }


@asynccontextmanager
async def open_host(
    *, key_pair: KeyPair, host: str, port: int, swarm_key: SwarmKey | None = None
) -> AsyncIterator[IHost]:
    """A running host listening on ``host:port`` (TCP)."""
    listen = multiaddr.Multiaddr(f"/ip4/{host}/tcp/{port}")
    libp2p_host = new_host(
        key_pair=key_pair,
        sec_opt=noise_only(key_pair),
        psk=swarm_key.psk_hex if swarm_key else None,
        listen_addrs=[listen],
    )
    async with libp2p_host.run(listen_addrs=[listen]):
        try:
            if not libp2p_host.get_transport_addrs():  # the library logs the failure, goes on
                raise ConfigError(f"cannot listen on {host}:{port} for the swarm")
            yield libp2p_host
        finally:
            # Stopping the host leaves its TCP listeners accepting: close them ourselves.
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                for listener in libp2p_host.get_network().listeners.values():
                    await listener.close()


def listen_addresses(host: IHost) -> list[str]:
    """Full multiaddrs (ending in /p2p/<id>) the host can be reached at.

    A wildcard listener (0.0.0.0) is expanded into this machine's interface addresses.
    """
    peer_part = f"/p2p/{host.get_id()}"
    addresses: list[str] = []
    for addr in host.get_transport_addrs():
        for concrete in expand_wildcard_address(addr):
            text = str(concrete) + peer_part
            if text not in addresses:
                addresses.append(text)
    return addresses


async def dial(host: IHost, address: str, timeout: float = DIAL_TIMEOUT) -> None:
    """Connect to the peer at ``address`` (a multiaddr ending in /p2p/<id>).

    Raises libp2p's errors or ``trio.TooSlowError``; callers retry with their own backoff,
    so the library's 60 s "recently failed" cache for the peer is cleared first.
    """
    info = info_from_p2p_addr(multiaddr.Multiaddr(address))
    host.get_network().unblock_peer(info.peer_id)
    with trio.fail_after(timeout):
        await host.connect(info)
