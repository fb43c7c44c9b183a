"""Drive a StreamDecoder through a conversation and check the events obey the contract.

A conversation is a list of steps ``(direction, bytes)``.  ``run`` feeds it whole, byte at a
time, or cut at an offset, and ``Result`` gives the spans, messages and anomalies; ``check`` asserts
the contract of analyzer/decoding/events.py: every fed byte covered by exactly one span, spans in range,
message events consistent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from analyzer.decoding.events import (
    Anomaly,
    Event,
    MessageAnswered,
    MessageEnded,
    MessageNote,
    MessageStarted,
    ProtocolIdentified,
    Span,
    StreamDecoder,
    TlsHandshake,
)

Step = tuple[int, bytes]


@dataclass
class Result:
    events: list[Event]
    fed: list[int] = field(default_factory=lambda: [0, 0])

    def of(self, kind: type) -> list[object]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def spans(self) -> list[Span]:
        return [e for e in self.events if isinstance(e, Span)]

    @property
    def started(self) -> list[MessageStarted]:
        return [e for e in self.events if isinstance(e, MessageStarted)]

    @property
    def answered(self) -> list[MessageAnswered]:
        return [e for e in self.events if isinstance(e, MessageAnswered)]

    @property
    def ended(self) -> list[MessageEnded]:
        return [e for e in self.events if isinstance(e, MessageEnded)]

    @property
    def notes(self) -> dict[int, dict[str, object]]:
        out: dict[int, dict[str, object]] = {}
        for e in self.events:
            if isinstance(e, MessageNote):
                out.setdefault(e.message, {})[e.key] = e.value
        return out

    @property
    def anomalies(self) -> Counter[str]:
        c: Counter[str] = Counter()
        for e in self.events:
            if isinstance(e, Anomaly):
                c[e.name] += e.count
        return c

    @property
    def protocols(self) -> list[str]:
        return [e.protocol for e in self.events if isinstance(e, ProtocolIdentified)]

    @property
    def handshakes(self) -> list[TlsHandshake]:
        return [e for e in self.events if isinstance(e, TlsHandshake)]

    def owner_bytes(self) -> Counter[tuple[int, int]]:
        """(owner, layer) -> bytes, over both directions."""
        c: Counter[tuple[int, int]] = Counter()
        for s in self.spans:
            c[(s.owner, s.layer)] += s.end - s.start
        return c

    def layer_bytes(self, owner: int) -> Counter[int]:
        c: Counter[int] = Counter()
        for s in self.spans:
            if s.owner == owner:
                c[s.layer] += s.end - s.start
        return c


def run(
    make: Callable[[], StreamDecoder],
    steps: Sequence[Step],
    *,
    chunk: int | None = None,
    cut: int | None = None,
    eof: bool = True,
) -> Result:
    """Feed ``steps`` to a fresh decoder; ``chunk`` splits every step into pieces of that size,
    ``cut`` stops after that many bytes in all (a truncated conversation)."""
    decoder = make()
    result = Result(events=[])
    ordinal = 0
    budget = cut
    for direction, data in steps:
        if budget is not None:
            data = data[:budget]
            budget -= len(data)
        size = chunk or max(1, len(data))
        for i in range(0, len(data), size):
            piece = data[i : i + size]
            ordinal += 1
            result.events += decoder.feed(direction, piece, ordinal, float(ordinal))
            result.fed[direction] += len(piece)
        if budget == 0:
            break
    if eof:
        for direction in (0, 1):
            result.events += decoder.eof(direction, ordinal, float(ordinal))
    result.events += decoder.finish(float(ordinal + 1))
    check(result)
    return result


def check(result: Result) -> None:
    """The contract of analyzer/decoding/events.py, asserted."""
    for direction in (0, 1):
        spans = sorted((s for s in result.spans if s.direction == direction), key=lambda s: s.start)
        position = 0
        for s in spans:
            assert s.start < s.end, f"empty or reversed span {s}"
            assert s.start == position, f"dir {direction}: hole or overlap at {position}: {s}"
            position = s.end
        assert position == result.fed[direction], (
            f"dir {direction}: spans cover {position} of {result.fed[direction]} bytes fed"
        )
    started = {m.message for m in result.started}
    assert len(started) == len(result.started), "a message id started twice"
    for e in result.events:
        if isinstance(e, MessageAnswered | MessageEnded | MessageNote):
            assert e.message in started, f"event for a message never started: {e}"
        if isinstance(e, Span) and e.owner >= 0:
            assert e.owner in started, f"span charged to a message never started: {e}"


def all_ways(
    make: Callable[[], StreamDecoder], steps: Sequence[Step]
) -> tuple[Result, list[Result]]:
    """Whole, byte at a time (same spans and messages), and cut at every offset (contract holds,
    never more messages than whole).  Returns (whole, cuts)."""
    whole = run(make, steps)
    bytewise = run(make, steps, chunk=1)
    assert sorted(bytewise.owner_bytes().items()) == sorted(whole.owner_bytes().items())
    assert [(m.kind, m.sender) for m in bytewise.started] == [
        (m.kind, m.sender) for m in whole.started
    ]
    total = sum(len(d) for _, d in steps)
    cuts = [run(make, steps, cut=n) for n in range(total)]
    for r in cuts:
        assert len(r.started) <= len(whole.started)
    return whole, cuts
