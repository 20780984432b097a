"""The codec is total: any bytes decode into a map or raise the one ProtocolError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm.errors import ProtocolError
from swarm.wire import FrameDecoder, frame, pack, unpack

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=20,
)
messages = st.dictionaries(st.text(), values, max_size=8)


@given(st.binary(max_size=2048))
def test_any_bytes_decode_or_raise_protocol_error(data):
    try:
        assert isinstance(unpack(data), dict)
    except ProtocolError:
        pass


@given(st.binary(max_size=4096))
def test_any_stream_bytes_frame_or_raise_protocol_error(data):
    decoder = FrameDecoder(max_frame=1024)
    try:
        for message in decoder.feed(data):
            assert isinstance(message, dict)
    except ProtocolError:
        pass


@given(st.lists(messages, max_size=5), st.integers(1, 64))
def test_frames_round_trip_whatever_the_chunking(batch, step):
    stream = b"".join(frame(m) for m in batch)
    decoder = FrameDecoder()
    out = []
    for i in range(0, len(stream), step):
        out.extend(decoder.feed(stream[i : i + step]))
    assert out == batch and decoder.pending == 0


@given(st.lists(messages, min_size=1, max_size=5), st.lists(st.integers(1, 300), max_size=40))
def test_frames_round_trip_over_uneven_pieces(batch, cuts):
    # Pieces that end inside a length prefix, inside a body, or after several frames.
    stream = b"".join(frame(m) for m in batch)
    decoder, out, pos = FrameDecoder(), [], 0
    for cut in cuts:
        out.extend(decoder.feed(stream[pos : pos + cut]))
        pos += cut
    out.extend(decoder.feed(stream[pos:]))
    assert out == batch and decoder.pending == 0


def test_oversized_frame_is_refused_before_buffering():
    decoder = FrameDecoder(max_frame=100)
    with pytest.raises(ProtocolError, match="exceeds"):
        decoder.feed((10_000).to_bytes(4, "big") + b"x")


@pytest.mark.parametrize(
    "data", [pack({"a": 1})[:-1], b"\x93\x01\x02\x03", b"\xc1", b"\xd4\x01\x00"]
)
def test_truncated_non_map_and_ext_payloads_are_protocol_errors(data):
    with pytest.raises(ProtocolError):
        unpack(data)
