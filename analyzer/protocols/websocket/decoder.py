"""WebSocket (RFC 6455) after an HTTP/1.1 Upgrade: frames charged to messages and buckets.

Definitions (issue 16, DESIGN.md section 2.1): a message is one complete data message, its
continuation frames joined (section 5.4), kind ``client_to_server`` or ``server_to_client``.
Frame headers and masking keys are framing, the data bytes payload as on the wire (still masked,
and compressed when permessage-deflate set RSV1: RFC 7692).  PING and PONG frames are control,
CLOSE teardown.  Nothing answers a data message at the protocol level: no round trips.

The decoder is built by the HTTP/1.1 decoder when a ``101 Switching Protocols`` answers an
``Upgrade: websocket`` request; ``orig`` is the client.  Payloads are never buffered (a frame may
announce up to 2^63-1 bytes): only a header of at most 14 bytes is held, the rest is charged as
it streams past.  A header no endpoint may send (a reserved opcode, a 64-bit length with its top
bit set, a fragmented or oversized control frame) loses the framing of that direction: the rest
of it is ``undecoded``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from analyzer.decoding.events import (
    CONTROL,
    FRAMING,
    OPAQUE,
    PAYLOAD,
    TEARDOWN,
    UNDECODED,
    Event,
    MessageEnded,
    MessageIds,
    MessageNote,
    MessageStarted,
    ProtocolIdentified,
)
from analyzer.decoding.spans import EventWriter
from analyzer.options import DecodeOptions
from analyzer.protocols.websocket.wire import (
    CLOSE,
    CONTINUATION,
    CONTROL_OPCODES,
    MAX_HEADER_BYTES,
    BadFrame,
    FrameHeader,
    read_header,
)

PROTOCOL = "websocket"
KINDS = ("client_to_server", "server_to_client")

# What a direction is reading.
_HEADER, _PAYLOAD, _LOST = range(3)


@dataclass(slots=True)
class _Direction:
    """One direction's framing state."""

    #: stream offset of the next byte fed
    offset: int
    mode: int = _HEADER
    #: the frame header read so far
    header: bytearray = field(default_factory=bytearray)
    #: (ordinal, ts) of the feed that brought the header's first byte
    header_origin: tuple[int, float] = (0, 0.0)
    #: payload bytes of the current frame still to come, and where they go
    left: int = 0
    owner: int = UNDECODED
    layer: int = OPAQUE
    #: the current frame ends its message (FIN on a data frame)
    ends: bool = False
    #: the data message whose final frame has not come yet (-1: none)
    message: int = -1


