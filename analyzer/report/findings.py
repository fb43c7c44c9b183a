"""The one list of findings of an analysis, and its health figures, computed once.

Every output format (table, Markdown, HTML, CSV, JSON) renders this list and nothing else, so the
formats never disagree about what a reader should act on.  Pure: ``Tally`` folds the records as
they stream past (``Collector.add``), ``compute`` turns the tally and the run's ``Analysis`` into
``Finding`` values; printing is the CLI's job.

Two severities, as in tshark's expert info: a ``warning`` says the figures may be incomplete or
wrong (a file cut short, a ``--port`` override that decoded nothing, an input given twice) and is
also printed on stderr; a ``note`` says what the numbers suggest doing.  Names are stable
``layer.condition`` strings (STYLE.md habit 4), since users' scripts read them from the JSON.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from analyzer.accounting.records import Record
from analyzer.decoding.detect import REGISTRY
from analyzer.pipeline import Analysis

WARNING = "warning"
NOTE = "note"

#: protocol -> printed name, from the registry of protocols (analyzer/decoding/detect.py)
PROTOCOL_NAMES = {**REGISTRY.titles, "unknown": "unknown"}

#: Retransmitted bytes at or above this share of the wire bytes make a finding: one percent is
#: where TCP loss starts to cost more than the framing differences the tool measures.
RETRANSMIT_NOTE_SHARE = 0.01

#: Anomalies that mean an answer (or content) found no message to belong to, so it was not
#: counted as one.  Requests without an answer are counted from the message records instead
#: (``Tally.add_message``), which covers ``http1.lost_response`` too.
UNPAIRED_ANOMALIES = (
    "http1.orphan_response",
    "amqp.unmatched_ack",
    "amqp.orphan_content",
    "amqp.unanswered_get",
)

#: Message kinds whose record holds a request and, once answered, its response status.
ANSWERED_KINDS = {"exchange", "stream"}

#: What a capture-file anomaly means for the figures (capture.py's names).
CAPTURE_DAMAGE = {
    "capture.truncated": "is cut short (its last packet record is incomplete)",
    "capture.bad_gzip": "has corrupt compressed data",
    "capture.read_error": "could not be read to its end",
    "capture.bad_record": "has packet records with impossible lengths (skipped)",
    "pcapng.bad_block": "has damaged pcapng blocks (skipped)",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One thing a reader should know about the run."""

    #: stable ``layer.condition`` name
    name: str
    #: ``warning`` (figures may be incomplete or wrong; also on stderr) or ``note``
    severity: str
    #: how many of the things the finding is about (connections, bytes, gaps, files)
    count: int
    #: one line for a person
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _PortOverride:
    connections: int = 0
    messages: int = 0


