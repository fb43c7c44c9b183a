"""The connection table's state budget (DESIGN.md section 7, "State"; issue 15).

Connection state costs about 11 KB per connection (two reassemblers, the ledger, a detecting
decoder), so a SYN flood or a capture whose clock misbehaves must not decide how much memory a
run takes.  Three rules, all in capture time, none in wall-clock time:

1. **Idle and half-open timeouts** measured on a ``CaptureClock`` that ignores implausible jumps
   of the packets' timestamps: one packet stamped a day ahead or behind does not move it, a
   clock that really stepped (several observations agree) does.
2. **A connection whose last packet is ahead of that clock** (a bit-flipped timestamp, a host
   with a wrong clock, a clock that stepped back) is idle from the moment the clock first saw it
   so (``IdleMarks``), not from its own timestamp, which would keep it forever.
3. **A hard bound** ``MAX_OPEN_CONNECTIONS``: opening one more past it evicts a batch, half-open
   connections first, then the longest idle (``eviction_order``); each evicted connection carries
   the anomaly ``tcp.evicted`` and the table counts them (``TableCounters``).

Sans-IO: values in, decisions out; ``analyzer/tcp/flows.py`` applies them.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

#: Connections open at once before the oldest are evicted.  At about 11 KB each (measured with
#: tracemalloc and scripts/flood.py) 20 000 cost some 220 MB: the flat peak a flood can reach.
#: A real capture rarely holds so many at once that are all active; the idle ones go first.
MAX_OPEN_CONNECTIONS = 20_000
#: Connections evicted at once when the bound is hit (a sixteenth of it): choosing victims scans
#: the table, so doing it in batches keeps the cost per new connection constant.
EVICTION_BATCH_FRACTION = 16
#: Capture seconds a half-open connection (SYN seen, no byte of data either way, not closed) waits
#: for its next packet.  Linux retransmits an unanswered SYN after 1, 2, 4 ... 64 s
#: (tcp_syn_retries = 6, RFC 6298 backoff), so the longest legitimate silence is 64 s; past 75 s
#: nothing more will come.
HALF_OPEN_TIMEOUT_S = 75.0
#: Largest step of the packets' timestamps, either way, the clock believes at once.  Quiet gaps of
#: up to an hour are real in long captures; a bit flip or a host clock error is usually far more
#: (days, years) and must be confirmed before it counts.
CLOCK_JUMP_S = 3600.0
#: Observations in a row that must agree on a jump before the clock takes it: one stray packet
#: cannot move it, a clock that really stepped moves it within a few packets.
CLOCK_CONFIRMATIONS = 4


class CaptureClock:
    """The capture's time: the packets' timestamps, without implausible jumps."""

    __slots__ = ("_candidate", "_votes", "jumps", "now", "rejected")

    def __init__(self) -> None:
        #: capture seconds now; None before the first observation
        self.now: float | None = None
        #: jumps taken after confirmation
        self.jumps = 0
        #: observations that were off by more than CLOCK_JUMP_S and never confirmed
        self.rejected = 0
        self._candidate: float | None = None
        self._votes = 0

    @property
    def pending(self) -> bool:
        """A jump is being confirmed: the last observation did not fit the clock."""
        return self._candidate is not None

    def observe(self, ts: float) -> float:
        """Take one packet timestamp; return the clock after it."""
        now = self.now
        if now is None:
            self.now = ts
            return ts
        if now - CLOCK_JUMP_S <= ts <= now + CLOCK_JUMP_S:
            if self._candidate is not None:
                self.rejected += self._votes
                self._candidate, self._votes = None, 0
            if ts > now:
                self.now = now = ts
            return now
        candidate = self._candidate
        if candidate is not None and abs(ts - candidate) <= CLOCK_JUMP_S:
            self._votes += 1
            self._candidate = max(candidate, ts)
        else:
            if candidate is not None:
                self.rejected += self._votes
            self._candidate, self._votes = ts, 1
        if self._votes >= CLOCK_CONFIRMATIONS:
            assert self._candidate is not None
            self.now = now = self._candidate
            self._candidate, self._votes = None, 0
            self.jumps += 1
        return now


class _Timed(Protocol):
    """What the idle marks need of a connection."""

    @property
    def last_ts(self) -> float: ...


class _Stream(Protocol):
    @property
    def next(self) -> int: ...


class _Conn(Protocol):
    """What the budget needs of a connection (``analyzer.tcp.connection.Connection``)."""

    @property
    def last_ts(self) -> float: ...
    @property
    def first_ts(self) -> float: ...
    @property
    def id(self) -> str: ...
    @property
    def syn_ts(self) -> float | None: ...
    @property
    def ack_ts(self) -> float | None: ...
    @property
    def closed_ts(self) -> float | None: ...
    @property
    def asm(self) -> tuple[_Stream, _Stream]: ...


_C = TypeVar("_C", bound=_Conn)


def half_open(conn: _Conn) -> bool:
    """SYN seen, the handshake not completed, no byte of data either way, not closed."""
    return (
        conn.syn_ts is not None
        and conn.ack_ts is None
        and conn.closed_ts is None
        and not conn.asm[0].next
        and not conn.asm[1].next
    )


def eviction_victims(conns: Sequence[_C], bound: int) -> list[_C]:
    """The batch to evict from a full table: half-open connections first (a flood must not
    push out the connections that carry data), then the ones whose last packet is oldest;
    ties broken by first packet and id, so the choice is the same on every run."""
    return heapq.nsmallest(
        max(1, bound // EVICTION_BATCH_FRACTION),
        conns,
        key=lambda c: (not half_open(c), c.last_ts, c.first_ts, c.id),
    )


class IdleMarks:
    """When the clock first saw a connection whose last packet is stamped ahead of it.

    Without this, ``now - last_ts`` stays negative for such a connection and it is never idle.
    The mark is kept per last timestamp: a newer packet of the connection renews it."""

    __slots__ = ("_marks",)

    def __init__(self) -> None:
        self._marks: dict[object, tuple[float, float]] = {}

    def idle_s(self, conn: _Timed, now: float) -> float:
        """Capture seconds ``conn`` has been idle by the clock ``now``."""
        last = conn.last_ts
        if last <= now:
            if self._marks:
                self._marks.pop(conn, None)
            return now - last
        mark = self._marks.get(conn)
        if mark is None or mark[0] != last:
            mark = (last, now)
            self._marks[conn] = mark
        return now - mark[1]

    def forget(self, conn: object) -> None:
        self._marks.pop(conn, None)

    def __len__(self) -> int:
        return len(self._marks)


@dataclass(slots=True)
class TableCounters:
    """What the state budget did in one run (reported beside the records)."""

    #: connections evicted because MAX_OPEN_CONNECTIONS were open (anomaly ``tcp.evicted``)
    evicted: int = 0
    #: half-open connections retired after HALF_OPEN_TIMEOUT_S
    half_open_timeouts: int = 0
    #: the most connections open at once
    peak_open: int = 0

    def as_record(self, bound: int) -> dict[str, int]:
        """The report: counts of connections, so that shards' reports add up to one process's
        (the clock's jumps and the peak depend on which packets one table saw, so they stay
        internal)."""
        return {
            "max_open_connections": bound,
            "evicted_connections": self.evicted,
            "half_open_timeouts": self.half_open_timeouts,
        }

    def acted(self) -> bool:
        """Whether the budget retired connections beyond ordinary idle timeouts."""
        return bool(self.evicted or self.half_open_timeouts)
