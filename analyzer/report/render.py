"""Render an analysis as a table, JSON, CSV, Markdown or HTML.  Pure: returns text, never prints.

Records stream in through ``Collector.add`` while the capture is read; JSON spools them to a
temporary file so memory stays flat however long the capture, the table keeps only the
summary, the costliest connections and the counts behind the findings, and HTML only what its
page shows (analyzer/report/page.py).
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from analyzer.accounting.records import Record
from analyzer.pipeline import Analysis
from analyzer.report import escape
from analyzer.report.findings import (
    PROTOCOL_NAMES,
    Finding,
    Health,
    Tally,
    compute,
    counted,
    health,
    health_lines,
)
from analyzer.report.page import CapturePage, PageTally
from analyzer.report.timing import LATENCY_HEADERS, LATENCY_LEGEND, LATENCY_TITLE, latency_rows

FORMATS = ("table", "json", "csv", "markdown")
#: Connections listed under "costliest connections" in the table and Markdown reports.
TOP_CONNECTIONS = 10

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
    # Added after the first release; the columns above keep their names and order.
    "missing_bytes",
    "orig_packets",
    "resp_packets",
    "orig_wire_bytes",
    "resp_wire_bytes",
    "first_ts",
    "last_ts",
    "closed",
    "sni",
    "alpn",
    "tls_decrypted",
    "source",
    # Added after the first release: last, so positional readers of the columns above still work.
    "community_id",
    # Timing (issue 17), in seconds: the TCP handshake's SYN to ACK, the answered messages'
    # first byte to answer's first byte; empty when not measured.
    "handshake_rtt_s",
    "latency_count",
    "latency_p50_s",
    "latency_p99_s",
    "latency_max_s",
)


class Collector:
    """Receives each finished connection's records (``Analysis``'s ``on_record``)."""

    def __init__(
        self,
        fmt: str,
        top: int | None = None,
        *,
        port_overrides: Mapping[int, str] | None = None,
        extra_findings: list[Finding] | None = None,
        transport_only: bool = False,
    ) -> None:
        self.fmt = fmt
        #: connections the table lists (``--top N``)
        self.top_n = TOP_CONNECTIONS if top is None else top
        self.transport_only = transport_only
        self._top: list[tuple[int, int, Record]] = []
        self._seen = 0
        self.tally = Tally(port_overrides=dict(port_overrides or {}))
        self._extra = list(extra_findings or [])
        self._findings: list[Finding] | None = None
        self._conns: IO[str] | None = None
        self._msgs: IO[str] | None = None
        #: what the HTML page shows, folded as records arrive (``--format html``)
        self._page = PageTally() if fmt == "html" else None
        if fmt in ("json", "csv"):
            # Spools live until render() closes them: records stream in between.
            self._conns = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        if fmt == "json":
            self._msgs = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115

    def add(self, record: Record, messages: Iterator[Record]) -> None:
        self._seen += 1
        self.tally.add(record)
        if self._page is not None:
            self._page.add(record)
            for message in messages:
                self.tally.add_message(message)
                self._page.add_message(record["protocol"], message)
            return
        if self._conns is not None:
            self._conns.write(json.dumps(record, sort_keys=False) + "\n")
        if self._msgs is not None:
            for message in messages:
                self.tally.add_message(message)
                self._msgs.write(json.dumps(message, sort_keys=False) + "\n")
        else:
            for message in messages:
                self.tally.add_message(message)
        if self.fmt not in ("json", "csv"):
            item = (record["wire_bytes"], -self._seen, record)
            if len(self._top) < self.top_n:
                heapq.heappush(self._top, item)
            elif self.top_n:
                heapq.heappushpop(self._top, item)

    def top(self) -> list[Record]:
        return [r for _, _, r in sorted(self._top, reverse=True)]

    def findings(self, analysis: Analysis) -> list[Finding]:
        """The run's findings, computed once and shared by every renderer and the CLI."""
        if self._findings is None:
            self._findings = compute(
                analysis, self.tally, self._extra, decoded=not self.transport_only
            )
        return self._findings

    def page(self, analysis: Analysis) -> CapturePage:
        """What the HTML report shows (``--format html`` only)."""
        assert self._page is not None
        found = [f"{f.severity}: {f.message}" for f in self.findings(analysis)]
        return self._page.page(analysis.header(), analysis.summary, found)

    def health(self, analysis: Analysis) -> Health:
        return health(analysis, self.tally, decoded=not self.transport_only)

    # -- rendering --------------------------------------------------------------------------

    def render(self, analysis: Analysis, out: IO[str]) -> None:
        if self.fmt == "json":
            self._render_json(analysis, out)
        elif self.fmt == "csv":
            self._render_csv(analysis, out)
        elif self.fmt == "html":
            # Imported here: the page's chart needs matplotlib, which no other format pays for.
            from analyzer.compare.render import render_capture_page

            out.write(render_capture_page(self.page(analysis)))
        else:
            view = ReportView(
                analysis=analysis,
                top=self.top(),
                shown_of=self._seen,
                health=self.health(analysis),
                findings=self.findings(analysis),
                transport_only=self.transport_only,
                transport=self.tally,
            )
            out.write(render_markdown(view) if self.fmt == "markdown" else render_table(view))

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
        out.write(f'  "health": {json.dumps(self.health(analysis).as_dict())},\n')
        found = [f.as_dict() for f in self.findings(analysis)]
        out.write(f'  "findings": {json.dumps(found, indent=2)},\n')
        out.write(f'  "summary": {json.dumps(analysis.summary, indent=2)}\n}}\n')

    def _render_csv(self, analysis: Analysis, out: IO[str]) -> None:
        assert self._conns is not None
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        self._conns.seek(0)
        for line in self._conns:
            record = json.loads(line)
            writer.writerow(escape.csv_row(_csv_row(record, _sources(analysis, record))))
        self._conns.close()


