"""The latency table of the readable reports: what the JSON summary's timing figures say.

One row per protocol whose messages were answered, and one for AMQP RPC calls when the capture
has them (``analyzer.accounting.rpc``).  Milliseconds, because the answers people ask about are
from tenths of a millisecond in a rack to hundreds across regions.  Timing is shown beside the
counts, never instead of them: round trips stay as counted from packet order (DESIGN.md 4).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LATENCY_TITLE = "Latency, by protocol"
LATENCY_HEADERS = (
    "protocol",
    "answered",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "to last byte p50 ms",
    "TCP handshake p50 ms",
)
LATENCY_LEGEND = (
    "From a message's first byte to its answer's first byte (HTTP response, AMQP confirm, GetOk "
    "or consumer ack; an RPC call to its reply's delivery, across connections); 'to last byte': "
    "until the answer is complete. Quantiles within 1% (DDSketch); count, min and mean are in "
    "the JSON summary."
)


def _ms(stats: Mapping[str, Any] | None, key: str) -> str:
    value = None if stats is None else stats.get(key)
    return "–" if value is None else f"{value * 1000:,.3f}"


def _row(name: str, first: Any, last: Any, handshake: Any) -> list[str]:
    count = 0 if first is None else int(first.get("count") or 0)
    return [
        name,
        f"{count:,}",
        _ms(first, "p50"),
        _ms(first, "p90"),
        _ms(first, "p99"),
        _ms(first, "max"),
        _ms(last, "p50"),
        _ms(handshake, "p50"),
    ]


def latency_rows(summary: Mapping[str, Any], names: Mapping[str, str]) -> list[list[str]]:
    """The table's rows from the JSON summary; none when nothing was answered or timed."""
    rows = []
    for protocol, figures in summary.items():
        first, handshake = figures.get("latency"), figures.get("tcp_handshake_rtt")
        if first is None and handshake is None:
            continue
        name = names.get(protocol, protocol)
        rows.append(_row(name, first, figures.get("latency_last_byte"), handshake))
        rpc = figures.get("rpc")
        if rpc is not None and rpc.get("answered"):
            rows.append(_row(f"{name} RPC call", rpc["latency"], rpc["latency_last_byte"], None))
    return rows
