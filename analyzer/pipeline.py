"""``wireprobe analyze`` end to end: captures in, records out, streaming.

The stages of DESIGN.md section 6 joined: ``capture`` reads, ``packets`` decodes headers,
``flows`` keeps the connection table and the ledger, ``records`` turns each finished connection
into records that go to ``on_record`` at once (the report writes or folds them), so memory follows
the connections open at the same time.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO

from analyzer.accounting.records import Record, Summary, connection_records
from analyzer.capture.reader import CaptureSet, RawPacket
from analyzer.filters import Dropped
from analyzer.options import AnalyzeOptions
from analyzer.tcp.flows import Connection, FlowTable
from analyzer.tls.keylog import KeyLog, secrets_block

#: Called once per finished connection with its record and an iterator over its messages'
#: records (consume it before returning: it reads a spool that closes afterwards).
OnRecord = Callable[[Record, Iterator[Record]], None]
#: Sits between the capture reader and the flow table: a shard keeps only its bucket's frames
#: (analyzer/shards.py), before any per-connection state is made.
PacketFilter = Callable[[Iterable[RawPacket]], Iterable[RawPacket]]


@dataclass(slots=True)
class Analysis:
    """What a run found, beyond the per-connection records already handed out."""

    captures: list[Record] = field(default_factory=list)
    summary: dict[str, Record] = field(default_factory=dict)
    packets: int = 0
    tcp_packets: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    connections: int = 0
    messages: int = 0
    #: what ``--filter`` left out (None: no filter)
    dropped: Dropped | None = None
    #: what the connection table's state budget did, when it did (analyzer/tcp/budget.py)
    connection_table: dict[str, int] | None = None

    def header(self) -> dict[str, Any]:
        out = {
            "schema": "wireprobe.analysis/1",
            "captures": self.captures,
            "packets": self.packets,
            "tcp_packets": self.tcp_packets,
            "skipped_packets": self.skipped,
            **({"connection_table": self.connection_table} if self.connection_table else {}),
        }
        if self.dropped is not None:
            out["filter"] = self.dropped.as_dict()
        return out


def analyze(
    paths: Sequence[str],
    options: AnalyzeOptions | None = None,
    *,
    on_record: OnRecord | None = None,
    stdin: BinaryIO | None = None,
    packet_filter: PacketFilter | None = None,
) -> Analysis:
    """Analyse ``paths`` as one capture; each finished connection goes to ``on_record``."""
    options = options or AnalyzeOptions()
    summary = Summary()
    result = Analysis()
    select = options.select
    if select is not None:
        result.dropped = Dropped(select.expression)

    def finished(conn: Connection) -> None:
        record, messages = connection_records(conn)
        dropped = result.dropped
        if select is not None and dropped is not None and not select.keeps_connection(record):
            dropped.add(record)
            for _ in messages:  # drain, so a spool is always read and closed
                pass
            return
        summary.add(record)
        result.connections += 1
        result.messages += record["messages"] or 0
        messages = summary.watch(record, messages)
        if on_record is not None:
            on_record(record, messages)
        for _ in messages:  # drain, so a spool is always read and closed
            pass

    keylog = options.decode.keylog
    if keylog is None:
        # Keys embedded in a pcapng (Decryption Secrets Blocks) decrypt without --keylog.
        keylog = KeyLog()
        options = replace(options, decode=replace(options.decode, keylog=keylog))

    def secrets(kind: int, data: bytes) -> str | None:
        return secrets_block(keylog, kind, data)

    captures = CaptureSet(paths, stdin=stdin, on_secrets=secrets)
    table = FlowTable(options, finished)
    skipped: Counter[str] = Counter()
    # The packet loop makes many short-lived tuples and almost no reference cycles, so the
    # cyclic collector's default 700-allocation trigger only costs time (5-12% measured).
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)
    try:
        packets = captures if packet_filter is None else packet_filter(captures)
        result.packets, result.tcp_packets = table.run(packets, skipped)
        table.close()
        result.connection_table = table.budget_report()
    finally:
        gc.set_threshold(*thresholds)
    result.skipped = dict(sorted(skipped.items()))
    result.summary = summary.as_dict()
    result.captures = [
        {
            "path": s.path,
            "packets": s.packets,
            "wire_bytes": s.wire_bytes,
            "link_type": s.link_types[0] if len(s.link_types) == 1 else s.link_types,
            "first_ts": s.first_ts,
            "last_ts": s.last_ts,
            "anomalies": [{"name": k, "count": v} for k, v in sorted(s.anomalies.items())],
        }
        for s in captures.stats
    ]
    return result
