"""A finished connection becomes its records: the JSON contract of DESIGN.md section 5.

Pure: takes a finished ``Connection``, returns plain dicts (the report and the JSON writer only
serialise them).  ``Summary`` folds records into the per-protocol figures as they stream past.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from analyzer.accounting.latency import ConnectionLatency, LatencySketch, Stats, answer_latencies
from analyzer.accounting.ledger import MessageState, message_fields, new_row
from analyzer.accounting.roundtrips import message_round_trips, setup_round_trips, solicited_turns
from analyzer.accounting.rpc import RpcPairs
from analyzer.accounting.unaccounted import MessageTally, add_account
from analyzer.decoding.detect import REGISTRY
from analyzer.decoding.events import (
    CONTROL,
    LAYER_NAMES,
    SETUP,
    TEARDOWN,
    UNDECODED,
)
from analyzer.packets import format_endpoint
from analyzer.tcp.communityid import community_id
from analyzer.tcp.flows import Connection

Record = dict[str, Any]

#: Protocols whose connections carry messages once decoded.
MESSAGE_PROTOCOLS = REGISTRY.message_protocols


def _layers(row: list[int]) -> dict[str, int]:
    return dict(zip(LAYER_NAMES, row, strict=True))


def _tls(conn: Connection) -> Record | None:
    shakes = conn.ledger.handshakes
    if not shakes:
        return None
    first = shakes[0]
    return {
        "version": first.version,
        "resumed": first.resumed,
        "alpn": first.alpn,
        "sni": first.sni,
        "decrypted": any(h.decrypted for h in shakes),
        "handshakes": len(shakes),
        "resumed_handshakes": sum(1 for h in shakes if h.resumed),
        "cipher_suite": first.cipher_suite,
        "early_data": any(h.early_data for h in shakes),
        "overhead_estimated": any(h.overhead_estimated for h in shakes),
    }


def _anomalies(conn: Connection) -> list[Record]:
    counts: dict[str, int] = dict(conn.anomalies)
    for name, count in conn.ledger.anomalies.items():
        counts[name] = counts.get(name, 0) + count
    gaps = sum(a.gaps for a in conn.asm)
    if gaps:
        counts["tcp.gap"] = counts.get("tcp.gap", 0) + gaps
    mismatches = sum(a.overlap_mismatches for a in conn.asm)
    if mismatches:
        counts["tcp.overlap_mismatch"] = counts.get("tcp.overlap_mismatch", 0) + mismatches
    return [{"name": name, "count": counts[name]} for name in sorted(counts)]


def _messages_decoded(conn: Connection, count: int) -> bool:
    """False when the content could not be decoded (DESIGN.md 5: ``messages`` is null)."""
    if count:
        return True
    ledger = conn.ledger
    if ledger.protocol not in MESSAGE_PROTOCOLS:
        return False
    return not ledger.handshakes or any(h.decrypted for h in ledger.handshakes)


def connection_records(conn: Connection) -> tuple[Record, Iterator[Record]]:
    """The connection's record and (lazily) its messages' records, retired ones first."""
    ledger = conn.ledger
    ledger.late_charges()
    live = sorted(ledger.messages.values(), key=lambda m: m.message)
    count = len(live) + ledger.retired
    shared = ledger.bucket(SETUP) + ledger.bucket(TEARDOWN) + ledger.bucket(CONTROL)
    share = shared / count if count else 0.0
    timings = ledger.timings()
    trips = message_round_trips(timings, ledger.waits)
    first = min((t[1] for t in timings if t[1] >= 0), default=None)
    bound = first if first is not None else ledger.setup_hint
    turns = solicited_turns(ledger.turns, ledger.turn_packets, ledger.unsolicited, ledger.answering)
    setup_trips = setup_round_trips(conn.tcp_handshake, turns, bound)
    decoded = _messages_decoded(conn, count)
    latency = _latency(conn, live)
    tally = _tally(conn, live)
    record: Record = {
        "id": conn.id,
        "community_id": community_id(conn.orig, conn.resp),
        "orig": format_endpoint(*conn.orig),
        "resp": format_endpoint(*conn.resp),
        "protocol": ledger.protocol,
        "messages": count if decoded else None,
        "tcp_handshake": conn.tcp_handshake,
        "tls": _tls(conn),
        "setup_round_trips": setup_trips,
        "round_trips": setup_trips + sum(trips),
        "wire_bytes": conn.wire[0] + conn.wire[1],
        "layers": _layers(ledger.layer_totals()),
        "setup_bytes": ledger.bucket(SETUP),
        "teardown_bytes": ledger.bucket(TEARDOWN),
        "control_bytes": ledger.bucket(CONTROL),
        "undecoded_bytes": ledger.bucket(UNDECODED),
        "retransmitted_bytes": conn.asm[0].retransmitted_bytes + conn.asm[1].retransmitted_bytes,
        "missing_bytes": conn.asm[0].gap_bytes + conn.asm[1].gap_bytes,
        "packets": conn.packets[0] + conn.packets[1],
        "directions": {
            "orig": {"packets": conn.packets[0], "wire_bytes": conn.wire[0]},
            "resp": {"packets": conn.packets[1], "wire_bytes": conn.wire[1]},
        },
        "first_ts": conn.first_ts,
        "last_ts": conn.last_ts,
        "handshake_rtt_s": _handshake_rtt(conn),
        "time_to_first_message_s": _time_to_first_message(conn),
        "closed": "rst" if conn.rst else ("fin" if all(conn.fin) else "open"),
        "latency": latency.first.stats(),
        "latency_last_byte": latency.last.stats(),
        "latency_sketch": latency.to_json(),
        "not_counted": tally.as_dict(
            lost_bytes=conn.asm[0].gap_bytes + conn.asm[1].gap_bytes > 0,
            mid_stream=not conn.tcp_handshake,
        ),
        "anomalies": _anomalies(conn),
    }
    return record, _message_records(conn, live, trips, share)


def _tally(conn: Connection, live: list[MessageState]) -> MessageTally:
    """The connection's account of what was not counted: retired messages' and live ones'."""
    out = MessageTally()
    out.merge(conn.ledger.retired_tally)
    for state in live:
        out.add_fields(message_fields(state, new_row()))
    return out


