"""The per-message log: one row per message, like Zeek's http.log, in every output format.

``wireprobe analyze CAPTURE --messages`` hands each finished connection's records to a
``MessageLog`` instead of the summary ``Collector``.  Rows are flat (every value a string, number,
boolean or null) under the stable column names of ``COLUMNS``, documented once in
docs/message-log.md, so a CSV or JSON-lines log loads into pandas or DuckDB without glue.

Streaming: CSV and JSON-lines rows go to a spool file as connections finish (memory stays flat);
the table and Markdown keep only the rows they will show (``limit``), and say how many of how
many.  Rows come grouped by connection, in the order connections ended, each connection's
messages in the order they started: sort by ``start_ts`` for a timeline.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import IO, Any

from analyzer.accounting.records import Record
from analyzer.decoding.events import LAYER_NAMES
from analyzer.errors import UsageError
from analyzer.filters import Filter

#: Formats of the message log.  ``json`` writes JSON lines too: a log is a sequence of rows.
LOG_FORMATS = ("table", "csv", "jsonl", "json", "markdown")
#: Rows the table and Markdown log show unless told otherwise: a screenful or two; the rest is
#: for CSV and JSON lines.
DEFAULT_TABLE_ROWS = 50

#: The columns, in order.  Names are stable (users' scripts read them); docs/message-log.md
#: says what each holds.
COLUMNS: tuple[str, ...] = (
    "start_ts",
    "end_ts",
    "connection",
    "community_id",
    "orig",
    "resp",
    "protocol",
    "index",
    "kind",
    "sender",
    "method",
    "target",
    "status",
    "stream",
    "channel",
    "latency_s",
    "latency_last_byte_s",
    "round_trips",
    "marginal_bytes",
    "loaded_bytes",
    *(f"{layer}_bytes" for layer in LAYER_NAMES),
    "anomalies",
)

#: Columns of the table and Markdown logs (the rest would not fit a terminal).
TABLE_COLUMNS: tuple[str, ...] = (
    "start_ts",
    "connection",
    "protocol",
    "kind",
    "method",
    "target",
    "status",
    "stream",
    "channel",
    "latency_s",
    "round_trips",
    "marginal_bytes",
    "framing_bytes",
    "payload_bytes",
    "anomalies",
)

#: Table columns left out when no shown row has a value in them.
OPTIONAL_COLUMNS = frozenset({"method", "target", "status", "stream", "channel", "anomalies"})
#: Shorter headings where the column name would widen the terminal table (CSV/JSON keep names).
TABLE_HEADINGS = {
    "start_ts": "start (UTC)",
    "round_trips": "RTT",
    "marginal_bytes": "marginal B",
    "framing_bytes": "framing B",
    "payload_bytes": "payload B",
}
#: Width of the terminal table (the summary report's is 140).
TABLE_WIDTH = 160
#: Longest request target kept in a table cell (CSV and JSON keep the decoder's whole value).
MAX_TABLE_TARGET_CHARS = 40


def message_row(connection: Record, message: Record) -> dict[str, Any]:
    """One message's row: its own figures with its connection's identity."""
    detail: dict[str, Any] = message.get("detail") or {}
    layers = message["layers"]
    row: dict[str, Any] = {
        "start_ts": message["start_ts"],
        "end_ts": message["end_ts"],
        "connection": connection["id"],
        "community_id": connection.get("community_id"),
        "orig": connection["orig"],
        "resp": connection["resp"],
        "protocol": message["protocol"],
        "index": message["index"],
        "kind": message["kind"],
        "sender": message["sender"],
        "method": detail.get("method"),
        "target": detail.get("target", detail.get("path")),
        "status": _status(detail),
        "stream": detail.get("stream_id"),
        "channel": detail.get("channel"),
        "latency_s": message.get("latency_s"),
        "latency_last_byte_s": message.get("latency_last_byte_s"),
        "round_trips": message["round_trips"],
        "marginal_bytes": message["marginal_bytes"],
        "loaded_bytes": message["loaded_bytes"],
    }
    for layer in LAYER_NAMES:
        row[f"{layer}_bytes"] = layers[layer]
    row["anomalies"] = ";".join(message_anomalies(message))
    return row


def _status(detail: dict[str, Any]) -> object:
    """HTTP: the status code; AMQP: how the message was acknowledged (ack, nack, reject)."""
    if "status" in detail:
        return detail["status"]
    return detail.get("ack")


def message_anomalies(message: Record) -> list[str]:
    """What is odd about one message, named ``layer.condition`` like the connection's."""
    out: list[str] = []
    if message["end_ts"] is None:
        out.append("message.unfinished")  # the capture ended (or a gap fell) inside it
    detail = message.get("detail") or {}
    if message["protocol"] in ("http1", "http2") and message["kind"] != "push":
        if "status" not in detail:
            out.append("http.no_response")
        if "method" not in detail and message["protocol"] == "http1":
            out.append("http.no_request")  # a response whose request was not captured
    if detail.get("blocked"):
        out.append("amqp.published_while_blocked")
    return out


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


