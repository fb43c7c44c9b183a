"""What every part of the HTTP/1.x decoder shares: its state and the spans and events it writes.

The decoder is one class built from a chain of mixins, one module each (see decoder.py), because
every part reads and writes the same per-connection state on the per-packet path, where a hop
through another object per call would cost the budget of DESIGN.md section 7.  This base holds
that state and the writing of spans and notes; it declares the few calls an earlier part makes
into a later one.
"""

from __future__ import annotations

from collections import deque

from analyzer.decoding.events import (
    ORIG,
    RESP,
    Event,
    MessageIds,
    MessageNote,
    ProtocolIdentified,
    Span,
    StreamDecoder,
)
from analyzer.options import DecodeOptions
from analyzer.protocols.http1.state import PROTOCOL, Direction, Exchange, Head, Held


class DecoderBase:
    """State of one HTTP/1.x connection's decoder, and the events it writes."""

    def __init__(
        self, ids: MessageIds, options: DecodeOptions, *, base: tuple[int, int] = (0, 0)
    ) -> None:
        self._ids = ids
        self._options = options
        self._dirs = (Direction(ORIG, base[ORIG]), Direction(RESP, base[RESP]))
        #: exchanges whose response is not complete, in request order; [0] is being answered
        self._pending: deque[Exchange] = deque()
        self._out: list[Event] = [ProtocolIdentified(PROTOCOL)]
        #: per direction, the span being grown: [start, end, owner, layer]
        self._open: list[list[int] | None] = [None, None]
        self._ts = 0.0
        self._inner: StreamDecoder | None = None
        self._held: list[Held] = []
        self._held_bytes = 0
        #: the Upgrade/CONNECT exchange orig waits on
        self._hold_exchange: Exchange | None = None
        #: (protocol, exchange, ts) once resp switched protocols and orig has yet to follow
        self._switch: tuple[str, Exchange, float] | None = None
        #: per direction, whole heads the fast path read -> what it read from them (``Head``),
        #: so a repeated head is not parsed again
        self._heads: tuple[dict[bytes, Head], dict[bytes, Head]] = ({}, {})

    # -- calls defined by later parts (decoder.py) ---------------------------------------------

    def _feed(self, direction: int, data: bytes, ordinal: int, ts: float) -> None:
        """Decode ``data`` of ``direction`` (the decoder's ``feed`` before flushing)."""
        raise NotImplementedError

    def _gap(self, direction: int, length: int, ordinal: int, ts: float) -> None:
        """Skip ``length`` lost bytes of ``direction`` (gaps.py)."""
        raise NotImplementedError

    def _eof(self, direction: int, ordinal: int, ts: float) -> None:
        """``direction`` ended (the decoder's ``eof`` before flushing)."""
        raise NotImplementedError

    def _fields(self, buf: bytes | bytearray, newline: int, end: int) -> dict[bytes, bytes]:
        """The framing fields of a header block (``wire.parse_fields``)."""
        raise NotImplementedError

    def _inner_decoder(self, protocol: str, message: int, base: tuple[int, int]) -> StreamDecoder:
        """The decoder that takes the connection over after a switch (decoder.py)."""
        raise NotImplementedError

    # -- events --------------------------------------------------------------------------------

    def _flush(self) -> list[Event]:
        self._close_spans()
        out = self._out
        self._out = []
        return out

    def _close_spans(self) -> None:
        # Both directions spelled out (and in ``feed``): this runs at the end of every call.
        spans = self._open
        orig, resp = spans
        if orig is not None:
            self._out.append(Span(ORIG, orig[0], orig[1], orig[2], orig[3]))
            spans[ORIG] = None
        if resp is not None:
            self._out.append(Span(RESP, resp[0], resp[1], resp[2], resp[3]))
            spans[RESP] = None

    def _charge(self, st: Direction, start: int, end: int, owner: int, layer: int) -> None:
        """Buffer bytes [start, end) belong to ``owner`` at ``layer``; merges neighbours."""
        if end <= start:
            return
        first, last = st.base + start, st.base + end
        span = self._open[st.direction]
        if span is not None:
            if span[1] == first and span[2] == owner and span[3] == layer:
                span[1] = last
                return
            self._out.append(Span(st.direction, span[0], span[1], span[2], span[3]))
        self._open[st.direction] = [first, last, owner, layer]

    def _origin(self, st: Direction, offset: int) -> tuple[int, float]:
        """Ordinal and ts of the feed that delivered stream byte ``offset``."""
        chunks = st.chunks
        _, ordinal, ts = chunks[0]
        if len(chunks) == 1:  # the usual case: the bytes came in one feed
            return ordinal, ts
        for start, chunk_ordinal, chunk_ts in chunks:
            if start > offset:
                break
            ordinal, ts = chunk_ordinal, chunk_ts
        return ordinal, ts

    def _note(self, exchange: Exchange, key: str, value: object) -> None:
        if exchange.message is not None:
            self._out.append(MessageNote(exchange.message, key, value))

    def _note_bodies(self, exchange: Exchange) -> None:
        """Body sizes of a message cut short (complete ones were noted when they ended)."""
        if not exchange.noted & 1 and exchange.req_start is not None:
            exchange.noted |= 1
            self._note(exchange, "request_body_bytes", exchange.request_body_bytes)
        if not exchange.noted & 2 and exchange.resp_start is not None:
            exchange.noted |= 2
            self._note(exchange, "response_body_bytes", exchange.response_body_bytes)
