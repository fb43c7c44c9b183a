"""Ground truth: the ledger of DESIGN.md section 3 over the segments the generator produced.

The generator knows the label of every stream byte, so it charges each packet exactly as the
analyzer must: SYN and SYN-ACK to setup, FIN/RST without payload to teardown, pure ACKs to the
owner of the newest byte they acknowledge, packets with payload to the owners of their bytes
with the link, IP and TCP header bytes apportioned (``accounting.apportion``) by each owner's share
of the payload.  Round trips come from ``accounting.roundtrips`` with the capture ordinals of the
packets that carried each message's first byte and its answer.  The result has the shape of the
``connections``, ``messages`` and ``summary`` of the analysis JSON (DESIGN.md section 5).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from analyzer.accounting.apportion import apportion
from analyzer.accounting.roundtrips import message_round_trips, setup_round_trips
from analyzer.decoding.events import (
    BUCKET_NAMES,
    CONTROL,
    IP,
    LAYER_NAMES,
    LINK,
    N_LAYERS,
    ORIG,
    SETUP,
    TCP,
    TEARDOWN,
    UNDECODED,
)
from analyzer.synth.conversation import Chunk, MessageInfo
from analyzer.synth.pcapwriter import (
    ETHERNET_HEADER_BYTES,
    IPV4_HEADER_BYTES,
    tcp_header_bytes,
    unix_ts,
)
from analyzer.synth.tcp import ACK, FIN, RST, SYN, Laid, Segment, advance_contiguous
from analyzer.synth.tlswrap import TlsFacts

Row = list[int]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionFacts:
    """What the truth needs besides the segments."""

    orig: str
    resp: str
    protocol: str
    messages: tuple[MessageInfo, ...]
    tls: TlsFacts | None
    #: capture ordinal of the connection's first packet
    first_ordinal: int


@dataclass(slots=True)
class _Stream:
    """One direction's labelled bytes, searchable by stream offset."""

    chunks: list[Chunk]
    starts: list[int] = field(default_factory=list)
    length: int = 0

    def __post_init__(self) -> None:
        for chunk in self.chunks:
            self.starts.append(self.length)
            self.length += len(chunk.data)

    def runs(self, start: int, end: int) -> list[tuple[int, int, int]]:
        """(owner, layer, bytes) of ``[start, end)`` in stream order."""
        out = []
        i = bisect.bisect_right(self.starts, start) - 1
        while start < end:
            chunk = self.chunks[i]
            stop = min(end, self.starts[i] + len(chunk.data))
            out.append((chunk.owner, chunk.layer, stop - start))
            start, i = stop, i + 1
        return out

    def owner_at(self, offset: int) -> int:
        return self.chunks[bisect.bisect_right(self.starts, offset) - 1].owner


def connection_truth(
    index: int, laid: Laid, facts: ConnectionFacts
) -> tuple[dict[str, object], list[dict[str, object]]]:
    """The connection's record and its messages' records (``index``: the connection's)."""
    streams = (_Stream(laid.streams[0]), _Stream(laid.streams[1]))
    ledger = _ledger(laid.segments, streams)
    timing = _timing(laid, streams)
    setup_rts, message_rts = _round_trips(laid, timing, facts)
    totals = [sum(row[layer] for row in ledger.values()) for layer in range(N_LAYERS)]
    record: dict[str, object] = {
        "orig": facts.orig,
        "resp": facts.resp,
        "protocol": facts.protocol,
        "messages": len(facts.messages),
        "tcp_handshake": True,
        "tls": _tls_record(facts.tls),
        "setup_round_trips": setup_rts,
        "round_trips": setup_rts + sum(message_rts),
        "wire_bytes": sum(totals),
        "layers": dict(zip(LAYER_NAMES, totals, strict=True)),
        "retransmitted_bytes": sum(len(s.payload) for s in laid.segments if s.retransmission),
        "missing_bytes": 0,  # the tap sees every segment (loss happens after it)
        "packets": len(laid.segments),
        "directions": _directions(laid.segments),
        "first_ts": unix_ts(laid.segments[0].ts_us),
        "last_ts": unix_ts(laid.segments[-1].ts_us),
        # SYN to the handshake's last ACK: segments 0 and 2 (``tcp.lay_out`` step 1)
        "handshake_rtt_s": unix_ts(laid.segments[2].ts_us) - unix_ts(laid.segments[0].ts_us),
        "time_to_first_message_s": unix_ts(laid.segments[min(timing.started.values())].ts_us)
        - unix_ts(laid.segments[0].ts_us),
        "closed": "fin",
        "anomalies": [],  # generated traffic is well-formed, loss and reordering included
    }
    for bucket, name in BUCKET_NAMES.items():
        record[f"{name}_bytes"] = sum(ledger.get(bucket, [0]))
    shared = sum(sum(ledger.get(b, [0])) for b in (SETUP, TEARDOWN, CONTROL))
    messages: list[dict[str, object]] = [
        {
            "connection": index,
            "index": m,
            "protocol": info.protocol or facts.protocol,
            "kind": info.kind,
            "sender": "orig" if info.sender == ORIG else "resp",
            "round_trips": message_rts[m],
            "marginal_bytes": sum(row),
            "loaded_bytes": sum(row) + shared / len(facts.messages),
            "layers": dict(zip(LAYER_NAMES, row, strict=True)),
            "start_ts": unix_ts(laid.segments[timing.started[m]].ts_us),
            "end_ts": unix_ts(laid.segments[timing.last[m]].ts_us),
            **_latency(laid, timing, m, info.answered),
        }
        for m, info in enumerate(facts.messages)
        for row in [ledger.get(m, [0] * N_LAYERS)]
    ]
    return record, messages