def _latency(conn: Connection, live: list[MessageState]) -> ConnectionLatency:
    """The connection's latency sketches: the retired messages' plus the live ones'."""
    out = ConnectionLatency()
    out.merge(conn.ledger.retired_latency)
    for state in live:
        out.add(state.start_ts, state.answered_ts, state.end_ts)
    return out


def _message_records(
    conn: Connection, live: list[MessageState], trips: list[float], share: float
) -> Iterator[Record]:
    """Each message's fields plus its connection-wide ones (id, round trips, loaded cost)."""
    ledger = conn.ledger
    retired = ledger.retired_records()
    fresh = (message_fields(state, ledger.rows.get(state.message, new_row())) for state in live)
    for fields in itertools.chain(retired, fresh):
        index = fields["index"]
        first, last = answer_latencies(fields["start_ts"], fields["answer_ts"], fields["end_ts"])
        yield {
            "connection": conn.id,
            **fields,
            "round_trips": trips[index] if index < len(trips) else 0.0,
            "loaded_bytes": fields["marginal_bytes"] + share,
            "latency_s": first,
            "latency_last_byte_s": last,
        }


def _time_to_first_message(conn: Connection) -> float | None:
    first = conn.ledger.first_start
    return None if first is None else first[1] - conn.first_ts


def _handshake_rtt(conn: Connection) -> float | None:
    if conn.syn_ts is None or conn.ack_ts is None:
        return None
    return conn.ack_ts - conn.syn_ts


@dataclass(slots=True)
class _ProtocolTotals:
    connections: int = 0
    decoded_connections: int = 0
    messages: int = 0
    tcp_handshakes: int = 0
    tls_full_handshakes: int = 0
    tls_resumed_handshakes: int = 0
    wire_bytes: int = 0
    payload_bytes: int = 0
    #: the same figures over the connections whose messages were counted (per-message ratios
    #: must not mix in connections whose messages are unknown, e.g. TLS without keys)
    message_wire_bytes: int = 0
    message_payload_bytes: int = 0
    message_handshakes: int = 0
    marginal_bytes: int = 0
    loaded_bytes: float = 0.0
    round_trips: float = 0.0
    setup_bytes: int = 0
    setup_round_trips: int = 0
    #: answered messages' latencies, and the TCP handshakes' round-trip times (seconds)
    latency: ConnectionLatency = field(default_factory=ConnectionLatency)
    handshake_rtt: LatencySketch = field(default_factory=LatencySketch)
    #: what was not counted (``analyzer.accounting.unaccounted``), summed over connections
    not_counted: dict[str, int] = field(default_factory=dict)

    def merge(self, other: _ProtocolTotals) -> None:
        """Add ``other``'s figures (another shard's totals of the same protocol)."""
        for name in self.__slots__:
            mine = getattr(self, name)
            if isinstance(mine, ConnectionLatency | LatencySketch):
                mine.merge(getattr(other, name))
            elif isinstance(mine, dict):
                for key, count in getattr(other, name).items():
                    mine[key] = mine.get(key, 0) + count
            else:
                setattr(self, name, mine + getattr(other, name))


