"""Every public capture (captures/public): conservation, and tshark's second opinion."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import analyze_json, check_conservation, public_captures
from tshark import tcp_conversations

PUBLIC = public_captures()
IDS = [p.name for p in PUBLIC]


@pytest.mark.parametrize("path", PUBLIC, ids=IDS)
def test_conservation(path: Path) -> None:
    result = analyze_json([path])
    check_conservation(result)
    assert result["connections"], "every public capture holds TCP traffic"
    assert sum(c["packets"] for c in result["connections"]) == result["tcp_packets"]


@pytest.mark.parametrize("path", PUBLIC, ids=IDS)
def test_connections_packets_and_bytes_equal_tshark(path: Path) -> None:
    ours = analyze_json([path])["connections"]
    theirs = tcp_conversations(path)
    assert len(ours) == len(theirs), "one connection per tshark tcp.stream"
    by_pair = {
        frozenset(s["dirs"]): {ep: tuple(v) for ep, v in s["dirs"].items()} for s in theirs.values()
    }
    for conn in ours:
        expected = by_pair[frozenset((conn["orig"], conn["resp"]))]
        got = {
            conn["orig"]: (
                conn["directions"]["orig"]["packets"],
                conn["directions"]["orig"]["wire_bytes"],
            ),
            conn["resp"]: (
                conn["directions"]["resp"]["packets"],
                conn["directions"]["resp"]["wire_bytes"],
            ),
        }
        got = {ep: v for ep, v in got.items() if v[0]}
        assert got == expected, conn["id"]


#: Where tshark's retransmission flag and ours disagree, and why ours is right.
RETRANSMISSION_EXCEPTIONS = {
    # Frame 101 carries seq 208909-210272, about 110 KB ahead of the stream (a segment sent
    # early or captured out of order). tshark remembers it as the highest sequence seen and then
    # flags every later in-order segment below it (frames 137-151, 64061 bytes) as a "suspected
    # retransmission" by its RTO heuristic. Those bytes were never on the wire before, so they
    # are not retransmissions: wireprobe holds frame 101 until the hole before it fills.
    "http2_follow_multistream.pcapng": 0,
}


@pytest.mark.parametrize("path", PUBLIC, ids=IDS)
def test_retransmitted_bytes_equal_tshark(path: Path) -> None:
    ours = sum(c["retransmitted_bytes"] for c in analyze_json([path])["connections"])
    theirs = sum(s["retransmitted"] for s in tcp_conversations(path).values())
    assert ours == RETRANSMISSION_EXCEPTIONS.get(path.name, theirs)


#: Fields that depend on application decoding, which --transport-only skips by design.
DECODED_FIELDS = (
    "protocol",
    "messages",
    "tls",
    "setup_round_trips",
    "round_trips",
    "time_to_first_message_s",
    "anomalies",
)


@pytest.mark.parametrize("path", PUBLIC, ids=IDS)
def test_transport_only_gives_the_opaque_decoders_figures(path: Path, monkeypatch: Any) -> None:
    """The --transport-only short cut charges exactly what decoding everything as opaque does."""
    from analyzer.decoding import detect
    from analyzer.options import AnalyzeOptions
    from analyzer.pipeline import analyze

    def connections(options: AnalyzeOptions) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        analyze([str(path)], options, on_record=lambda r, m: out.append(r))
        return [{k: v for k, v in r.items() if k not in DECODED_FIELDS} for r in out]

    fast = connections(AnalyzeOptions(transport_only=True))
    # The same table of protocols with no decoder behind any: every connection is opaque.
    opaque = detect.Registry([replace(spec, decoder=None) for spec in detect.REGISTRY.specs])
    monkeypatch.setattr(detect, "REGISTRY", opaque)
    assert fast == connections(AnalyzeOptions())
