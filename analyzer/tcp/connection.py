"""One TCP connection's state: both directions' reassembly, its decoder and its ledger.

The table (analyzer/tcp/flows.py) finds a connection and hands it reassembled pieces; the
connection feeds its decoder, applies the events to its ledger, and tells the decoder of the
end of each direction only once every byte before the FIN was delivered.  Any decoder failure
becomes the anomaly ``wireprobe.decoder_error``, never a traceback.
"""

from __future__ import annotations

import hashlib

from analyzer.accounting.ledger import ConnectionLedger
from analyzer.decoding.detect import DetectingDecoder, OpaqueDecoder
from analyzer.decoding.events import (
    CONTROL,
    IP,
    LINK,
    N_LAYERS,
    OPAQUE,
    TCP,
    UNDECODED,
    StreamDecoder,
)
from analyzer.tcp.reassembly import Piece, StreamAssembler

#: The transport-only fast path's sums per direction (``Connection.fast``): data segments,
#: their wire bytes, IP datagram bytes and TCP header bytes; pure ACKs, their wire bytes and
#: datagram bytes.
(
    FAST_DATA,
    FAST_DATA_WIRE,
    FAST_DATA_TOTAL,
    FAST_DATA_TCP,
    FAST_ACKS,
    FAST_ACK_WIRE,
    FAST_ACK_TOTAL,
) = range(7)
FAST_FIELDS = 7

#: A table entry, one per orientation of the 4-tuple: the connection, the direction this
#: orientation sends in, that direction's assembler, the other's, and the direction's
#: transport-only sums (the last three are reached through the connection too; the fast path
#: saves the lookups).
Entry = tuple["Connection", int, StreamAssembler, StreamAssembler, list[int]]


