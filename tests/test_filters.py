"""--filter: the parser's words and errors, and the connections it keeps equal tshark's."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import CAPTURES, PUBLIC, ROOT
from tshark import endpoint, fields

from analyzer.filters import FilterError, parse_filter

CONN = {
    "orig": "10.0.0.5:40000",
    "resp": "[2001:db8::1]:443",
    "protocol": "http2",
    "tls": {"version": "1.3"},
    "first_ts": 100.0,
    "last_ts": 200.0,
}


@pytest.mark.parametrize(
    ("expression", "kept"),
    [
        ("port 443", True),
        ("port 80 or 443", True),  # tcpdump's shorthand: the qualifier carries over
        ("host 10.0.0.5 and not port 80", True),
        ("src host 10.0.0.5", True),
        ("dst host 10.0.0.5", False),
        ("net 2001:db8::/32 && http2", True),
        ("net 10.1.0.0/16", False),
        ("not tls", False),
        ("http or amqp", False),
        ("port 1 or port 2 and port 443", False),  # and binds tighter than or, as in BPF
        ("(port 1 or port 2) and port 443", False),
        ("port 1 or (port 2 or port 443) and http2", True),
        ("! ( port 1 || port 2 )", True),
        ("time >= 150", True),
        ("time > 200", False),
        ("time < 100", False),
        ("time <= 1970-01-01T00:01:40Z", True),
        ("time >= 150 and time < 160", True),  # the connection spans that window
    ],
)
def test_words_and_precedence(expression: str, kept: bool) -> None:
    assert parse_filter(expression).keeps_connection(CONN) is kept


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "empty expression"),
        ("port", "expected a value after 'port' at the end"),
        ("port http", "expected a port number 0-65535 at word 2 ('http')"),
        ("port 70000", "expected a port number 0-65535 at word 2"),
        ("host 10.0.0.300", "expected an IPv4 or IPv6 address at word 2"),
        ("net 10.0.0.0/40", "expected a network like 10.0.0.0/8 at word 2"),
        ("(port 80", "expected ')' at the end"),
        ("port 80 port 81", "expected 'and', 'or' or the end at word 3 ('port')"),
        ("smtp", "expected host, port, net, time or a protocol at word 1 ('smtp')"),
        ("time = 5", "expected >=, >, <= or < after 'time' at word 2"),
        ("time >= yesterday", "expected epoch seconds or an ISO 8601 time at word 3"),
        ("port 80 and", "expected a test (host, port, net, time or a protocol) at the end"),
    ],
)
def test_errors_are_one_line_naming_the_word(expression: str, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(expression)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(f"--filter {expression!r}: ")
    assert message in text


def test_the_cli_says_what_it_dropped_and_refuses_a_bad_filter(tmp_path: Path) -> None:
    wireprobe = [str(ROOT / ".venv" / "bin" / "python"), "-m", "analyzer.cli", "analyze"]
    path = str(CAPTURES / "http1-curl-http-server.pcap")
    bad = subprocess.run([*wireprobe, path, "--filter", "port x"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        "wireprobe: --filter 'port x': expected a port number 0-65535 at word 2 ('x')"
    ]
    every = json.loads(
        subprocess.run(
            [*wireprobe, path, "-f", "json"], capture_output=True, text=True, check=True
        ).stdout
    )
    first = every["connections"][0]
    port = first["orig"].rpartition(":")[2]
    run = subprocess.run(
        [*wireprobe, path, "-f", "json", "--filter", f"not port {port}"],
        capture_output=True,
        text=True,
        check=True,
    )
    kept = json.loads(run.stdout)
    assert len(kept["connections"]) == len(every["connections"]) - 1
    assert kept["filter"]["dropped_connections"] == 1
    assert kept["filter"]["dropped_packets"] == first["packets"]
    assert kept["summary"]["http1"]["connections"] == len(kept["connections"])
    assert f"dropped 1 connections ({first['packets']} packets" in run.stderr


# --- against tshark's display filter on public captures -------------------------------------

SOURCES = [
    PUBLIC / "wireshark" / "tls12-chacha20poly1305.pcap",
    PUBLIC / "zeek" / "http-non-printable-characters.pcap",
    PUBLIC / "ndpi" / "amqp.pcap",
    PUBLIC / "zeek" / "1000-requests-one-dropped-response.pcap.gz",
    PUBLIC / "arkime" / "http2-nghttp2.pcap",
    PUBLIC / "scapy" / "http_chunk.pcap.gz",
    CAPTURES / "http1-curl-http-server.pcap",
]

#: ours -> tshark's display filter for the same connections
PAIRS = [
    ("host 127.0.0.1", "ip.addr==127.0.0.1"),
    ("port 80 or 5672", "tcp.port==80 || tcp.port==5672"),
    ("net 10.0.0.0/8 and not port 443", "ip.addr==10.0.0.0/8 && !(tcp.port==443)"),
    ("host ::1 or net 172.24.0.0/16", "ipv6.addr==::1 || ip.addr==172.24.0.0/16"),
    ("src net 172.16.0.0/12", "tcp.flags.syn==1 && tcp.flags.ack==0 && ip.src==172.16.0.0/12"),
    # src/dst are orig/resp: tshark's stand-in is the SYN's direction, so the connections whose
    # SYN was not captured (192.168.62.91's, orig = first packet seen) are left out of this one.
    (
        "dst port 80 and not net 192.168.0.0/16",
        "tcp.flags.syn==1 && tcp.flags.ack==0 && tcp.dstport==80",
    ),
    ("amqp", "amqp"),
    ("tls and not port 5228", "tls && !(tcp.port==5228)"),
]


@pytest.fixture(scope="module")
def merged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sources as one capture (mergecap, installed with tshark), so one tshark run each."""
    mergecap = shutil.which("mergecap")
    assert mergecap, "mergecap (Debian's wireshark-common, a tshark dependency) is missing"
    out = tmp_path_factory.mktemp("filter") / "merged.pcapng"
    subprocess.run([mergecap, "-w", str(out), *map(str, SOURCES)], check=True, timeout=60)
    return out