class WebSocketDecoder(EventWriter):
    """Sans-IO RFC 6455 decoder: bytes of both directions in, ledger events out."""

    def __init__(
        self, ids: MessageIds, options: DecodeOptions, *, base: tuple[int, int] = (0, 0)
    ) -> None:
        self._ids = ids
        self._options = options
        self._dirs = (_Direction(base[0]), _Direction(base[1]))
        self._events: list[Event] = [ProtocolIdentified(PROTOCOL)]
        self._ordinal = 0
        self._ts = 0.0

    # ---------------------------------------------------------------- the StreamDecoder API

    def feed(self, direction: int, data: bytes, ordinal: int, ts: float) -> list[Event]:
        self._ordinal, self._ts = ordinal, ts
        state = self._dirs[direction]
        pos = 0
        while pos < len(data):
            if state.mode == _PAYLOAD:
                pos = self._payload(direction, data, pos)
            elif state.mode == _HEADER:
                pos = self._header(direction, data, pos)
            else:
                end = state.offset + len(data) - pos
                self._span(direction, state.offset, end, UNDECODED, OPAQUE)
                state.offset, pos = end, len(data)
        return self._flush()

    def gap(self, direction: int, length: int, ordinal: int, ts: float) -> list[Event]:
        self._ordinal, self._ts = ordinal, ts
        state = self._dirs[direction]
        self._anomaly("websocket.gap")
        if state.mode == _PAYLOAD and length <= state.left:
            state.left -= length  # inside a payload: the next header's place is still known
            state.offset += length
            if not state.left:
                self._frame_done(direction)
            return self._flush()
        self._lose(direction)
        state.offset += length
        return self._flush()

    def eof(self, direction: int, ordinal: int, ts: float) -> list[Event]:
        return self._flush()

    def finish(self, ts: float) -> list[Event]:
        self._ts = ts
        for direction, state in enumerate(self._dirs):
            if state.header or state.mode == _PAYLOAD:
                self._anomaly("websocket.truncated_frame")
            if state.message >= 0 and state.mode != _PAYLOAD:
                self._anomaly("websocket.unfinished_message")
            self._lose(direction)
        return self._flush()

    # ---------------------------------------------------------------- plumbing

    def _end_message(self, state: _Direction) -> None:
        if state.message >= 0:
            self._events.append(MessageEnded(state.message, self._ts))
            state.message = -1

    def _lose(self, direction: int) -> None:
        """Framing is gone in this direction: a held header is undecoded, so is what follows."""
        state = self._dirs[direction]
        if state.header:
            start = state.offset - len(state.header)
            self._span(direction, start, state.offset, UNDECODED, OPAQUE)
            state.header.clear()
        self._end_message(state)
        state.mode = _LOST

    # ---------------------------------------------------------------- frames

    def _header(self, direction: int, data: bytes, pos: int) -> int:
        """Read (part of) a frame header; the position after what was taken."""
        state = self._dirs[direction]
        if not state.header:
            state.header_origin = (self._ordinal, self._ts)
        before = len(state.header)
        state.header += data[pos : pos + MAX_HEADER_BYTES - before]
        added = len(state.header) - before
        try:
            header = read_header(state.header)
        except BadFrame as err:
            self._anomaly(err.anomaly)
            state.offset += added
            self._lose(direction)
            return pos + added
        if header is None:
            state.offset += added
            return pos + added
        taken = header.header_bytes - before
        del state.header[header.header_bytes :]
        state.offset += taken
        self._frame(direction, header)
        return pos + taken

    def _frame(self, direction: int, header: FrameHeader) -> None:
        """A whole header is in ``state.header``: charge it and set up its payload."""
        state = self._dirs[direction]
        start = state.offset - header.header_bytes
        state.header.clear()
        state.ends = False
        if header.opcode in CONTROL_OPCODES:
            owner = TEARDOWN if header.opcode == CLOSE else CONTROL
            state.owner, state.layer = owner, FRAMING
        elif header.opcode == CONTINUATION:
            if state.message < 0:
                self._anomaly("websocket.orphan_continuation")
                state.owner, state.layer = UNDECODED, OPAQUE
            else:
                state.owner, state.layer, state.ends = state.message, PAYLOAD, header.fin
        else:
            if state.message >= 0:
                # Section 5.4: a new data message before the last one's final fragment.
                self._anomaly("websocket.unfinished_message")
                self._end_message(state)
            self._start_message(direction, header)
            state.owner, state.layer, state.ends = state.message, PAYLOAD, header.fin
        header_layer = OPAQUE if state.owner == UNDECODED else FRAMING
        self._span(direction, start, state.offset, state.owner, header_layer)
        state.left = header.payload_bytes
        state.mode = _PAYLOAD
        if not state.left:
            self._frame_done(direction)

    def _start_message(self, direction: int, header: FrameHeader) -> None:
        state = self._dirs[direction]
        message = self._ids.next()
        ordinal, ts = state.header_origin
        self._events += (
            MessageStarted(message, PROTOCOL, KINDS[direction], direction, ordinal, ts),
            MessageNote(message, "opcode", "text" if header.opcode == 1 else "binary"),
        )
        if header.rsv1:
            self._events.append(MessageNote(message, "compressed", True))
        state.message = message

    def _payload(self, direction: int, data: bytes, pos: int) -> int:
        state = self._dirs[direction]
        take = min(state.left, len(data) - pos)
        self._span(direction, state.offset, state.offset + take, state.owner, state.layer)
        state.offset += take
        state.left -= take
        if not state.left:
            self._frame_done(direction)
        return pos + take

    def _frame_done(self, direction: int) -> None:
        state = self._dirs[direction]
        state.mode = _HEADER
        if state.ends:
            self._end_message(state)
            state.ends = False
