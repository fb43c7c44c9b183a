"""HTTP/2 decoder: frames (RFC 9113) and HPACK header blocks (RFC 7541) to messages and spans.

One message per stream (DESIGN.md section 2).  The decoder observes both directions of a
connection, which h2's ``H2Connection`` cannot do (it rejects an observer and merges CONTINUATION
frames, whose 9-byte headers the ledger must count).  So frames are cut by their own 24-bit length
field, header-bearing bodies are parsed with hyperframe, and header blocks are decoded with one
``hpack.Decoder`` per direction: RFC 7541 section 2.2 gives each direction its own dynamic table,
so losing one direction's bytes loses only that direction's table.

Buffering (DESIGN.md section 7): only whole frames of the metadata types are held (HEADERS,
PUSH_PROMISE, CONTINUATION, SETTINGS and the small control frames), up to
``MAX_BUFFERED_FRAME_BYTES``.  DATA and extension frames are streamed: once the 9-byte header is
known their bodies are counted as they arrive, never copied, and a gap inside such a body keeps the
decoder in step because the frame length says where the next frame starts.

Messages: a stream's message starts at its first decoded frame, with the ordinal of the packet
that brought that frame's first byte (metadata frames are decoded whole, DATA at its header); a
push starts at the PUSH_PROMISE announcing it.  The first HEADERS from resp (or DATA/RST_STREAM
when no HEADERS came) answers a request; a push is never answered.  A message ends when both sides
sent END_STREAM, or at RST_STREAM.  After an h2c upgrade, stream 1 is the message the HTTP/1.1
decoder already started (RFC 7540 section 3.2).

Ledger (DESIGN.md sections 2 and 3): orig's 24-byte preface, the first SETTINGS of each side and
the first ACK of each side are SETUP; later SETTINGS, PING, WINDOW_UPDATE and PRIORITY are CONTROL;
GOAWAY is TEARDOWN; HEADERS, CONTINUATION, DATA and RST_STREAM belong to their stream's message;
a PUSH_PROMISE (and its CONTINUATIONs) belongs to the pushed message it announces, since its header
block is that message's request.  Everything is FRAMING except DATA payload without padding.

Anomalies (stable names, counted by the ledger):

- ``http2.no_preface``: orig did not open with the preface: a capture joined mid-connection.
- ``http2.mid_connection``: resp's first frame was not the SETTINGS of the server preface.
- ``http2.resync``: bytes skipped (charged opaque) while looking for a plausible frame header.
- ``http2.hpack_after_gap``: a direction's header blocks cannot be decoded any more because bytes
  before them were not captured (mid-connection start, or a gap outside a streamed body).
- ``http2.hpack_error``: the HPACK decoder rejected a block; that direction's table is lost.
- ``http2.bad_frame``: a frame header breaks RFC 9113 section 6 (stream id or fixed length):
  the stream is out of step, so the decoder resyncs.
- ``http2.bad_frame_body``, ``http2.bad_padding``: a body hyperframe (or we) cannot parse.
- ``http2.bad_continuation``: CONTINUATION out of sequence (RFC 9113 section 6.10).
- ``http2.unknown_frame``: an extension frame type (legal, RFC 9113 section 5.5), counted.
- ``http2.frame_too_large``: a metadata frame over ``MAX_BUFFERED_FRAME_BYTES``, counted only.
- ``http2.header_block_too_large``: a header block over ``MAX_HEADER_BLOCK_BYTES``.
- ``http2.truncated_frame``, ``http2.truncated_header_block``: cut off at the end of the capture.
- ``http2.frame_on_forgotten_stream``: a frame for a stream evicted from ``MAX_CLOSED_STREAMS``.
- ``http2.too_many_open_streams``: over ``MAX_OPEN_STREAMS`` open; the oldest is retired unended.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Final

from hpack import Decoder as HpackDecoder
from hpack import HPACKError
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import HeadersFrame, PushPromiseFrame, SettingsFrame

from analyzer.decoding.events import (
    CONTROL,
    FRAMING,
    OPAQUE,
    ORIG,
    PAYLOAD,
    RESP,
    SETUP,
    TEARDOWN,
    UNDECODED,
    Anomaly,
    Event,
    MessageAnswered,
    MessageEnded,
    MessageIds,
    MessageNote,
    MessageStarted,
    ProtocolIdentified,
    Span,
    Unsolicited,
)
from analyzer.options import DecodeOptions
from analyzer.protocols.http2.hpack_memo import Entry, entries, quiet_hpack_debug, replay, scan

# hpack's debug calls (about eight per decoded block) cost more than a memo hit: see hpack_memo.
quiet_hpack_debug()

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
#: Characters kept of a path or authority note.
MAX_NOTE_CHARS: Final = 200
#: Decoded header blocks remembered per direction (see ``_Side.decode_block``).  Peers resend
#: the same few blocks (every field indexed once the table is warm, one octet per field); a
#: handful of short ones covers them and bounds the memory to a few KiB per direction.
MAX_CACHED_BLOCKS: Final = 32
MAX_CACHED_BLOCK_BYTES: Final = 256

#: Request pseudo-header fields (RFC 9113 section 8.3.1) noted, in this order.
REQUEST_NOTES: Final = (("method", b":method"), ("path", b":path"), ("authority", b":authority"))

#: RFC 7541 section 4.1: an entry's size is its name and value octets plus 32.
HPACK_ENTRY_OVERHEAD: Final = 32

# A plausible frame header during resync: length <= MAX_RESYNC_FRAME_BYTES (so the first length
# octet is 0 and the second at most 0x40), a known type, the reserved bit clear.  The regex only
# pre-filters (fast on bodies); ``plausible`` decides.
_CANDIDATE = re.compile(rb"\x00[\x00-\x40].[\x00-\x09].[\x00-\x7f]", re.DOTALL)

# Decoder modes of one direction.
_PREFACE, _FIRST, _FRAMES, _RESYNC = range(4)

_Buffer = bytes | bytearray | memoryview
_When = tuple[int, float]  # (ordinal, ts) of the feed that delivered a frame's first byte


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


class _Decoded:
    """What the decoder keeps of a decoded header block (shared when a block repeats), with
    the notes it gives made once: a repeated block then costs no text decoding."""

    __slots__ = ("request_notes", "size", "status")

    def __init__(self, size: int, pseudo: dict[bytes, bytes]) -> None:
        """``pseudo``: the pseudo-header fields (RFC 9113 section 8.3), the last one of a
        repeated name."""
        #: RFC 7541 section 4.1 size of its fields: name + value octets + 32 each
        self.size = size
        #: the notes of the block as a request's: (key, text) in REQUEST_NOTES order
        self.request_notes = tuple(
            (key, _text(pseudo[name])) for key, name in REQUEST_NOTES if name in pseudo
        )
        #: the note of the block as a response's: its final status; None for none or an
        #: interim 1xx (RFC 9113 section 8.1), which is not the note
        self.status: int | str | None = None
        status = pseudo.get(b":status")
        if status is not None and not status.startswith(b"1"):
            self.status = int(status) if status.isdigit() else _text(status)


class _Stream:
    """One HTTP/2 stream, which is one message.  A plain slotted class: one is made per
    message, and a dataclass's default factories cost a call per list."""

    __slots__ = (
        "answered",
        "closed",
        "decoded",
        "encoded",
        "ended",
        "kind",
        "message",
        "stream_id",
    )

    def __init__(self, stream_id: int, message: int, kind: str, ended: list[bool]) -> None:
        self.stream_id = stream_id
        self.message = message
        #: "stream" or "push"
        self.kind = kind
        #: END_STREAM seen (or implied) from orig, resp
        self.ended = ended
        self.answered = False
        #: MessageEnded was emitted
        self.closed = False
        #: HPACK header-block octets per direction (fragments only: no frame headers,
        #: padding, priority fields or promised stream ids)
        self.encoded = [0, 0]
        #: RFC 7541 section 4.1 size of the decoded fields per direction; None once a block
        #: of that direction could not be decoded
        self.decoded: list[int | None] = [0, 0]