@dataclass(slots=True)
class Tally:
    """What the findings and health lines need, folded one connection record at a time."""

    port_overrides: Mapping[int, str] = field(default_factory=dict)
    connections: int = 0
    packets: int = 0
    tcp_handshakes: int = 0
    wire: int = 0
    #: link + IP + TCP header bytes (the rest of ``wire`` is TCP payload)
    header_bytes: int = 0
    undecoded: int = 0
    retransmitted: int = 0
    missing: int = 0
    reset: int = 0
    open_at_end: int = 0
    tls_connections: int = 0
    undecrypted_tls: int = 0
    undecrypted_bytes: int = 0
    undecrypted_alpn: Counter[str] = field(default_factory=Counter)
    unanswered: int = 0
    single_message: Counter[str] = field(default_factory=Counter)
    single_setup_bytes: Counter[str] = field(default_factory=Counter)
    single_setup_trips: Counter[str] = field(default_factory=Counter)
    anomalies: Counter[str] = field(default_factory=Counter)
    overrides: dict[int, _PortOverride] = field(default_factory=dict)

    def add(self, record: Record) -> None:
        """Fold one connection record."""
        self.connections += 1
        self.packets += record["packets"]
        self.tcp_handshakes += int(record["tcp_handshake"])
        self.wire += record["wire_bytes"]
        layers = record["layers"]
        self.header_bytes += layers["link"] + layers["ip"] + layers["tcp"]
        self.undecoded += record["undecoded_bytes"]
        self.retransmitted += record["retransmitted_bytes"]
        self.missing += record.get("missing_bytes", 0)
        closed = record.get("closed")
        self.reset += closed == "rst"
        self.open_at_end += closed == "open"
        for anomaly in record["anomalies"]:
            self.anomalies[anomaly["name"]] += anomaly["count"]
        self._reuse(record)
        self._tls(record)
        self._override(record)

    def add_message(self, message: Record) -> None:
        """Fold one message record: a request still waiting for its answer at the end."""
        if message.get("kind") in ANSWERED_KINDS:
            detail = message.get("detail") or {}
            if "method" in detail and "status" not in detail:
                self.unanswered += 1

    def _reuse(self, record: Record) -> None:
        if record["messages"] == 1:
            protocol = record["protocol"]
            self.single_message[protocol] += 1
            self.single_setup_bytes[protocol] += record["setup_bytes"]
            self.single_setup_trips[protocol] += record["setup_round_trips"]

    def _tls(self, record: Record) -> None:
        tls = record["tls"]
        if not tls:
            return
        self.tls_connections += 1
        if not tls["decrypted"]:
            self.undecrypted_tls += 1
            self.undecrypted_bytes += record["wire_bytes"]
            if tls["alpn"]:
                self.undecrypted_alpn[tls["alpn"]] += 1

    def _override(self, record: Record) -> None:
        if not self.port_overrides:
            return
        for endpoint in (record["orig"], record["resp"]):
            port = _port(endpoint)
            if port in self.port_overrides:
                seen = self.overrides.setdefault(port, _PortOverride())
                seen.connections += 1
                seen.messages += record["messages"] or 0
                return


def _port(endpoint: str) -> int:
    """The port of ``ip:port`` or ``[v6]:port``; -1 when there is none."""
    _, _, port = endpoint.rpartition(":")
    return int(port) if port.isdigit() else -1


# -- health: the figures behind the warnings, always shown ---------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    """What went wrong on the wire or in the capture, like tshark's expert info or Zeek's
    weird.log: shown whether or not it is zero, so a clean run says so."""

    wire_bytes: int
    retransmitted_bytes: int
    missing_bytes: int
    gaps: int
    connections: int
    connections_reset: int
    #: neither FIN in both directions nor RST by the end of the capture
    connections_open_at_end: int
    tls_connections: int
    tls_undecrypted: int
    packets: int
    packets_skipped: dict[str, int]
    #: answers or content that found no message (``UNPAIRED_ANOMALIES``)
    unpaired: int
    #: requests with no response: lost in a gap, or still waiting when the capture ended
    unanswered: int
    #: False under ``--transport-only``: TLS and messages were not looked at
    decoded: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def health(analysis: Analysis, tally: Tally, *, decoded: bool = True) -> Health:
    return Health(
        decoded=decoded,
        wire_bytes=tally.wire,
        retransmitted_bytes=tally.retransmitted,
        missing_bytes=tally.missing,
        gaps=tally.anomalies.get("tcp.gap", 0),
        connections=tally.connections,
        connections_reset=tally.reset,
        connections_open_at_end=tally.open_at_end,
        tls_connections=tally.tls_connections,
        tls_undecrypted=tally.undecrypted_tls,
        packets=analysis.packets,
        packets_skipped=dict(analysis.skipped),
        unpaired=sum(tally.anomalies.get(name, 0) for name in UNPAIRED_ANOMALIES),
        unanswered=tally.unanswered,
    )


NOT_EXAMINED = "not examined (--transport-only decodes no application bytes)"


def health_lines(h: Health) -> list[tuple[str, str]]:
    """(quantity, value) pairs for the table and Markdown, in reading order."""
    skipped = sum(h.packets_skipped.values())
    reasons = ", ".join(f"{n:,} {k}" for k, n in sorted(h.packets_skipped.items()))
    return [
        (
            "retransmitted",
            f"{h.retransmitted_bytes:,} bytes "
            f"({_share(h.retransmitted_bytes, h.wire_bytes)} of {h.wire_bytes:,} wire bytes)",
        ),
        ("missing", f"{h.missing_bytes:,} bytes never captured, in {counted(h.gaps, 'gap')}"),
        (
            "connections",
            f"{h.connections:,}: {h.connections_reset:,} reset, "
            f"{h.connections_open_at_end:,} still open when the capture ended",
        ),
        (
            "undecrypted TLS",
            f"{h.tls_undecrypted:,} of {h.tls_connections:,} TLS connections"
            if h.decoded
            else NOT_EXAMINED,
        ),
        (
            "packets skipped",
            f"{skipped:,} of {h.packets:,}" + (f" ({reasons})" if reasons else ""),
        ),
        (
            "not counted",
            f"{counted(h.unpaired, 'answer')} without their message, "
            f"{counted(h.unanswered, 'request')} without a response "
            "(lost, or still waiting when the capture ended)"
            if h.decoded
            else NOT_EXAMINED,
        ),
    ]


def counted(count: int, noun: str) -> str:
    """``1 gap``, ``2 gaps``: the count with its noun in the right number."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0%"