def _sources(analysis: Analysis, record: Record) -> str:
    """The input files whose packets span the connection's time (';'-joined).

    Records do not say which file each packet came from; with files captured one after another
    the time ranges name exactly one, with files captured side by side (two interfaces) each
    that may hold the connection's packets.
    """
    first, last = record["first_ts"], record["last_ts"]
    paths = [
        c["path"]
        for c in analysis.captures
        if c["first_ts"] is not None and c["first_ts"] <= last and c["last_ts"] >= first
    ]
    return ";".join(paths)


def _csv_row(record: Record, source: str) -> list[object]:
    tls = record["tls"] or {}
    layers = record["layers"]
    directions = record["directions"]
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
        record["missing_bytes"],
        directions["orig"]["packets"],
        directions["resp"]["packets"],
        directions["orig"]["wire_bytes"],
        directions["resp"]["wire_bytes"],
        f"{record['first_ts']:.6f}",
        f"{record['last_ts']:.6f}",
        record["closed"],
        tls.get("sni") or "",
        tls.get("alpn") or "",
        "" if not tls else int(tls["decrypted"]),
        source,
        record["community_id"],
        *_csv_timing(record),
    ]


def _csv_timing(record: Record) -> list[object]:
    rtt = record.get("handshake_rtt_s")
    latency = record.get("latency") or {}
    figures = [latency.get(key) for key in ("p50", "p99", "max")]
    return [
        "" if rtt is None else f"{rtt:.6f}",
        latency.get("count") or 0,
        *("" if value is None else f"{value:.6f}" for value in figures),
    ]


# -- table and markdown ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportView:
    """What the table and Markdown reports show, gathered once."""

    analysis: Analysis
    #: the costliest connections, costliest first
    top: list[Record]
    #: how many connections the run had (``top`` lists at most ``TOP_CONNECTIONS`` of them)
    shown_of: int
    health: Health
    findings: list[Finding]
    transport_only: bool
    #: transport totals (packets, header bytes) for ``--transport-only``'s table
    transport: Tally


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


