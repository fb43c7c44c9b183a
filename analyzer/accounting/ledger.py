"""The byte ledger of DESIGN.md section 3: every byte of every packet, charged exactly once.

Decoders say which stream bytes belong to whom (``Span`` events, in stream offsets).  Packets say
which stream bytes they carried and how many header bytes they spent.  ``ConnectionLedger`` joins
the two: a packet waits in a bounded queue until the decoder has spanned every byte it carried,
then its payload bytes go to the spans' owners and layers, and its link, IP and TCP header bytes
are split among those owners in proportion to their share of the payload
(``accounting.apportion``).  A pure ACK goes to the owner of the newest byte it acknowledges.

Invariants (tested on every capture): per connection, the rows of all owners sum to the wire bytes
of its packets, and every row's layers sum to the row.
"""

from __future__ import annotations

import bisect
import pickle
import tempfile
from array import array
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from analyzer.accounting.apportion import apportion
from analyzer.accounting.latency import ConnectionLatency
from analyzer.accounting.unaccounted import MessageTally
from analyzer.decoding.events import (
    CONTROL,
    IP,
    LAYER_NAMES,
    LINK,
    N_LAYERS,
    OPAQUE,
    TCP,
    UNDECODED,
    Anomaly,
    Answering,
    Event,
    MessageAnswered,
    MessageEnded,
    MessageNote,
    MessageStarted,
    ProtocolIdentified,
    SetupEnded,
    Span,
    TlsHandshake,
    Unsolicited,
)

#: Spans kept per direction behind the decoding frontier, for charging retransmissions and ACKs
#: of bytes already decoded.  Both look back at most about one window; 64 Ki spans cover several
#: windows even of tiny HTTP/2 frames.
MAX_SPANS = 65536
#: Packets per direction waiting for their bytes to be decoded.  A decoder holds at most one
#: incomplete frame or header block (bounded by its own limits), so this is never reached by
#: sane traffic; past it the oldest packets are charged with what is known.
MAX_PENDING_PACKETS = 65536
#: Direction changes remembered for counting setup turns (a turn per change back to orig).
MAX_SETUP_TURNS = 1024
#: Finished messages a connection keeps in memory before it starts retiring the oldest ones to
#: a spool file.  Below it (nearly every connection) nothing is spooled; above it memory per
#: connection stays flat however many messages a long-lived connection carries (an AMQP
#: connection open for hours).  What stays per message is its round-trip timing: 3 integers.
RETIRE_THRESHOLD = 1024
#: Spans back from the newest that ``_settle_one_owner`` looks at before leaving a packet to the
#: general path (a packet settled long after its bytes were decoded is rare and may be far back).
MAX_ONE_OWNER_WALK = 16
#: Retired messages' records written to the spool at a time (held in memory until then).
SPOOL_BATCH = 256

Row = list[int]
# A waiting data packet: (start, captured_end, wire_end, link, ip, tcp)
_Pending = tuple[int, int, int, int, int, int]
# A waiting pure ACK of this direction's bytes: (newest acknowledged offset, link, ip, tcp)
_PendingAck = tuple[int, int, int, int]


def new_row() -> Row:
    return [0] * N_LAYERS


@dataclass(slots=True)
class MessageState:
    """What the ledger knows of one message while its connection is open."""

    message: int
    protocol: str
    kind: str
    sender: int
    start_ordinal: int
    start_ts: float
    answered_ordinal: int | None = None
    answered_ts: float | None = None
    end_ts: float | None = None
    detail: dict[str, object] = field(default_factory=dict)
    #: offset of the message's last byte in each direction (-1: none there)
    last: list[int] = field(default_factory=lambda: [-1, -1])


