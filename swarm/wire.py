"""msgpack codec and length-prefixed framing.

Everything that crosses a process or network boundary is a msgpack map. On streams each
message is one frame: a 4-byte big-endian length, then that many bytes of msgpack. A frame
longer than the reader's limit is refused before it is buffered, so a hostile peer cannot
make a node allocate more than ``max_frame`` bytes per stream.

Decoding is total: any bytes either decode into a ``dict`` or raise ``ProtocolError``.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from swarm.errors import ProtocolError

MAX_FRAME = 4 * 1024 * 1024
_LEN = struct.Struct(">I")


def pack(message: dict[str, Any]) -> bytes:
    """Encode one message as msgpack (bytes stay bytes, strings stay strings)."""
    return msgpack.packb(message, use_bin_type=True)


def unpack(data: bytes | memoryview, *, max_size: int = MAX_FRAME) -> dict[str, Any]:
    """Decode one msgpack map, or raise ProtocolError whatever the bytes are."""
    if len(data) > max_size:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the limit of {max_size}")
    try:
        message = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_str_len=max_size,
            max_bin_len=max_size,
            max_array_len=max_size,
            max_map_len=max_size,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises a zoo of types for bad input
        raise ProtocolError(f"undecodable message: {type(exc).__name__}: {exc}") from exc
    if not isinstance(message, dict):
        raise ProtocolError(f"message is a {type(message).__name__}, expected a map")
    return message


def frame(message: dict[str, Any]) -> bytes:
    """One length-prefixed frame holding ``message``."""
    body = pack(message)
    return _LEN.pack(len(body)) + body


class FrameDecoder:
    """Incremental frame reader: feed it bytes as they arrive, take whole messages out.

    Pure (no I/O): the same class serves pipes, sockets and libp2p streams.
    """

    def __init__(self, *, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add bytes; return every message now complete (possibly none).

        Whole frames are decoded straight out of ``data``; only an unfinished frame is
        kept (bodies of up to ``max_frame`` bytes are not copied on their way through).
        """
        buffer = self._buffer
        if buffer:
            buffer += data
            data = buffer
        messages = []
        pos, size = 0, len(data)
        with memoryview(data) as view:
            while size - pos >= _LEN.size:
                (length,) = _LEN.unpack_from(view, pos)
                if length > self.max_frame:
                    raise ProtocolError(
                        f"frame of {length} bytes exceeds the limit of {self.max_frame}"
                    )
                end = pos + _LEN.size + length
                if end > size:
                    break
                messages.append(unpack(view[pos + _LEN.size : end], max_size=self.max_frame))
                pos = end
            if data is not buffer:
                self._buffer = bytearray(view[pos:])
        if data is buffer and pos:
            del buffer[:pos]
        return messages

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return len(self._buffer)
