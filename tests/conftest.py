"""Shared test helpers: run the analyzer in-process and check the ledger's conservation law."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from analyzer.anomalies import CATALOGUE

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
PUBLIC = ROOT / "captures" / "public"
CAPTURES = ROOT / "captures"


def analyze_json(paths: list[str] | list[Path], **decode: Any) -> dict[str, Any]:
    """The analysis JSON of ``paths``, as ``wireprobe analyze --format json`` writes it."""
    from analyzer.options import AnalyzeOptions, DecodeOptions
    from analyzer.pipeline import analyze
    from analyzer.report.render import Collector

    collector = Collector("json")
    options = AnalyzeOptions(decode=DecodeOptions(**decode))
    analysis = analyze([str(p) for p in paths], options, on_record=collector.add)
    out = io.StringIO()
    collector.render(analysis, out)
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


def check_conservation(result: dict[str, Any]) -> None:
    """DESIGN.md section 3, asserted for every connection and message."""
    by_conn: dict[str, list[dict[str, Any]]] = {}
    for message in result["messages"]:
        assert sum(message["layers"].values()) == message["marginal_bytes"], message
        by_conn.setdefault(message["connection"], []).append(message)
    total_wire = 0
    for conn in result["connections"]:
        direct = sum(m["marginal_bytes"] for m in by_conn.get(conn["id"], []))
        buckets = (
            conn["setup_bytes"]
            + conn["teardown_bytes"]
            + conn["control_bytes"]
            + conn["undecoded_bytes"]
        )
        assert direct + buckets == conn["wire_bytes"], (conn["id"], direct, buckets, conn)
        assert sum(conn["layers"].values()) == conn["wire_bytes"], conn
        if conn["messages"] is not None:
            assert conn["messages"] == len(by_conn.get(conn["id"], [])), conn
        total_wire += conn["wire_bytes"]
    tcp_wire = sum(c["wire_bytes"] for c in result["connections"])
    assert tcp_wire == total_wire
    check_catalogued(result)


def check_catalogued(result: dict[str, Any]) -> None:
    """Every anomaly a result names is documented in analyzer/anomalies.py."""
    named = {a["name"] for c in result.get("captures", []) for a in c["anomalies"]}
    named |= {a["name"] for c in result["connections"] for a in c["anomalies"]}
    assert named <= set(CATALOGUE), sorted(named - set(CATALOGUE))


def public_captures() -> list[Path]:
    files = sorted(
        p for p in PUBLIC.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz") and p.is_file()
    )
    return files


@pytest.fixture(scope="session")
def public_dir() -> Path:
    if not PUBLIC.is_dir():
        pytest.fail(f"{PUBLIC} is missing: the public captures are part of the repository")
    return PUBLIC
