"""RFC 6455 frame headers: pure functions over bytes (no state, no events).

Section 5.2: two bytes (FIN, RSV1-3, opcode; MASK, 7-bit length), then a 16-bit (length 126) or
64-bit (length 127) extended length, then a 4-byte masking key when MASK is set, then the
payload.  ``read_header`` returns None while the header is incomplete and raises ``BadFrame``
for a header no endpoint may send.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from analyzer.errors import DecodeError

# Opcodes (section 5.2 and 11.8).
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DATA_OPCODES = frozenset({CONTINUATION, TEXT, BINARY})
CONTROL_OPCODES = frozenset({CLOSE, PING, PONG})
#: Section 5.5: control frames carry at most 125 bytes and are never fragmented.
MAX_CONTROL_PAYLOAD_BYTES = 125
#: Section 5.2: "the most significant bit MUST be 0" of the 64-bit length.
MAX_PAYLOAD_BYTES = (1 << 63) - 1
#: 2 + 8 (64-bit length) + 4 (masking key).
MAX_HEADER_BYTES = 14
MASKING_KEY_BYTES = 4

_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")


class BadFrame(DecodeError):
    """A frame header no endpoint may send; ``anomaly`` names how (``websocket.condition``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameHeader:
    """One frame's header (section 5.2)."""

    fin: bool
    #: RSV1: with permessage-deflate (RFC 7692) the message is compressed
    rsv1: bool
    opcode: int
    masked: bool
    #: bytes of the header, masking key included
    header_bytes: int
    payload_bytes: int


def read_header(buf: bytes | bytearray, pos: int = 0) -> FrameHeader | None:
    """The frame header at ``buf[pos:]``, None while it is incomplete."""
    if len(buf) - pos < 2:
        return None
    first, second = buf[pos], buf[pos + 1]
    opcode = first & 0x0F
    if opcode not in DATA_OPCODES and opcode not in CONTROL_OPCODES:
        raise BadFrame("websocket.bad_opcode", f"reserved opcode 0x{opcode:x}")
    masked = bool(second & 0x80)
    length = second & 0x7F
    at = pos + 2
    if length == 126:
        if len(buf) - at < 2:
            return None
        length = int(_U16.unpack_from(buf, at)[0])
        at += 2
    elif length == 127:
        if len(buf) - at < 8:
            return None
        length = int(_U64.unpack_from(buf, at)[0])
        at += 8
        if length > MAX_PAYLOAD_BYTES:
            raise BadFrame("websocket.bad_length", "64-bit length with its top bit set")
    if masked:
        at += MASKING_KEY_BYTES
    if len(buf) < at:
        return None
    fin = bool(first & 0x80)
    if opcode in CONTROL_OPCODES and (length > MAX_CONTROL_PAYLOAD_BYTES or not fin):
        raise BadFrame("websocket.bad_control_frame", f"opcode 0x{opcode:x}, {length} bytes")
    return FrameHeader(
        fin=fin,
        rsv1=bool(first & 0x40),
        opcode=opcode,
        masked=masked,
        header_bytes=at - pos,
        payload_bytes=length,
    )