def _latency(laid: Laid, timing: _Timing, m: int, answered: bool) -> dict[str, float | None]:
    """When message ``m``'s answer began, and its latencies (``accounting.latency``), from the
    times the generator laid the packets carrying its first byte, its answer and its last byte."""
    if not answered or m not in timing.answered:
        return {"answer_ts": None, "latency_s": None, "latency_last_byte_s": None}
    # Differences of the packets' times as a reader sees them (``unix_ts``), so the analyzer,
    # subtracting the same floats, must give the same figures to the last bit.
    start = unix_ts(laid.segments[timing.started[m]].ts_us)
    answer = unix_ts(laid.segments[timing.answered[m]].ts_us)
    last = unix_ts(laid.segments[timing.last[m]].ts_us)
    return {"answer_ts": answer, "latency_s": answer - start, "latency_last_byte_s": last - start}


def _ledger(segments: Sequence[Segment], streams: tuple[_Stream, _Stream]) -> dict[int, Row]:
    """owner -> bytes per layer, over every captured segment."""
    ledger: dict[int, Row] = {}
    for segment in segments:
        _charge(segment, streams, ledger)
    return ledger


def _round_trips(laid: Laid, timing: _Timing, facts: ConnectionFacts) -> tuple[int, list[float]]:
    """Setup round trips and each message's (DESIGN.md section 4, ``accounting.roundtrips``)."""
    timings = _timings(timing, facts)
    bound = min((started for _, started, _ in timings), default=None)
    data_packets = [
        (facts.first_ordinal + i, s.direction)
        for i, s in enumerate(laid.segments)
        if s.payload and not s.retransmission
    ]
    waits = {m: info.waits for m, info in enumerate(facts.messages) if info.waits != 1}
    return setup_round_trips(True, data_packets, bound), message_round_trips(timings, waits)


def _directions(segments: Sequence[Segment]) -> dict[str, dict[str, int]]:
    """Packets and wire bytes each side sent."""
    out = {name: {"packets": 0, "wire_bytes": 0} for name in ("orig", "resp")}
    for s in segments:
        side = out["orig" if s.direction == ORIG else "resp"]
        side["packets"] += 1
        side["wire_bytes"] += wire_bytes(s)
    return out


def wire_bytes(segment: Segment) -> int:
    """Bytes of the frame that carries ``segment`` (Ethernet, IPv4, TCP, payload)."""
    return (
        ETHERNET_HEADER_BYTES + IPV4_HEADER_BYTES + tcp_header_bytes(segment) + len(segment.payload)
    )


def _charge(segment: Segment, streams: tuple[_Stream, _Stream], ledger: dict[int, Row]) -> None:
    headers = (ETHERNET_HEADER_BYTES, IPV4_HEADER_BYTES, tcp_header_bytes(segment))
    if segment.payload:
        start = segment.seq - 1  # stream offset 0 is sequence number 1 (after the SYN)
        runs = streams[segment.direction].runs(start, start + len(segment.payload))
        weights: dict[int, int] = {}
        for owner, layer, size in runs:
            weights[owner] = weights.get(owner, 0) + size
            _row(ledger, owner)[layer] += size
        owners = list(weights)
        for layer, size in zip((LINK, IP, TCP), headers, strict=True):
            for owner, share in zip(owners, apportion(size, list(weights.values())), strict=True):
                _row(ledger, owner)[layer] += share
        return
    owner = _bare_owner(segment, streams[1 - segment.direction])
    for layer, size in zip((LINK, IP, TCP), headers, strict=True):
        _row(ledger, owner)[layer] += size


def _bare_owner(segment: Segment, other: _Stream) -> int:
    """Owner of a segment without payload (DESIGN.md section 3 and the brief's rules)."""
    if segment.flags & SYN:
        return SETUP
    if segment.flags & (FIN | RST):
        return TEARDOWN
    if not segment.flags & ACK or segment.ack == 0:
        return CONTROL
    newest = segment.ack - 1  # the newest sequence number acknowledged
    if newest == 0:
        return SETUP  # the SYN
    if newest > other.length:
        return TEARDOWN  # the FIN
    owner = other.owner_at(newest - 1)
    return CONTROL if owner == UNDECODED else owner


def _row(ledger: dict[int, Row], owner: int) -> Row:
    row = ledger.get(owner)
    if row is None:
        row = ledger[owner] = [0] * N_LAYERS
    return row