@dataclass(slots=True)
class _Block:
    """A header block being assembled from HEADERS/PUSH_PROMISE and CONTINUATION frames."""

    #: the stream id its CONTINUATION frames must carry (RFC 9113 section 6.10)
    stream_id: int
    #: the message it belongs to; None for a stream we no longer remember
    stream: _Stream | None
    #: request fields (HEADERS from orig, PUSH_PROMISE) rather than response fields
    request: bool
    #: the HEADERS frame carried END_STREAM, which takes effect when the block completes
    end_stream: bool
    fragments: bytearray = field(default_factory=bytearray)
    decodable: bool = True


@dataclass(slots=True)
class _Body:
    """The body of a streamed frame (DATA, extension, oversized), counted as it arrives."""

    owner: int
    frame_type: int
    flags: int
    stream: _Stream | None
    length: int
    #: body octets consumed so far (fed or skipped by a gap)
    done: int = 0
    #: body positions [payload_from, payload_to) are PAYLOAD; the rest is FRAMING
    payload_from: int = 0
    payload_to: int = 0
    #: the undecodable header block an oversized frame completes
    completes: _Block | None = None


class _Side:
    """Decoding state of one direction."""

    __slots__ = (
        "ack_seen",
        "block",
        "body",
        "buf",
        "buf_when",
        "cache",
        "cache_state",
        "consumed",
        "direction",
        "fresh",
        "hpack",
        "hpack_ok",
        "mode",
        "settings_seen",
        "skipping",
        "static",
    )

    def __init__(self, direction: int, base: int, mode: int) -> None:
        self.direction = direction
        self.mode = mode
        #: bytes not yet decoded; buf[0] is at stream offset ``consumed``
        self.buf = bytearray()
        self.consumed = base
        #: offset of the first byte of the feed being processed, and who delivered buf[0]
        self.fresh = base
        self.buf_when: _When = (0, 0.0)
        self.body: _Body | None = None
        self.block: _Block | None = None
        self.hpack = HpackDecoder(max_header_list_size=MAX_HEADER_LIST_BYTES)
        self.hpack_ok = True
        self.settings_seen = False
        self.ack_seen = False
        #: inside a resync episode whose anomaly was already recorded
        self.skipping = False
        #: header block -> its ``_Decoded``, for blocks decoded without changing the dynamic
        #: table, valid while the table is in ``cache_state`` (see ``decode_block``)
        self.cache: dict[bytes, _Decoded] = {}
        self.cache_state: tuple[object, int, int, int] = (None, -1, -1, -1)
        #: static header block -> its ``_Decoded`` and the (name, value) entries it adds to
        #: the dynamic table, in order (see ``decode_block``)
        self.static: dict[bytes, tuple[_Decoded, tuple[Entry, ...]]] = {}

    def _table_state(self) -> tuple[object, int, int, int]:
        """What an HPACK decode depends on besides the block: the dynamic table's entries and
        limits.  Entries are only ever added at the front as new tuples (kept alive here, so
        compared by identity) and evicted from the back, so the newest entry and the count
        pin the contents."""
        hpack = self.hpack
        entries = hpack.header_table.dynamic_entries
        return (
            entries[0] if entries else None,
            len(entries),
            hpack.header_table.maxsize,
            hpack.max_allowed_table_size,
        )

    def decode_block(self, block: bytes) -> _Decoded:
        """What the decoder needs of a header block's fields; raises HPACKError.

        Two memos make a repeated block cost a lookup.  A static block (``hpack_memo.scan``:
        it references no dynamic-table entry) decodes the same in any table state, so it is
        decoded once and afterwards only the entries it adds are added again, in order.  Any
        other block that leaves the dynamic table as it was (fields indexing the table, literals
        without indexing) decodes the same way again while the table stays so: remember it.
        The rest is decoded every time, in order, as HPACK requires."""
        if len(block) > MAX_CACHED_BLOCK_BYTES:
            return _decode(self.hpack, block)[0]
        hpack = self.hpack
        table = hpack.header_table
        static = self.static.get(block)
        # A table larger than allowed makes hpack reject any block: let it say so.
        if static is not None and table.maxsize <= hpack.max_allowed_table_size:
            replay(table, static[1])
            return static[0]
        # _same_table(self._table_state(), self.cache_state), spelled out: this runs for
        # every header block, and a hit should cost no more than the lookup.
        entries = table.dynamic_entries
        state = self.cache_state
        if (
            (entries[0] if entries else None) is state[0]
            and len(entries) == state[1]
            and table.maxsize == state[2]
            and hpack.max_allowed_table_size == state[3]
        ):
            known = self.cache.get(block)
            if known is not None:
                return known
        else:
            state = self._table_state()
            self.cache.clear()
            self.cache_state = state
        adds = scan(block)
        if adds is not None:
            return self._decode_static(block, adds)
        result, _ = _decode(hpack, block)
        if _same_table(self._table_state(), state):
            if len(self.cache) >= MAX_CACHED_BLOCKS:
                self.cache.clear()
            self.cache[block] = result
        return result

    def _decode_static(self, block: bytes, adds: tuple[bool, ...]) -> _Decoded:
        """Decode a static block and remember it with the entries it added, in order."""
        result, fields = _decode(self.hpack, block)
        added = entries(fields, adds)
        if len(self.static) >= MAX_CACHED_BLOCKS:
            self.static.clear()
        self.static[block] = (result, added)
        return result


