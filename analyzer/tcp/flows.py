"""The connection table: TCP segments to connections and directions, and the table's budget.

This is the per-packet hot path (DESIGN.md section 7): one dict lookup finds the connection and
the direction together, pure ACKs take a short path, and application bytes reach a decoder only
once reassembled.  Connections end on a new SYN for a closed 4-tuple, after an idle timeout,
when the state budget evicts them (analyzer/tcp/budget.py), or at the end of the capture; each
ending produces records for the report at once, so memory follows the number of connections open
at the same time, not the length of the capture.  A connection's own state is
analyzer/tcp/connection.py; the fused fast path most frames take is analyzer/tcp/fastpath.py.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable, Iterable

from analyzer.decoding.detect import PORT_HINTS, DetectingDecoder, OpaqueDecoder
from analyzer.decoding.events import (
    CONTROL,
    OPAQUE,
    SETUP,
    TEARDOWN,
    UNDECODED,
    MessageIds,
    StreamDecoder,
)
from analyzer.options import AnalyzeOptions
from analyzer.packets import ACK, FIN, RST, SYN, decode
from analyzer.tcp.budget import (
    HALF_OPEN_TIMEOUT_S,
    CaptureClock,
    IdleMarks,
    TableCounters,
    eviction_victims,
    half_open,
)
from analyzer.tcp.connection import Connection, Entry, connection_id
from analyzer.tcp.fastpath import run_fused

__all__ = ["Connection", "FlowTable", "Segment", "connection_id", "flow_key"]

#: Capture seconds a closed connection (FIN both ways, or RST) stays in the table so that late
#: ACKs and retransmitted FINs still land in it instead of starting a phantom connection.
CLOSED_LINGER_S = 60.0
#: Capture seconds between sweeps of the table for idle and closed connections.
SWEEP_INTERVAL_S = 10.0
#: An ACK of bytes not yet seen may be a capture that reordered the two directions: it waits for
#: them if they are within one unscaled window (64 KiB) and few ACKs wait already; past either
#: bound (a capture of one direction only) it is control at once.
EARLY_ACK_WINDOW_BYTES = 64 * 1024
MAX_EARLY_ACKS = 64
#: How far from the next expected byte an RST may be and still end the connection.  RFC 5961
#: section 3 resets only on an exact match (in-window RSTs get a challenge ACK); a capture may
#: miss segments before it, so allow one unscaled window (64 KiB), no more.
RST_WINDOW_BYTES = 64 * 1024

#: Flag sets no conforming stack sends (RFC 9293 section 3.10.7: a SYN carries no FIN, an RST
#: ends the connection so neither SYN nor FIN can ride on it; scanners send them to fingerprint
#: stacks): indexed by ``flags & (SYN | FIN | RST)``, nonzero where the set is contradictory.
_CONTRADICTORY = tuple(
    0xFF if bin(index).count("1") > 1 else 0 for index in range((SYN | FIN | RST) + 1)
)
#: Source and destination ports as they follow the addresses in a flow key.
_PORTS = struct.Struct("!HH")

Segment = tuple[bytes, bytes, int, int, int, int, int, int, bytes, int, int, int, int, str | None]


def flow_key(src: bytes, sport: int, dst: bytes, dport: int) -> bytes:
    """The table's key of one orientation of a 4-tuple: addresses, then ports, as the bytes of
    an IPv4 header's address fields followed by a TCP header's port fields (12 bytes for IPv4,
    36 for IPv6), so the fast path reads it from a frame with no work at all."""
    return src + dst + _PORTS.pack(sport, dport)


def _orig_is_source(flags: int, sport: int, dport: int) -> bool:
    """Who originated a connection whose first packet we see now (DESIGN.md section 2).

    A SYN says so; a SYN-ACK says the other side did.  Without either (the capture started
    mid-connection) the first packet's sender is orig, unless its port is a well-known server
    port and the other is not: then it is most likely a response and the other side is orig.
    """
    if flags & SYN:
        return not flags & ACK
    src_server = sport in PORT_HINTS or sport < 1024
    dst_server = dport in PORT_HINTS or dport < 1024
    return not (src_server and not dst_server)


class FlowTable:
    """All open connections, keyed by the 4-tuple in both orientations."""

    def __init__(self, options: AnalyzeOptions, on_finished: Callable[[Connection], None]) -> None:
        self._options = options
        self._on_finished = on_finished
        #: flow key (``flow_key``) -> entry, one key per orientation of the 4-tuple
        self._table: dict[bytes, Entry] = {}
        self._next_sweep = 0.0
        # The state budget (tcp/budget.py): the capture clock sweeps go by, when connections
        # stamped ahead of it went quiet, the bound on open connections and what it did.
        self._clock = CaptureClock()
        self._marks = IdleMarks()
        self._max_open = options.max_open_connections
        self.counters = TableCounters()
        self._idle_s = options.idle_timeout_s
        self._transport_only = options.transport_only

    def __len__(self) -> int:
        return len(self._table) // 2

    # -- the packet loop --------------------------------------------------------------------

    def run(
        self, packets: Iterable[tuple[float, int, int, bytes]], skipped: Counter[str]
    ) -> tuple[int, int]:
        """Feed every captured frame to the table; (frames, TCP segments among them).

        Most frames take the fused fast path (analyzer/tcp/fastpath.py); the others, and any
        frame the fast path is unsure of, ``_general``."""
        return run_fused(
            packets,
            skipped,
            table=self._table,
            general=self._general,
            sweep=self._sweep_next,
            next_sweep=self._next_sweep,
            idle_s=self._idle_s,
            transport_only=self._transport_only,
            fast_path=self._options.fast_path,
        )

    def _general(
        self,
        ts: float,
        link_type: int,
        orig_len: int,
        data: bytes,
        ordinal: int,
        skipped: Counter[str],
    ) -> float:
        """Any frame, the general way (a frame that is no TCP segment: its reason counted).

        Returns the time of the next sweep, which the packet may have moved (``run`` keeps it
        in a local)."""
        seg = decode(link_type, data, orig_len)
        if type(seg) is str:
            skipped[seg] += 1
        else:
            self.packet(seg, ts, ordinal, orig_len)  # type: ignore[arg-type]
        return self._next_sweep

    # -- the hot path -----------------------------------------------------------------------

    def packet(self, seg: Segment, ts: float, ordinal: int, wire_len: int) -> None:
        src, dst, sport, dport, seq, ack, flags, _win, payload, plen, link, ip, tcp, odd = seg
        entry = self._table.get(flow_key(src, sport, dst, dport))
        if entry is None or (
            (flags & SYN and not flags & ACK and self._restarts(entry[0], entry[1], seq))
            or ts - entry[0].last_ts > self._idle_s
        ):
            if entry is not None:
                self._finish(entry[0], ts)
            entry = self._open(src, sport, dst, dport, flags, ts)
        conn, direction = entry[0], entry[1]
        conn.last_ts = ts
        conn.last_ordinal = ordinal
        conn.packets[direction] += 1
        conn.wire[direction] += wire_len
        if odd is not None:
            conn.anomalies[odd] = conn.anomalies.get(odd, 0) + 1
        asm = conn.asm[direction]
        if flags & (SYN | RST):
            self._syn_or_rst(conn, direction, flags, seq, payload, plen, link, ip, tcp, ordinal, ts)
        elif plen:
            if asm.base is None:
                asm.base = seq
            self._data(conn, direction, seq, payload, plen, link, ip, tcp, ordinal, ts)
        elif flags & FIN:
            if asm.base is None:
                asm.base = seq
            conn.ledger.charge_headers(TEARDOWN, link, ip, tcp)
        else:
            # A pure ACK does not set this direction's base: a keep-alive probe carries
            # seq = next - 1 and would shift the stream by one byte.
            self._pure_ack(conn, direction, flags, ack, link, ip, tcp, ordinal, ts)
            return
        if flags & FIN and not flags & RST and not conn.fin[direction]:
            # (With RST the FIN says nothing more: the reset already ended both directions,
            # and the segment may be the first of a direction, with no stream to end.)
            self._fin(conn, direction, seq, plen, ordinal, ts)
        if flags & ACK:
            other = conn.asm[1 - direction]
            if other.base is not None:
                acked = other.offset(ack)
                conn.ledger.note_acked(1 - direction, acked)
                if other.held_bytes:
                    pieces = other.acked(acked)
                    if pieces:
                        conn.feed(1 - direction, pieces, ordinal, ts)
        if ts >= self._next_sweep:
            self._sweep(ts)

    def _pure_ack(
        self,
        conn: Connection,
        direction: int,
        flags: int,
        ack: int,
        link: int,
        ip: int,
        tcp: int,
        ordinal: int,
        ts: float,
    ) -> None:
        other = conn.asm[1 - direction]
        if not flags & ACK or other.base is None:
            conn.ledger.charge_headers(CONTROL, link, ip, tcp)
        else:
            newest = other.offset(ack) - 1
            if newest == -1 and other.syn_seen:
                conn.ledger.charge_headers(SETUP, link, ip, tcp)
                if conn.ack_ts is None and direction == 0 and conn.synack_ts is not None:
                    conn.ack_ts = ts
            elif other.fin_offset is not None and newest >= other.fin_offset:
                conn.ledger.charge_headers(TEARDOWN, link, ip, tcp)
            elif newest < 0 or self._transport_only:
                # (transport-only: every stream byte is undecoded, whose ACKs are control)
                conn.ledger.charge_headers(CONTROL, link, ip, tcp)
            else:
                if other.held_bytes:
                    # Held segments the peer acknowledged past: their hole will never fill.
                    pieces = other.acked(newest + 1)
                    if pieces:
                        conn.feed(1 - direction, pieces, ordinal, ts)
                if newest < other.next or (
                    newest - other.next < EARLY_ACK_WINDOW_BYTES
                    and len(conn.ledger.dirs[1 - direction].acks) < MAX_EARLY_ACKS
                ):
                    # Acknowledged bytes already seen, or (capture reordering) about to be:
                    # the ledger charges it to their owner once they are decoded.
                    conn.ledger.pure_ack(direction, newest, link, ip, tcp)
                else:
                    # It acknowledges bytes the capture never saw (Wireshark's "ACKed unseen
                    # segment"): nothing of ours to charge it to, and nothing to wait for.
                    conn.ledger.ack_unseen(direction, newest, link, ip, tcp)
        if ts >= self._next_sweep:
            self._sweep(ts)

    def _data(
        self,
        conn: Connection,
        direction: int,
        seq: int,
        payload: bytes,
        plen: int,
        link: int,
        ip: int,
        tcp: int,
        ordinal: int,
        ts: float,
    ) -> None:
        asm = conn.asm[direction]
        start = asm.offset(seq)
        pieces = asm.segment(start, payload, plen)
        if self._transport_only:
            # No decoder: every payload byte is undecoded, so the packet needs no spans.
            # Reassembly still runs for retransmissions and gaps.
            ledger = conn.ledger
            ledger.charge_headers(UNDECODED, link, ip, tcp)
            ledger.charge(UNDECODED, OPAQUE, plen)
            return
        if pieces:
            conn.ledger.note_data(ordinal, direction)
            conn.feed(direction, pieces, ordinal, ts)
        # After feeding: a packet whose bytes are already spanned is charged at once.
        conn.ledger.data_packet(direction, start, len(payload), plen, link, ip, tcp)

    def _syn_or_rst(
        self,
        conn: Connection,
        direction: int,
        flags: int,
        seq: int,
        payload: bytes,
        plen: int,
        link: int,
        ip: int,
        tcp: int,
        ordinal: int,
        ts: float,
    ) -> None:
        if flags & _CONTRADICTORY[flags & (SYN | FIN | RST)]:
            conn.anomalies["tcp.bad_flags"] = conn.anomalies.get("tcp.bad_flags", 0) + 1
        if flags & RST:
            asm = conn.asm[direction]
            if asm.base is not None and abs(asm.offset(seq) - asm.next) > RST_WINDOW_BYTES:
                # Not a reset of this connection (RFC 5961 section 3): a stray or forged RST.
                conn.ledger.charge_headers(CONTROL, link, ip, tcp)
                conn.ledger.charge(CONTROL, OPAQUE, plen)
                conn.anomalies["tcp.rst_out_of_window"] = (
                    conn.anomalies.get("tcp.rst_out_of_window", 0) + 1
                )
                return
            # An RST ends both directions; text some stacks put in it is not stream data.
            conn.ledger.charge_headers(TEARDOWN, link, ip, tcp)
            conn.ledger.charge(TEARDOWN, OPAQUE, plen)
            if not conn.rst:
                conn.rst = True
                conn.closed_ts = ts
                for side in (0, 1):
                    # Nothing more will come: give up on holes, then end the stream.
                    pieces = conn.asm[side].flush()
                    if pieces:
                        conn.feed(side, pieces, ordinal, ts)
                    if not conn.fin[side]:
                        conn.eof(side, ordinal, ts)
            return
        asm = conn.asm[direction]
        asm.syn(seq)
        if flags & ACK:
            conn.synack_ts = conn.synack_ts or ts
        else:
            conn.tcp_handshake = True
            conn.syn_ts = conn.syn_ts or ts
        if plen:
            # TCP Fast Open data: the SYN's headers are setup, its payload is stream data.
            conn.ledger.charge_headers(SETUP, link, ip, tcp)
            self._data(conn, direction, (seq + 1) % (1 << 32), payload, plen, 0, 0, 0, ordinal, ts)
        else:
            conn.ledger.charge_headers(SETUP, link, ip, tcp)

    def _fin(
        self, conn: Connection, direction: int, seq: int, plen: int, ordinal: int, ts: float
    ) -> None:
        asm = conn.asm[direction]
        asm.fin_offset = asm.offset(seq) + plen
        conn.fin[direction] = True
        # The decoder hears of the end only after every byte before the FIN was delivered:
        # a segment lost or reordered before it may still come (Connection.feed checks).
        conn.eof_after(direction, ordinal, ts)
        if conn.fin[1 - direction]:
            conn.closed_ts = ts

    # -- table management -------------------------------------------------------------------

    def _restarts(self, conn: Connection, direction: int, seq: int) -> bool:
        """A SYN on a known 4-tuple starts a new connection unless it retransmits the first."""
        if conn.closed_ts is not None:
            return True
        asm = conn.asm[direction]
        if not asm.syn_seen:
            # The capture began mid-connection: a SYN now can only open another one.
            return True
        return asm.base != (seq + 1) % (1 << 32)

    def _open(self, src: bytes, sport: int, dst: bytes, dport: int, flags: int, ts: float) -> Entry:
        self._budget(ts)
        if _orig_is_source(flags, sport, dport):
            orig, resp = (src, sport), (dst, dport)
        else:
            orig, resp = (dst, dport), (src, sport)
        decoder: StreamDecoder
        if self._options.transport_only:
            decoder = OpaqueDecoder("unknown")
        else:
            decoder = DetectingDecoder(MessageIds(), self._options.decode, (orig[1], resp[1]))
        conn = Connection(orig, resp, ts, decoder)
        forward = (conn, 0, conn.asm[0], conn.asm[1], conn.fast[0])
        backward = (conn, 1, conn.asm[1], conn.asm[0], conn.fast[1])
        self._table[flow_key(orig[0], orig[1], resp[0], resp[1])] = forward
        self._table[flow_key(resp[0], resp[1], orig[0], orig[1])] = backward
        self.counters.peak_open = max(self.counters.peak_open, len(self._table) // 2)
        return forward if orig == (src, sport) else backward

    def _budget(self, ts: float) -> None:
        """Before a connection opens: the clock hears of it, and the bound makes room.

        Every new connection is an observation of the clock (SYNs always take the general
        path, so both paths see the same ones): a clock that stepped back, whose packets never
        reach the next sweep time, is confirmed here and the sweeps start again from it."""
        clock = self._clock
        jumps = clock.jumps
        now = clock.observe(ts)
        if clock.jumps != jumps and now < self._next_sweep:
            self._next_sweep = now
        if len(self._table) >= 2 * self._max_open:
            self._evict()

    def _evict(self) -> None:
        """The table is full: evict a batch, half-open connections first, then the longest
        idle (oldest last packet), each counted and marked ``tcp.evicted``."""
        conns = [entry[0] for entry in self._table.values() if not entry[1]]
        for conn in eviction_victims(conns, self._max_open):
            conn.anomalies["tcp.evicted"] = conn.anomalies.get("tcp.evicted", 0) + 1
            self.counters.evicted += 1
            self._finish(conn, conn.last_ts)

    def budget_report(self) -> dict[str, int] | None:
        """What the state budget did, when it did more than retire idle connections."""
        if not self.counters.acted():
            return None
        return self.counters.as_record(self._max_open)

    def _finish(self, conn: Connection, ts: float) -> None:
        orig, resp = conn.orig, conn.resp
        for key in (
            flow_key(orig[0], orig[1], resp[0], resp[1]),
            flow_key(resp[0], resp[1], orig[0], orig[1]),
        ):
            if self._table.get(key, (None,))[0] is conn:
                del self._table[key]
        self._marks.forget(conn)
        conn.finish(max(ts, conn.last_ts))
        self._on_finished(conn)

    def _sweep_next(self, ts: float) -> float:
        """Sweep, and the time of the next sweep (the fast path keeps it in a local)."""
        self._sweep(ts)
        return self._next_sweep

    def _sweep(self, ts: float) -> None:
        # The capture clock, not this packet's timestamp: one packet stamped far ahead (a bit
        # flip, a clock step) must not make every connection look idle, nor one far behind
        # stop the sweeps.  While a jump waits for confirmation, nothing is retired and the
        # next packets (still past the sweep time) are asked again.
        clock = self._clock
        now = clock.observe(ts)
        if clock.pending:
            return
        self._next_sweep = now + SWEEP_INTERVAL_S
        idle = self._idle_s
        marks = self._marks
        done = []
        timeouts = 0
        for conn, direction, *_ in self._table.values():
            if direction:
                continue
            idle_for = marks.idle_s(conn, now)
            if idle_for > idle or (
                conn.closed_ts is not None and now - conn.closed_ts > CLOSED_LINGER_S
            ):
                done.append(conn)
            elif idle_for > HALF_OPEN_TIMEOUT_S and half_open(conn):
                done.append(conn)
                timeouts += 1
        self.counters.half_open_timeouts += timeouts
        for conn in sorted(done, key=lambda c: (c.first_ts, c.id)):
            self._finish(conn, conn.last_ts)

    def close(self) -> None:
        """End of the capture: finish every connection, oldest first."""
        conns = sorted(
            {id(e[0]): e[0] for e in self._table.values()}.values(), key=lambda c: c.first_ts
        )
        for conn in conns:
            self._finish(conn, conn.last_ts)
