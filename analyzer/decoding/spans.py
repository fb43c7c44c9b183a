"""The event list a stream decoder fills between two calls, shared by the newer decoders.

A decoder appends spans, anomalies and message events while it reads one piece of a stream and
hands them over at the end of the call (``_flush``).  Spans that touch and share direction, owner
and layer are merged as they are appended, so a message read over many packets costs one span per
run of bytes, not one per packet (fewer events for the ledger, DESIGN.md section 7).
"""

from __future__ import annotations

from analyzer.decoding.events import Anomaly, Event, Span


class EventWriter:
    """The ``_events`` list of one decoder and the three ways every decoder writes into it."""

    _events: list[Event]

    def _flush(self) -> list[Event]:
        """The events of this call; the list starts empty for the next one."""
        events, self._events = self._events, []
        return events

    def _anomaly(self, name: str) -> None:
        self._events.append(Anomaly(name))

    def _span(self, direction: int, start: int, end: int, owner: int, layer: int) -> None:
        """Append a span, merged with the previous one when they touch (fewer events)."""
        if end <= start:
            return
        events = self._events
        last = events[-1] if events else None
        if (
            type(last) is Span
            and last.direction == direction
            and last.end == start
            and last.owner == owner
            and last.layer == layer
        ):
            last.end = end
            return
        events.append(Span(direction, start, end, owner, layer))
