"""What a capture did not let us count, said instead of silently missing (issue 17, part 6).

Per connection, folded from its messages' fields as they finish (live ones at the end, retired
ones as they retire, so a connection of a million messages costs a few integers):

- ``unanswered``: HTTP requests without a response in the capture;
- ``no_request``: HTTP/1.1 responses whose request was not captured (mid-connection, a gap);
- ``unfinished``: messages still in flight when the capture (or the connection) ended;
- ``inferred_lost``: messages that left no byte in the capture but whose absence the protocol
  shows: HTTP/2 client stream ids are odd and increase by 2 (RFC 9113 5.1.1), so a skip between
  the lowest and highest seen is a stream lost whole; AMQP delivery tags count 1, 2, 3 ... per
  channel (AMQP 0-9-1 1.8.3.1: "the server MUST NOT use a zero value"; tags are assigned in
  order), so a skip is a ``Basic.Deliver`` lost whole.  Inferred only on connections that lost
  bytes (``missing_bytes`` > 0): elsewhere a skip is the peer's choice, not our loss.

Each tally is a count and a (lowest, highest) pair per sequence: O(1) per message, mergeable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Step between consecutive client-initiated HTTP/2 stream identifiers (odd numbers).
HTTP2_STREAM_STEP = 2


@dataclass(slots=True)
class _Sequence:
    """Members seen of an arithmetic sequence, and its lowest and highest seen."""

    seen: int = 0
    low: int | None = None
    high: int | None = None

    def add(self, value: int) -> None:
        self.seen += 1
        self.low = value if self.low is None else min(self.low, value)
        self.high = value if self.high is None else max(self.high, value)

    def merge(self, other: _Sequence) -> None:
        self.seen += other.seen
        for value in (other.low, other.high):
            if value is not None:
                self.low = value if self.low is None else min(self.low, value)
                self.high = value if self.high is None else max(self.high, value)

    def missing(self, step: int) -> int:
        if self.low is None or self.high is None:
            return 0
        return max((self.high - self.low) // step + 1 - self.seen, 0)


@dataclass(slots=True)
class MessageTally:
    """One connection's account of what it did not count."""

    unanswered: int = 0
    no_request: int = 0
    unfinished: int = 0
    streams: _Sequence = field(default_factory=_Sequence)
    #: channel -> delivery tags of Basic.Deliver seen on it
    deliveries: dict[int, _Sequence] = field(default_factory=dict)

    def add_fields(self, fields: Mapping[str, Any]) -> None:
        """Fold one message (``accounting.message_fields``)."""
        detail = fields.get("detail") or {}
        protocol = fields["protocol"]
        if fields.get("end_ts") is None:
            self.unfinished += 1
        if protocol in ("http1", "http2") and fields["kind"] != "push":
            if fields.get("answer_ts") is None:
                self.unanswered += 1
            # HTTP/2 after a gap loses its HPACK state, and with it the method of requests it
            # did see: only HTTP/1.1's request line tells a missing request for sure.
            if protocol == "http1" and "method" not in detail:
                self.no_request += 1
        stream = detail.get("stream_id")
        if protocol == "http2" and isinstance(stream, int) and stream % 2 == 1:
            self.streams.add(stream)
        tag = detail.get("delivery_tag")
        if fields["kind"] == "deliver" and isinstance(tag, int):
            channel = detail.get("channel")
            key = channel if isinstance(channel, int) else 0
            self.deliveries.setdefault(key, _Sequence()).add(tag)

    def merge(self, other: MessageTally) -> None:
        self.unanswered += other.unanswered
        self.no_request += other.no_request
        self.unfinished += other.unfinished
        self.streams.merge(other.streams)
        for channel, tags in other.deliveries.items():
            self.deliveries.setdefault(channel, _Sequence()).merge(tags)

    def inferred(self) -> dict[str, int]:
        """Messages lost whole, by the sequence that shows it."""
        return {
            "http2.stream_ids": self.streams.missing(HTTP2_STREAM_STEP),
            "amqp.delivery_tags": sum(s.missing(1) for s in self.deliveries.values()),
        }

    def as_dict(self, *, lost_bytes: bool, mid_stream: bool) -> dict[str, Any]:
        inferred = self.inferred() if lost_bytes else dict.fromkeys(self.inferred(), 0)
        return {
            "unanswered": self.unanswered,
            "no_request": self.no_request,
            "unfinished": self.unfinished,
            "mid_stream": mid_stream,
            "inferred_lost": sum(inferred.values()),
            "inferred_by": inferred,
        }


#: The counters of a connection's ``not_counted`` that add up in the summary.
SUMMED = ("unanswered", "no_request", "unfinished", "inferred_lost")


def add_account(total: dict[str, int], account: Mapping[str, Any]) -> None:
    """Fold a connection's ``not_counted`` into a summary's."""
    for name in SUMMED:
        total[name] = total.get(name, 0) + int(account[name])
    total["mid_stream_connections"] = total.get("mid_stream_connections", 0) + int(
        bool(account["mid_stream"])
    )


__all__ = ["SUMMED", "MessageTally", "add_account"]