def _not_counted(total: dict[str, int]) -> dict[str, int]:
    names = ("unanswered", "no_request", "unfinished", "inferred_lost", "mid_stream_connections")
    return {name: total.get(name, 0) for name in names}


def _stats_or_none(sketch: LatencySketch) -> Stats | None:
    return sketch.stats() if sketch.count else None


@dataclass(slots=True)
class Summary:
    """Per-protocol totals, folded one connection at a time (or merged from shards' summaries)."""

    totals: dict[str, _ProtocolTotals] = field(default_factory=dict)
    #: AMQP RPC calls paired with their replies across connections (analyzer.accounting.rpc)
    rpc: RpcPairs = field(default_factory=RpcPairs)

    def merge(self, other: Summary) -> None:
        """Fold in another summary: the figures of both runs' connections, as if one run."""
        for protocol, theirs in other.totals.items():
            self.totals.setdefault(protocol, _ProtocolTotals()).merge(theirs)
        self.rpc.merge(other.rpc)

    def watch(self, record: Record, messages: Iterator[Record]) -> Iterator[Record]:
        """``record``'s messages, passed through what pairs messages across connections (only
        AMQP's: other connections' messages go by untouched, at no cost)."""
        return self.rpc.watch(messages) if record["protocol"] == "amqp" else messages

    def add(self, record: Record) -> None:
        t = self.totals.setdefault(record["protocol"], _ProtocolTotals())
        t.connections += 1
        sketch = record.get("latency_sketch")
        if sketch is not None:
            t.latency.merge(ConnectionLatency.from_json(sketch))
        if record.get("handshake_rtt_s") is not None:
            t.handshake_rtt.add(record["handshake_rtt_s"])
        if record.get("not_counted") is not None:
            add_account(t.not_counted, record["not_counted"])
        t.tcp_handshakes += int(record["tcp_handshake"])
        tls = record["tls"]
        handshakes = int(record["tcp_handshake"])
        if tls:
            t.tls_resumed_handshakes += tls["resumed_handshakes"]
            t.tls_full_handshakes += tls["handshakes"] - tls["resumed_handshakes"]
            handshakes += tls["handshakes"]
        t.wire_bytes += record["wire_bytes"]
        t.payload_bytes += record["layers"]["payload"]
        if record["messages"] is None:
            return
        t.decoded_connections += 1
        t.messages += record["messages"]
        t.message_wire_bytes += record["wire_bytes"]
        t.message_payload_bytes += record["layers"]["payload"]
        t.message_handshakes += handshakes
        # By the conservation law: messages' direct bytes are what no bucket took.
        buckets = (
            record["setup_bytes"]
            + record["teardown_bytes"]
            + record["control_bytes"]
            + record["undecoded_bytes"]
        )
        marginal = record["wire_bytes"] - buckets
        t.marginal_bytes += marginal
        if record["messages"]:
            t.loaded_bytes += marginal + buckets - record["undecoded_bytes"]
        t.round_trips += record["round_trips"]
        t.setup_bytes += record["setup_bytes"]
        t.setup_round_trips += record["setup_round_trips"]

    def as_dict(self) -> dict[str, Record]:
        out: dict[str, Record] = {}
        for protocol in sorted(self.totals):
            t = self.totals[protocol]
            n = t.messages
            out[protocol] = {
                "connections": t.connections,
                "messages": n if t.decoded_connections else None,
                "messages_per_connection": (n / t.decoded_connections)
                if t.decoded_connections
                else None,
                "tcp_handshakes": t.tcp_handshakes,
                "tls_full_handshakes": t.tls_full_handshakes,
                "tls_resumed_handshakes": t.tls_resumed_handshakes,
                "wire_bytes": t.wire_bytes,
                "payload_bytes": t.payload_bytes,
                "payload_efficiency": (t.message_payload_bytes / t.message_wire_bytes)
                if t.message_wire_bytes
                else None,
                "marginal_bytes_per_message": (t.marginal_bytes / n) if n else None,
                "loaded_bytes_per_message": (t.loaded_bytes / n) if n else None,
                "round_trips_per_message": (t.round_trips / n) if n else None,
                "handshakes_per_message": (t.message_handshakes / n) if n else None,
                "latency": _stats_or_none(t.latency.first),
                "latency_last_byte": _stats_or_none(t.latency.last),
                "tcp_handshake_rtt": _stats_or_none(t.handshake_rtt),
                "not_counted": _not_counted(t.not_counted),
            }
        rpc = self.rpc.as_dict()
        if rpc is not None and "amqp" in out:
            out["amqp"]["rpc"] = rpc
        return out


__all__ = ["Record", "Summary", "connection_records"]