def _theirs(path: Path, display: str) -> set[frozenset[str]]:
    names = ["ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport"]
    out = set()
    for src, src6, sport, dst, dst6, dport in fields(path, names, "-Y", f"tcp && ({display})"):
        first = [v.split(",")[0] for v in (src or src6, sport, dst or dst6, dport)]
        out.add(frozenset((endpoint(first[0], first[1]), endpoint(first[2], first[3]))))
    return out


def _ours(path: Path, expression: str | None) -> dict[str, Any]:
    from analyzer.options import AnalyzeOptions
    from analyzer.pipeline import analyze

    kept: list[dict[str, Any]] = []
    options = AnalyzeOptions(select=None if expression is None else parse_filter(expression))
    analysis = analyze([str(path)], options, on_record=lambda r, m: kept.append(r))
    return {"kept": kept, "dropped": analysis.dropped}


def test_the_merged_capture_has_the_variety_the_filters_need(merged: Path) -> None:
    every = _ours(merged, None)["kept"]
    assert len(every) >= 20
    assert {c["protocol"] for c in every} >= {"http1", "http2", "amqp", "tls"}


@pytest.mark.parametrize(("ours", "tshark_filter"), PAIRS, ids=[p[0] for p in PAIRS])
def test_the_filter_keeps_tsharks_connections(merged: Path, ours: str, tshark_filter: str) -> None:
    result = _ours(merged, ours)
    got = {frozenset((c["orig"], c["resp"])) for c in result["kept"]}
    want = _theirs(merged, tshark_filter)
    assert want, "the pair selects something"
    assert got == want
    every = _ours(merged, None)["kept"]
    dropped = result["dropped"]
    assert dropped.connections == len(every) - len(got)
    assert dropped.packets == sum(c["packets"] for c in every) - sum(
        c["packets"] for c in result["kept"]
    )


def test_a_time_window_keeps_tsharks_connections(merged: Path) -> None:
    every = _ours(merged, None)["kept"]
    starts = sorted(c["first_ts"] for c in every)
    middle = starts[len(starts) // 2]
    for ours, theirs in (
        (f"time >= {middle!r}", f"frame.time_epoch >= {middle!r}"),
        (f"time < {middle!r}", f"frame.time_epoch < {middle!r}"),
    ):
        got = {frozenset((c["orig"], c["resp"])) for c in _ours(merged, ours)["kept"]}
        assert got and got == _theirs(merged, theirs), ours


def test_shards_filter_alike_and_add_up_what_they_dropped() -> None:
    from analyzer.options import AnalyzeOptions
    from analyzer.shards import analyze_inputs

    path = str(PUBLIC / "zeek" / "http-non-printable-characters.pcap")
    options = AnalyzeOptions(select=parse_filter("not port 55134"))
    kept: dict[int | None, set[str]] = {}
    drops = {}
    for jobs in (None, 2):
        ids: set[str] = set()
        analysis = analyze_inputs(
            [path], options, jobs=jobs, on_record=lambda r, m, ids=ids: ids.add(r["id"])
        )
        kept[jobs] = ids
        assert analysis.dropped is not None
        drops[jobs] = analysis.dropped.as_dict()
    assert kept[None] == kept[2] and kept[None]
    assert drops[None] == drops[2] and drops[None]["dropped_connections"] == 1