class MessageLog:
    """Receives each finished connection's records (``pipeline.analyze``'s ``on_record``)."""

    def __init__(
        self,
        fmt: str,
        *,
        limit: int | None = None,
        costliest: bool = False,
        keep: Callable[[Record, Record], bool] | None = None,
    ) -> None:
        self.fmt = "jsonl" if fmt == "json" else fmt
        self.limit = DEFAULT_TABLE_ROWS if limit is None else limit
        #: show the costliest rows (by loaded bytes) rather than the earliest
        self.costliest = costliest
        self.keep = keep
        self.rows_seen = 0
        self._shown: list[tuple[float, int, dict[str, Any]]] = []
        self._spool: IO[str] | None = None
        if self.fmt in ("csv", "jsonl"):
            self._spool = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")  # noqa: SIM115

    def add(self, record: Record, messages: Iterator[Record]) -> None:
        for message in messages:
            if self.keep is not None and not self.keep(record, message):
                continue
            row = message_row(record, message)
            self.rows_seen += 1
            if self._spool is not None:
                self._write(row)
            else:
                self._hold(row)

    def _write(self, row: dict[str, Any]) -> None:
        assert self._spool is not None
        if self.fmt == "jsonl":
            self._spool.write(json.dumps(row) + "\n")
        else:
            csv.writer(self._spool).writerow([_csv_value(row[c]) for c in COLUMNS])

    def _hold(self, row: dict[str, Any]) -> None:
        # A heap of the rows to show: the costliest, or the earliest (negated so the heap's
        # smallest item is the first to give way).
        key = row["loaded_bytes"] if self.costliest else -row["start_ts"]
        item = (key, -self.rows_seen, row)
        if len(self._shown) < self.limit:
            heapq.heappush(self._shown, item)
        elif self.limit:
            heapq.heappushpop(self._shown, item)

    def shown(self) -> list[dict[str, Any]]:
        """The rows the table shows, costliest or earliest first."""
        return [row for _, _, row in sorted(self._shown, reverse=True)]

    def render(self, analysis: object, out: IO[str]) -> None:
        del analysis  # the log is rows only; the summary is the other reports' job
        if self._spool is not None:
            if self.fmt == "csv":
                csv.writer(out).writerow(COLUMNS)
            self._spool.seek(0)
            for line in self._spool:
                out.write(line)
            self._spool.close()
            return
        out.write(self._render_table() if self.fmt == "table" else self._render_markdown())

    def _caption(self) -> str:
        order = "costliest" if self.costliest else "earliest"
        shown = len(self._shown)
        return f"{shown} of {self.rows_seen} messages shown ({order} first)" + (
            "; --format csv or jsonl lists them all" if shown < self.rows_seen else ""
        )

    def _columns(self) -> tuple[str, ...]:
        """The table's columns less those empty on every shown row (no AMQP channel on an
        HTTP capture): the rest fit a terminal."""
        shown = self.shown()
        return tuple(
            c
            for c in TABLE_COLUMNS
            if c not in OPTIONAL_COLUMNS or any(row[c] not in (None, "") for row in shown)
        )

    def _table_cells(self, columns: tuple[str, ...]) -> list[list[str]]:
        rows = []
        for row in self.shown():
            cells = []
            for column in columns:
                value = row[column]
                if column == "target" and isinstance(value, str):
                    value = value[:MAX_TABLE_TARGET_CHARS]
                if column == "start_ts" and isinstance(value, float):
                    cells.append(_clock(value))
                elif column == "round_trips" and isinstance(value, float):
                    cells.append(f"{value:.3f}")
                else:
                    cells.append(_cell(value))
            rows.append(cells)
        return rows

    def _render_table(self) -> str:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        buffer = io.StringIO()
        console = Console(file=buffer, width=TABLE_WIDTH, force_terminal=False, color_system=None)
        table = Table(title=self._caption(), title_justify="left")
        columns = self._columns()
        for column in columns:
            right = column.endswith(("_s", "_bytes", "round_trips"))
            table.add_column(
                TABLE_HEADINGS.get(column, column), justify="right" if right else "left"
            )
        for cells in self._table_cells(columns):
            table.add_row(*(escape(c) for c in cells))
        console.print(table)
        return buffer.getvalue()

    def _render_markdown(self) -> str:
        columns = self._columns()
        lines = [f"# wireprobe message log\n\n{self._caption()}\n"]
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "---|" * len(columns))
        for cells in self._table_cells(columns):
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return "\n".join(lines) + "\n"


