"""Render an analysis as a table, JSON, CSV or Markdown.  Pure: returns text, never prints.

Records stream in through ``Collector.add`` while the capture is read; JSON spools them to a
temporary file so memory stays flat however long the capture, and the table keeps only the
summary, the costliest connections and the counts behind the findings.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from analyzer import escape
from analyzer.detect import REGISTRY
from analyzer.pipeline import Analysis
from analyzer.records import Record

FORMATS = ("table", "json", "csv", "markdown")
#: Connections listed under "costliest connections" in the table and Markdown reports.
TOP_CONNECTIONS = 10

#: protocol -> printed name, from the registry of protocols (analyzer/detect.py)
PROTOCOL_NAMES = {**REGISTRY.titles, "unknown": "unknown"}

CSV_COLUMNS = (
    "id",
    "orig",
    "resp",
    "protocol",
    "messages",
    "tcp_handshake",
    "tls_version",
    "tls_resumed",
    "setup_round_trips",
    "round_trips",
    "packets",
    "wire_bytes",
    "link",
    "ip",
    "tcp",
    "tls",
    "framing",
    "payload",
    "opaque",
    "setup_bytes",
    "teardown_bytes",
    "control_bytes",
    "undecoded_bytes",
    "retransmitted_bytes",
    "anomalies",
)


@dataclass(slots=True)
class _FindingCounts:
    single_message: Counter[str] = field(default_factory=Counter)
    single_setup_bytes: Counter[str] = field(default_factory=Counter)
    single_setup_trips: Counter[str] = field(default_factory=Counter)
    undecrypted_tls: int = 0
    undecrypted_alpn: Counter[str] = field(default_factory=Counter)
    retransmitted: int = 0
    wire: int = 0
    anomalies: Counter[str] = field(default_factory=Counter)


class Collector:
    """Receives each finished connection's records (``Analysis``'s ``on_record``)."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self._top: list[tuple[int, int, Record]] = []
        self._seen = 0
        self.findings = _FindingCounts()
        self._conns: IO[str] | None = None
        self._msgs: IO[str] | None = None
        self._csv_rows: IO[str] | None = None
        if fmt == "json":
            # Spools live until render() closes them: records stream in between.
            self._conns = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
            self._msgs = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        elif fmt == "csv":
            self._csv_rows = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")  # noqa: SIM115

    def add(self, record: Record, messages: Iterator[Record]) -> None:
        self._seen += 1
        self._note(record)
        if self._conns is not None and self._msgs is not None:
            self._conns.write(json.dumps(record, sort_keys=False) + "\n")
            for message in messages:
                self._msgs.write(json.dumps(message, sort_keys=False) + "\n")
        elif self._csv_rows is not None:
            csv.writer(self._csv_rows).writerow(escape.csv_row(_csv_row(record)))
        else:
            item = (record["wire_bytes"], -self._seen, record)
            if len(self._top) < TOP_CONNECTIONS:
                heapq.heappush(self._top, item)
            else:
                heapq.heappushpop(self._top, item)

    def _note(self, record: Record) -> None:
        f = self.findings
        f.wire += record["wire_bytes"]
        f.retransmitted += record["retransmitted_bytes"]
        for anomaly in record["anomalies"]:
            f.anomalies[anomaly["name"]] += anomaly["count"]
        if record["messages"] == 1:
            protocol = record["protocol"]
            f.single_message[protocol] += 1
            f.single_setup_bytes[protocol] += record["setup_bytes"]
            f.single_setup_trips[protocol] += record["setup_round_trips"]
        tls = record["tls"]
        if tls and not tls["decrypted"]:
            f.undecrypted_tls += 1
            if tls["alpn"]:
                f.undecrypted_alpn[tls["alpn"]] += 1

    def top(self) -> list[Record]:
        return [r for _, _, r in sorted(self._top, reverse=True)]

    # -- rendering --------------------------------------------------------------------------

    def render(self, analysis: Analysis, out: IO[str]) -> None:
        if self.fmt == "json":
            self._render_json(analysis, out)
        elif self.fmt == "csv":
            self._render_csv(out)
        elif self.fmt == "markdown":
            out.write(render_markdown(analysis, self.top(), findings(analysis, self.findings)))
        else:
            out.write(render_table(analysis, self.top(), findings(analysis, self.findings)))

    def _render_json(self, analysis: Analysis, out: IO[str]) -> None:
        assert self._conns is not None and self._msgs is not None
        header = analysis.header()
        out.write("{\n")
        for key, value in header.items():
            out.write(f"  {json.dumps(key)}: {json.dumps(value)},\n")
        for key, spool in (("connections", self._conns), ("messages", self._msgs)):
            out.write(f'  "{key}": [')
            spool.seek(0)
            first = True
            for line in spool:
                out.write(("\n    " if first else ",\n    ") + line.rstrip("\n"))
                first = False
            out.write("\n  ],\n" if not first else "],\n")
            spool.close()
        out.write(f'  "summary": {json.dumps(analysis.summary, indent=2)}\n}}\n')

    def _render_csv(self, out: IO[str]) -> None:
        assert self._csv_rows is not None
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        self._csv_rows.seek(0)
        for line in self._csv_rows:
            out.write(line)
        self._csv_rows.close()


