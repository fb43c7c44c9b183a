"""The network model: flights of labelled bytes become TCP segments with times (sans-IO).

The capture point is a tap in the middle of the path, so anything a side sends in reaction to a
packet appears at the tap half a round trip after that packet (``half_rtt_us``).  The model:

1. Handshake: SYN, SYN-ACK half an RTT later, ACK half an RTT after that (RFC 9293 section
   3.5); SYN and SYN-ACK carry MSS and window-scale options.
2. Each flight is cut into segments of at most MSS = MTU - 40 bytes (IPv4 and TCP headers
   without options) sent back to back at ``LINK_RATE_BPS``.  A flight starts half an RTT after the
   last byte of the flight it reacts to reached the tap (or, reacting to its own side's flight,
   right after it).
3. Delayed ACKs (RFC 5681 section 4.2, RFC 1122 section 4.2.3.2): the receiver acknowledges
   every second full-sized segment at once, out-of-order and hole-filling segments at once, and
   anything else when its own next packet leaves or after ``DELAYED_ACK_US``.
4. Loss happens after the tap: the capture holds the lost segment and, ``RTO_US`` later, its
   retransmission; the receiver sees only the retransmission and sends duplicate ACKs for the
   segments after the hole.  Only first transmissions of data segments are lost.
   Reordering happens before the tap: a segment overtaken by the next one of its flight is
   captured (and received) after it; the receiver ACKs the out-of-order one at once.
5. Teardown: the client's FIN, the server's FIN-ACK half an RTT later, the last ACK.

Acknowledgement numbers follow from what reached the sender half an RTT before it sent.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

from analyzer.decoding.events import ORIG, RESP
from analyzer.synth.conversation import Chunk, Flight

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
#: IPv4 (20) + TCP (20) header bytes without options: MSS = MTU - 40 (RFC 9293 section 3.7.1).
IP_TCP_HEADER_BYTES = 40
#: The link between the hosts: 1 Gbit/s Ethernet, a common data-centre access link.
LINK_RATE_BPS = 1_000_000_000
#: Linux's minimum delayed-ACK timeout (TCP_DELACK_MIN, 40 ms).
DELAYED_ACK_US = 40_000
#: Linux's minimum retransmission timeout (TCP_RTO_MIN, 200 ms) on top of the RTT.
RTO_MIN_US = 200_000
#: Time between two flights of the same side with nothing to wait for (an application's write
#: loop).
SEND_GAP_US = 10
#: Window scale shift offered in SYN and SYN-ACK (RFC 7323); 65535 << 7 is about 8 MiB.
WINDOW_SHIFT = 7
WINDOW_FIELD = 0xFFFF
US_PER_S = 1_000_000


@dataclass(slots=True)
class Segment:
    """One captured TCP segment of a connection (seq/ack relative: the SYN is sequence 0)."""

    ts_us: int
    direction: int
    flags: int
    seq: int
    payload: bytes = b""
    #: a second copy of bytes already captured
    retransmission: bool = False
    #: lost after the tap: the receiver never got this copy
    lost: bool = False
    #: relative acknowledgement number (filled in when the whole connection is laid out)
    ack: int = 0
    #: creation order, to keep sorting stable when times tie
    order: int = 0

    @property
    def end(self) -> int:
        """Sequence number after this segment (SYN and FIN count one)."""
        return self.seq + len(self.payload) + int(bool(self.flags & (SYN | FIN)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Laid:
    """A connection laid out as segments."""

    #: segments in capture order
    segments: list[Segment]
    #: per direction, the labelled chunks in stream order (stream offset 0 = sequence 1)
    streams: tuple[list[Chunk], list[Chunk]]
    end_us: int


@dataclass(slots=True)
class _Clock:
    half_rtt_us: int
    mss: int
    rng: random.Random
    loss: float
    reorder: float
    segments: list[Segment]
    next_seq: list[int]
    free_at: list[int]

    def add(self, segment: Segment) -> Segment:
        segment.order = len(self.segments)
        self.segments.append(segment)
        return segment


def tx_time_us(frame_bytes: int) -> int:
    """Serialisation time of one frame on the link."""
    return max(1, frame_bytes * 8 * US_PER_S // LINK_RATE_BPS)


def lay_out(
    flights: tuple[Flight, ...],
    *,
    start_us: int,
    rtt_us: int,
    mtu: int,
    loss: float,
    rng: random.Random,
    reorder: float = 0.0,
) -> Laid:
    """Segments of one connection whose first SYN leaves at ``start_us``."""
    half = max(1, rtt_us // 2)
    clock = _Clock(half, mtu - IP_TCP_HEADER_BYTES, rng, loss, reorder, [], [1, 1], [0, 0])
    clock.add(Segment(ts_us=start_us, direction=ORIG, flags=SYN, seq=0))
    clock.add(Segment(ts_us=start_us + half, direction=RESP, flags=SYN | ACK, seq=0))
    clock.add(Segment(ts_us=start_us + 2 * half, direction=ORIG, flags=ACK, seq=1))
    clock.free_at = [start_us + 2 * half + SEND_GAP_US, start_us + half + SEND_GAP_US]
    done_at: list[int] = []
    sent_end: list[int] = []
    for index, flight in enumerate(flights):
        start = _flight_start(flights, index, done_at, sent_end, clock)
        done, end = _send_flight(flight, start, clock)
        done_at.append(done)
        sent_end.append(end)
    _teardown(clock)
    _delayed_acks(clock)
    clock.segments.sort(key=lambda s: (s.ts_us, s.order))
    _fill_acks(clock.segments, half)
    streams: tuple[list[Chunk], list[Chunk]] = ([], [])
    for flight in flights:
        streams[flight.direction].extend(c for c in flight.chunks if c.data)
    return Laid(segments=clock.segments, streams=streams, end_us=clock.segments[-1].ts_us)


def _flight_start(
    flights: tuple[Flight, ...], index: int, done_at: list[int], sent_end: list[int], clock: _Clock
) -> int:
    flight = flights[index]
    trigger = index - 1 if flight.reacts_to is None else flight.reacts_to
    start = clock.free_at[flight.direction]
    if trigger >= 0 and flights[trigger].direction != flight.direction:
        start = max(start, done_at[trigger] + clock.half_rtt_us)
    elif trigger >= 0:
        start = max(start, sent_end[trigger] + SEND_GAP_US)
    return start


def _send_flight(flight: Flight, start: int, clock: _Clock) -> tuple[int, int]:
    """Segments of one flight; returns (time its last byte reached the receiver, send end)."""
    data = b"".join(c.data for c in flight.chunks)
    direction, ts, done = flight.direction, start, start
    sent: list[Segment] = []
    for offset in range(0, len(data), clock.mss):
        piece = data[offset : offset + clock.mss]
        seq = clock.next_seq[direction]
        clock.next_seq[direction] += len(piece)
        flags = ACK | (PSH if offset + clock.mss >= len(data) else 0)
        segment = clock.add(
            Segment(ts_us=ts, direction=direction, flags=flags, seq=seq, payload=piece)
        )
        sent.append(segment)
        done = ts
        if clock.loss and clock.rng.random() < clock.loss:
            segment.lost = True
            again = ts + clock.half_rtt_us * 2 + RTO_MIN_US
            clock.add(
                Segment(
                    ts_us=again,
                    direction=direction,
                    flags=flags,
                    seq=seq,
                    payload=piece,
                    retransmission=True,
                )
            )
            done = max(done, again)
        ts += tx_time_us(len(piece) + IP_TCP_HEADER_BYTES + 14)
    if clock.reorder:
        _reorder(sent, clock)
    clock.free_at[direction] = ts
    return max(done, ts), ts


def _reorder(sent: list[Segment], clock: _Clock) -> None:
    """Let some segments be overtaken by the next one (each segment moves at most once)."""
    i = 0
    while i + 1 < len(sent):
        if clock.rng.random() < clock.reorder:
            sent[i].ts_us, sent[i + 1].ts_us = sent[i + 1].ts_us, sent[i].ts_us
            i += 2
        else:
            i += 1


def _teardown(clock: _Clock) -> None:
    """Client FIN after everything it sent and received; server FIN-ACK; the last ACK."""
    last = [
        max((s.ts_us for s in clock.segments if s.direction == d), default=0) for d in (ORIG, RESP)
    ]
    fin_at = max(last[ORIG] + SEND_GAP_US, last[RESP] + clock.half_rtt_us, clock.free_at[ORIG])
    clock.add(Segment(ts_us=fin_at, direction=ORIG, flags=FIN | ACK, seq=clock.next_seq[ORIG]))
    fin_ack_at = max(fin_at + clock.half_rtt_us, clock.free_at[RESP])
    clock.add(Segment(ts_us=fin_ack_at, direction=RESP, flags=FIN | ACK, seq=clock.next_seq[RESP]))
    clock.add(
        Segment(
            ts_us=fin_ack_at + clock.half_rtt_us,
            direction=ORIG,
            flags=ACK,
            seq=clock.next_seq[ORIG] + 1,
        )
    )


def _delayed_acks(clock: _Clock) -> None:
    """Add the pure ACKs each receiver sends for the data it gets (step 3 of the model)."""
    for receiver in (ORIG, RESP):
        sender = 1 - receiver
        arrivals = sorted(
            (s for s in clock.segments if s.direction == sender and s.payload and not s.lost),
            key=lambda s: (s.ts_us, s.order),
        )
        own = sorted((s.ts_us, s.end) for s in clock.segments if s.direction == receiver)
        _Receiver(clock, receiver, own).run(arrivals)


class _Receiver:
    """One side's acknowledgement behaviour (step 3 of the model)."""

    def __init__(self, clock: _Clock, direction: int, own: list[tuple[int, int]]) -> None:
        self.clock, self.direction = clock, direction
        self.own_ts = [ts for ts, _ in own]
        self.snd_nxt: list[int] = []
        for _, end in own:
            self.snd_nxt.append(max(end, self.snd_nxt[-1] if self.snd_nxt else 0))
        self.full = 0
        #: when the oldest unacknowledged arrival could first have been acknowledged
        self.pending: int | None = None

    def run(self, arrivals: list[Segment]) -> None:
        rcv_nxt, holes = 1, list[tuple[int, int]]()
        for segment in arrivals:
            now = segment.ts_us + self.clock.half_rtt_us
            self._settle(now)
            if segment.seq != rcv_nxt or holes:
                holes.append((segment.seq, segment.end))
                rcv_nxt = advance_contiguous(rcv_nxt, holes)
                self._ack_at(now)  # out of order, duplicate or filling a hole: ACK at once
                continue
            rcv_nxt = segment.end
            self.full += len(segment.payload) >= self.clock.mss
            if self.full >= 2:
                self._ack_at(now)
            elif self.pending is None:
                self.pending = now
        self._settle(None)

    def _settle(self, now: int | None) -> None:
        """Resolve a pending delayed ACK whose fate is known by ``now`` (None: the end)."""
        if self.pending is None:
            return
        deadline = self.pending + DELAYED_ACK_US
        i = bisect.bisect_left(self.own_ts, self.pending)
        horizon = deadline if now is None else min(now, deadline)
        if i < len(self.own_ts) and self.own_ts[i] <= horizon:
            self.full, self.pending = 0, None  # an own packet carried the acknowledgement
        elif now is None or deadline < now:
            self._ack_at(deadline)

    def _ack_at(self, ts: int) -> None:
        i = bisect.bisect_right(self.own_ts, ts)
        seq = self.snd_nxt[i - 1] if i else 1
        self.clock.add(Segment(ts_us=ts, direction=self.direction, flags=ACK, seq=seq))
        self.full, self.pending = 0, None


def advance_contiguous(rcv_nxt: int, holes: list[tuple[int, int]]) -> int:
    """Consume buffered ranges that now follow ``rcv_nxt`` (keeps the rest in ``holes``)."""
    holes.sort()
    while holes and holes[0][0] <= rcv_nxt:
        rcv_nxt = max(rcv_nxt, holes.pop(0)[1])
    return rcv_nxt


def _fill_acks(segments: list[Segment], half: int) -> None:
    """Each packet acknowledges what reached its sender half an RTT before it (step 3)."""
    steps: list[tuple[list[int], list[int]]] = []
    for sender in (ORIG, RESP):
        times, values, holes, rcv_nxt = [], [], [], 0
        for s in segments:
            if s.direction != sender or s.lost or not (s.payload or s.flags & (SYN | FIN)):
                continue
            holes.append((s.seq, s.end))
            rcv_nxt = advance_contiguous(rcv_nxt, holes)
            times.append(s.ts_us)
            values.append(rcv_nxt)
        steps.append((times, values))
    for s in segments:
        if s.flags & ACK:
            times, values = steps[1 - s.direction]
            i = bisect.bisect_right(times, s.ts_us - half)
            s.ack = values[i - 1] if i else 0
