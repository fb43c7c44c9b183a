"""HTTP/2 decoder: frames (RFC 9113) and HPACK header blocks (RFC 7541) to messages and spans.

Layout: ``frames`` (frame header rules and bounds), ``state`` (per-direction HPACK and
per-stream state), ``messages`` (event plumbing, streams as messages), ``grpc_calls`` (gRPC
messages in DATA payload), ``bodies`` (streamed DATA bodies), ``blocks`` (header blocks),
``control`` (connection-level and unsolicited frames), ``walker`` (cutting each direction into
frames); each layer is a base class of the next, and ``Http2Decoder`` here is the StreamDecoder
interface on top.

One message per stream (DESIGN.md section 2), plus, on a gRPC call's stream, one per
length-prefixed message (``grpc_calls``).  The decoder observes both directions of a
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

from analyzer.decoding.events import Event, MessageIds
from analyzer.options import DecodeOptions
from analyzer.protocols.http2.frames import (
    ACK,
    BUCKET_OF_TYPE,
    BUFFERED_TYPES,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    FRAME_HEADER_BYTES,
    FRAME_NAMES,
    FRAME_RULES,
    GOAWAY,
    HEADER_BLOCK_TYPES,
    HEADERS,
    MAX_BUFFERED_FRAME_BYTES,
    MAX_CLOSED_STREAMS,
    MAX_HEADER_BLOCK_BYTES,
    MAX_HEADER_LIST_BYTES,
    MAX_HPACK_TABLE_BYTES,
    MAX_OPEN_STREAMS,
    MAX_RESYNC_FRAME_BYTES,
    MAX_RESYNC_STREAM_ID,
    PADDED,
    PING,
    PREFACE,
    PRIORITY,
    PRIORITY_FLAG,
    PROTOCOL,
    PUSH_PROMISE,
    RESYNC_CHAIN,
    RST_STREAM,
    SETTINGS,
    UNSOLICITED_TYPES,
    WINDOW_UPDATE,
    Bounds,
    breaks_rules,
    parse_frame_header,
    plausible,
)
from analyzer.protocols.http2.hpack_memo import quiet_hpack_debug
from analyzer.protocols.http2.state import (
    HPACK_ENTRY_OVERHEAD,
    MAX_CACHED_BLOCK_BYTES,
    MAX_CACHED_BLOCKS,
    MAX_NOTE_CHARS,
    REQUEST_NOTES,
    _Side,
)
from analyzer.protocols.http2.walker import _Walker

# The public names of the HTTP/2 decoder stay importable from here (tests and fuzz targets use
# them; the bounds are read from this module when a decoder is made, so a test may lower them).
__all__ = [
    "ACK",
    "BUCKET_OF_TYPE",
    "BUFFERED_TYPES",
    "CONTINUATION",
    "DATA",
    "END_HEADERS",
    "END_STREAM",
    "FRAME_HEADER_BYTES",
    "FRAME_NAMES",
    "FRAME_RULES",
    "GOAWAY",
    "HEADERS",
    "HEADER_BLOCK_TYPES",
    "HPACK_ENTRY_OVERHEAD",
    "MAX_BUFFERED_FRAME_BYTES",
    "MAX_CACHED_BLOCKS",
    "MAX_CACHED_BLOCK_BYTES",
    "MAX_CLOSED_STREAMS",
    "MAX_HEADER_BLOCK_BYTES",
    "MAX_HEADER_LIST_BYTES",
    "MAX_HPACK_TABLE_BYTES",
    "MAX_NOTE_CHARS",
    "MAX_OPEN_STREAMS",
    "MAX_RESYNC_FRAME_BYTES",
    "MAX_RESYNC_STREAM_ID",
    "PADDED",
    "PING",
    "PREFACE",
    "PRIORITY",
    "PRIORITY_FLAG",
    "PROTOCOL",
    "PUSH_PROMISE",
    "REQUEST_NOTES",
    "RESYNC_CHAIN",
    "RST_STREAM",
    "SETTINGS",
    "UNSOLICITED_TYPES",
    "WINDOW_UPDATE",
    "Http2Decoder",
    "_Side",
    "breaks_rules",
    "parse_frame_header",
    "plausible",
]

# hpack's debug calls (about eight per decoded block) cost more than a memo hit: see hpack_memo.
quiet_hpack_debug()


class Http2Decoder(_Walker):
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
        bounds = Bounds(MAX_BUFFERED_FRAME_BYTES, MAX_OPEN_STREAMS, MAX_CLOSED_STREAMS)
        super().__init__(ids, options, base, upgrade_message if upgraded else None, bounds)

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
            self._grpc_finish(stream)
        return self._take()
