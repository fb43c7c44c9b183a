"""The AMQP decoder's state and event plumbing, under its channel and framing layers."""

from __future__ import annotations

from analyzer.decoding.events import (
    FRAMING,
    Anomaly,
    Event,
    MessageIds,
    ProtocolIdentified,
    Span,
)
from analyzer.options import DecodeOptions
from analyzer.protocols.amqp.state import (
    _Direction,
    _Lane,
    _Message,
    _PendingGet,
)
from analyzer.protocols.amqp.wire import (
    FRAME_HEADER_BYTES,
    PROTOCOL,
    Method,
)


class _Plumbing:
    """The decoder's state and its event plumbing: spans merged as they grow, anomalies, the
    feed whose packet a byte came in."""

    def __init__(
        self, ids: MessageIds, options: DecodeOptions, *, base: tuple[int, int] = (0, 0)
    ) -> None:
        self._ids = ids
        self._options = options
        self._dirs = (_Direction(base[0]), _Direction(base[1]))
        self._lanes: dict[tuple[int, int], _Lane] = {}
        self._gets: dict[int, _PendingGet] = {}  # channel -> Basic.Get waiting for its answer
        self._consumers: dict[tuple[int, str], bool] = {}  # (channel, consumer tag) -> no_ack
        self._consume_no_ack: dict[int, bool] = {}  # channel -> no_ack of a Consume awaiting Ok
        self._messages: dict[int, _Message] = {}  # started and not yet ended
        self._publishes: dict[bytes, Method] = {}  # Basic.Publish payload -> its decoded value
        self._blocked = False
        self._announced = False
        self._events: list[Event] = []
        # The span being grown per direction: [start, end, owner, layer] (merged when adjacent).
        self._open: list[list[int] | None] = [None, None]
        self._ordinal = 0
        self._ts = 0.0

    # ---------------------------------------------------------------- event plumbing

    def _begin(self, ordinal: int, ts: float) -> None:
        self._ordinal, self._ts = ordinal, ts
        if not self._announced:
            self._announced = True
            self._events.append(ProtocolIdentified(PROTOCOL))

    def _end(self) -> list[Event]:
        spans = self._open
        if spans[0] is not None or spans[1] is not None:
            self._flush_spans()
        events, self._events = self._events, []
        return events

    def _flush_spans(self) -> None:
        # Both directions spelled out: this runs before every MessageEnded and at every call's
        # end.  Notes and anomalies do not flush: the ledger handles them apart from spans, so a
        # message's framing can grow as one span across its method, header and body frames.
        spans = self._open
        orig, resp = spans
        if orig is not None:
            self._events.append(Span(0, orig[0], orig[1], orig[2], orig[3]))
            spans[0] = None
        if resp is not None:
            self._events.append(Span(1, resp[0], resp[1], resp[2], resp[3]))
            spans[1] = None

    def _emit(self, event: Event) -> None:
        # Open spans stay open: only MessageEnded needs them out first (``_maybe_end``).
        self._events.append(event)

    def _anomaly(self, name: str) -> None:
        self._emit(Anomaly(name))

    def _charge(self, direction: int, start: int, end: int, owner: int, layer: int) -> None:
        if start >= end:
            return
        span = self._open[direction]
        if span is not None and span[1] == start and span[2] == owner and span[3] == layer:
            span[1] = end
            return
        if span is not None:
            self._events.append(Span(direction, span[0], span[1], span[2], span[3]))
        self._open[direction] = [start, end, owner, layer]

    def _charge_frame(self, direction: int, start: int, size: int, owner: int, layer: int) -> None:
        """A whole frame: header and frame-end are framing, the payload is ``layer``."""
        end = start + FRAME_HEADER_BYTES + size + 1
        if layer == FRAMING or size == 0:
            self._charge(direction, start, end, owner, FRAMING)
            return
        # What three ``_charge`` calls would do, in fewer steps: the header joins the open span
        # if it can; the payload cannot merge with anything, so it goes out at once; the
        # frame-end stays open (the next frame of the message may join it).
        payload = start + FRAME_HEADER_BYTES
        spans = self._open
        events = self._events
        last = spans[direction]
        if last is not None and last[1] == start and last[2] == owner and last[3] == FRAMING:
            events.append(Span(direction, last[0], payload, owner, FRAMING))
        else:
            if last is not None:
                events.append(Span(direction, last[0], last[1], last[2], last[3]))
            events.append(Span(direction, start, payload, owner, FRAMING))
        events.append(Span(direction, payload, end - 1, owner, layer))
        spans[direction] = [end - 1, end, owner, FRAMING]

    def _charge_buffer(self, direction: int, owner: int, layer: int) -> None:
        state = self._dirs[direction]
        self._charge(direction, state.offset, state.offset + len(state.buf), owner, layer)
        state.offset += len(state.buf)
        state.buf.clear()
        state.feeds.clear()

    def _feed_at(self, state: _Direction, offset: int) -> tuple[int, float]:
        """Ordinal and ts of the feed that delivered stream byte ``offset`` (still buffered;
        the current feed when nothing was: frames parsed straight from it leave no record)."""
        found = (self._ordinal, self._ts)
        for start, ordinal, ts in state.feeds:
            if start > offset:
                break
            found = (ordinal, ts)
        return found
