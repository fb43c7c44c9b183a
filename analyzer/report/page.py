"""What the HTML report of a capture shows, folded as records stream in (issue 15).

The page shows the summary, the findings, the costliest connections and one bar per protocol of
where its bytes went.  None of that needs the list of every connection or message, so
``PageTally`` keeps only sums per protocol and a heap of ``TOP_CONNECTIONS`` records: memory
follows the number of protocols, not the number of connections or messages in the capture.
Pure: values in, a ``CapturePage`` out; analyzer/compare/render.py draws it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from analyzer.accounting.records import Record

#: Connections listed in a capture's HTML report, costliest (most wire bytes) first.
TOP_CONNECTIONS = 20
#: The layers of DESIGN.md section 3, as records name them.
LAYERS = ("link", "ip", "tcp", "tls", "framing", "payload", "opaque")


@dataclass(slots=True)
class LayerSums:
    """One protocol's wire bytes, grouped as the layer-share bars show them."""

    #: messages' direct bytes by layer (``LAYERS`` order)
    direct: list[int] = field(default_factory=lambda: [0] * len(LAYERS))
    #: connections' setup, teardown and control bytes
    connection: int = 0
    #: connections' undecoded bytes
    undecoded: int = 0
    #: connections' wire bytes
    wire: int = 0

    def add_message(self, message: Record) -> None:
        layers = message["layers"]
        direct = self.direct
        for index, layer in enumerate(LAYERS):
            direct[index] += layers.get(layer, 0)

    def add_connection(self, record: Record) -> None:
        self.connection += record["setup_bytes"] + record["teardown_bytes"]
        self.connection += record["control_bytes"]
        self.undecoded += record["undecoded_bytes"]
        self.wire += record["wire_bytes"]

    def shares(self) -> dict[str, float]:
        """Shares of the wire bytes: messages' direct bytes by layer, then the connections'
        own; undecoded includes messages' opaque bytes."""
        link, ip, tcp, tls, framing, payload, opaque = self.direct
        wire = self.wire or 1
        parts = {
            "headers": link + ip + tcp,
            "tls": tls,
            "framing": framing,
            "payload": payload,
            "connection": self.connection,
            "undecoded": self.undecoded + opaque,
        }
        return {layer: count / wire for layer, count in parts.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class CapturePage:
    """Everything the HTML report of a capture shows, and nothing more."""

    #: the input files' paths, as given
    captures: tuple[str, ...]
    #: frames read (None when unknown)
    packets: int | None
    #: connections analysed
    connections: int
    #: messages analysed
    messages: int
    #: the analysis's summary per protocol (DESIGN.md section 5)
    summary: Mapping[str, Any]
    #: the findings, one line each ("severity: message")
    findings: tuple[str, ...]
    #: the ``TOP_CONNECTIONS`` costliest connection records, costliest first
    top: tuple[Record, ...]
    #: protocol -> layer shares (``LayerSums.shares``), protocols in name order
    shares: Mapping[str, Mapping[str, float]]


class PageTally:
    """Folds connection and message records into what a ``CapturePage`` needs."""

    __slots__ = ("_seen", "_sums", "_top", "connections", "messages")

    def __init__(self) -> None:
        self.connections = 0
        self.messages = 0
        self._seen = 0
        #: (wire bytes, -arrival, record): ties go to the earlier record, as a stable sort would
        self._top: list[tuple[int, int, Record]] = []
        self._sums: dict[str, LayerSums] = {}

    def sums(self, protocol: str) -> LayerSums:
        sums = self._sums.get(protocol)
        if sums is None:
            sums = self._sums[protocol] = LayerSums()
        return sums

    def add(self, record: Record) -> None:
        """Fold one connection record (its messages go to ``add_message``)."""
        self.connections += 1
        self.sums(record["protocol"]).add_connection(record)
        self._seen += 1
        item = (record["wire_bytes"], -self._seen, record)
        if len(self._top) < TOP_CONNECTIONS:
            heapq.heappush(self._top, item)
        else:
            heapq.heappushpop(self._top, item)

    def add_message(self, protocol: str, message: Record) -> None:
        self.messages += 1
        self.sums(protocol).add_message(message)

    def page(
        self,
        header: Mapping[str, Any],
        summary: Mapping[str, Any],
        findings: Iterable[str],
    ) -> CapturePage:
        """The page, from the analysis's header and summary and the run's findings."""
        return CapturePage(
            captures=tuple(str(c.get("path", "")) for c in header.get("captures", [])),
            packets=header.get("packets"),
            connections=self.connections,
            messages=self.messages,
            summary=summary,
            findings=tuple(findings),
            top=tuple(r for _, _, r in sorted(self._top, reverse=True)),
            shares={p: self._sums[p].shares() for p in sorted(self._sums)},
        )