#: One name per quantity in every table: "RT" is a count of round trips (from packet order,
#: DESIGN.md section 4), never a time, so no column says "RTT".
SUMMARY_COLUMNS = (
    ("protocol", None, 0),
    ("connections", "connections", 0),
    ("messages", "messages", 0),
    ("msgs/conn", "messages_per_connection", 1),
    ("marginal B/msg", "marginal_bytes_per_message", 0),
    ("loaded B/msg", "loaded_bytes_per_message", 0),
    ("payload eff.", "payload_efficiency", 3),
    ("RT/msg", "round_trips_per_message", 2),
    ("handshakes/msg", "handshakes_per_message", 2),
    ("wire B", "wire_bytes", 0),
)
SUMMARY_LEGEND = (
    "B: bytes on the wire. marginal: a message's own bytes; loaded: plus its share of its "
    "connection's setup, teardown and control. RT: round trips, counted from packet order."
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
    "opaque B",
    "setup B",
    "RT",
)
CONNECTION_LEGEND = (
    "wire B = L2-4 + TLS + framing + payload + opaque (layers; opaque: not decoded). "
    "setup B is the part of wire B spent before the first message, across layers. "
    "RT: the connection's round trips, setup + messages."
)


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
                _fmt(layers["opaque"]),
                _fmt(r["setup_bytes"]),
                _fmt(r["round_trips"], 1),
            ]
        )
    return rows


#: ``--transport-only`` decodes no application bytes: its tables show what it did measure.
TRANSPORT_HEADERS = (
    "connections",
    "packets",
    "TCP handshakes",
    "wire B",
    "L2-4 B",
    "TCP payload B",
    "retransmitted B",
    "missing B",
)
TRANSPORT_LEGEND = (
    "--transport-only: link/IP/TCP figures; application bytes were not decoded, so no "
    "messages are counted. wire B = L2-4 + TCP payload."
)
TRANSPORT_CONNECTION_HEADERS = (
    "id",
    "connection",
    "packets",
    "wire B",
    "L2-4 B",
    "TCP payload B",
    "retransmitted B",
    "missing B",
    "closed",
)


def _transport_rows(view: ReportView) -> list[list[str]]:
    t, h = view.transport, view.health
    return [
        [
            _fmt(t.connections),
            _fmt(t.packets),
            _fmt(t.tcp_handshakes),
            _fmt(t.wire),
            _fmt(t.header_bytes),
            _fmt(t.wire - t.header_bytes),
            _fmt(h.retransmitted_bytes),
            _fmt(h.missing_bytes),
        ]
    ]


def _transport_connection_rows(top: list[Record]) -> list[list[str]]:
    rows = []
    for r in top:
        layers = r["layers"]
        headers = layers["link"] + layers["ip"] + layers["tcp"]
        rows.append(
            [
                r["id"],
                f"{r['orig']} → {r['resp']}",
                _fmt(r["packets"]),
                _fmt(r["wire_bytes"]),
                _fmt(headers),
                _fmt(r["wire_bytes"] - headers),
                _fmt(r["retransmitted_bytes"]),
                _fmt(r["missing_bytes"]),
                r["closed"],
            ]
        )
    return rows


def _totals_line(analysis: Analysis) -> str:
    paths = ", ".join(c["path"] for c in analysis.captures)
    skipped = sum(analysis.skipped.values())
    return (
        f"{paths}: {counted(analysis.packets, 'packet')} ({analysis.tcp_packets:,} TCP, "
        f"{skipped:,} skipped), {counted(analysis.connections, 'connection')}, "
        f"{counted(analysis.messages, 'message')}"
    )


def _top_title(view: ReportView) -> str:
    """Say when the list is capped, and by how much."""
    shown = len(view.top)
    if shown < view.shown_of:
        return f"Costliest connections ({shown:,} of {view.shown_of:,})"
    return f"Connections ({shown:,})"