class DirectionLedger:
    """Spans of one direction's stream, and the packets and ACKs waiting on them."""

    __slots__ = ("acks", "frontier", "loose", "origin", "pending", "spans", "starts")

    def __init__(self) -> None:
        #: contiguous spans from ``origin`` to ``frontier``: (start, end, owner, layer)
        self.spans: list[tuple[int, int, int, int]] = []
        self.starts: list[int] = []
        self.origin = 0
        self.frontier = 0
        #: spans beyond the frontier (emitted early), sorted by start
        self.loose: list[tuple[int, int, int, int]] = []
        self.pending: deque[_Pending] = deque()
        self.acks: deque[_PendingAck] = deque()

    def add(self, start: int, end: int, owner: int, layer: int) -> bool:
        """Record a span; True when the frontier moved."""
        if start == self.frontier and not self.loose:
            self._append(start, end, owner, layer)
            return True
        if start < self.frontier:
            return False  # overlaps what is already decoded: the caller records the anomaly
        bisect.insort(self.loose, (start, end, owner, layer))
        moved = False
        while self.loose and self.loose[0][0] == self.frontier:
            self._append(*self.loose.pop(0))
            moved = True
        return moved

    def _append(self, start: int, end: int, owner: int, layer: int) -> None:
        spans = self.spans
        if spans:
            last = spans[-1]
            if last[1] == start and last[2] == owner and last[3] == layer:
                spans[-1] = (last[0], end, owner, layer)
                self.frontier = end
                return
        spans.append((start, end, owner, layer))
        self.starts.append(start)
        self.frontier = end
        if len(spans) > MAX_SPANS:
            drop = MAX_SPANS // 2
            self.origin = spans[drop][0]
            del spans[:drop]
            del self.starts[:drop]

    def fill(self, end: int) -> None:
        """Charge every byte up to ``end`` that nobody spanned to UNDECODED/OPAQUE."""
        while self.loose or self.frontier < end:
            if not self.loose:
                self._append(self.frontier, end, UNDECODED, OPAQUE)
                break
            start, stop, owner, layer = self.loose.pop(0)
            if start < self.frontier:
                continue  # overlaps decoded bytes: already reported as an anomaly
            if start > self.frontier:
                self._append(self.frontier, start, UNDECODED, OPAQUE)
            self._append(start, stop, owner, layer)

    def owner_at(self, offset: int) -> int | None:
        """The owner of stream byte ``offset``, None when it is not (or no longer) known."""
        if offset < self.origin or offset >= self.frontier:
            return None
        index = bisect.bisect_right(self.starts, offset) - 1
        return self.spans[index][2] if index >= 0 else None