def _csv_row(record: Record) -> list[object]:
    tls = record["tls"] or {}
    layers = record["layers"]
    anomalies = ";".join(f"{a['name']}={a['count']}" for a in record["anomalies"])
    return [
        record["id"],
        record["orig"],
        record["resp"],
        record["protocol"],
        "" if record["messages"] is None else record["messages"],
        int(record["tcp_handshake"]),
        tls.get("version", ""),
        "" if not tls else int(tls["resumed"]),
        record["setup_round_trips"],
        f"{record['round_trips']:.4f}",
        record["packets"],
        record["wire_bytes"],
        *(layers[name] for name in ("link", "ip", "tcp", "tls", "framing", "payload", "opaque")),
        record["setup_bytes"],
        record["teardown_bytes"],
        record["control_bytes"],
        record["undecoded_bytes"],
        record["retransmitted_bytes"],
        anomalies,
    ]


# -- findings -------------------------------------------------------------------------------


def findings(analysis: Analysis, f: _FindingCounts) -> list[str]:
    """Lines that say what a user should act on, from the numbers of this run."""
    lines: list[str] = []
    for protocol, count in sorted(f.single_message.items()):
        total = analysis.summary.get(protocol, {}).get("connections") or 0
        if count < 2 or count * 2 < total:
            continue
        setup = f.single_setup_bytes[protocol] / count
        trips = f.single_setup_trips[protocol] / count
        lines.append(
            f"{count} {PROTOCOL_NAMES.get(protocol, protocol)} connections carried 1 message each: "
            f"every message paid the connection's setup ({setup:.0f} bytes, "
            f"{trips:.1f} round trips). Reusing connections would save it."
        )
    if f.undecrypted_tls:
        alpn = ", ".join(f"{n} with ALPN {a}" for a, n in sorted(f.undecrypted_alpn.items()))
        lines.append(
            f"{f.undecrypted_tls} TLS connections could not be decrypted"
            + (f" ({alpn})" if alpn else "")
            + ": a key log (--keylog FILE, from SSLKEYLOGFILE) would add their messages, "
            "framing and payload figures."
        )
    if f.wire and f.retransmitted * 100 >= f.wire:
        lines.append(
            f"Retransmissions are {100 * f.retransmitted / f.wire:.1f}% of the bytes "
            f"({f.retransmitted} bytes): loss on the path costs more than any framing."
        )
    gaps = f.anomalies.get("tcp.gap", 0)
    if gaps:
        lines.append(
            f"{gaps} gaps in TCP streams: the capture missed segments; bytes after them may be "
            "undecoded (use a bigger capture buffer or capture closer to the host)."
        )
    skipped_frag = analysis.skipped.get("ip.fragment", 0)
    if skipped_frag:
        lines.append(f"{skipped_frag} IP fragments were skipped (not reassembled).")
    return lines


# -- table and markdown ---------------------------------------------------------------------


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