def _sections(view: ReportView) -> list[tuple[str, tuple[str, ...], list[list[str]], str]]:
    """(title, headers, rows, legend) of each table, in reading order."""
    if view.transport_only:
        return [
            ("Transport (link/IP/TCP)", TRANSPORT_HEADERS, _transport_rows(view), TRANSPORT_LEGEND),
            (
                _top_title(view),
                TRANSPORT_CONNECTION_HEADERS,
                _transport_connection_rows(view.top),
                "",
            ),
        ]
    summary_headers = tuple(c[0] for c in SUMMARY_COLUMNS)
    return [
        (
            "Cost per message, by protocol",
            summary_headers,
            _summary_rows(view.analysis),
            SUMMARY_LEGEND,
        ),
        (
            LATENCY_TITLE,
            LATENCY_HEADERS,
            latency_rows(view.analysis.summary, PROTOCOL_NAMES),
            LATENCY_LEGEND,
        ),
        (_top_title(view), CONNECTION_HEADERS, _connection_rows(view.top), CONNECTION_LEGEND),
    ]


#: Characters per line of the table report: its widest table (12 columns with an address pair)
#: fits without wrapping; the report is a file, not sized to whatever terminal shows it.
TABLE_WIDTH = 160

LEFT_COLUMNS = ("protocol", "id", "connection", "closed")
#: Columns a reader scans whole (an id, an address pair): never wrapped over two lines.
UNWRAPPED_COLUMNS = ("id", "connection", "protocol")


def render_table(view: ReportView) -> str:
    buffer = io.StringIO()
    # markup, emoji and highlighting off: every string printed here is data (report/escape.py).
    console = Console(
        file=buffer,
        width=TABLE_WIDTH,
        force_terminal=False,
        color_system=None,
        markup=False,
        emoji=False,
        highlight=False,
    )
    console.print(escape.terminal_text(_totals_line(view.analysis)))
    for title, headers, rows, legend in _sections(view):
        if not rows:
            continue
        table = Table(title=title, title_justify="left", caption=legend or None)
        table.caption_justify = "left"
        for name in headers:
            table.add_column(
                name,
                justify="left" if name in LEFT_COLUMNS else "right",
                no_wrap=name in UNWRAPPED_COLUMNS,
            )
        for row in rows:
            table.add_row(*map(escape.terminal_text, row))
        console.print(table)
    health_table = Table(title="Health", title_justify="left", show_header=False)
    health_table.add_column("quantity")
    health_table.add_column("value")
    for name, value in health_lines(view.health):
        health_table.add_row(name, escape.terminal_text(value))
    console.print(health_table)
    if view.findings:
        console.print("Findings")
    for finding in view.findings:
        console.print(escape.terminal_text(f"• {finding.severity}: {finding.message}"))
    return buffer.getvalue()


def _md_table(headers: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    def line(cells: tuple[str, ...] | list[str]) -> str:
        return "| " + " | ".join(map(escape.markdown, cells)) + " |"

    out = [line(headers), "|" + "---|" * len(headers)]
    out += [line(row) for row in rows]
    return "\n".join(out) + "\n"


def render_markdown(view: ReportView) -> str:
    parts = ["# wireprobe analysis\n", escape.markdown(_totals_line(view.analysis)) + "\n"]
    for title, headers, rows, legend in _sections(view):
        if not rows:
            continue
        parts += [f"## {title}\n", _md_table(headers, rows)]
        if legend:
            parts.append(f"{legend}\n")
    parts += [
        "## Health\n",
        _md_table(["quantity", "value"], [list(h) for h in health_lines(view.health)]),
    ]
    if view.findings:
        parts += ["## Findings\n"] + [
            f"- {f.severity}: {escape.markdown(f.message)}\n" for f in view.findings
        ]
    return "\n".join(parts).rstrip("\n") + "\n"
