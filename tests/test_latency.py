"""Latency: the sketch keeps its promise, and every figure equals the generator's own timing."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from conftest import analyze_json
from pcaptools import Record, read

from analyzer.accounting.latency import (
    RELATIVE_ACCURACY,
    ConnectionLatency,
    LatencySketch,
    sketch_of,
)
from analyzer.synth import Scenario, generate

QUANTILE_RANKS = {"p50": 0.50, "p90": 0.90, "p99": 0.99}


def _check_stats(stats: dict[str, Any], values: list[float]) -> None:
    """Exact count/min/max/mean; each quantile within the accuracy of the true order statistic
    (DDSketch's rank is q*(n-1), so the value lies between the samples either side of it)."""
    ordered = sorted(values)
    assert stats["count"] == len(values)
    assert stats["min"] == ordered[0]
    assert stats["max"] == ordered[-1]
    assert stats["mean"] == pytest.approx(sum(values) / len(values), rel=1e-12)
    for name, q in QUANTILE_RANKS.items():
        rank = q * (len(ordered) - 1)
        low, high = ordered[int(rank)], ordered[min(int(rank) + 1, len(ordered) - 1)]
        slack = RELATIVE_ACCURACY * high
        assert low - slack <= stats[name] <= high + slack, (name, stats[name], low, high)


def test_sketch_quantiles_are_within_the_relative_accuracy() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(-6, 1.5) for _ in range(5000)]
    _check_stats(sketch_of(values).stats(), values)


@pytest.mark.parametrize("seed", [1, 2])
def test_quantiles_are_ddsketchs_own(seed: int) -> None:
    """Our bins use ddsketch's mapping and its quantile walk: the figures are DDSketch's."""
    from ddsketch import DDSketch

    rng = random.Random(seed)
    values = [rng.lognormvariate(-7, 2) for _ in range(3000)] + [0.0] * 5
    theirs = DDSketch(RELATIVE_ACCURACY)
    for value in values:
        theirs.add(value)
    ours = sketch_of(values)
    for q in (0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0):
        assert ours.quantile(q) == pytest.approx(theirs.get_quantile_value(q), rel=1e-12)


def test_sketches_merge_into_the_sketch_of_the_whole() -> None:
    rng = random.Random(5)
    values = [rng.expovariate(200) for _ in range(2000)]
    merged = LatencySketch()
    for part in (values[:700], values[700:1500], values[1500:]):
        merged.merge(LatencySketch.from_json(sketch_of(part).to_json()))
    whole = sketch_of(values).stats()
    got = merged.stats()
    assert got.pop("mean") == pytest.approx(whole.pop("mean"), rel=1e-12)
    assert got == whole


def test_an_empty_sketch_says_so_and_a_foreign_one_is_refused() -> None:
    empty = LatencySketch().stats()
    assert empty["count"] == 0 and empty["p99"] is None and set(empty) >= set(QUANTILE_RANKS)
    data = sketch_of([0.1]).to_json()
    data["relative_accuracy"] = 0.05
    with pytest.raises(ValueError, match="accuracy"):
        LatencySketch.from_json(data)


def test_a_latency_of_nothing_is_zero_not_negative() -> None:
    pair = ConnectionLatency()
    pair.add(10.0, 9.99999, 10.5)  # answer stamped before its question (reordering)
    assert pair.first.stats()["min"] == 0.0
    assert pair.last.stats()["max"] == 0.5


SCENARIOS = [
    {"protocol": "http1", "messages": 12, "payload": 3000, "rtt_ms": 7},
    {"protocol": "http2", "tls": "1.3", "messages": 24, "concurrency": 8, "payload": 20_000},
    {"protocol": "amqp", "amqp_mode": "confirm", "messages": 10, "payload": 500},
    {"protocol": "amqp", "amqp_mode": "consume", "messages": 10, "payload": 500},
    {"protocol": "http1", "messages": 8, "per_connection": 2, "loss": 0.1, "seed": 4},
]