SUMMARY_COLUMNS = (
    ("protocol", None, 0),
    ("connections", "connections", 0),
    ("messages", "messages", 0),
    ("msgs/conn", "messages_per_connection", 1),
    ("marginal B/msg", "marginal_bytes_per_message", 0),
    ("loaded B/msg", "loaded_bytes_per_message", 0),
    ("payload eff.", "payload_efficiency", 3),
    ("RTT/msg", "round_trips_per_message", 2),
    ("handshakes/msg", "handshakes_per_message", 2),
    ("wire bytes", "wire_bytes", 0),
)


def _summary_rows(analysis: Analysis) -> list[list[str]]:
    rows = []
    for protocol, figures in analysis.summary.items():
        row = [PROTOCOL_NAMES.get(protocol, protocol)]
        for _, key, digits in SUMMARY_COLUMNS[1:]:
            assert key is not None
            row.append(_fmt(figures.get(key), digits))
        rows.append(row)
    return rows


def _connection_rows(top: list[Record]) -> list[list[str]]:
    rows = []
    for r in top:
        layers = r["layers"]
        rows.append(
            [
                r["id"],
                f"{r['orig']} → {r['resp']}",
                PROTOCOL_NAMES.get(r["protocol"], r["protocol"]),
                _fmt(r["messages"]),
                _fmt(r["wire_bytes"]),
                _fmt(layers["link"] + layers["ip"] + layers["tcp"]),
                _fmt(layers["tls"]),
                _fmt(layers["framing"]),
                _fmt(layers["payload"]),
                _fmt(r["setup_bytes"]),
                _fmt(r["round_trips"], 1),
            ]
        )
    return rows


CONNECTION_HEADERS = (
    "id",
    "connection",
    "protocol",
    "msgs",
    "wire B",
    "L2-4 B",
    "TLS B",
    "framing B",
    "payload B",
    "setup B",
    "RTT",
)


def _totals_line(analysis: Analysis) -> str:
    paths = ", ".join(c["path"] for c in analysis.captures)
    skipped = sum(analysis.skipped.values())
    return (
        f"{paths}: {analysis.packets:,} packets ({analysis.tcp_packets:,} TCP, {skipped:,} "
        f"skipped), {analysis.connections:,} connections, {analysis.messages:,} messages"
    )


def render_table(analysis: Analysis, top: list[Record], lines: list[str]) -> str:
    buffer = io.StringIO()
    # markup, emoji and highlighting off: every string printed here is data (analyzer/escape.py).
    console = Console(
        file=buffer,
        width=140,
        force_terminal=False,
        color_system=None,
        markup=False,
        emoji=False,
        highlight=False,
    )
    console.print(escape.terminal_text(_totals_line(analysis)))
    summary = Table(title="Cost per message, by protocol", title_justify="left")
    for name, _, _ in SUMMARY_COLUMNS:
        summary.add_column(name, justify="left" if name == "protocol" else "right")
    for row in _summary_rows(analysis):
        summary.add_row(*map(escape.terminal_text, row))
    console.print(summary)
    if top:
        conns = Table(title="Costliest connections", title_justify="left")
        for name in CONNECTION_HEADERS:
            conns.add_column(name, justify="left" if name in ("id", "connection") else "right")
        for row in _connection_rows(top):
            conns.add_row(*map(escape.terminal_text, row))
        console.print(conns)
    for line in lines:
        console.print(escape.terminal_text(f"• {line}"))
    return buffer.getvalue()


def _md_table(headers: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    def line(cells: tuple[str, ...] | list[str]) -> str:
        return "| " + " | ".join(map(escape.markdown, cells)) + " |"

    out = [line(headers), "|" + "---|" * len(headers)]
    out += [line(row) for row in rows]
    return "\n".join(out) + "\n"


def render_markdown(analysis: Analysis, top: list[Record], lines: list[str]) -> str:
    totals = escape.markdown(_totals_line(analysis))
    parts = ["# wireprobe analysis\n", totals + "\n", "## Cost per message\n"]
    parts.append(_md_table([c[0] for c in SUMMARY_COLUMNS], _summary_rows(analysis)))
    if top:
        parts += [
            "\n## Costliest connections\n",
            _md_table(CONNECTION_HEADERS, _connection_rows(top)),
        ]
    if lines:
        parts += ["\n## Findings\n"] + [f"- {escape.markdown(line)}\n" for line in lines]
    return "\n".join(parts)
