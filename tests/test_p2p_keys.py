"""Key files: the node identity survives restarts; swarm keys parse or fail in one line."""

from __future__ import annotations

import pytest
from libp2p.peer.id import ID

from swarm.errors import ConfigError
from swarm.p2p.keys import load_or_create_identity, load_swarm_key, parse_swarm_key

HEX = "a1" * 32


def peer_id(key_pair) -> ID:
    return ID.from_pubkey(key_pair.public_key)


def test_identity_is_created_once_and_kept(tmp_path):
    path = tmp_path / "node.key"
    first = load_or_create_identity(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert peer_id(load_or_create_identity(path)) == peer_id(first)


def test_a_corrupt_key_file_is_a_config_error(tmp_path):
    path = tmp_path / "node.key"
    path.write_bytes(b"not a key")
    with pytest.raises(ConfigError, match="not a libp2p private key"):
        load_or_create_identity(path)


def test_an_unreadable_key_file_is_a_config_error(tmp_path):
    path = tmp_path / "node.key"
    path.mkdir()  # unreadable as a file, even for root
    with pytest.raises(ConfigError, match="cannot read the node key"):
        load_or_create_identity(path)


@pytest.mark.parametrize(
    "text",
    [
        f"/key/swarm/psk/1.0.0/\n/base16/\n{HEX}\n",
        f"/key/swarm/psk/1.0.0/\r\n/base16/\r\n{HEX.upper()}",
        f"{HEX}\n",
    ],
)
def test_swarm_key_formats(text):
    key = parse_swarm_key(text)
    assert key.psk_hex == HEX
    assert len(key.fingerprint) == 16 and HEX not in key.fingerprint


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "64 hex digits"),
        (f"/key/swarm/psk/1.0.0/\n/base64/\n{HEX}", "/base16/"),
        ("zz" * 32, "not hexadecimal"),
        ("a1" * 16, "16 bytes"),
        (f"{HEX}\n{HEX}", "64 hex digits"),
    ],
)
def test_bad_swarm_keys(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_swarm_key(text)


def test_missing_swarm_key_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read swarm key file"):
        load_swarm_key(tmp_path / "absent.key")
