"""Streams and messages: the decoder's shared state, its event plumbing (spans merged while
adjacent), and each stream's life as a message (started, answered, noted, ended, retired)."""

from __future__ import annotations

from analyzer.decoding.events import (
    CONTROL,
    ORIG,
    RESP,
    Anomaly,
    Event,
    MessageAnswered,
    MessageEnded,
    MessageIds,
    MessageNote,
    MessageStarted,
    ProtocolIdentified,
    Span,
)
from analyzer.options import DecodeOptions
from analyzer.protocols.http2.frames import (
    PROTOCOL,
    Bounds,
)
from analyzer.protocols.http2.state import (
    _FIRST,
    _PREFACE,
    _Decoded,
    _Side,
    _Stream,
    _When,
)


class _Messages:
    """The state every part of the decoder shares, and what it does with streams."""

    def __init__(
        self,
        ids: MessageIds,
        options: DecodeOptions,
        base: tuple[int, int],
        upgrade_message: int | None,
        bounds: Bounds,
    ) -> None:
        """``upgrade_message``: the message of stream 1 when the HTTP/1.1 decoder handed over
        after an upgrade (RFC 7540 section 3.2), else None."""
        self._ids = ids
        self._options = options
        self._bounds = bounds
        self._sides = (_Side(ORIG, base[ORIG], _PREFACE), _Side(RESP, base[RESP], _FIRST))
        self._upgrade_message = upgrade_message
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
        #: ids of open streams that carry a gRPC call
        self._grpc_streams: set[int] = set()

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

    def _lose_hpack(self, side: _Side, anomaly: str) -> None:
        if side.hpack_ok:
            side.hpack_ok = False
            self._anomaly(anomaly)

    # --- notes ----------------------------------------------------------------------------

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
        if len(self._streams) > self._bounds.open_streams:
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
        self._grpc_streams.discard(stream.stream_id)
        self._closed[stream.stream_id] = stream
        if len(self._closed) > self._bounds.closed_streams:
            oldest = next(iter(self._closed))
            del self._closed[oldest]
            parity = oldest & 1
            self._forgotten_max[parity] = max(self._forgotten_max[parity], oldest)
