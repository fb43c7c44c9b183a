"""The WebSocket echo scenario: ground truth, the analyzer against it, tshark's dissector.

``wireprobe generate --protocol websocket`` writes an Upgrade and N client messages, each echoed;
the analyzer's JSON must equal the truth field by field, and tshark must see the frames the truth
says were sent.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from test_synth import _analyzer_vs_truth, fields, gen, messages, written

from analyzer.synth.websocket import ACCEPT_GUID, CLIENT_KEY, accept_value

CASES: list[dict[str, Any]] = [
    {"protocol": "websocket", "tls": tls, "messages": 3, "payload": payload}
    for tls in ("off", "1.3")
    for payload in (0, 100, 100_000)
] + [
    {"protocol": "websocket", "messages": 4, "per_connection": 2, "payload": 200},
    {"protocol": "websocket", "messages": 8, "payload": 3000, "loss": 0.1, "seed": 5},
]


@pytest.mark.parametrize("kwargs", CASES, ids=lambda k: "-".join(map(str, k.values())))
def test_analyzer_equals_the_truth(kwargs: dict[str, Any], tmp_path: Path) -> None:
    diffs = _analyzer_vs_truth(gen(**kwargs), tmp_path)
    assert not diffs, "analyzer disagrees with the ground truth:\n" + "\n".join(diffs[:30])


def test_the_accept_value_is_rfc_6455s_example() -> None:
    """Section 1.3 works this key through to its accept value."""
    assert ACCEPT_GUID.startswith(b"258EAFA5")
    assert accept_value(CLIENT_KEY) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_echo_messages_and_round_trips() -> None:
    got = messages(gen(protocol="websocket", messages=3, payload=50))
    kinds = [m["kind"] for m in got]
    assert kinds == ["exchange"] + ["client_to_server", "server_to_client"] * 3
    assert [m["round_trips"] for m in got] == [1.0] + [0.0] * 6  # only the Upgrade waits
    assert {m["layers"]["payload"] for m in got[1:]} == {50}


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_sees_the_frames_the_truth_sent(tmp_path: Path) -> None:
    pcap, keys = written(gen(protocol="websocket", messages=4, payload=100), tmp_path)
    rows = fields(pcap, keys, "websocket.opcode", display="websocket")
    opcodes = Counter(int(t) for row in rows for t in row[0].split(","))
    assert opcodes == Counter({2: 8, 8: 2})  # binary frames both ways, a close each way


def test_live_websocket_echo_agrees_with_the_generator(tmp_path: Path) -> None:
    """The websockets client and server on loopback: what was asked, and the generator's bytes
    per message but for the server's Upgrade headers (its own Date and Server fields)."""
    from conftest import analyze_json, check_conservation

    from analyzer.live import LiveOptions, run_capture

    options: dict[str, Any] = {"messages": 4, "per_connection": 2, "payload": 300}
    result = run_capture(LiveOptions(protocol="websocket", output=tmp_path / "ws.pcap", **options))
    live = analyze_json([result.pcap])
    check_conservation(live)
    assert result.unclosed == () and result.dropped_packets == 0
    assert live["summary"]["websocket"]["messages"] == result.expected.messages == 2 * 4 + 2
    for conn in live["connections"]:
        assert conn["anomalies"] == [] and conn["undecoded_bytes"] == 0
    synth = [m for m in messages(gen(protocol="websocket", **options)) if m["kind"] != "exchange"]
    frames = [m for m in live["messages"] if m["kind"] != "exchange"]
    assert [m["kind"] for m in frames] == [m["kind"] for m in synth]
    for got, want in zip(frames, synth, strict=True):
        for layer in ("framing", "payload"):
            assert got["layers"][layer] == want["layers"][layer], layer


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_live_golden_counts_what_tshark_dissects() -> None:
    from conftest import analyze_json, check_conservation

    captures = Path(__file__).resolve().parents[1] / "captures"
    capture = captures / "live-websocket-echo-websockets.pcap"
    rows = fields(capture, None, "websocket.opcode", display="websocket")
    opcodes = Counter(int(t) for row in rows for t in row[0].split(","))
    result = analyze_json([capture])
    check_conservation(result)
    [conn] = result["connections"]
    data_messages = conn["messages"] - 1  # the Upgrade exchange
    assert data_messages == opcodes[2] == 20 and opcodes[8] == 2  # binary frames, two closes
    assert conn["anomalies"] == [] and conn["undecoded_bytes"] == 0
