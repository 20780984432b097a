"""Key material: the node's identity (`node.key`) and the private-swarm key.

The identity is an Ed25519 key pair in libp2p's protobuf encoding; the peer id is derived
from it, so keeping the file keeps the peer id across restarts.

The swarm key uses go-libp2p/IPFS's `swarm.key` format::

    /key/swarm/psk/1.0.0/
    /base16/
    <64 hex digits>

A bare line of 64 hex digits is accepted too. Nodes that share the key can connect;
everything on their connections is encrypted with it before the Noise handshake even
starts (libp2p "pnet", see ``swarm.p2p.host``), so a peer without it cannot complete a
connection, let alone open a stream or publish.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.identity_utils import load_identity, save_identity

from swarm.errors import ConfigError

SWARM_KEY_HEADER = "/key/swarm/psk/1.0.0/"


def load_or_create_identity(path: Path) -> KeyPair:
    """The key pair in ``path``, or a new one saved there (0600) if the file is absent."""
    if not path.exists():
        key_pair = create_new_key_pair()
        try:
            save_identity(key_pair, path)
        except OSError as exc:
            raise ConfigError(f"cannot write the node key {path}: {exc.strerror}") from exc
        return key_pair
    try:
        return load_identity(path)
    except OSError as exc:
        raise ConfigError(f"cannot read the node key {path}: {exc.strerror}") from exc
    except Exception as exc:  # protobuf/crypto raise assorted types for a bad file
        raise ConfigError(
            f"{path} is not a libp2p private key: move it away to start with a new identity"
        ) from exc


@dataclass(frozen=True)
class SwarmKey:
    """A 32-byte pre-shared key that closes a swarm to everyone who lacks it."""

    secret: bytes

    @property
    def psk_hex(self) -> str:
        """The form py-libp2p's pnet takes."""
        return self.secret.hex()

    @property
    def fingerprint(self) -> str:
        """A short public name for the key (safe to show and to announce on mDNS)."""
        return hashlib.sha256(b"swarm-key-fingerprint:" + self.secret).hexdigest()[:16]


def parse_swarm_key(text: str) -> SwarmKey:
    """Read the text of a swarm key file; raise ConfigError if it is not one."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines and lines[0] == SWARM_KEY_HEADER:
        if len(lines) != 3 or lines[1] != "/base16/":
            raise ConfigError(
                "swarm key: after /key/swarm/psk/1.0.0/ expected /base16/ and 64 hex digits"
            )
        lines = lines[2:]
    if len(lines) != 1:
        raise ConfigError("swarm key: expected 64 hex digits (a 32-byte key)")
    try:
        secret = bytes.fromhex(lines[0])
    except ValueError:
        raise ConfigError("swarm key: the key is not hexadecimal") from None
    if len(secret) != 32:
        raise ConfigError(f"swarm key: the key has {len(secret)} bytes, expected 32")
    return SwarmKey(secret)


def load_swarm_key(path: Path) -> SwarmKey:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read swarm key file {path}: {exc}") from exc
    try:
        return parse_swarm_key(text)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