def _generated(tmp_path: Path, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from analyzer.tls.keylog import KeyLog

    g = generate(Scenario(**kwargs).validate())
    pcap = tmp_path / "g.pcap"
    g.write(pcap)
    keylog = KeyLog()
    if g.keylog:
        keylog.add_text(g.keylog)
    return g.truth, analyze_json([pcap], keylog=keylog)


@pytest.mark.parametrize("kwargs", SCENARIOS, ids=lambda k: "-".join(map(str, k.values())))
def test_latency_equals_the_generators_timing(kwargs: dict[str, Any], tmp_path: Path) -> None:
    truth, result = _generated(tmp_path, kwargs)
    protocol = kwargs["protocol"]
    firsts = [m["latency_s"] for m in truth["messages"] if m["latency_s"] is not None]
    lasts = [m["latency_last_byte_s"] for m in truth["messages"] if m["latency_s"] is not None]
    assert firsts, "the scenario has answered messages"
    # Row for row (in start order: the truth's and the analyzer's indexes agree per connection).
    got = sorted(
        (m["start_ts"], m["latency_s"], m["latency_last_byte_s"]) for m in result["messages"]
    )
    want = sorted(
        (m["start_ts"], m["latency_s"], m["latency_last_byte_s"]) for m in truth["messages"]
    )
    assert got == want
    summary = result["summary"][protocol]
    _check_stats(summary["latency"], firsts)
    _check_stats(summary["latency_last_byte"], lasts)
    rtts = [c["handshake_rtt_s"] for c in truth["connections"]]
    _check_stats(summary["tcp_handshake_rtt"], rtts)
    for conn in result["connections"]:
        mine = [m["latency_s"] for m in result["messages"] if m["connection"] == conn["id"]]
        _check_stats(conn["latency"], [v for v in mine if v is not None])


def test_latency_never_changes_a_count(tmp_path: Path) -> None:
    """Stretch every gap between packets tenfold: latencies grow, no count or byte moves."""
    g = generate(Scenario(protocol="http2", messages=16, concurrency=4).validate())
    pcap = tmp_path / "a.pcap"
    g.write(pcap)
    original = read(pcap)
    t0 = original.records[0].ts_ns
    slow = original.with_records(
        [Record(t0 + (r.ts_ns - t0) * 10, r.data, r.orig_len) for r in original.records]
    ).write(tmp_path / "slow.pcap")
    fast, stretched = analyze_json([pcap]), analyze_json([slow])
    timed = ("latency", "latency_last_byte", "tcp_handshake_rtt")
    for key, value in fast["summary"]["http2"].items():
        if key in timed:
            assert stretched["summary"]["http2"][key]["max"] == pytest.approx(
                value["max"] * 10, rel=1e-3
            )
        else:
            assert stretched["summary"]["http2"][key] == value, key


def _cli(args: list[str]) -> str:
    from typer.testing import CliRunner

    from analyzer.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_the_table_and_markdown_show_the_summarys_latency() -> None:
    capture = str(Path(__file__).resolve().parent.parent / "captures" / "gen-http1-keepalive.pcap")
    summary = analyze_json([capture])["summary"]["http1"]
    p50 = f"{summary['latency']['p50'] * 1000:,.3f}"
    rtt = f"{summary['tcp_handshake_rtt']['p50'] * 1000:,.3f}"
    for fmt in ("table", "markdown"):
        out = _cli(["analyze", capture, "-f", fmt])
        section = out[out.index("Latency, by protocol") :]
        row = next(line for line in section.splitlines() if "HTTP/1.1" in line)
        cells = [c.strip() for c in row.strip("|│ ").replace("│", "|").split("|")]
        assert cells[1] == str(summary["latency"]["count"])
        assert cells[2] == p50 and cells[-1] == rtt, cells


def test_the_csv_carries_each_connections_timing() -> None:
    import csv
    import io

    capture = str(
        Path(__file__).resolve().parent.parent / "captures" / "gen-http1-tls13-new-conn.pcap"
    )
    records = {c["id"]: c for c in analyze_json([capture])["connections"]}
    rows = list(csv.DictReader(io.StringIO(_cli(["analyze", capture, "-f", "csv"]))))
    assert len(rows) == len(records)
    for row in rows:
        record = records[row["id"]]
        assert float(row["handshake_rtt_s"]) == pytest.approx(record["handshake_rtt_s"], abs=1e-6)
        assert int(row["latency_count"]) == record["latency"]["count"]
        if record["latency"]["count"]:
            assert float(row["latency_p50_s"]) == pytest.approx(record["latency"]["p50"], abs=1e-6)
            assert float(row["latency_max_s"]) == pytest.approx(record["latency"]["max"], abs=1e-6)
        else:
            assert row["latency_p50_s"] == ""
