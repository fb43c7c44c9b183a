"""HTTP/1.x decoder state: the modes of a direction, one exchange, one direction.

Plain slotted classes, not dataclasses: they are read and written on every packet
(DESIGN.md section 7).
"""

from __future__ import annotations

from collections import deque

PROTOCOL = "http1"
KIND = "exchange"

#: Requests waiting for their response; past this the oldest is given up as never answered.
MAX_PENDING_EXCHANGES = 4096

# Direction modes.
RESYNC = 0  # looking for a start line (capture joined mid-connection, or after a gap)
HEAD = 1  # reading a start line and header block
LENGTH = 2  # body of known length (Content-Length)
CHUNKED = 3  # chunked body (RFC 9112 section 7.1)
CLOSE = 4  # response body delimited by the connection's close (RFC 9112 section 6.3 item 8)
HOLD = 5  # waiting for the answer to Upgrade/CONNECT; calls are held, not decoded
DEAD = 6  # undecodable: everything is opaque
SWITCHED = 7  # another decoder owns the bytes

# Chunked body states.
SIZE, DATA, DATA_END, TRAILER = range(4)

Held = tuple[str, int, bytes | int, int, float]  # (call, direction, data or length, ordinal, ts)
#: A remembered head: its (method, target) or its status code, and its framing fields (never
#: changed once parsed, so one dict serves every repeat).
Head = tuple[tuple[bytes, bytes] | None, int | None, dict[bytes, bytes]]


class Exchange:
    """One request and its response, as far as they have been seen."""

    __slots__ = (
        "answered",
        "continued",
        "expect_continue",
        "final_seen",
        "message",
        "method",
        "noted",
        "req_start",
        "request_body_bytes",
        "resp_start",
        "response_body_bytes",
        "switch",
        "upgrade",
    )

    def __init__(self, message: int | None, method: bytes = b"") -> None:
        #: message id; None for a request lost in a gap (allocated when its response shows up)
        self.message = message
        self.method = method
        #: the request asked to leave HTTP/1.1 (Upgrade or CONNECT): orig waits for the answer
        self.switch = False
        self.upgrade = b""
        self.answered = False
        #: the request carried ``Expect: 100-continue``
        self.expect_continue = False
        #: (ordinal, ts) of a ``100 Continue`` that came before any request body byte: the
        #: client may have waited for it (decided once the request ends)
        self.continued: tuple[int, float] | None = None
        self.final_seen = False
        self.request_body_bytes = 0
        self.response_body_bytes = 0
        self.req_start: int | None = None
        self.resp_start: int | None = None
        #: body-byte notes already emitted: bit 0 request, bit 1 response
        self.noted = 0


class Direction:
    """Decoding state of one direction's stream."""

    __slots__ = (
        "base",
        "blank_end",
        "buf",
        "chunk_state",
        "chunks",
        "direction",
        "end",
        "eof",
        "exchange",
        "line_end",
        "line_start",
        "lost_at_boundary",
        "lost_bytes",
        "mode",
        "pos",
        "remaining",
        "resync_noted",
        "resync_scanned",
        "scan_from",
        "started",
        "status",
        "suspects",
        "whole_bytes",
        "whole_count",
    )

    def __init__(self, direction: int, base: int) -> None:
        self.direction = direction
        self.buf = bytearray()
        #: stream offset of buf[0]; buf[pos:] is not decoded yet
        self.base = base
        self.pos = 0
        #: stream offset after the last byte fed
        self.end = base
        #: (stream offset, ordinal, ts) of the feeds whose bytes are still in buf
        self.chunks: deque[tuple[int, int, float]] = deque()
        #: a capture may start mid-connection: look for a start line first
        self.mode = RESYNC
        self.resync_noted = False
        #: stream offset up to which the bytes before a start line are known to be CR/LF
        self.blank_end = 0
        #: stream offset up to which RESYNC has searched for start lines
        self.resync_scanned = 0
        #: in RESYNC: buf[0] is known to begin a line
        self.line_start = False
        self.remaining = 0
        self.chunk_state = SIZE
        self.exchange: Exchange | None = None
        self.started = False
        #: stream offsets of the start line's LF and of where to resume looking for the end of
        #: the header block (offsets, since decoded bytes leave the buffer meanwhile)
        self.line_end = 0
        self.scan_from = 0
        self.status = 0
        self.eof = False
        #: count and bytes of whole messages seen: their mean sizes a gap's losses
        self.whole_count = 0
        self.whole_bytes = 0
        #: after a response-side gap: exchanges pending then, and bytes lost beyond the current one
        self.suspects = 0
        self.lost_bytes = 0
        self.lost_at_boundary = True