class Connection:
    """One TCP connection: both directions' reassembly, its decoder and its ledger."""

    __slots__ = (
        "ack_ts",
        "anomalies",
        "asm",
        "closed_ts",
        "decoder",
        "delivered",
        "eof_pending",
        "fast",
        "fin",
        "first_ts",
        "id",
        "last_ordinal",
        "last_ts",
        "ledger",
        "orig",
        "packets",
        "resp",
        "rst",
        "syn_ts",
        "synack_ts",
        "tcp_handshake",
        "wire",
    )

    def __init__(
        self,
        orig: tuple[bytes, int],
        resp: tuple[bytes, int],
        ts: float,
        decoder: StreamDecoder,
    ) -> None:
        self.orig = orig
        self.resp = resp
        self.first_ts = ts
        self.last_ts = ts
        #: ordinal of the connection's latest packet (bytes released at the end arrived by then)
        self.last_ordinal = 0
        self.id = connection_id(orig, resp, ts)
        self.asm = (StreamAssembler(), StreamAssembler())
        self.ledger = ConnectionLedger()
        self.decoder = decoder
        self.delivered = [0, 0]
        self.packets = [0, 0]
        self.wire = [0, 0]
        self.tcp_handshake = False
        self.syn_ts: float | None = None
        self.synack_ts: float | None = None
        self.ack_ts: float | None = None
        self.fin = [False, False]
        self.rst = False
        self.closed_ts: float | None = None
        self.anomalies: dict[str, int] = {}
        #: (ordinal, ts) of a FIN whose eof waits for held bytes before it, per direction
        self.eof_pending: list[tuple[int, float] | None] = [None, None]
        #: per direction, what the transport-only fast path counted instead of charging each
        #: packet (``FAST_*`` indexes); ``fold_fast`` charges the sums when the connection ends
        self.fast = ([0] * FAST_FIELDS, [0] * FAST_FIELDS)

    def feed(self, direction: int, pieces: list[Piece], ordinal: int, ts: float) -> None:
        """Hand reassembled pieces to the decoder and its events to the ledger."""
        ledger = self.ledger
        delivered = self.delivered
        for value in pieces:
            position = delivered[direction]
            try:
                if type(value) is bytes:
                    delivered[direction] = position + len(value)
                    events = self.decoder.feed(direction, value, ordinal, ts)
                else:
                    assert isinstance(value, int)
                    ledger.gap(direction, position, position + value)
                    delivered[direction] = position + value
                    events = self.decoder.gap(direction, value, ordinal, ts)
                if events:
                    ledger.apply(events)
            except Exception:  # any decoder failure becomes an anomaly, never a traceback
                self._decoder_failed()
        decoder = self.decoder
        if type(decoder) is DetectingDecoder and decoder.inner is not None:
            # Detection is done: talk to the protocol's decoder directly from now on.
            self.decoder = decoder.inner
        eof = self.eof_pending[direction]
        if eof is not None and delivered[direction] >= self.asm[direction].next:
            self._release_eof(direction)

    def eof_after(self, direction: int, ordinal: int, ts: float) -> None:
        """The direction sent FIN: tell the decoder once every byte before it was delivered."""
        self.eof_pending[direction] = (ordinal, ts)
        self._release_eof(direction)

    def _release_eof(self, direction: int, *, final: bool = False) -> None:
        pending = self.eof_pending[direction]
        if pending is None:
            return
        asm = self.asm[direction]
        fin = asm.fin_offset if asm.fin_offset is not None else asm.next
        if final and asm.next < fin:
            # The bytes before the FIN never came: they are a gap, not the end of a message.
            self.feed(direction, asm.skip_to(fin), pending[0], pending[1])
        if asm.next >= fin and not asm.held_bytes:
            self.eof_pending[direction] = None
            self.eof(direction, *pending)

    def eof(self, direction: int, ordinal: int, ts: float) -> None:
        try:
            self.ledger.apply(self.decoder.eof(direction, ordinal, ts))
        except Exception:  # any decoder failure becomes an anomaly, never a traceback
            self._decoder_failed()

    def _decoder_failed(self) -> None:
        """A decoder bug costs this connection its decoding, not the run: the bytes already
        given to the failed decoder become undecoded at once, so the frontier moves on."""
        self.ledger.anomalies["wireprobe.decoder_error"] += 1
        for direction in (0, 1):
            self.ledger.fill_to(direction, self.delivered[direction])
        self.decoder = OpaqueDecoder(
            self.ledger.protocol, base=(self.delivered[0], self.delivered[1])
        )

    def fold_fast(self) -> None:
        """Charge what the transport-only fast path counted: its data segments are all
        undecoded and its pure ACKs all control, so sums per direction give every layer.
        (An IPv4 connection's fast-path headers are 20 bytes, an IPv6 one's 40.)"""
        ip = 20 if len(self.orig[0]) == 4 else 40
        rows = self.ledger.rows
        for direction, sums in enumerate(self.fast):
            n, wire, total, tcp, acks, ack_wire, ack_total = sums
            self.packets[direction] += n + acks
            self.wire[direction] += wire + ack_wire
            if n:
                row = rows.setdefault(UNDECODED, [0] * N_LAYERS)
                row[LINK] += wire - total
                row[IP] += n * ip
                row[TCP] += tcp
                row[OPAQUE] += total - n * ip - tcp
            if acks:
                row = rows.setdefault(CONTROL, [0] * N_LAYERS)
                row[LINK] += ack_wire - ack_total
                row[IP] += acks * ip
                row[TCP] += ack_total - acks * ip
            sums[:] = [0] * FAST_FIELDS

    def finish(self, ts: float) -> None:
        """Flush reassembly and the decoder; charge everything still waiting."""
        self.fold_fast()
        for direction in (0, 1):
            pieces = self.asm[direction].flush()
            if pieces:
                self.feed(direction, pieces, self.last_ordinal, ts)
            self._release_eof(direction, final=True)
        try:
            self.ledger.apply(self.decoder.finish(ts))
        except Exception:  # any decoder failure becomes an anomaly, never a traceback
            self._decoder_failed()
        self.ledger.close((self.delivered[0], self.delivered[1]))


def connection_id(orig: tuple[bytes, int], resp: tuple[bytes, int], ts: float) -> str:
    """A stable id from the flow key and first timestamp (STYLE.md: never clock or random)."""
    key = b"%s:%d>%s:%d@%d" % (orig[0], orig[1], resp[0], resp[1], round(ts * 1e6))
    return "C" + hashlib.blake2b(key, digest_size=6).hexdigest()
