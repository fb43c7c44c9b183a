"""NATS (the client protocol, text over TCP): every line and message body charged to its owner.

Definitions (issue 16): a message is one PUB or HPUB (kind ``publish``) or MSG or HMSG
(``deliver``); its control line, the HPUB/HMSG header block (``NATS/1.0`` and the headers, as an
HTTP header block is framing) and the closing CRLF are framing, the message bytes payload.
INFO and CONNECT are setup (an INFO after the first message, a cluster's topology update, is
control), SUB, UNSUB, PING, PONG, +OK and -ERR control.  Nothing answers a message at the
protocol level (request-reply is two messages), so no message costs a round trip.

Message bodies are never buffered: their bytes are charged as they stream past, so memory is one
control line (``MAX_LINE_BYTES``) per direction.  After bytes that are not NATS (an unknown verb,
a body not followed by CRLF, a gap) the direction resynchronises on the next line that starts
with a known verb; the bytes skipped are ``undecoded``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from analyzer.decoding.events import (
    CONTROL,
    FRAMING,
    OPAQUE,
    PAYLOAD,
    SETUP,
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
from analyzer.protocols.nats.wire import SETUP_VERBS, BadLine, Line, parse_line

PROTOCOL = "nats"
#: Longest control line held while waiting for its CRLF.  nats-server's max_control_line
#: defaults to 4 KiB for clients; its own INFO grows with a cluster's connect_urls, so allow more.
MAX_LINE_BYTES = 64 * 1024
CRLF = b"\r\n"

# What a direction is reading: control lines, a message's bytes, or nothing it understands.
_LINES, _BODY, _RESYNC = range(3)


@dataclass(slots=True)
class _Direction:
    """One direction's reading state."""

    #: stream offset of the next byte fed
    offset: int
    mode: int = _LINES
    #: the control line read so far (no CRLF seen yet)
    line: bytearray = field(default_factory=bytearray)
    #: (ordinal, ts) of the feed that brought the line's first byte
    line_origin: tuple[int, float] = (0, 0.0)
    #: the message whose bytes are streaming, and what is left of them: header block, payload,
    #: closing CRLF
    message: int = -1
    header_left: int = 0
    payload_left: int = 0
    crlf_left: int = 0


