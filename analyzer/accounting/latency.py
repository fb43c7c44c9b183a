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

from ddsketch.mapping import LogarithmicMapping

#: Quantiles within 1% of a true value: 0.01 ms on a 1 ms answer, finer than the clock jitter of
#: most captures, at some 230 bins per decade of range at most (from 1 us to 100 s: < 2,000).
RELATIVE_ACCURACY = 0.01
#: The quantiles every latency summary reports, by name.
QUANTILES: tuple[tuple[str, float], ...] = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99))

Stats = dict[str, float | int | None]
_NAMES = tuple(name for name, _ in QUANTILES)
#: DDSketch's default mapping (what ``DDSketch(RELATIVE_ACCURACY)`` builds), shared: it is pure.
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)


class LatencySketch:
    """Seconds, summarised: exact count, min, mean and max; quantiles as DDSketch gives them.

    The bins are DDSketch's: ``ddsketch``'s logarithmic mapping of ``RELATIVE_ACCURACY`` names
    each value's bin, and quantiles walk the bins exactly as ``DDSketch.get_quantile_value``
    does (the tests check both agree).  The bins live in a dict rather than in a ``DDSketch``:
    a connection of one message would otherwise pay two sketches' construction (about 60 us
    each, measured) and a dense store's walk, 60% of the analysis of a capture of one-request
    connections.
    """

    __slots__ = ("_bins", "_count", "_max", "_min", "_sum", "_zero")

    def __init__(self) -> None:
        self._bins: dict[int, int] = {}
        self._zero = 0
        self._count = 0
        self._sum = 0.0
        self._min = float("inf")
        self._max = float("-inf")

    @property
    def count(self) -> int:
        return self._count

    def add(self, seconds: float) -> None:
        # Reordered captures can stamp an answer before its question by a few microseconds:
        # that is a latency of (about) nothing, not a negative one.
        value = max(seconds, 0.0)
        if value > _MAPPING.min_possible:
            key = _MAPPING.key(value)
            self._bins[key] = self._bins.get(key, 0) + 1
        else:
            self._zero += 1
        self._count += 1
        self._sum += value
        if value < self._min:
            self._min = value
        if value > self._max:
            self._max = value

    def merge(self, other: LatencySketch) -> None:
        if not other._count:
            return
        bins = self._bins
        for key, weight in other._bins.items():
            bins[key] = bins.get(key, 0) + weight
        self._zero += other._zero
        self._count += other._count
        self._sum += other._sum
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)

    def quantile(self, q: float) -> float | None:
        """DDSketch's quantile: the bin holding the sample of rank q * (count - 1)."""
        if not self._count:
            return None
        rank = q * (self._count - 1)
        if rank < self._zero:
            return 0.0
        running = self._zero
        for key in sorted(self._bins):
            running += self._bins[key]
            if running > rank:
                return float(_MAPPING.value(key))
        return float(_MAPPING.value(max(self._bins)))

    def stats(self) -> Stats:
        """count, min, mean, p50, p90, p99, max (all None but count when empty)."""
        if not self._count:
            return {"count": 0, "min": None, "mean": None, **dict.fromkeys(_NAMES), "max": None}
        low, high = self._min, self._max
        out: Stats = {"count": self._count, "min": low, "mean": self._sum / self._count}
        for name, q in QUANTILES:
            # A bin's representative value can stray past the extremes by the accuracy.
            value = self.quantile(q)
            out[name] = None if value is None else min(max(value, low), high)
        out["max"] = high
        return out

    def to_json(self) -> dict[str, Any]:
        """The sketch as JSON values: its non-empty bins [key, count] and exact moments."""
        empty = not self._count
        return {
            "relative_accuracy": RELATIVE_ACCURACY,
            "bins": [[key, self._bins[key]] for key in sorted(self._bins)],
            "zero": self._zero,
            "count": self._count,
            "sum": self._sum,
            "min": None if empty else self._min,
            "max": None if empty else self._max,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LatencySketch:
        """The inverse of ``to_json``; a sketch of another accuracy cannot merge: refused."""
        if data.get("relative_accuracy") != RELATIVE_ACCURACY:
            raise ValueError(f"latency sketch of accuracy {data.get('relative_accuracy')!r}")
        out = cls()
        if data["count"]:
            out._bins = {int(key): int(weight) for key, weight in data["bins"]}
            out._zero = int(data["zero"])
            out._count = int(data["count"])
            out._sum = float(data["sum"])
            out._min = float(data["min"])
            out._max = float(data["max"])
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
