"""The message log: one row per message, equal to the generator's truth and to tshark's fields."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from conftest import CAPTURES, PUBLIC, ROOT
from tshark import endpoint, fields

from analyzer.decoding.events import LAYER_NAMES
from analyzer.options import AnalyzeOptions, DecodeOptions
from analyzer.pipeline import analyze
from analyzer.report.messagelog import COLUMNS, MessageLog, log_collector
from analyzer.synth import Scenario, generate
from analyzer.tls.keylog import KeyLog

H2_GOLDEN = CAPTURES / "live-http2-tls13-httpx-hypercorn.pcap"


def log_rows(
    paths: list[Path], fmt: str = "jsonl", keys: Path | None = None, **log: Any
) -> list[dict[str, Any]] | str:
    keylog = KeyLog()
    if keys is not None:
        keylog.load(str(keys))
    collector = MessageLog(fmt, **log)
    options = AnalyzeOptions(decode=DecodeOptions(keylog=keylog))
    analysis = analyze([str(p) for p in paths], options, on_record=collector.add)
    out = io.StringIO()
    collector.render(analysis, out)
    if fmt != "jsonl":
        return out.getvalue()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def _rows(paths: list[Path], keys: Path | None = None) -> list[dict[str, Any]]:
    rows = log_rows(paths, keys=keys)
    assert isinstance(rows, list)
    return rows


# --- against the generator's truth, row for row ------------------------------------------------

SCENARIOS = [
    {"protocol": "http1", "messages": 6, "per_connection": 3, "payload": 2000},
    {"protocol": "http2", "tls": "1.3", "messages": 16, "concurrency": 4},
    {"protocol": "amqp", "amqp_mode": "confirm-async", "messages": 12, "payload": 300},
    {"protocol": "amqp", "amqp_mode": "consume", "tls": "1.2", "messages": 5},
]
TRUTH_FIELDS = ("kind", "sender", "start_ts", "end_ts", "round_trips", "marginal_bytes")


@pytest.mark.parametrize("kwargs", SCENARIOS, ids=lambda k: "-".join(map(str, k.values())))
def test_the_log_equals_the_truth_row_for_row(kwargs: dict[str, Any], tmp_path: Path) -> None:
    g = generate(Scenario(**kwargs).validate())
    pcap, keys = tmp_path / "g.pcap", tmp_path / "g.keys"
    g.write(pcap, keys if g.keylog else None)
    rows = _rows([pcap], keys if g.keylog else None)
    truth: list[dict[str, Any]] = g.truth["messages"]  # type: ignore[assignment]
    conns: list[dict[str, Any]] = g.truth["connections"]  # type: ignore[assignment]
    assert len(rows) == len(truth)
    by_key = {(r["orig"], r["index"]): r for r in rows}
    for want in truth:
        got = by_key[(conns[want["connection"]]["orig"], want["index"])]
        for name in TRUTH_FIELDS + ("latency_s", "latency_last_byte_s"):
            assert (
                got[name] == pytest.approx(want[name], abs=1e-7)
                if isinstance(want[name], float)
                else got[name] == want[name]
            ), name
        assert {layer: got[f"{layer}_bytes"] for layer in LAYER_NAMES} == want["layers"]
        assert got["loaded_bytes"] == pytest.approx(want["loaded_bytes"])
        assert got["protocol"] == kwargs["protocol"] and got["anomalies"] == ""


def test_rows_carry_method_status_stream_channel(tmp_path: Path) -> None:
    g = generate(Scenario(protocol="amqp", amqp_mode="confirm", messages=3).validate())
    g.write(tmp_path / "a.pcap")
    rows = _rows([tmp_path / "a.pcap"])
    assert [(r["method"], r["status"], r["channel"]) for r in rows] == [
        ("Basic.Publish", "ack", 1)
    ] * 3
    h2 = _rows([H2_GOLDEN], CAPTURES / "live-http2-tls13-httpx-hypercorn.keys")
    assert [r["stream"] for r in h2] == list(range(1, 2 * len(h2), 2))
    assert {(r["method"], r["target"], r["status"]) for r in h2} == {("POST", "/items", 200)}


# --- formats --------------------------------------------------------------------------------


def test_csv_has_the_documented_columns_and_loads_back() -> None:
    text = log_rows([CAPTURES / "http1-curl-http-server.pcap"], "csv")
    assert isinstance(text, str)
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == COLUMNS
    rows = list(reader)
    assert len(rows) == 3 and {r["method"] for r in rows} == {"GET"}
    for row in rows:
        layers = sum(int(row[f"{layer}_bytes"]) for layer in LAYER_NAMES)
        assert layers == int(row["marginal_bytes"])


def test_the_table_is_capped_and_says_so() -> None:
    path = PUBLIC / "zeek" / "1000-requests-one-dropped-response.pcap.gz"
    text = log_rows([path], "table", limit=7)
    assert isinstance(text, str)
    assert re.search(r"7 of 1000 messages shown \(earliest first\)", text)
    md = log_rows([path], "markdown", limit=3, costliest=True)
    assert isinstance(md, str) and "3 of 1000 messages shown (costliest first)" in md
    assert md.count("\n| ") == 1 + 3  # the header and three rows


def test_every_column_is_documented_once() -> None:
    doc = (ROOT / "docs" / "message-log.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\| `([a-z_]+)` \|", doc, flags=re.M)
    assert [c for c in documented if c in COLUMNS] == list(COLUMNS)


def test_connection_selects_one_connections_messages_by_id_or_community_id() -> None:
    path = CAPTURES / "http1-curl-http-server.pcap"
    every = _rows([path])
    chosen = every[1]
    for key in (chosen["connection"], chosen["community_id"]):
        log = log_collector("jsonl", False, key, None, None)
        assert isinstance(log, MessageLog)
        analysis = analyze([str(path)], on_record=log.add)
        out = io.StringIO()
        log.render(analysis, out)
        rows = [json.loads(line) for line in out.getvalue().splitlines()]
        assert rows and {r["connection"] for r in rows} == {chosen["connection"]}
        assert len(rows) == sum(1 for r in every if r["connection"] == chosen["connection"])


# --- against tshark's per-request fields on real captures -----------------------------------


def _pair(a: str, b: str) -> frozenset[str]:
    return frozenset((a, b))


@pytest.mark.parametrize(
    "path",
    [
        CAPTURES / "http1-curl-http-server.pcap",
        PUBLIC / "zeek" / "pipelined-requests.pcap",
        PUBLIC / "zeek" / "1000-requests-one-dropped-response.pcap.gz",
    ],
    ids=lambda p: p.name,
)
def test_http1_latency_equals_tsharks_http_time(path: Path) -> None:
    """tshark's ``http.time`` runs from the request's frame to the response's (reassembled, so
    last) frame; for one-segment requests that is our ``latency_last_byte_s``."""
    theirs: dict[frozenset[str], list[float]] = defaultdict(list)
    names = ["ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport", "http.time"]
    for src, src6, sport, dst, dst6, dport, time in fields(path, names, "-Y", "http.time"):
        pair = _pair(endpoint(src or src6, sport), endpoint(dst or dst6, dport))
        theirs[pair].append(float(time))
    ours: dict[frozenset[str], list[float]] = defaultdict(list)
    for row in _rows([path]):
        if row["latency_last_byte_s"] is not None:
            ours[_pair(row["orig"], row["resp"])].append(row["latency_last_byte_s"])
    assert theirs.keys() == ours.keys()
    for key, times in theirs.items():
        assert ours[key] == pytest.approx(times, abs=2e-6), key


@pytest.mark.parametrize(
    ("path", "keys"),
    [
        (PUBLIC / "arkime" / "http2-nghttp2.pcap", None),
        (PUBLIC / "scapy" / "http2_h2c.pcap", None),
        (H2_GOLDEN, CAPTURES / "live-http2-tls13-httpx-hypercorn.keys"),
    ],
    ids=lambda p: getattr(p, "name", "nokeys"),
)
def test_http2_streams_equal_tsharks_streamids(path: Path, keys: Path | None) -> None:
    """Every stream that carried a HEADERS frame is one row (pushed ones too); an h2c upgrade's
    HTTP/1.1 request is stream 1, as RFC 7540 section 3.2 says."""
    extra = ["-o", f"tls.keylog_file:{keys}"] if keys else []
    theirs: dict[frozenset[str], set[int]] = defaultdict(set)
    names = ["ip.src", "tcp.srcport", "ip.dst", "tcp.dstport", "http2.streamid", "http2.type"]
    for src, sport, dst, dport, ids, types in fields(path, names, *extra, "-Y", "http2.type==1"):
        for stream, kind in zip(ids.split(","), types.split(","), strict=True):
            if kind == "1":
                theirs[_pair(endpoint(src, sport), endpoint(dst, dport))].add(int(stream))
    ours: dict[frozenset[str], set[int]] = defaultdict(set)
    for row in _rows([path], keys):
        ours[_pair(row["orig"], row["resp"])].add(row["stream"])
    assert dict(theirs) == dict(ours)


@pytest.mark.parametrize(
    "path",
    [PUBLIC / "ndpi" / "amqp.pcap", CAPTURES / "live-amqp-confirm-pika-rabbitmq.pcap"],
    ids=lambda p: p.name,
)
def test_amqp_methods_equal_tsharks(path: Path) -> None:
    names = {"60.40": "Basic.Publish", "60.60": "Basic.Deliver", "60.71": "Basic.GetOk"}
    theirs: Counter[tuple[frozenset[str], str, int]] = Counter()
    cols = ["ip.src", "tcp.srcport", "ip.dst", "tcp.dstport"]
    cols += ["amqp.method.class", "amqp.method.method", "amqp.channel"]
    for src, sport, dst, dport, classes, methods, channels in fields(path, cols, "-Y", "amqp"):
        for cls, method, channel in zip(
            classes.split(","), methods.split(","), channels.split(","), strict=False
        ):
            name = names.get(f"{cls}.{method}")
            if name:
                theirs[(_pair(endpoint(src, sport), endpoint(dst, dport)), name, int(channel))] += 1
    ours = Counter((_pair(r["orig"], r["resp"]), r["method"], r["channel"]) for r in _rows([path]))
    assert theirs and ours == theirs
