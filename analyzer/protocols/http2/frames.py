"""HTTP/2 frame headers (RFC 9113 sections 4 and 6): types, flags, the rules a header must
keep, the bounds the decoder holds to, and the plausibility test resync uses."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Final

from analyzer.decoding.events import CONTROL, TEARDOWN

PROTOCOL: Final = "http2"

#: RFC 9113 section 3.4: the client connection preface.
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: RFC 9113 section 4.1: length (24 bits), type, flags, R + stream id (31 bits).
FRAME_HEADER_BYTES: Final = 9
_FRAME_HEADER = struct.Struct(">HBBBL")
_STREAM_ID_MASK: Final = 0x7FFFFFFF

# Frame types, RFC 9113 section 6.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
FRAME_NAMES: Final[dict[int, str]] = {
    DATA: "DATA",
    HEADERS: "HEADERS",
    PRIORITY: "PRIORITY",
    RST_STREAM: "RST_STREAM",
    SETTINGS: "SETTINGS",
    PUSH_PROMISE: "PUSH_PROMISE",
    PING: "PING",
    GOAWAY: "GOAWAY",
    WINDOW_UPDATE: "WINDOW_UPDATE",
    CONTINUATION: "CONTINUATION",
}

# Flags, RFC 9113 section 6 (END_STREAM and ACK share a bit on different types).
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x01, 0x01, 0x04, 0x08, 0x20

#: Frames a peer sends on its own schedule, answering no request (DESIGN.md 4): they end no wait.
UNSOLICITED_TYPES = frozenset({SETTINGS, PING, WINDOW_UPDATE})
#: Connection-level frame types and the bucket their bytes go to (DESIGN.md section 2).
#: SETTINGS is missing on purpose: the first of each side is setup, later ones control.
BUCKET_OF_TYPE: Final[dict[int, int]] = {
    PRIORITY: CONTROL,
    PING: CONTROL,
    WINDOW_UPDATE: CONTROL,
    GOAWAY: TEARDOWN,
}
#: Types whose frames are held whole before decoding: we need their bodies, or they are tiny.
BUFFERED_TYPES: Final = frozenset(
    {HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE}
    | {CONTINUATION}
)
#: Types that carry a header block fragment (RFC 9113 section 4.3).
HEADER_BLOCK_TYPES: Final = frozenset({HEADERS, PUSH_PROMISE, CONTINUATION})

#: Largest frame of a buffered type held whole.  RFC 9113 section 4.2 lets a receiver allow
#: frames up to 16 MiB, but header and control frames that large do not occur in practice; a
#: larger one is counted without being decoded (and its direction's HPACK table is lost).
MAX_BUFFERED_FRAME_BYTES: Final = 1024 * 1024
#: Largest header block (HEADERS or PUSH_PROMISE plus CONTINUATION fragments) kept for decoding.
MAX_HEADER_BLOCK_BYTES: Final = 1024 * 1024
#: Largest decoded header list (RFC 7541 section 4.1 sizes) hpack may produce.  hpack's default
#: is 64 KiB, but SETTINGS_MAX_HEADER_LIST_SIZE starts unlimited (RFC 9113 section 6.5.2) and an
#: observer should not refuse what the peers accepted; a 1-octet indexed field can expand to a
#: whole table entry, so a bound is still needed against that amplification.
MAX_HEADER_LIST_BYTES: Final = 4 * 1024 * 1024
#: Largest dynamic table a peer may grant with SETTINGS_HEADER_TABLE_SIZE that we honour
#: (RFC 7541 section 4.2).  The default is 4096 octets; the bound caps the memory one
#: direction's table can cost us, whatever a peer grants.
MAX_HPACK_TABLE_BYTES: Final = 1024 * 1024
#: A resync candidate must be no longer than the default SETTINGS_MAX_FRAME_SIZE (RFC 9113
#: section 4.2): mid-connection we cannot see whether a larger size was granted.
MAX_RESYNC_FRAME_BYTES: Final = 16384
#: Nor a stream id above this (2^24 ids are 8 million requests on one connection): a cheap filter
#: against payload bytes that only look like a header; resync would rather miss frames on such a
#: long connection.
MAX_RESYNC_STREAM_ID: Final = 1 << 24
#: Plausible frame headers in a row, each where the previous frame ends, that make a resync
#: point (two are fooled by SETTINGS bodies, which are mostly zero octets).
RESYNC_CHAIN: Final = 3
#: Streams open at once that we track, well above the SETTINGS_MAX_CONCURRENT_STREAMS of at least
#: 100 that RFC 9113 section 6.5.2 recommends; more open streams mean ends we missed (gaps), so
#: the oldest is retired without an end.
MAX_OPEN_STREAMS: Final = 4096
#: Streams remembered after they end, for frames still in flight (DATA after RST_STREAM).
MAX_CLOSED_STREAMS: Final = 1024

# A plausible frame header during resync: length <= MAX_RESYNC_FRAME_BYTES (so the first length
# octet is 0 and the second at most 0x40), a known type, the reserved bit clear.  The regex only
# pre-filters (fast on bodies); ``plausible`` decides.
_CANDIDATE = re.compile(rb"\x00[\x00-\x40].[\x00-\x09].[\x00-\x7f]", re.DOTALL)

_Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class _Rule:
    """What RFC 9113 section 6 requires of one frame type's header."""

    #: True: needs a stream id; False: needs stream 0; None: either
    on_stream: bool | None
    #: the flags the type defines (others are ignored by receivers; resync distrusts them)
    flags: int
    #: the only legal length, if the type has one
    length: int | None = None
    min_length: int = 0
    length_multiple: int = 1