def _decode(hpack: HpackDecoder, block: bytes) -> tuple[_Decoded, list[tuple[bytes, bytes]]]:
    """Decode a header block (raises HPACKError): its size and pseudo-header fields, and the
    fields themselves in order."""
    size = 0
    pseudo: dict[bytes, bytes] = {}
    # A list of HeaderTuple (hpack types it as an Iterable): read twice, here and by the memo.
    fields: list[tuple[bytes, bytes]] = list(hpack.decode(block, True))
    for name, value in fields:
        size += len(name) + len(value) + HPACK_ENTRY_OVERHEAD
        if name.startswith(b":"):
            pseudo[bytes(name)] = bytes(value)
    return _Decoded(size, pseudo), fields


def _same_table(a: tuple[object, int, int, int], b: tuple[object, int, int, int]) -> bool:
    return a[0] is b[0] and a[1:] == b[1:]


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")[:MAX_NOTE_CHARS]


class Http2Decoder:
    """Decodes one HTTP/2 connection (prior knowledge, TLS ALPN h2, or h2c after an upgrade)."""

    def __init__(
        self,
        ids: MessageIds,
        options: DecodeOptions,
        *,
        base: tuple[int, int] = (0, 0),
        upgraded: bool = False,
        upgrade_message: int | None = None,
    ) -> None:
        """``upgraded``: the HTTP/1.1 decoder handed over after ``101 Switching Protocols``;
        stream 1 is then the upgrade request, message ``upgrade_message`` (RFC 7540 section
        3.2), already started by that decoder."""
        self._ids = ids
        self._options = options
        self._sides = (_Side(ORIG, base[ORIG], _PREFACE), _Side(RESP, base[RESP], _FIRST))
        self._upgrade_message = upgrade_message if upgraded else None
        self._streams: dict[int, _Stream] = {}
        self._closed: dict[int, _Stream] = {}
        #: highest stream id evicted from ``_closed``, per parity (client odd, server even)
        self._forgotten_max = [0, 0]
        #: orig did not open with the preface: the capture joined mid-connection
        self._midstream = False
        self._now: _When = (0, 0.0)
        self._out: list[Event] = [ProtocolIdentified(PROTOCOL)]
        self._last: list[list[int] | None] = [None, None]
        #: whole frames decoded, by frame type (an octet): a list, as it counts every frame
        self._frame_counts = [0] * 256

    @property
    def frame_counts(self) -> dict[str, int]:
        """Whole frames decoded so far, by type name (a figure to compare with tshark's)."""
        return {
            FRAME_NAMES.get(frame_type, f"0x{frame_type:02x}"): count
            for frame_type, count in enumerate(self._frame_counts)
            if count
        }

    # --- the StreamDecoder interface -----------------------------------------------------

    def feed(self, direction: int, data: bytes, ordinal: int, ts: float) -> list[Event]:
        self._now = (ordinal, ts)
        side = self._sides[direction]
        pos = 0
        body = side.body
        if body is not None:
            # The fast path: a streamed body is counted straight from the input.
            pos = min(body.length - body.done, len(data))
            self._count_body(side, body, data, 0, pos, side.consumed)
            side.consumed += pos
            if body.done == body.length:
                self._body_done(side)
        if pos < len(data):
            side.fresh = side.consumed + len(side.buf)
            if side.buf:
                side.buf += memoryview(data)[pos:]
                self._drain(side, side.buf, final=False)
            else:
                # Nothing held: decode straight from the input and keep only an incomplete tail.
                side.buf_when = self._now
                self._drain(side, memoryview(data)[pos:], final=False)
        return self._take()

    def gap(self, direction: int, length: int, ordinal: int, ts: float) -> list[Event]:
        self._now = (ordinal, ts)
        side = self._sides[direction]
        body = side.body
        if length <= 0:
            return self._take()
        if body is not None:
            # The frame's length says where its body ends: a gap that ends inside it keeps the
            # decoder in step (no header block was lost), and one that goes on past it still
            # completes the frame (its END_STREAM counts).
            inside = min(length, body.length - body.done)
            self._count_body(side, body, None, 0, inside, side.consumed)
            side.consumed += inside
            length -= inside
            if body.done == body.length:
                self._body_done(side)
        if length:
            self._lose_step(side, length)
        return self._take()

    def eof(self, direction: int, ordinal: int, ts: float) -> list[Event]:
        self._now = (ordinal, ts)
        return self._take()

    def finish(self, ts: float) -> list[Event]:
        self._now = (self._now[0], ts)
        for side in self._sides:
            self._finish_side(side)
        for stream in list(self._streams.values()):
            self._note_hpack(stream)
        return self._take()

    # --- event plumbing ------------------------------------------------------------------

    def _span(self, direction: int, start: int, end: int, owner: int, layer: int) -> None:
        """Charge [start, end) of ``direction``, merged with the previous span when adjacent."""
        if end <= start:
            return
        last = self._last[direction]
        if last is not None:
            if last[1] == start and last[2] == owner and last[3] == layer:
                last[1] = end
                return
            self._out.append(Span(direction, last[0], last[1], last[2], last[3]))
        self._last[direction] = [start, end, owner, layer]

    def _flush_both(self) -> None:
        # Inlined _flush for both directions: this runs before every MessageEnded and at the
        # end of every call.
        last = self._last
        orig, resp = last
        if orig is not None:
            self._out.append(Span(ORIG, orig[0], orig[1], orig[2], orig[3]))
            last[ORIG] = None
        if resp is not None:
            self._out.append(Span(RESP, resp[0], resp[1], resp[2], resp[3]))
            last[RESP] = None

    def _event(self, event: Event) -> None:
        # The open spans stay open: the ledger handles notes, answers, starts and anomalies
        # apart from spans, so a run of one owner's bytes (a response's HEADERS frame and its
        # DATA frame header) can grow into one span across them.  Only MessageEnded needs
        # the spans before it out first (``_end``): the ledger retires a message by them.
        self._out.append(event)

    def _take(self) -> list[Event]:
        self._flush_both()
        out, self._out = self._out, []
        return out

    def _anomaly(self, name: str) -> None:
        self._event(Anomaly(name))

    # --- the per-direction state machine -------------------------------------------------

    def _drain(self, side: _Side, buf: _Buffer, *, final: bool) -> None:
        """Decode ``buf`` (``side.buf``, or fresh input when nothing was held), which starts at
        offset ``side.consumed``; keep an incomplete frame in ``side.buf`` for later."""
        i = 0
        while i < len(buf):
            body = side.body
            if body is not None:
                n = min(body.length - body.done, len(buf) - i)
                self._count_body(side, body, buf, i, n, side.consumed + i)
                i += n
                if body.done == body.length:
                    self._body_done(side)
                continue
            if side.mode == _FRAMES:
                step = self._frames(side, buf, i)
                if step == i and side.mode == _FRAMES:
                    break  # the next frame is incomplete
            elif side.mode == _RESYNC:
                step = self._step_resync(side, buf, i, final)
            elif side.mode == _PREFACE:
                step = self._step_preface(side, buf, i)
            else:
                step = self._step_first(side, buf, i)
            if step < 0:
                break
            i = step
        if buf is side.buf:
            del side.buf[:i]
        elif i < len(buf):
            side.buf = bytearray(buf[i:])
        side.consumed += i
        if i and side.consumed >= side.fresh:
            side.buf_when = self._now

    def _step_preface(self, side: _Side, buf: _Buffer, i: int) -> int:
        head = bytes(buf[i : i + len(PREFACE)])
        if head == PREFACE:
            start = side.consumed + i
            self._span(side.direction, start, start + len(PREFACE), SETUP, FRAMING)
            side.mode = _FRAMES
            return i + len(PREFACE)
        if PREFACE.startswith(head):
            return -1
        # No preface: the capture joined mid-connection (detection then needed a --port
        # override).  The settings exchange and the HPACK tables' history are lost.
        self._midstream = True
        self._anomaly("http2.no_preface")
        self._join_midstream(side)
        return i

    def _step_first(self, side: _Side, buf: _Buffer, i: int) -> int:
        """resp's first frame must be SETTINGS: the server connection preface (RFC 9113 3.4)."""
        if len(buf) - i < FRAME_HEADER_BYTES:
            return -1
        _length, frame_type, flags, raw_stream = parse_frame_header(buf, i)
        if not self._midstream and frame_type == SETTINGS and not flags & ACK and not raw_stream:
            side.mode = _FRAMES
            return i
        self._anomaly("http2.mid_connection")
        self._join_midstream(side)
        return i

    def _join_midstream(self, side: _Side) -> None:
        side.settings_seen = side.ack_seen = True  # later SETTINGS are not setup
        self._lose_hpack(side, "http2.hpack_after_gap")
        side.mode = _RESYNC

    def _frames(self, side: _Side, buf: _Buffer, i: int) -> int:
        """Decode frames from ``i`` for as long as they come whole and in step; returns the
        position after them.  It stops at an incomplete frame (having taken nothing when the
        first one is), at a streamed body (its header taken, ``side.body`` set) and at a frame
        header that is out of step (``side.mode`` set to resync).  This loop runs for every
        frame, so the common cases are made inline, and what stays put during it is bound to
        locals (the stream offset of ``buf[0]`` and who delivered the held bytes)."""
        available = len(buf)
        base, fresh, now, held_when = side.consumed, side.fresh, self._now, side.buf_when
        stream_only_types = _STREAM_ONLY_TYPES
        high: int
        low: int
        frame_type: int
        flags: int
        raw_stream: int
        while available - i >= FRAME_HEADER_BYTES:
            high, low, frame_type, flags, raw_stream = _FRAME_HEADER.unpack_from(buf, i)
            length = (high << 8) | low
            stream_id = raw_stream & _STREAM_ID_MASK
            # The common types need only a stream id; the full rules for the others.
            if not (stream_id and frame_type in stream_only_types) and breaks_rules(
                length, frame_type, flags, raw_stream
            ):
                self._anomaly("http2.bad_frame")
                side.hpack_ok = False
                side.block = None
                side.mode = _RESYNC
                return i
            if side.block is not None and frame_type != CONTINUATION:
                self._broken_block(side)
            start = base + i
            when = now if start >= fresh else held_when
            end = i + FRAME_HEADER_BYTES + length
            if frame_type == DATA:
                if end > available or flags & PADDED:
                    # Streamed: the body is counted as it arrives, never held.
                    self._start_body(side, length, frame_type, flags, stream_id, start, when)
                    return i + FRAME_HEADER_BYTES
                self._data_frame(side, flags, stream_id, length, start, when)
            elif frame_type == HEADERS and length <= MAX_BUFFERED_FRAME_BYTES:
                if end > available:
                    return i
                self._frame_counts[HEADERS] += 1
                body = bytes(buf[i + FRAME_HEADER_BYTES : end])
                self._on_headers(side, flags, stream_id, body, start, start + end - i, when)
            elif frame_type in BUFFERED_TYPES and length <= MAX_BUFFERED_FRAME_BYTES:
                if end > available:
                    return i
                body = bytes(buf[i + FRAME_HEADER_BYTES : end])
                self._frame(side, frame_type, flags, stream_id, body, start, when)
            else:
                self._start_body(side, length, frame_type, flags, stream_id, start, when)
                return i + FRAME_HEADER_BYTES
            i = end
        return i

    def _step_resync(self, side: _Side, buf: _Buffer, i: int, final: bool) -> int:
        j, found = self._scan(buf, i, final)
        if j > i:
            if not side.skipping:
                side.skipping = True
                self._anomaly("http2.resync")
            self._span(side.direction, side.consumed + i, side.consumed + j, UNDECODED, OPAQUE)
        if found:
            side.mode = _FRAMES
            side.skipping = False
            side.block = None
            return j
        return j if j > i else -1

    def _scan(self, buf: _Buffer, i: int, final: bool) -> tuple[int, bool]:
        """(where garbage ends, whether a frame starts there) searching from ``i``; see
        ``_candidate`` for what makes a frame start."""
        pos = i
        while True:
            match = _CANDIDATE.search(buf, pos)
            if match is None:
                # Positions too near the end for the pattern may still start a header.
                return (len(buf) if final else max(pos, len(buf) - 5, i)), False
            at = match.start()
            verdict = self._candidate(buf, at, final)
            if verdict is None:
                return at, False
            if verdict:
                return at, True
            pos = at + 1

    @staticmethod
    def _candidate(buf: _Buffer, at: int, final: bool) -> bool | None:
        """Is a frame at ``at``?  None: cannot tell until more bytes come.

        ``RESYNC_CHAIN`` plausible headers in a row, each where the previous frame ends, are
        the evidence (SETTINGS bodies and binary payloads often look like one header); at
        ``final`` a shorter chain that ends exactly at the end of the data is enough.
        """
        for _ in range(RESYNC_CHAIN):
            if at + FRAME_HEADER_BYTES > len(buf):
                return at == len(buf) if final else None
            length, frame_type, flags, raw_stream = parse_frame_header(buf, at)
            if not plausible(length, frame_type, flags, raw_stream):
                return False
            at += FRAME_HEADER_BYTES + length
        return True

    def _lose_step(self, side: _Side, length: int) -> None:
        """A gap hides frame boundaries: charge what was held, then resync after the gap."""
        if side.buf:
            end = side.consumed + len(side.buf)
            self._span(side.direction, side.consumed, end, UNDECODED, OPAQUE)
        side.consumed += len(side.buf) + length
        side.fresh = side.consumed
        side.buf.clear()
        self._lose_hpack(side, "http2.hpack_after_gap")
        if side.block is not None:
            self._broken_block(side, anomaly=None)
        if side.mode in (_PREFACE, _FIRST):
            side.settings_seen = side.ack_seen = True
        side.mode = _RESYNC

    def _lose_hpack(self, side: _Side, anomaly: str) -> None:
        if side.hpack_ok:
            side.hpack_ok = False
            self._anomaly(anomaly)

    def _finish_side(self, side: _Side) -> None:
        if side.mode == _RESYNC and side.buf:
            self._drain(side, side.buf, final=True)
        if side.body is not None:
            self._anomaly("http2.truncated_frame")
            side.body = None
        if side.buf:
            self._charge_leftover(side)
        if side.block is not None:
            self._anomaly("http2.truncated_header_block")
            if side.block.stream is not None:
                side.block.stream.decoded[side.direction] = None
            side.block = None

    def _charge_leftover(self, side: _Side) -> None:
        """Bytes of an incomplete frame (or preface) at the end: opaque, to whom they belong."""
        owner = UNDECODED
        if side.mode == _PREFACE:
            owner = SETUP
        elif side.mode == _FRAMES:
            self._anomaly("http2.truncated_frame")
            if len(side.buf) >= FRAME_HEADER_BYTES:
                stream_id = parse_frame_header(side.buf)[3] & _STREAM_ID_MASK
                known = self._streams.get(stream_id) or self._closed.get(stream_id)
                if known is not None:
                    owner = known.message
        start = side.consumed
        self._span(side.direction, start, start + len(side.buf), owner, OPAQUE)
        side.consumed += len(side.buf)
        side.buf.clear()

    # --- frames ----------------------------------------------------------------------------

    def _frame(
        self,
        side: _Side,
        frame_type: int,
        flags: int,
        stream_id: int,
        body: bytes,
        start: int,
        when: _When,
    ) -> None:
        """A whole buffered frame at ``start``."""
        self._frame_counts[frame_type] += 1
        if frame_type in UNSOLICITED_TYPES:
            self._out.append(Unsolicited(side.direction, when[0]))
        end = start + FRAME_HEADER_BYTES + len(body)
        if frame_type == HEADERS:
            self._on_headers(side, flags, stream_id, body, start, end, when)
        elif frame_type == CONTINUATION:
            self._on_continuation(side, flags, stream_id, body, start, end, when)
        elif frame_type == PUSH_PROMISE:
            self._on_push_promise(side, flags, stream_id, body, start, end, when)
        elif frame_type == SETTINGS:
            self._on_settings(side, flags, body, start, end)
        elif frame_type == RST_STREAM:
            stream = self._stream_for(side.direction, stream_id, when)
            self._span(side.direction, start, end, self._owner(stream), FRAMING)
            if stream is not None:
                self._answer(stream, side.direction, when)
                self._end(stream)
        else:
            self._span(side.direction, start, end, BUCKET_OF_TYPE[frame_type], FRAMING)

    def _on_headers(
        self,
        side: _Side,
        flags: int,
        stream_id: int,
        body: bytes,
        start: int,
        end: int,
        when: _When,
    ) -> None:
        direction = side.direction
        stream = self._streams.get(stream_id) or self._stream_for(direction, stream_id, when)
        if stream is None:
            self._span(direction, start, end, CONTROL, FRAMING)
        else:
            self._span(direction, start, end, stream.message, FRAMING)
            if direction == RESP and not stream.answered:
                self._answer(stream, direction, when)
        fragment: bytes | None = body
        if flags & (PADDED | PRIORITY_FLAG):
            # Pad length and priority fields around the fragment: hyperframe cuts them off.
            frame = HeadersFrame(stream_id)
            frame.parse_flags(flags)
            try:
                frame.parse_body(memoryview(body))
                fragment = frame.data
            except HyperframeError:
                self._anomaly("http2.bad_frame_body")
                fragment = None
        request = direction == ORIG
        end_stream = bool(flags & END_STREAM)
        if flags & END_HEADERS and fragment is not None:
            # The usual case, a block in one frame: decoded straight from it, no _Block.
            if stream is not None:
                stream.encoded[direction] += len(fragment)
            if len(fragment) > MAX_HEADER_BLOCK_BYTES:
                self._anomaly("http2.header_block_too_large")
                fragment = None
            self._complete_block(side, stream, request, end_stream, fragment)
            return
        block = _Block(stream_id, stream, request, end_stream)
        self._add_fragment(side, block, fragment, bool(flags & END_HEADERS))

    def _on_push_promise(
        self,
        side: _Side,
        flags: int,
        stream_id: int,
        body: bytes,
        start: int,
        end: int,
        when: _When,
    ) -> None:
        frame = PushPromiseFrame(stream_id)
        frame.parse_flags(flags)
        try:
            frame.parse_body(memoryview(body))
        except HyperframeError:
            self._anomaly("http2.bad_frame_body")
            parent = self._stream_for(side.direction, stream_id, when)
            self._span(side.direction, start, end, self._owner(parent), FRAMING)
            self._lose_hpack(side, "http2.hpack_error")
            return
        promised = frame.promised_stream_id & _STREAM_ID_MASK
        pushed = self._streams.get(promised) or self._closed.get(promised)
        if pushed is None:
            pushed = self._new_stream(promised, "push", side.direction, when)
        self._span(side.direction, start, end, pushed.message, FRAMING)
        block = _Block(stream_id, pushed, request=True, end_stream=False)
        self._add_fragment(side, block, frame.data, bool(flags & END_HEADERS))

    def _on_continuation(
        self,
        side: _Side,
        flags: int,
        stream_id: int,
        body: bytes,
        start: int,
        end: int,
        when: _When,
    ) -> None:
        block = side.block
        if block is not None and block.stream_id == stream_id:
            self._span(side.direction, start, end, self._owner(block.stream), FRAMING)
            self._add_fragment(side, block, body, bool(flags & END_HEADERS))
            return
        # RFC 9113 section 6.10: only right after HEADERS/PUSH_PROMISE/CONTINUATION of the same
        # stream.  Its block's start is unknown, so it cannot be decoded.
        if block is not None:
            self._broken_block(side)
        elif side.hpack_ok:  # after a gap or a late start an orphan is expected, not odd
            self._anomaly("http2.bad_continuation")
        stream = self._stream_for(side.direction, stream_id, when)
        self._span(side.direction, start, end, self._owner(stream), FRAMING)
        side.hpack_ok = False
        if stream is not None:
            stream.encoded[side.direction] += len(body)
            stream.decoded[side.direction] = None

    def _on_settings(self, side: _Side, flags: int, body: bytes, start: int, end: int) -> None:
        # DESIGN.md section 2: the first SETTINGS of each side and the first ACK of each side
        # (which acknowledges the peer's first SETTINGS, RFC 9113 section 6.5.3) are setup.
        if flags & ACK:
            owner = CONTROL if side.ack_seen else SETUP
            side.ack_seen = True
        else:
            owner = CONTROL if side.settings_seen else SETUP
            side.settings_seen = True
            self._apply_settings(side, flags, body)
        self._span(side.direction, start, end, owner, FRAMING)

    def _apply_settings(self, side: _Side, flags: int, body: bytes) -> None:
        """SETTINGS_HEADER_TABLE_SIZE from one side bounds the table the other side encodes
        with (RFC 7541 section 4.2), so it raises the limit of the other side's decoder."""
        frame = SettingsFrame()
        frame.parse_flags(flags)
        try:
            frame.parse_body(memoryview(body))
        except HyperframeError:
            self._anomaly("http2.bad_frame_body")
            return
        size = frame.settings.get(SettingsFrame.HEADER_TABLE_SIZE)
        if size is not None:
            decoder = self._sides[1 - side.direction].hpack
            granted = min(size, MAX_HPACK_TABLE_BYTES)
            # An observer only widens the limit: shrinking takes effect after the ACK, and the
            # encoder announces it in-band anyway.
            decoder.max_allowed_table_size = max(decoder.max_allowed_table_size, granted)

    def _start_body(
        self,
        side: _Side,
        length: int,
        frame_type: int,
        flags: int,
        stream_id: int,
        start: int,
        when: _When,
    ) -> None:
        """A streamed frame: its header is known, its body is counted as it arrives."""
        stream: _Stream | None = None
        completes: _Block | None = None
        payload_from = payload_to = 0
        direction = side.direction
        if frame_type == DATA:
            stream = self._streams.get(stream_id) or self._stream_for(direction, stream_id, when)
            if stream is None:
                owner = CONTROL
            else:
                owner = stream.message
                if direction == RESP and not stream.answered:
                    self._answer(stream, direction, when)
            payload_to = length
            if flags & PADDED:
                payload_from = min(1, length)  # the pad length octet is framing
        elif frame_type in FRAME_RULES:
            owner, completes = self._oversized(side, frame_type, flags, stream_id, when)
        else:
            self._anomaly("http2.unknown_frame")
            owner = CONTROL
        self._span(direction, start, start + FRAME_HEADER_BYTES, owner, FRAMING)
        body = _Body(owner, frame_type, flags, stream, length, 0, payload_from, payload_to)
        body.completes = completes
        side.body = body
        if length == 0:
            self._body_done(side)

    def _data_frame(
        self, side: _Side, flags: int, stream_id: int, length: int, start: int, when: _When
    ) -> None:
        """A whole DATA frame without padding at ``start``: what ``_start_body``,
        ``_count_body`` and ``_body_done`` do for a streamed one, in one step."""
        direction = side.direction
        stream = self._streams.get(stream_id) or self._stream_for(direction, stream_id, when)
        if stream is None:
            owner = CONTROL
        else:
            owner = stream.message
            if direction == RESP and not stream.answered:
                self._answer(stream, direction, when)
        payload = start + FRAME_HEADER_BYTES
        if length:
            # What two ``_span`` calls would do, in fewer steps: the header joins the open span
            # if it can (a response's HEADERS frame); the payload cannot grow (only DATA bodies
            # are payload, and the next frame starts with a header), so both go out at once.
            out = self._out
            last = self._last[direction]
            header_from = start
            if last is not None:
                if last[1] == start and last[2] == owner and last[3] == FRAMING:
                    header_from = last[0]
                else:
                    out.append(Span(direction, last[0], last[1], last[2], last[3]))
                self._last[direction] = None
            out.append(Span(direction, header_from, payload, owner, FRAMING))
            out.append(Span(direction, payload, payload + length, owner, PAYLOAD))
        else:
            self._span(direction, start, payload, owner, FRAMING)
        self._frame_counts[DATA] += 1
        if stream is not None and flags & END_STREAM:
            self._end_side(stream, direction)

    def _oversized(
        self, side: _Side, frame_type: int, flags: int, stream_id: int, when: _When
    ) -> tuple[int, _Block | None]:
        """A metadata frame too large to hold: count it, give up on its direction's HPACK.

        Returns its owner and the header block it completes (END_STREAM applies once its body
        is in)."""
        self._anomaly("http2.frame_too_large")
        if frame_type not in HEADER_BLOCK_TYPES:
            return BUCKET_OF_TYPE.get(frame_type, CONTROL), None
        side.hpack_ok = False
        block = side.block if frame_type == CONTINUATION else None
        if block is None or block.stream_id != stream_id:
            stream = self._stream_for(side.direction, stream_id, when)
            if stream is not None and frame_type == HEADERS:
                self._answer(stream, side.direction, when)
            end_stream = frame_type == HEADERS and bool(flags & END_STREAM)
            block = _Block(stream_id, stream, side.direction == ORIG, end_stream, decodable=False)
        if block.stream is not None:
            block.stream.decoded[side.direction] = None
        if flags & END_HEADERS:
            side.block = None
            return self._owner(block.stream), block
        side.block = block  # its CONTINUATION frames will find their message
        return self._owner(block.stream), None

    def _count_body(
        self,
        side: _Side,
        body: _Body,
        data: _Buffer | None,
        at: int,
        n: int,
        offset: int,
    ) -> None:
        """Charge ``n`` body octets at stream ``offset`` (``data[at:at+n]``; None: a gap)."""
        if n <= 0:
            return
        if body.done == 0 and body.payload_from == 1:
            # RFC 9113 section 6.1: the pad length octet; padding must leave room for it.
            pad = data[at] if data is not None else 0
            if pad > body.length - 1:
                self._anomaly("http2.bad_padding")
                body.payload_to = body.payload_from
            else:
                body.payload_to = body.length - pad
        first, last = body.done, body.done + n
        body.done = last
        if data is None:
            return  # gap bytes need no span: no packet carried them
        if body.payload_from <= first and last <= body.payload_to:
            self._span(side.direction, offset, offset + n, body.owner, PAYLOAD)  # the usual case
            return
        for lo, hi, layer in (
            (0, body.payload_from, FRAMING),
            (body.payload_from, body.payload_to, PAYLOAD),
            (body.payload_to, body.length, FRAMING),
        ):
            lo, hi = max(lo, first), min(hi, last)
            if lo < hi:
                self._span(
                    side.direction, offset + lo - first, offset + hi - first, body.owner, layer
                )

    def _body_done(self, side: _Side) -> None:
        body = side.body
        side.body = None
        if body is None:
            return
        self._frame_counts[body.frame_type] += 1  # whole frames only, as tshark counts
        block = body.completes
        if block is not None and block.end_stream and block.stream is not None:
            self._end_side(block.stream, side.direction)
        if body.stream is None:
            return
        if body.frame_type == DATA and body.flags & END_STREAM:
            self._end_side(body.stream, side.direction)

    # --- header blocks ---------------------------------------------------------------------

    def _add_fragment(
        self, side: _Side, block: _Block, fragment: bytes | None, end_headers: bool
    ) -> None:
        if fragment is None:
            block.decodable = False
        else:
            if block.stream is not None:
                block.stream.encoded[side.direction] += len(fragment)
            if block.decodable:
                if len(block.fragments) + len(fragment) > MAX_HEADER_BLOCK_BYTES:
                    self._anomaly("http2.header_block_too_large")
                    block.decodable = False
                    block.fragments = bytearray()
                else:
                    block.fragments += fragment
        side.block = None if end_headers else block
        if end_headers:
            fragments = bytes(block.fragments) if block.decodable else None
            self._complete_block(side, block.stream, block.request, block.end_stream, fragments)

    def _complete_block(
        self,
        side: _Side,
        stream: _Stream | None,
        request: bool,
        end_stream: bool,
        block: bytes | None,
    ) -> None:
        """A header block is complete: decode it (None: it cannot be) and note its fields.
        ``request``: request fields rather than response ones; ``end_stream``: the HEADERS
        frame carried END_STREAM, which takes effect now."""
        fields: _Decoded | None = None
        if block is None:
            # The dynamic table may have changed in the part we could not decode.
            side.hpack_ok = False
        elif side.hpack_ok:
            try:
                fields = side.decode_block(block)
            except HPACKError:
                self._lose_hpack(side, "http2.hpack_error")
        if stream is None:
            return
        direction = side.direction
        decoded = stream.decoded[direction]
        if fields is None or decoded is None:
            stream.decoded[direction] = None
        else:
            stream.decoded[direction] = decoded + fields.size
            self._note_fields(stream, fields, request)
        if stream.stream_id not in self._streams:
            self._note_hpack(stream)  # a late block (after RST_STREAM) updates the figure
        if end_stream:
            self._end_side(stream, direction)

    def _broken_block(self, side: _Side, anomaly: str | None = "http2.bad_continuation") -> None:
        """An open header block that will never complete: it cannot be decoded."""
        block = side.block
        if block is None:
            return
        side.block = None
        side.hpack_ok = False
        if anomaly is not None:
            self._anomaly(anomaly)
        if block.stream is not None:
            block.stream.decoded[side.direction] = None

    def _note_fields(self, stream: _Stream, fields: _Decoded, request: bool) -> None:
        out = self._out
        if request:
            for key, text in fields.request_notes:
                out.append(MessageNote(stream.message, key, text))
        elif fields.status is not None:
            out.append(MessageNote(stream.message, "status", fields.status))

    def _note_hpack(self, stream: _Stream) -> None:
        """The header compression figures of one message.

        ``encoded`` is the octets of its HPACK header blocks as sent (fragments only, without
        frame headers, padding, priority fields or promised stream ids); ``decoded`` is the RFC
        7541 section 4.1 size of the fields they carried (name + value octets + 32 per field,
        the size HPACK itself accounts in), null when a block could not be decoded.  The space
        saving h2load reports is ``1 - encoded / decoded``; computed from these figures it
        includes the 32-octet overhead per field, so compare it only with savings counted the
        same way.
        """
        encoded, decoded = stream.encoded, stream.decoded
        value = {
            "orig": {"encoded": encoded[ORIG], "decoded": decoded[ORIG]},
            "resp": {"encoded": encoded[RESP], "decoded": decoded[RESP]},
        }
        self._out.append(MessageNote(stream.message, "hpack", value))

    # --- streams and messages --------------------------------------------------------------

    @staticmethod
    def _owner(stream: _Stream | None) -> int:
        return CONTROL if stream is None else stream.message

    def _stream_for(self, direction: int, stream_id: int, when: _When) -> _Stream | None:
        """The stream's record, created at its first frame; None for a forgotten stream."""
        stream = self._streams.get(stream_id) or self._closed.get(stream_id)
        if stream is not None:
            return stream
        if stream_id <= self._forgotten_max[stream_id & 1]:
            self._anomaly("http2.frame_on_forgotten_stream")
            return None
        if self._upgrade_message is not None and stream_id == 1:
            # RFC 7540 section 3.2: the upgrade request is stream 1, half-closed by the client,
            # and already a message of the HTTP/1.1 decoder.
            stream = _Stream(1, self._upgrade_message, "stream", [True, False])
            self._track(stream)
            self._event(MessageNote(stream.message, "stream_id", 1))
            return stream
        if direction == ORIG:
            return self._new_stream(stream_id, "stream", ORIG, when)
        # First seen from resp: its request (or PUSH_PROMISE) was not captured, so orig's side
        # counts as ended; an odd stream is still a request answered now.
        if stream_id % 2 == 0:
            return self._new_stream(stream_id, "push", RESP, when)
        return self._new_stream(stream_id, "stream", ORIG, when, orig_done=True)

    def _new_stream(
        self, stream_id: int, kind: str, sender: int, when: _When, *, orig_done: bool = False
    ) -> _Stream:
        # A push carries nothing from orig (RFC 9113 section 8.4): only resp can end it.
        orig_done = orig_done or kind == "push"
        stream = _Stream(stream_id, self._ids.next(), kind, [orig_done, False])
        self._track(stream)
        self._out += (
            MessageStarted(stream.message, PROTOCOL, kind, sender, when[0], when[1]),
            MessageNote(stream.message, "stream_id", stream_id),
        )
        return stream

    def _track(self, stream: _Stream) -> None:
        self._streams[stream.stream_id] = stream
        if len(self._streams) > MAX_OPEN_STREAMS:
            oldest = self._streams[next(iter(self._streams))]
            self._anomaly("http2.too_many_open_streams")
            self._note_hpack(oldest)  # its last chance: finish notes only open streams
            self._retire(oldest)

    def _answer(self, stream: _Stream, direction: int, when: _When) -> None:
        """The first response frame (HEADERS, or DATA/RST_STREAM when no HEADERS came) from
        resp answers a request; pushes answer nothing."""
        if direction == RESP and stream.kind == "stream" and not stream.answered:
            stream.answered = True
            self._event(MessageAnswered(stream.message, when[0], when[1]))

    def _end_side(self, stream: _Stream, direction: int) -> None:
        ended = stream.ended
        ended[direction] = True
        if ended[ORIG] and ended[RESP]:
            self._end(stream)

    def _end(self, stream: _Stream) -> None:
        """Both sides ended the stream, or it was reset (RFC 9113 section 5.1)."""
        if stream.closed:
            return
        stream.closed = True
        self._note_hpack(stream)
        self._flush_both()  # the ledger retires a message by the spans before its end
        self._out.append(MessageEnded(stream.message, self._now[1]))
        self._retire(stream)

    def _retire(self, stream: _Stream) -> None:
        """Move a stream to the bounded memory of closed ones (late frames still find it)."""
        if self._streams.pop(stream.stream_id, None) is None:
            return
        self._closed[stream.stream_id] = stream
        if len(self._closed) > MAX_CLOSED_STREAMS:
            oldest = next(iter(self._closed))
            del self._closed[oldest]
            parity = oldest & 1
            self._forgotten_max[parity] = max(self._forgotten_max[parity], oldest)