# -- findings -------------------------------------------------------------------------------------


def compute(
    analysis: Analysis,
    tally: Tally,
    extra: list[Finding] | None = None,
    *,
    decoded: bool = True,
) -> list[Finding]:
    """The findings of a run: warnings first (``extra``: the CLI's, such as duplicate inputs).

    ``decoded`` is False under ``--transport-only``, where every payload byte is undecoded on
    purpose and no message is counted: the findings about messages and decoding do not apply.
    """
    found = list(extra or [])
    found += _capture_damage(analysis)
    found += _overrides(tally)
    if decoded:
        found += _reuse(analysis, tally)
        found += _overhead(analysis)
        found += _undecrypted(tally)
        found += _undecoded(tally)
    found += _transport(analysis, tally)
    found.sort(key=lambda f: f.severity != WARNING)  # stable: warnings first, order kept
    return found


def _capture_damage(analysis: Analysis) -> list[Finding]:
    out = []
    for capture in analysis.captures:
        for anomaly in capture.get("anomalies", []):
            what = CAPTURE_DAMAGE.get(anomaly["name"])
            if what is None:
                continue
            out.append(
                Finding(
                    name=anomaly["name"],
                    severity=WARNING,
                    count=anomaly["count"],
                    message=f"{capture['path']} {what}: the figures cover the "
                    f"{capture['packets']:,} packets read before it",
                )
            )
    return out


def _overrides(tally: Tally) -> list[Finding]:
    out = []
    for port, protocol in sorted(tally.port_overrides.items()):
        seen = tally.overrides.get(port, _PortOverride())
        if seen.connections and seen.messages:
            continue
        message = (
            f"--port {protocol}={port} matched no connection"
            if not seen.connections
            else f"--port {protocol}={port} matched {seen.connections:,} connections "
            f"but decoded 0 messages: is that traffic really {protocol}?"
        )
        out.append(
            Finding(
                name="port.override_unused",
                severity=WARNING,
                count=seen.connections,
                message=message,
            )
        )
    return out


def _reuse(analysis: Analysis, tally: Tally) -> list[Finding]:
    out = []
    for protocol, count in sorted(tally.single_message.items()):
        total = analysis.summary.get(protocol, {}).get("connections") or 0
        if count < 2 or count * 2 < total:
            continue
        setup = tally.single_setup_bytes[protocol] / count
        trips = tally.single_setup_trips[protocol] / count
        out.append(
            Finding(
                name="reuse.one_message_per_connection",
                severity=NOTE,
                count=count,
                message=f"{count:,} {PROTOCOL_NAMES.get(protocol, protocol)} connections carried "
                f"1 message each: every message paid the connection's setup ({setup:.0f} bytes, "
                f"{trips:.1f} round trips). Reusing connections would save it.",
            )
        )
    return out