@dataclass(slots=True)
class _Timing:
    """Capture ordinals (0-based in the connection) of each message's marks and last bytes."""

    started: dict[int, int] = field(default_factory=dict)
    answered: dict[int, int] = field(default_factory=dict)
    last: dict[int, int] = field(default_factory=dict)


def _timing(laid: Laid, streams: tuple[_Stream, _Stream]) -> _Timing:
    out = _Timing()
    for direction, stream in enumerate(streams):
        carriers = _Carriers(laid.segments, direction)
        for chunk, offset in zip(stream.chunks, stream.starts, strict=True):
            if chunk.owner >= 0 and chunk.data:
                end = carriers.index_of(offset + len(chunk.data) - 1)
                out.last[chunk.owner] = max(out.last.get(chunk.owner, end), end)
            if not chunk.starts and not chunk.answers:
                continue
            index = carriers.index_of(offset + chunk.mark_offset)
            for message in chunk.starts:
                out.started.setdefault(message, index)
            for message in chunk.answers:
                out.answered.setdefault(message, index)
    return out


def _timings(timing: _Timing, facts: ConnectionFacts) -> list[tuple[int, int, int | None]]:
    """(sender, ordinal of the first byte, ordinal of the answer) per message."""
    first = facts.first_ordinal
    out: list[tuple[int, int, int | None]] = []
    for m, info in enumerate(facts.messages):
        answer = timing.answered.get(m) if info.answered else None
        out.append(
            (info.sender, first + timing.started[m], None if answer is None else first + answer)
        )
    return out


class _Carriers:
    """Finds the packet that delivers a stream byte of one direction to an in-order reader.

    A byte is delivered by the first captured packet after which it and every byte before it
    have been captured (a reordered segment waits for the one it overtook); that is the packet an
    analyzer's reassembly hands the byte on with.
    """

    def __init__(self, segments: Sequence[Segment], direction: int) -> None:
        self.edges: list[int] = []  # contiguous sequence edge after each delivering packet
        self.indexes: list[int] = []
        edge, held = 1, list[tuple[int, int]]()
        for index, s in enumerate(segments):
            if s.direction != direction or not s.payload:
                continue
            held.append((s.seq, s.seq + len(s.payload)))
            moved = advance_contiguous(edge, held)
            if moved > edge:
                edge = moved
                self.edges.append(edge)
                self.indexes.append(index)

    def index_of(self, offset: int) -> int:
        """Index (0-based, in the connection) of the packet delivering byte ``offset``."""
        return self.indexes[bisect.bisect_right(self.edges, offset + 1)]


def _tls_record(tls: TlsFacts | None) -> dict[str, object] | None:
    if tls is None:
        return None
    return {
        "version": tls.version,
        "resumed": tls.resumed,
        "alpn": tls.alpn,
        "sni": tls.sni,
        "decrypted": True,
        "handshakes": 1,
        "resumed_handshakes": int(tls.resumed),
        "cipher_suite": tls.cipher_suite,
        "early_data": False,
    }


def summary(
    connections: list[dict[str, object]], messages: list[dict[str, object]]
) -> dict[str, dict[str, object]]:
    """Per protocol figures of the analysis JSON's ``summary`` (DESIGN.md section 5)."""
    out: dict[str, dict[str, object]] = {}
    for protocol in sorted({str(c["protocol"]) for c in connections}):
        conns = [c for c in connections if c["protocol"] == protocol]
        # By connection, as the analyzer's summary counts (a WebSocket connection's Upgrade
        # exchange is an "http1" message on a "websocket" connection).
        msgs = [m for m in messages if connections[_int(m["connection"])]["protocol"] == protocol]
        n = len(msgs)
        wire = sum(_int(c["wire_bytes"]) for c in conns)
        payload = sum(_int(_dict(c["layers"])["payload"]) for c in conns)
        direct = sum(_int(m["marginal_bytes"]) for m in msgs)
        shared = sum(_int(c[f"{b}_bytes"]) for c in conns for b in ("setup", "teardown", "control"))
        tls = [_dict(c["tls"]) for c in conns if c["tls"] is not None]
        out[protocol] = {
            "connections": len(conns),
            "messages": n,
            "messages_per_connection": n / len(conns),
            "tcp_handshakes": sum(1 for c in conns if c["tcp_handshake"]),
            "tls_full_handshakes": sum(1 for t in tls if not t["resumed"]),
            "tls_resumed_handshakes": sum(1 for t in tls if t["resumed"]),
            "wire_bytes": wire,
            "payload_bytes": payload,
            "payload_efficiency": payload / wire if wire else 0.0,
            "marginal_bytes_per_message": direct / n,
            "loaded_bytes_per_message": (direct + shared) / n,
            "round_trips_per_message": sum(_float(c["round_trips"]) for c in conns) / n,
        }
    return out


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _float(value: object) -> float:
    assert isinstance(value, int | float)
    return float(value)


def _dict(value: object) -> dict[str, object]:
    assert isinstance(value, dict)
    return value
