"""The basic-class content properties an RPC is paired by: correlation-id and reply-to.

A content header frame (AMQP 0-9-1 section 4.2.6.1) carries, after class id, weight and body
size, a 16-bit property-flags word (more words follow while bit 0 is set) and the present
properties in the class's order.  For class ``basic`` (60) that order is content-type,
content-encoding, headers, delivery-mode, priority, correlation-id, reply-to, expiration,
message-id, ... (the spec's class definition), flagged from bit 15 down.  Only what pairs a
request with its reply is read; the headers table is skipped by its length, never parsed.

Everything here is bytes a stranger sent: every length is checked against the frame's end, and a
property list that does not fit gives no properties rather than an exception.
"""

from __future__ import annotations

from typing import NamedTuple

BASIC_CLASS = 60
#: flag bits of the properties before reply-to, in order, and how each is encoded
_SHORTSTR, _TABLE, _OCTET = 0, 1, 2
_LAYOUT = (
    (15, _SHORTSTR),  # content-type
    (14, _SHORTSTR),  # content-encoding
    (13, _TABLE),  # headers
    (12, _OCTET),  # delivery-mode
    (11, _OCTET),  # priority
    (10, _SHORTSTR),  # correlation-id
    (9, _SHORTSTR),  # reply-to
)
_CORRELATION_ID_BIT = 10
_REPLY_TO_BIT = 9
#: Most messages name neither: their flags say so, and nothing is walked (this runs per message).
_RPC_FLAGS = (1 << _CORRELATION_ID_BIT) | (1 << _REPLY_TO_BIT)


class RpcProperties(NamedTuple):
    """What a message says about the call it belongs to ("" when absent)."""

    correlation_id: str
    reply_to: str


_NONE = RpcProperties("", "")


def _text(raw: bytes) -> str:
    # A shortstr is any octets; kept reversible and printable as data, escaped by every writer.
    return raw.decode("utf-8", "backslashreplace")


def rpc_properties(frame: bytes | bytearray | memoryview, pos: int, end: int) -> RpcProperties:
    """The correlation-id and reply-to of the content header whose payload is
    ``frame[pos:end]`` (class id first); empty ones when absent, malformed or not ``basic``."""
    if end - pos < 14 or int.from_bytes(frame[pos : pos + 2], "big") != BASIC_CLASS:
        return _NONE
    flags = int.from_bytes(frame[pos + 12 : pos + 14], "big")
    if not flags & _RPC_FLAGS:
        return _NONE
    at = pos + 14
    if flags & 1:  # a continuation word: only properties past the fifteenth use it
        return _NONE if at + 2 > end else _walk(frame, flags, at + 2, end)
    return _walk(frame, flags, at, end)


def _walk(frame: bytes | bytearray | memoryview, flags: int, at: int, end: int) -> RpcProperties:
    found = {_CORRELATION_ID_BIT: "", _REPLY_TO_BIT: ""}
    for bit, kind in _LAYOUT:
        if not flags & (1 << bit):
            continue
        if kind == _OCTET:
            at += 1
            continue
        width = 1 if kind == _SHORTSTR else 4
        if at + width > end:
            return _NONE
        size = int.from_bytes(frame[at : at + width], "big")
        at += width
        if at + size > end:
            return _NONE
        if bit in found:
            found[bit] = _text(bytes(frame[at : at + size]))
        at += size
    if at > end:
        return _NONE
    return RpcProperties(found[_CORRELATION_ID_BIT], found[_REPLY_TO_BIT])