FRAME_RULES: Final[dict[int, _Rule]] = {
    DATA: _Rule(True, END_STREAM | PADDED),  # 6.1
    HEADERS: _Rule(True, END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG),  # 6.2
    PRIORITY: _Rule(True, 0, length=5),  # 6.3
    RST_STREAM: _Rule(True, 0, length=4),  # 6.4
    SETTINGS: _Rule(False, ACK, length_multiple=6),  # 6.5
    PUSH_PROMISE: _Rule(True, END_HEADERS | PADDED, min_length=4),  # 6.6
    PING: _Rule(False, ACK, length=8),  # 6.7
    GOAWAY: _Rule(False, 0, min_length=8),  # 6.8
    WINDOW_UPDATE: _Rule(None, 0, length=4),  # 6.9
    CONTINUATION: _Rule(True, END_HEADERS),  # 6.10
}


#: Types whose header rule is only "on a stream": any length, any flags (DATA, HEADERS,
#: CONTINUATION), checked inline on the hot path.
_STREAM_ONLY_TYPES: Final = frozenset(
    frame_type
    for frame_type, rule in FRAME_RULES.items()
    if rule.on_stream is True
    and rule.length is None
    and rule.min_length == 0
    and rule.length_multiple == 1
    and frame_type != SETTINGS
)


def parse_frame_header(data: _Buffer, at: int = 0) -> tuple[int, int, int, int]:
    """(length, type, flags, raw stream field) of the 9-byte header at ``at``."""
    high, low, frame_type, flags, stream = _FRAME_HEADER.unpack_from(data, at)
    return (high << 8) | low, frame_type, flags, stream


def breaks_rules(length: int, frame_type: int, flags: int, raw_stream: int) -> bool:
    """True when a known type's header is a connection error (RFC 9113 section 6): out of step."""
    rule = FRAME_RULES.get(frame_type)
    if rule is None:
        return False  # extension frames are legal (RFC 9113 section 5.5)
    stream_id = raw_stream & _STREAM_ID_MASK
    if (rule.on_stream is True and stream_id == 0) or (rule.on_stream is False and stream_id):
        return True
    if rule.length is not None and length != rule.length:
        return True
    if length < rule.min_length or length % rule.length_multiple:
        return True
    return frame_type == SETTINGS and bool(flags & ACK) and length > 0


def plausible(length: int, frame_type: int, flags: int, raw_stream: int) -> bool:
    """Strict test for a resync point: a known type, its own flags only, reserved bit clear."""
    rule = FRAME_RULES.get(frame_type)
    return (
        rule is not None
        and length <= MAX_RESYNC_FRAME_BYTES
        and raw_stream <= MAX_RESYNC_STREAM_ID
        and not flags & ~rule.flags
        and not breaks_rules(length, frame_type, flags, raw_stream)
    )


@dataclass(frozen=True, slots=True)
class Bounds:
    """The bounds one decoder holds to, fixed when it is made (``decoder`` reads them from its
    module then, so they can be lowered there)."""

    buffered_frame: int = MAX_BUFFERED_FRAME_BYTES
    open_streams: int = MAX_OPEN_STREAMS
    closed_streams: int = MAX_CLOSED_STREAMS
