"""Latency of answered messages, kept in mergeable sketches (DDSketch).

A message that has an answer (an HTTP request and its response, an AMQP publish and its confirm,
``Basic.Get`` and ``Basic.GetOk``, a delivery and its ack) has two latencies, both measured from
the message's first byte: to the answer's first byte (``latency``, what Wireshark's ``http.time``
approaches for one-segment responses) and to the message's last byte (``latency_last_byte``,
the answer complete).  Timing is reported, never counted: no count depends on it (DESIGN.md 4).

Per connection and per protocol the figures come from a DDSketch (Masson, Rim and Lee, VLDB 2019)
with ``RELATIVE_ACCURACY``: every quantile it reports is within that fraction of a true sample
value.  Sketches merge exactly (bin counts add), so shards of one run combine into the figures one
process would give; ``to_json``/``from_json`` carry one across processes.  min, max, mean and
count are exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ddsketch import DDSketch

#: Quantiles within 1% of a true value: 0.01 ms on a 1 ms answer, finer than the clock jitter of
#: most captures, at some 230 bins per decade of range at most (from 1 us to 100 s: < 2,000).
RELATIVE_ACCURACY = 0.01
#: The quantiles every latency summary reports, by name.
QUANTILES: tuple[tuple[str, float], ...] = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99))

Stats = dict[str, float | int | None]
_NAMES = tuple(name for name, _ in QUANTILES)


class LatencySketch:
    """Seconds, summarised: exact count, min, mean and max; quantiles from a DDSketch."""

    __slots__ = ("_sketch",)

    def __init__(self) -> None:
        self._sketch = DDSketch(RELATIVE_ACCURACY)

    @property
    def count(self) -> int:
        return int(self._sketch.count)

    def add(self, seconds: float) -> None:
        # Reordered captures can stamp an answer before its question by a few microseconds:
        # that is a latency of (about) nothing, not a negative one.
        self._sketch.add(max(seconds, 0.0))

    def merge(self, other: LatencySketch) -> None:
        if other.count:
            self._sketch.merge(other._sketch)

    def stats(self) -> Stats:
        """count, min, mean, p50, p90, p99, max (all None but count when empty)."""
        sketch = self._sketch
        if not sketch.count:
            return {"count": 0, "min": None, "mean": None, **dict.fromkeys(_NAMES), "max": None}
        low, high = sketch._min, sketch._max
        out: Stats = {"count": self.count, "min": low, "mean": sketch.avg}
        for name, q in QUANTILES:
            # A bucket's representative value can stray past the extremes by the accuracy.
            value = sketch.get_quantile_value(q)
            out[name] = None if value is None else min(max(value, low), high)
        out["max"] = high
        return out

    def to_json(self) -> dict[str, Any]:
        """The sketch as JSON values: its non-empty bins (key -> count) and exact moments."""
        sketch = self._sketch
        store = sketch._store
        bins = [
            [index + store.offset, weight] for index, weight in enumerate(store.bins) if weight
        ]
        return {
            "relative_accuracy": RELATIVE_ACCURACY,
            "bins": bins,
            "zero": sketch._zero_count,
            "count": sketch.count,
            "sum": sketch.sum,
            "min": sketch._min if sketch.count else None,
            "max": sketch._max if sketch.count else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LatencySketch:
        """The inverse of ``to_json``; a sketch of another accuracy cannot merge: refused."""
        if data.get("relative_accuracy") != RELATIVE_ACCURACY:
            raise ValueError(f"latency sketch of accuracy {data.get('relative_accuracy')!r}")
        out = cls()
        sketch = out._sketch
        for key, weight in data["bins"]:
            sketch._store.add(int(key), float(weight))
        if data["count"]:
            sketch._zero_count = float(data["zero"])
            sketch._count = float(data["count"])
            sketch._sum = float(data["sum"])
            sketch._min = float(data["min"])
            sketch._max = float(data["max"])
        return out


def answer_latencies(
    start_ts: float, answer_ts: float | None, end_ts: float | None
) -> tuple[float | None, float | None]:
    """(to the answer's first byte, to the message's last byte); None for unanswered messages."""
    if answer_ts is None:
        return None, None
    first = max(answer_ts - start_ts, 0.0)
    last = None if end_ts is None else max(end_ts - start_ts, first)
    return first, last


class ConnectionLatency:
    """The two latency sketches of a set of messages (one connection, or a protocol)."""

    __slots__ = ("first", "last")

    def __init__(self) -> None:
        self.first = LatencySketch()
        self.last = LatencySketch()

    def add(self, start_ts: float, answer_ts: float | None, end_ts: float | None) -> None:
        first, last = answer_latencies(start_ts, answer_ts, end_ts)
        if first is not None:
            self.first.add(first)
        if last is not None:
            self.last.add(last)

    def add_fields(self, fields: Mapping[str, Any]) -> None:
        """From a message's fields (``accounting.message_fields``)."""
        self.add(fields["start_ts"], fields.get("answer_ts"), fields["end_ts"])

    def merge(self, other: ConnectionLatency) -> None:
        self.first.merge(other.first)
        self.last.merge(other.last)

    def to_json(self) -> dict[str, Any]:
        return {"first": self.first.to_json(), "last": self.last.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConnectionLatency:
        out = cls()
        out.first = LatencySketch.from_json(data["first"])
        out.last = LatencySketch.from_json(data["last"])
        return out


def sketch_of(values: Iterable[float]) -> LatencySketch:
    """A sketch of ``values`` (tests and the generator's truth use it)."""
    out = LatencySketch()
    for value in values:
        out.add(value)
    return out


__all__ = [
    "QUANTILES",
    "RELATIVE_ACCURACY",
    "ConnectionLatency",
    "LatencySketch",
    "answer_latencies",
    "sketch_of",
]