class ConnectionLedger:
    """Rows of bytes per owner and layer for one connection, fed by packets and decoder events."""

    def __init__(self) -> None:
        self.rows: dict[int, Row] = {}
        self.dirs = (DirectionLedger(), DirectionLedger())
        self.messages: dict[int, MessageState] = {}
        self.anomalies: Counter[str] = Counter()
        self.protocol = "unknown"
        self.handshakes: list[TlsHandshake] = []
        self.setup_hint: int | None = None
        #: (ordinal, direction) of data-bearing packets, one per change of direction, and how
        #: many data packets each run of one direction had
        self.turns: list[tuple[int, int]] = []
        self.turn_packets: list[int] = []
        #: (direction, ordinal) of setup packets that delivered unsolicited data, and of those
        #: that delivered data the peer may wait for (events.py)
        self.unsolicited: set[tuple[int, int]] = set()
        self.answering: set[tuple[int, int]] = set()
        #: highest stream offset of each direction that a pure ACK has acknowledged
        self.acked = [0, 0]
        #: round-trip timing of every message, by id: sender, first-byte and answer ordinals
        self.senders = array("b")
        self.starts = array("q")
        self.answers = array("q")
        #: message id -> waits its answer ends, where that is not 1 (MQTT QoS 2)
        self.waits: dict[int, int] = {}
        #: ended messages in the order they ended, candidates for retiring
        self.ended: deque[int] = deque()
        #: retired messages' records (without their connection-wide figures), pickled in batches
        #: of ``SPOOL_BATCH`` (pickle, not JSON: several times faster, and the file is this
        #: run's alone); the batch being filled waits in ``retiring``
        self.spool: IO[bytes] | None = None
        self.retiring: list[dict[str, Any]] = []
        self.retired = 0
        #: the retired messages' rows, summed (their bytes still count for the connection)
        self.retired_row = new_row()
        #: (ordinal, ts) of the earliest message's first byte
        self.first_start: tuple[int, float] | None = None
        #: the retired messages' latencies (the live ones are read at the end)
        self.retired_latency = ConnectionLatency()
        #: the retired messages' account of what was not counted (``accounting.unaccounted``)
        self.retired_tally = MessageTally()

    # -- packets ----------------------------------------------------------------------------

    def charge_headers(self, owner: int, link: int, ip: int, tcp: int) -> None:
        """A packet whose every byte goes to one owner (SYN, FIN, RST, a resolved pure ACK)."""
        row = self.rows.get(owner)
        if row is None:
            row = self.rows[owner] = new_row()
        row[LINK] += link
        row[IP] += ip
        row[TCP] += tcp

    def data_packet(
        self, direction: int, start: int, captured: int, wire: int, link: int, ip: int, tcp: int
    ) -> None:
        """A packet carried stream bytes ``[start, start + wire)``, ``captured`` of them seen."""
        entry = (start, start + captured, start + wire, link, ip, tcp)
        side = self.dirs[direction]
        if entry[1] <= side.frontier:
            self._settle(side, entry)
            return
        side.pending.append(entry)
        if len(side.pending) > MAX_PENDING_PACKETS:
            self.anomalies["wireprobe.pending_overflow"] += 1
            self._settle(side, side.pending.popleft())

    def pure_ack(self, direction: int, newest: int | None, link: int, ip: int, tcp: int) -> None:
        """A pure ACK from ``direction`` whose newest acknowledged byte of the other direction
        is at offset ``newest`` (None: it acknowledges nothing known)."""
        if newest is None:
            self.charge_headers(CONTROL, link, ip, tcp)
            return
        other = self.dirs[1 - direction]
        self.note_acked(1 - direction, newest + 1)
        if newest < other.frontier:
            spans = other.spans
            # Most ACKs acknowledge the newest decoded bytes: skip the search then.
            if spans and spans[-1][0] <= newest:
                owner = spans[-1][2]
                if owner == UNDECODED:
                    owner = CONTROL
            else:
                owner = self._ack_owner(other, newest)
            row = self.rows.get(owner)
            if row is None:
                row = self.rows[owner] = new_row()
            row[LINK] += link
            row[IP] += ip
            row[TCP] += tcp
            return
        other.acks.append((newest, link, ip, tcp))
        if len(other.acks) > MAX_PENDING_PACKETS:
            self.anomalies["wireprobe.pending_overflow"] += 1
            self._settle_ack(other, other.acks.popleft())

    def note_acked(self, direction: int, offset: int) -> None:
        """The peer acknowledged ``direction``'s bytes before ``offset`` (retiring waits on it)."""
        if offset > self.acked[direction]:
            self.acked[direction] = offset

    def ack_unseen(self, direction: int, newest: int, link: int, ip: int, tcp: int) -> None:
        """A pure ACK of bytes the capture never carried: control, but it still moves the
        acknowledged offset that retiring messages waits for."""
        self.note_acked(1 - direction, newest + 1)
        self.charge_headers(CONTROL, link, ip, tcp)

    def _ack_owner(self, side: DirectionLedger, offset: int) -> int:
        owner = side.owner_at(offset)
        if owner is None or owner == UNDECODED:
            return CONTROL
        return owner

    def _settle_ack(self, side: DirectionLedger, entry: _PendingAck) -> None:
        newest, link, ip, tcp = entry
        self.charge_headers(self._ack_owner(side, newest), link, ip, tcp)

    def _settle(self, side: DirectionLedger, entry: _Pending) -> None:
        start, captured_end, wire_end, link, ip, tcp = entry
        rows = self.rows
        spans = side.spans
        if spans and wire_end == captured_end:
            # The common case: every byte inside the newest span, one owner, one layer.
            # (``_settle_one_owner`` covers it too, 1.3% slower on the HTTP/1.1 bench.)
            s_start, s_end, owner, layer = spans[-1]
            if s_start <= start and captured_end <= s_end and start >= side.origin:
                row = rows.get(owner)
                if row is None:
                    row = rows[owner] = new_row()
                row[layer] += captured_end - start
                row[LINK] += link
                row[IP] += ip
                row[TCP] += tcp
                return
            if start >= side.origin and self._settle_one_owner(spans, entry):
                return
        weights: dict[int, int] = {}
        if start < side.origin:
            # Before the stream we follow (mid-connection start) or older than the span history.
            cut = min(side.origin, captured_end)
            weights[UNDECODED] = cut - start
            self._add(UNDECODED, OPAQUE, cut - start)
            start = cut
        if start < captured_end:
            index = max(bisect.bisect_right(side.starts, start) - 1, 0)
            position = start
            while position < captured_end and index < len(spans):
                _, s_end, owner, layer = spans[index]
                stop = min(s_end, captured_end)
                if stop > position:
                    n = stop - position
                    row = rows.get(owner)
                    if row is None:
                        row = rows[owner] = new_row()
                    row[layer] += n
                    weights[owner] = weights.get(owner, 0) + n
                    position = stop
                index += 1
            if position < captured_end:  # beyond the frontier: forced out by a bound
                self._add(UNDECODED, OPAQUE, captured_end - position)
                weights[UNDECODED] = weights.get(UNDECODED, 0) + captured_end - position
        if wire_end > captured_end:
            # Bytes the snaplen cut off: on the wire, but their layer cannot be known.
            self._add(UNDECODED, OPAQUE, wire_end - captured_end)
            weights[UNDECODED] = weights.get(UNDECODED, 0) + wire_end - captured_end
        self._split_headers(weights, link, ip, tcp)

    def _settle_one_owner(self, spans: list[tuple[int, int, int, int]], entry: _Pending) -> bool:
        """The next most common case: a whole packet over a few of the newest spans, all of
        one owner (an AMQP frame's header, body and end; an HTTP head and body), so no header
        split is needed.  False, having changed nothing, when that is not the case."""
        start, end, _, link, ip, tcp = entry
        index = len(spans) - 1
        owner = spans[index][2]
        if end > spans[index][1]:
            return False
        parts: list[tuple[int, int]] = []
        while True:
            s_start, s_end, s_owner, layer = spans[index]
            if s_owner != owner:
                return False
            if s_end > start and s_start < end:
                parts.append((layer, min(s_end, end) - max(s_start, start)))
            if s_start <= start:
                break
            index -= 1
            if index < 0 or len(spans) - index > MAX_ONE_OWNER_WALK:
                return False
        row = self.rows.get(owner)
        if row is None:
            row = self.rows[owner] = new_row()
        for layer, n in parts:
            row[layer] += n
        row[LINK] += link
        row[IP] += ip
        row[TCP] += tcp
        return True

    def charge(self, owner: int, layer: int, n: int) -> None:
        """``n`` bytes of ``layer`` to ``owner``, outside any stream (an RST's payload)."""
        if n:
            self._add(owner, layer, n)

    def _add(self, owner: int, layer: int, n: int) -> None:
        row = self.rows.get(owner)
        if row is None:
            row = self.rows[owner] = new_row()
        row[layer] += n

    def _split_headers(self, weights: dict[int, int], link: int, ip: int, tcp: int) -> None:
        if len(weights) == 1:
            self.charge_headers(next(iter(weights)), link, ip, tcp)
            return
        owners = list(weights)
        shares = list(weights.values())
        for layer, total in ((LINK, link), (IP, ip), (TCP, tcp)):
            for owner, part in zip(owners, apportion(total, shares), strict=True):
                if part:
                    self._add(owner, layer, part)

    def fill_to(self, direction: int, end: int) -> None:
        """Every byte before ``end`` that no span claimed is undecoded (a failed decoder)."""
        side = self.dirs[direction]
        if side.frontier < end:
            side.fill(end)
            self._release(side)

    def gap(self, direction: int, start: int, end: int) -> None:
        """Stream bytes ``[start, end)`` were never captured: no packet will claim them, but
        the frontier must pass them."""
        side = self.dirs[direction]
        if side.add(start, end, UNDECODED, OPAQUE):
            self._release(side)

    # -- decoder events ---------------------------------------------------------------------

    def apply(self, events: list[Event]) -> None:
        # Spans and notes are most of the events (several per message): they are handled here
        # without a call each; the rest go to ``_event``.
        messages = self.messages
        for event in events:
            if type(event) is Span:
                self._span(event)
            elif type(event) is MessageNote:
                state = messages.get(event.message)
                if state is not None:
                    state.detail[event.key] = event.value
            else:
                self._event(event)

    def _span(self, span: Span) -> None:
        start = span.start
        end = span.end
        if end <= start:
            return
        direction = span.direction
        owner = span.owner
        layer = span.layer
        if owner >= 0:
            state = self.messages.get(owner)
            if state is not None and end > state.last[direction]:
                state.last[direction] = end - 1
        side = self.dirs[direction]
        if start == side.frontier and not side.loose:
            # The common case, DirectionLedger.add's first branch: right at the frontier.
            spans = side.spans
            last = spans[-1] if spans else None
            if last is not None and last[1] == start and last[2] == owner and last[3] == layer:
                spans[-1] = (last[0], end, owner, layer)
                side.frontier = end
            elif len(spans) < MAX_SPANS:
                spans.append((start, end, owner, layer))
                side.starts.append(start)
                side.frontier = end
            else:
                side._append(start, end, owner, layer)
        elif not side.add(start, end, owner, layer):
            if start < side.frontier:
                self.anomalies["wireprobe.span_overlap"] += 1
            return
        if side.pending or side.acks:
            self._release(side)

    def _release(self, side: DirectionLedger) -> None:
        frontier = side.frontier
        pending = side.pending
        while pending and pending[0][1] <= frontier:
            self._settle(side, pending.popleft())
        acks = side.acks
        while acks and acks[0][0] < frontier:
            self._settle_ack(side, acks.popleft())

    def _event(self, event: Event) -> None:
        # Ordered by frequency: a message has one start, answer and end (notes: ``apply``).
        if type(event) is MessageStarted:
            self.messages[event.message] = MessageState(
                message=event.message,
                protocol=event.protocol,
                kind=event.kind,
                sender=event.sender,
                start_ordinal=event.ordinal,
                start_ts=event.ts,
            )
            self._timing(event.message, event.sender, event.ordinal)
            if self.first_start is None or event.ordinal < self.first_start[0]:
                self.first_start = (event.ordinal, event.ts)
                # The packet that starts the first message ends setup: it is never unsolicited.
                self.answering.add((event.sender, event.ordinal))
        elif type(event) is MessageAnswered:
            state = self.messages.get(event.message)
            if state is not None and state.answered_ordinal is None:
                state.answered_ordinal = event.ordinal
                state.answered_ts = event.ts
                self.answers[event.message] = event.ordinal
                if event.waits != 1:
                    self.waits[event.message] = event.waits
            elif state is not None and event.waits > self.waits.get(event.message, 1):
                # A decoder may learn only later that the answer ended more waits (HTTP
                # ``100 Continue``, known once the body followed it): the first answer's
                # ordinal stands, its waits rise.
                self.waits[event.message] = event.waits
        elif type(event) is MessageEnded:
            state = self.messages.get(event.message)
            if state is not None:
                if state.end_ts is None:
                    self.ended.append(event.message)
                state.end_ts = event.ts
                if len(self.messages) > RETIRE_THRESHOLD:
                    self._retire_ready()
        elif isinstance(event, Anomaly):
            self.anomalies[event.name] += event.count
        elif isinstance(event, ProtocolIdentified):
            self.protocol = event.protocol
        elif isinstance(event, SetupEnded):
            if self.setup_hint is None:
                self.setup_hint = event.ordinal
        elif isinstance(event, TlsHandshake):
            self.handshakes.append(event)
        elif isinstance(event, Unsolicited | Answering):
            # Only setup turns need them, and setup is over at the first message.
            marks = self.unsolicited if type(event) is Unsolicited else self.answering
            if self.first_start is None and len(marks) < MAX_SETUP_TURNS:
                marks.add((event.direction, event.ordinal))

    # -- retiring finished messages -----------------------------------------------------------

    def _timing(self, message: int, sender: int, ordinal: int) -> None:
        while len(self.starts) <= message:
            self.senders.append(-1)
            self.starts.append(-1)
            self.answers.append(-1)
        self.senders[message] = sender
        self.starts[message] = ordinal

    def timings(self) -> list[tuple[int, int, int | None]]:
        """(sender, first-byte ordinal, answer ordinal) of every message id, for round trips."""
        return [
            (sender, start, answer if answer >= 0 else None)
            for sender, start, answer in zip(self.senders, self.starts, self.answers, strict=True)
        ]

    def _retirable(self, state: MessageState) -> bool:
        """Nothing can charge this message any more: every byte decoded and settled, and the
        peer acknowledged past its last byte, so later ACKs name newer bytes."""
        for direction, last in enumerate(state.last):
            if last < 0:
                continue
            side = self.dirs[direction]
            if side.frontier <= last or self.acked[direction] <= last + 1:
                return False
            if side.pending and side.pending[0][0] <= last:
                return False
            if side.acks and side.acks[0][0] <= last:
                return False
        return True

    def _retire_ready(self) -> None:
        messages, ended, rows, total = self.messages, self.ended, self.rows, self.retired_row
        while ended and len(messages) > RETIRE_THRESHOLD // 2:
            state = messages.get(ended[0])
            if state is None:
                ended.popleft()
                continue
            if not self._retirable(state):
                return
            ended.popleft()
            del messages[state.message]
            row = rows.pop(state.message, None) or new_row()
            for layer, n in enumerate(row):
                total[layer] += n
            fields = message_fields(state, row)
            self.retired_latency.add_fields(fields)
            self.retired_tally.add_fields(fields)
            self.retiring.append(fields)
            self.retired += 1
            if len(self.retiring) >= SPOOL_BATCH:
                self._spill()

    def _spill(self) -> None:
        """Write the retiring records to the spool as one pickle: a batch shares its dict keys'
        strings and costs one call, about 3x less per record than a pickle each."""
        if self.spool is None:
            self.spool = tempfile.TemporaryFile()  # noqa: SIM115
        pickle.dump(self.retiring, self.spool, pickle.HIGHEST_PROTOCOL)
        self.retiring = []

    def retired_records(self) -> Iterator[dict[str, Any]]:
        """The retired messages' fields, in the order they were retired; closes the spool."""
        if self.spool is not None:
            self.spool.seek(0)
            for _ in range(self.retired // SPOOL_BATCH):
                batch: list[dict[str, Any]] = pickle.load(self.spool)
                yield from batch
            self.spool.close()
            self.spool = None
        batch, self.retiring = self.retiring, []
        yield from batch

    def late_charges(self) -> None:
        """Bytes charged to a message after it was retired (a spurious retransmission, a stale
        duplicate ACK) move to ``control``, so the ledger still balances."""
        for owner in [o for o in self.rows if o >= 0 and o not in self.messages]:
            row = self.rows.pop(owner)
            target = self.rows.setdefault(CONTROL, new_row())
            for layer, n in enumerate(row):
                target[layer] += n
            self.anomalies["wireprobe.charge_after_retire"] += 1

    # -- the end ----------------------------------------------------------------------------

    def note_data(self, ordinal: int, direction: int) -> None:
        """A packet carried new stream data (for counting setup turns)."""
        turns = self.turns
        if len(turns) >= MAX_SETUP_TURNS:
            return
        if turns and turns[-1][1] == direction:
            self.turn_packets[-1] += 1
        else:
            turns.append((ordinal, direction))
            self.turn_packets.append(1)

    def close(self, stream_ends: tuple[int, int]) -> None:
        """No more events: charge what is still waiting (unspanned bytes to UNDECODED)."""
        for direction, side in enumerate(self.dirs):
            end = max([stream_ends[direction], side.frontier] + [p[1] for p in side.pending])
            if side.loose or side.frontier < stream_ends[direction]:
                # A decoder broke the contract of events.py; the ledger still balances.
                self.anomalies["wireprobe.unspanned_bytes"] += 1
            side.fill(end)
            self._release(side)
            while side.pending:
                self._settle(side, side.pending.popleft())
            while side.acks:
                self._settle_ack(side, side.acks.popleft())

    def layer_totals(self) -> Row:
        """Bytes per layer over every owner, retired messages included."""
        total = list(self.retired_row)
        for row in self.rows.values():
            for layer, n in enumerate(row):
                total[layer] += n
        return total

    def bucket(self, owner: int) -> int:
        row = self.rows.get(owner)
        return sum(row) if row else 0


def message_fields(state: MessageState, row: Row) -> dict[str, Any]:
    """A message's own figures (the record without its connection-wide ones)."""
    return {
        "index": state.message,
        "protocol": state.protocol,
        "kind": state.kind,
        "sender": "orig" if state.sender == 0 else "resp",
        "start_ts": state.start_ts,
        "answer_ts": state.answered_ts,
        "end_ts": state.end_ts,
        "marginal_bytes": sum(row),
        "layers": dict(zip(LAYER_NAMES, row, strict=True)),
        "detail": state.detail,
    }