def _clock(ts: float) -> str:
    """A start time as the table shows it: UTC time of day to the microsecond (the date is in
    CSV and JSON lines, as epoch seconds)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S.%f")


class ConnectionLines:
    """``--format jsonl`` without ``--messages``: one connection record per line (conn.log)."""

    def __init__(self) -> None:
        self._spool: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115

    def add(self, record: Record, messages: Iterator[Record]) -> None:
        del messages  # drained by the pipeline
        self._spool.write(json.dumps(record) + "\n")

    def render(self, analysis: object, out: IO[str]) -> None:
        del analysis
        self._spool.seek(0)
        for line in self._spool:
            out.write(line)
        self._spool.close()


def log_collector(
    fmt: str, messages: bool, connection: str | None, top: int | None, select: Filter | None
) -> MessageLog | ConnectionLines | None:
    """The collector for ``--messages`` / ``--connection`` / ``--format jsonl`` (None: the
    summary report's ``Collector`` does the job)."""
    wants_log = messages or connection is not None
    if not wants_log:
        return ConnectionLines() if fmt == "jsonl" else None
    if fmt not in LOG_FORMATS:
        raise UsageError(f"--messages writes {', '.join(LOG_FORMATS)}, not {fmt!r}")
    keep = _keep(connection, select)
    return MessageLog(fmt, limit=top, costliest=top is not None, keep=keep)


def _keep(connection: str | None, select: Filter | None) -> Callable[[Record, Record], bool] | None:
    if connection is None and select is None:
        return None

    def keep(record: Record, message: Record) -> bool:
        if connection is not None and connection not in (record["id"], record["community_id"]):
            return False
        return select is None or select.keeps_message(record, message)

    return keep


def _csv_value(value: object) -> object:
    """CSV cells: empty for null, booleans as 0/1 (what pandas and DuckDB read back)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    return value


__all__ = [
    "COLUMNS",
    "LOG_FORMATS",
    "ConnectionLines",
    "MessageLog",
    "log_collector",
    "message_anomalies",
    "message_row",
]
