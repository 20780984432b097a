"""Advert codec: round trips, and any bytes decode or raise the one ProtocolError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm import wire
from swarm.errors import ProtocolError
from swarm.models import AllowedPath, Gpu, NodeInfo, Resources, Role
from swarm.p2p.adverts import (
    MAX_ADVERT_SIZE,
    Advert,
    decode_advert,
    encode_advert,
    node_info_to_map,
)

INFO = NodeInfo(
    peer_id="12D3KooWExample",
    name="edge-1",
    version="0.1.0",
    roles=(Role.COMPUTE, Role.REQUESTER),
    resources=Resources(
        cpu=8, memory=16 << 30, memory_free=9 << 30, gpus=(Gpu("NVIDIA A100", 40 << 30),)
    ),
    labels={"zone": "eu-west", "disk": "ssd"},
    allowed_paths=(AllowedPath("/data/*"), AllowedPath("/scratch", writable=True)),
    datasets=("logs", "sensors"),
    addresses=("/ip4/127.0.0.1/tcp/1235/p2p/12D3KooWExample",),
    heartbeat=2.0,
    running=1,
    queued=3,
)


def test_round_trip():
    advert = Advert(INFO, seq=1_800_000_000_000_000_000)
    assert decode_advert(encode_advert(advert)) == advert


def test_a_typical_advert_is_small():
    assert len(encode_advert(Advert(INFO, seq=1))) < 1024


def good_map() -> dict:
    return {"type": "node_info", "v": 1, "seq": 5, "node": node_info_to_map(INFO)}


def mutate(path: str, value):
    message = good_map()
    *parents, last = path.split(".")
    target = message
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return wire.pack(message)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("type", "job_announce"),
        ("v", 2),
        ("seq", 0),
        ("seq", -1),
        ("seq", True),
        ("seq", "5"),
        ("seq", 2**63),
        ("node", KeyError),
        ("node", []),
        ("node.peer_id", KeyError),
        ("node.peer_id", 42),
        ("node.name", "x" * 129),
        ("node.roles", []),
        ("node.roles", ["compute", "compute"]),
        ("node.roles", ["miner"]),
        ("node.labels", {"k": 1}),
        ("node.labels", {str(i): "v" for i in range(65)}),
        ("node.resources", KeyError),
        ("node.resources.cpu", -1),
        ("node.resources.cpu", 1.5),
        ("node.resources.memory", None),
        ("node.resources.gpus", [{"name": "x"}]),
        ("node.resources.gpus", ["x"]),
        ("node.allowed_paths", [{"path": "/x", "mode": "rwx"}]),
        ("node.allowed_paths", "/x"),
        ("node.datasets", ["ok", 3]),
        ("node.datasets", ["d"] * 257),
        ("node.addresses", [b"/ip4/1.2.3.4"]),
        ("node.heartbeat", 0.0),
        ("node.heartbeat", float("nan")),
        ("node.heartbeat", float("inf")),
        ("node.heartbeat", "2"),
        ("node.running", -3),
    ],
)
def test_invalid_fields_are_protocol_errors(path, value):
    with pytest.raises(ProtocolError):
        decode_advert(mutate(path, value))


def test_oversized_adverts_are_refused_before_decoding():
    huge = wire.pack({"type": "node_info", "pad": "x" * MAX_ADVERT_SIZE})
    with pytest.raises(ProtocolError, match="exceeds"):
        decode_advert(huge)


@given(st.binary(max_size=2048))
def test_any_bytes_decode_or_raise_protocol_error(data):
    try:
        assert isinstance(decode_advert(data), Advert)
    except ProtocolError:
        pass


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@given(
    st.sampled_from(["peer_id", "roles", "labels", "resources", "allowed_paths", "heartbeat"]),
    json_like,
)
def test_any_value_in_any_field_decodes_or_raises_protocol_error(key, value):
    message = good_map()
    message["node"][key] = value
    try:
        decode_advert(wire.pack(message))
    except ProtocolError:
        pass