#: Loaded cost at or above this multiple of the marginal one: the connections' setup, teardown
#: and control cost more than the messages themselves (the rule the HTML report had).
OVERHEAD_RATIO = 1.5
#: Undecoded bytes at or above this share of the wire: the per-message figures leave out a
#: tenth of the traffic or more.
UNDECODED_NOTE_SHARE = 0.1


def _overhead(analysis: Analysis) -> list[Finding]:
    out = []
    for protocol, s in sorted(analysis.summary.items()):
        marginal, loaded = s.get("marginal_bytes_per_message"), s.get("loaded_bytes_per_message")
        if marginal and loaded and loaded >= OVERHEAD_RATIO * marginal:
            out.append(
                Finding(
                    name="cost.overhead_dominates",
                    severity=NOTE,
                    count=s.get("messages") or 0,
                    message=f"{PROTOCOL_NAMES.get(protocol, protocol)}: loaded cost "
                    f"{loaded:,.0f} B/message is {loaded / marginal:.1f}x the marginal "
                    f"{marginal:,.0f} B: connection overhead dominates.",
                )
            )
    return out


def _undecoded(tally: Tally) -> list[Finding]:
    if not tally.wire or tally.undecoded < UNDECODED_NOTE_SHARE * tally.wire:
        return []
    return [
        Finding(
            name="bytes.undecoded",
            severity=NOTE,
            count=tally.undecoded,
            message=f"{_share(tally.undecoded, tally.wire)} of the bytes could not be decoded "
            "(encrypted without keys, an unknown protocol or gaps); they are in no message's "
            "figures.",
        )
    ]


def _undecrypted(tally: Tally) -> list[Finding]:
    if not tally.undecrypted_tls:
        return []
    alpn = ", ".join(f"{n} with ALPN {a}" for a, n in sorted(tally.undecrypted_alpn.items()))
    return [
        Finding(
            name="tls.undecrypted",
            severity=NOTE,
            count=tally.undecrypted_tls,
            message=f"{counted(tally.undecrypted_tls, 'TLS connection')} could not be decrypted"
            + (f" ({alpn})" if alpn else "")
            + ": a key log (--keylog FILE, from SSLKEYLOGFILE) would add their messages, "
            "framing and payload figures.",
        )
    ]


def _transport(analysis: Analysis, tally: Tally) -> list[Finding]:
    out = []
    if tally.wire and tally.retransmitted >= RETRANSMIT_NOTE_SHARE * tally.wire:
        out.append(
            Finding(
                name="tcp.retransmissions",
                severity=NOTE,
                count=tally.retransmitted,
                message=f"Retransmissions are {100 * tally.retransmitted / tally.wire:.1f}% of "
                f"the bytes ({tally.retransmitted:,} bytes): loss on the path costs more than "
                "any framing.",
            )
        )
    gaps = tally.anomalies.get("tcp.gap", 0)
    if gaps:
        out.append(
            Finding(
                name="tcp.gap",
                severity=NOTE,
                count=gaps,
                message=f"{counted(gaps, 'gap')} in TCP streams ({tally.missing:,} bytes): "
                "the capture missed segments; bytes after them may be undecoded (use a bigger "
                "capture buffer or capture closer to the host).",
            )
        )
    fragments = analysis.skipped.get("ip.fragment", 0)
    if fragments:
        out.append(
            Finding(
                name="ip.fragment",
                severity=NOTE,
                count=fragments,
                message=f"{fragments:,} IP fragments were skipped (not reassembled).",
            )
        )
    return out


__all__ = [
    "NOTE",
    "WARNING",
    "Finding",
    "Health",
    "Tally",
    "compute",
    "counted",
    "health",
    "health_lines",
]