class NatsDecoder(EventWriter):
    """Sans-IO NATS decoder: bytes of both directions in, ledger events out."""

    def __init__(
        self, ids: MessageIds, options: DecodeOptions, *, base: tuple[int, int] = (0, 0)
    ) -> None:
        self._ids = ids
        self._options = options
        self._dirs = (_Direction(base[0]), _Direction(base[1]))
        self._messages_seen = False
        self._events: list[Event] = [ProtocolIdentified(PROTOCOL)]
        self._ordinal = 0
        self._ts = 0.0

    # ---------------------------------------------------------------- the StreamDecoder API

    def feed(self, direction: int, data: bytes, ordinal: int, ts: float) -> list[Event]:
        self._ordinal, self._ts = ordinal, ts
        state = self._dirs[direction]
        pos = 0
        while pos < len(data):
            if state.mode == _BODY:
                pos = self._body(direction, data, pos)
            else:
                pos = self._lines(direction, data, pos)
        return self._flush()

    def gap(self, direction: int, length: int, ordinal: int, ts: float) -> list[Event]:
        self._ordinal, self._ts = ordinal, ts
        state = self._dirs[direction]
        self._anomaly("nats.gap")
        if state.mode == _BODY and not state.header_left and length <= state.payload_left:
            # Inside a message's payload: its end is still known, so framing survives.
            state.payload_left -= length
        else:
            self._lose(direction)
        state.offset += length
        return self._flush()

    def eof(self, direction: int, ordinal: int, ts: float) -> list[Event]:
        return self._flush()

    def finish(self, ts: float) -> list[Event]:
        self._ts = ts
        for direction, state in enumerate(self._dirs):
            if state.mode == _BODY or (state.line and state.mode == _LINES):
                self._anomaly("nats.truncated")
            self._lose(direction)
        return self._flush()

    # ---------------------------------------------------------------- plumbing

    def _lose(self, direction: int) -> None:
        """Give up on what this direction was reading: a held line is undecoded, a streaming
        message ends with the bytes it got; then look for the next line we know."""
        state = self._dirs[direction]
        if state.line:
            start = state.offset - len(state.line)
            self._span(direction, start, state.offset, UNDECODED, OPAQUE)
            state.line.clear()
        if state.mode == _BODY:
            self._events.append(MessageEnded(state.message, self._ts))
        state.mode = _RESYNC

    # ---------------------------------------------------------------- control lines

    def _lines(self, direction: int, data: bytes, pos: int) -> int:
        """Read (part of) a control line from ``data[pos:]``; the position after it."""
        state = self._dirs[direction]
        if not state.line:
            state.line_origin = (self._ordinal, self._ts)
        room = pos + MAX_LINE_BYTES - len(state.line) + 1
        newline = data.find(b"\n", pos, room)
        stop = min(len(data), room) if newline < 0 else newline + 1
        state.line += data[pos:stop]
        state.offset += stop - pos
        if newline >= 0:
            self._line(direction)
        elif len(state.line) > MAX_LINE_BYTES:
            if state.mode == _LINES:
                self._anomaly("nats.line_too_long")
            self._lose(direction)
        return stop

    def _line(self, direction: int) -> None:
        """A whole control line (ending in LF) is in ``state.line``."""
        state = self._dirs[direction]
        line = bytes(state.line)
        state.line.clear()
        start = state.offset - len(line)
        try:
            parsed = parse_line(line)
        except BadLine as err:
            if state.mode == _LINES:  # one anomaly per loss of sync, not per skipped line
                self._anomaly(err.anomaly)
            state.mode = _RESYNC
            self._span(direction, start, state.offset, UNDECODED, OPAQUE)
            return
        state.mode = _LINES
        if parsed.kind is not None:
            self._start_message(direction, start, parsed)
            return
        if parsed.verb in SETUP_VERBS and (parsed.verb == b"CONNECT" or not self._messages_seen):
            owner = SETUP
        else:
            owner = CONTROL
        self._span(direction, start, state.offset, owner, FRAMING)

    def _start_message(self, direction: int, start: int, line: Line) -> None:
        state = self._dirs[direction]
        assert line.kind is not None
        message = self._ids.next()
        self._messages_seen = True
        ordinal, ts = state.line_origin
        self._events += (
            MessageStarted(message, PROTOCOL, line.kind, direction, ordinal, ts),
            MessageNote(message, "subject", line.subject),
        )
        self._span(direction, start, state.offset, message, FRAMING)
        state.mode = _BODY
        state.message = message
        state.header_left = line.header_bytes
        state.payload_left = line.total_bytes - line.header_bytes
        state.crlf_left = len(CRLF)

    # ---------------------------------------------------------------- message bodies

    def _body(self, direction: int, data: bytes, pos: int) -> int:
        """Charge the next bytes of the streaming message; the position after them."""
        state = self._dirs[direction]
        message = state.message
        for attr, layer in (("header_left", FRAMING), ("payload_left", PAYLOAD)):
            left = getattr(state, attr)
            take = min(left, len(data) - pos)
            self._span(direction, state.offset, state.offset + take, message, layer)
            setattr(state, attr, left - take)
            state.offset += take
            pos += take
        while pos < len(data) and state.crlf_left:
            expected = CRLF[len(CRLF) - state.crlf_left]
            if data[pos] != expected:
                # The size lied or bytes went missing: the message ends here, and the byte
                # that should have closed it is read as the start of whatever comes next.
                self._anomaly("nats.bad_message_end")
                self._events.append(MessageEnded(message, self._ts))
                state.mode = _RESYNC
                return pos
            self._span(direction, state.offset, state.offset + 1, message, FRAMING)
            state.offset += 1
            state.crlf_left -= 1
            pos += 1
        if not state.crlf_left:
            self._events.append(MessageEnded(message, self._ts))
            state.mode = _LINES
        return pos
