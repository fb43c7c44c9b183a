"""NATS decoder: literal protocol lines, the decoder harness, bad input, a real nats-server.

Conversations are client (ORIG) / server (RESP) steps written as the NATS "Client Protocol"
document shows them.  tshark has no NATS dissector, so the second opinion on the golden is the
client's own count of what it sent and received (``analyzer.live.nats``).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from analyzer.decoding.detect import DetectingDecoder, detect
from analyzer.decoding.events import (
    CONTROL,
    FRAMING,
    OPAQUE,
    ORIG,
    PAYLOAD,
    RESP,
    SETUP,
    UNDECODED,
    MessageIds,
)
from analyzer.options import DecodeOptions
from analyzer.protocols.nats import NatsDecoder, decoder, detect_opening
from analyzer.protocols.nats.wire import BadLine, parse_line

try:
    from tests.decoder_harness import Result, Step, all_ways, run
except ModuleNotFoundError:  # pytest's default "prepend" import mode puts tests/ on sys.path
    from decoder_harness import (  # type: ignore[no-redef,import-not-found,unused-ignore]
        Result,
        Step,
        all_ways,
        run,
    )

INFO = b'INFO {"server_id":"S","version":"2.9.10","proto":1,"headers":true}\r\n'
CONNECT = b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n'
PING, PONG = b"PING\r\n", b"PONG\r\n"


def make() -> NatsDecoder:
    return NatsDecoder(MessageIds(), DecodeOptions())


def layer_of(result: Result, owner: int, layer: int) -> int:
    return int(result.owner_bytes()[(owner, layer)])


def pub(subject: bytes, body: bytes, verb: bytes = b"PUB", extra: bytes = b"") -> bytes:
    return verb + b" " + subject + b" " + extra + str(len(body)).encode() + b"\r\n" + body + b"\r\n"


def test_publish_and_deliver() -> None:
    body = b"Hello NATS!\r\nwith a CRLF inside"
    sub = b"SUB foo 1\r\n"
    publish = pub(b"foo", body)
    deliver = pub(b"foo", body, verb=b"MSG", extra=b"1 ")
    steps: list[Step] = [
        (RESP, INFO),
        (ORIG, CONNECT + PING),
        (RESP, PONG),
        (ORIG, sub + publish),
        (RESP, deliver + b"+OK\r\n"),
        (ORIG, b"UNSUB 1\r\n"),
    ]
    whole, _ = all_ways(make, steps)
    first, second = whole.started
    assert [(m.kind, m.sender, m.protocol) for m in whole.started] == [
        ("publish", ORIG, "nats"),
        ("deliver", RESP, "nats"),
    ]
    for message, wire in ((first, publish), (second, deliver)):
        assert layer_of(whole, message.message, PAYLOAD) == len(body)
        assert layer_of(whole, message.message, FRAMING) == len(wire) - len(body)
        assert whole.notes[message.message] == {"subject": "foo"}
    assert layer_of(whole, SETUP, FRAMING) == len(INFO + CONNECT)
    assert layer_of(whole, CONTROL, FRAMING) == len(PING + PONG + sub + b"+OK\r\n" + b"UNSUB 1\r\n")
    assert not whole.answered and len(whole.ended) == 2
    assert not whole.anomalies


def test_headers_are_framing_and_reply_subjects_are_read() -> None:
    headers = b"NATS/1.0\r\nBar: Baz\r\n\r\n"
    body = b"Hello NATS!"
    size = f"{len(headers)} {len(headers) + len(body)}".encode()
    hpub = b"HPUB foo INBOX.22 " + size + b"\r\n" + headers + body + b"\r\n"
    hmsg = b"HMSG foo 9 INBOX.22 " + size + b"\r\n" + headers + body + b"\r\n"
    reply = pub(b"foo", b"x", extra=b"INBOX.22 ")
    whole, _ = all_ways(make, [(RESP, INFO), (ORIG, CONNECT + hpub + reply), (RESP, hmsg)])
    one, two, three = (m.message for m in whole.started)
    assert layer_of(whole, one, PAYLOAD) == layer_of(whole, three, PAYLOAD) == len(body)
    assert layer_of(whole, one, FRAMING) == len(hpub) - len(body)
    assert layer_of(whole, two, PAYLOAD) == 1
    assert not whole.anomalies


def test_an_info_after_the_first_message_is_control() -> None:
    steps: list[Step] = [(RESP, INFO), (ORIG, CONNECT + pub(b"a", b"b")), (RESP, INFO)]
    whole, _ = all_ways(make, steps)
    assert layer_of(whole, SETUP, FRAMING) == len(INFO + CONNECT)
    assert layer_of(whole, CONTROL, FRAMING) == len(INFO)


def test_verbs_are_case_insensitive_and_tabs_separate() -> None:
    line = parse_line(b"pub\tfoo\t 5\r\n")
    assert (line.verb, line.subject, line.total_bytes, line.kind) == (b"PUB", "foo", 5, "publish")
    for bad, anomaly in [
        (b"PUB foo\r\n", "nats.bad_args"),
        (b"PUB foo x\r\n", "nats.bad_args"),
        (b"HPUB foo 9 5\r\n", "nats.bad_args"),
        (b"MSG foo 1 99999999999\r\n", "nats.bad_args"),
        (b"FOO bar\r\n", "nats.unknown_op"),
        (b"\r\n", "nats.unknown_op"),
    ]:
        with pytest.raises(BadLine) as err:
            parse_line(bad)
        assert err.value.anomaly == anomaly, bad


# ---------------------------------------------------------------- bad input


def test_garbage_is_undecoded_and_the_next_known_line_resynchronises() -> None:
    garbage = b"\x00\x01binary junk\nmore junk\r\n"
    publish = pub(b"after", b"fine")
    whole, _ = all_ways(make, [(RESP, INFO), (ORIG, CONNECT + garbage + publish)])
    assert whole.anomalies == {"nats.unknown_op": 1}
    assert layer_of(whole, UNDECODED, OPAQUE) == len(garbage)
    assert [m.kind for m in whole.started] == ["publish"]


def test_a_size_that_lies_ends_the_message_and_resynchronises() -> None:
    lie = b"PUB foo 3\r\nlonger than three\r\n"
    whole = run(make, [(RESP, INFO), (ORIG, CONNECT + lie + PING)])
    assert whole.anomalies == {"nats.bad_message_end": 1}
    [message] = whole.started
    assert layer_of(whole, message.message, PAYLOAD) == 3
    assert layer_of(whole, UNDECODED, OPAQUE) == len(b"ger than three\r\n")
    assert layer_of(whole, CONTROL, FRAMING) == len(PING)


def test_a_message_longer_than_the_stream_is_truncated() -> None:
    whole = run(make, [(RESP, INFO), (ORIG, CONNECT + b"PUB foo 1000000\r\n" + b"x" * 100)])
    assert whole.anomalies == {"nats.truncated": 1}
    [message] = whole.started
    assert layer_of(whole, message.message, PAYLOAD) == 100
    assert len(whole.ended) == 1


def test_an_endless_line_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoder, "MAX_LINE_BYTES", 64)
    dec = make()
    endless = b"PUB " + b"x" * 1000
    run(lambda: dec, [(ORIG, endless)], chunk=10)
    assert len(dec._dirs[ORIG].line) <= 64
    whole = run(make, [(ORIG, endless + b"\r\n" + PING)], chunk=30)
    assert whole.anomalies == {"nats.line_too_long": 1}
    assert layer_of(whole, UNDECODED, OPAQUE) == len(endless) + 2
    assert layer_of(whole, CONTROL, FRAMING) == len(PING)


def test_a_gap_inside_a_payload_keeps_framing() -> None:
    dec = make()
    publish = pub(b"g", b"y" * 500)
    events = dec.feed(ORIG, CONNECT + publish[:100], 1, 1.0)
    events += dec.gap(ORIG, 200, 2, 2.0)
    events += dec.feed(ORIG, publish[300:] + PING, 3, 3.0)
    events += dec.gap(ORIG, 3, 4, 4.0)
    events += dec.feed(ORIG, b"NG\r\n" + PING, 5, 5.0)
    events += dec.finish(6.0)
    names = [e.name for e in events if type(e).__name__ == "Anomaly"]
    assert names == ["nats.gap", "nats.gap"]
    ended = [e for e in events if type(e).__name__ == "MessageEnded"]
    assert len(ended) == 1


# ---------------------------------------------------------------- detection


def test_detection() -> None:
    assert detect_opening(INFO) is True and detect_opening(CONNECT) is True
    assert detect_opening(b"INF") is None and detect_opening(b"info {") is True
    assert detect_opening(b"GET / HTTP/1.1\r\n") is False
    options = DecodeOptions()
    assert detect(b"", INFO, (50000, 9999), options) == "nats"
    assert detect(b"", b"", (50000, 4222), options, final=True) == "nats"
    steps: list[Step] = [(RESP, INFO), (ORIG, CONNECT + pub(b"a", b"b"))]
    whole = run(lambda: DetectingDecoder(MessageIds(), options, (50000, 7777)), steps)
    assert whole.protocols == ["nats"] and [m.kind for m in whole.started] == ["publish"]


# ---------------------------------------------------------------- the real server

CAPTURES = Path(__file__).resolve().parents[1] / "captures"


def test_golden_from_nats_server_counts_what_the_client_did() -> None:
    """The golden's recording: 10 PUBs by nats-py, delivered back as 10 MSGs; INFO/CONNECT and
    the PING/PONG of nats-py's connect; nothing undecoded."""
    from conftest import analyze_json, check_conservation

    result = analyze_json([CAPTURES / "live-nats-natspy-nats-server.pcap"])
    check_conservation(result)
    [conn] = result["connections"]
    assert (conn["protocol"], conn["messages"], conn["anomalies"]) == ("nats", 20, [])
    assert conn["undecoded_bytes"] == 0
    kinds = [m["kind"] for m in result["messages"]]
    assert kinds.count("publish") == kinds.count("deliver") == 10
    assert {m["layers"]["payload"] for m in result["messages"]} == {200}
    assert {m["round_trips"] for m in result["messages"]} == {0.0}


def _server_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 4222), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _server_up(), reason="no nats-server on 127.0.0.1:4222")
def test_live_capture_against_nats_server(tmp_path: Path) -> None:
    from conftest import analyze_json, check_conservation

    from analyzer.live import LiveOptions, run_capture

    options = LiveOptions(
        protocol="nats", messages=4, per_connection=2, payload=50, output=tmp_path / "n.pcap"
    )
    result = run_capture(options)
    analysis = analyze_json([result.pcap])
    check_conservation(analysis)
    assert result.unclosed == () and len(result.sent) == result.expected.messages == 8
    assert analysis["summary"]["nats"]["messages"] == 8
    assert analysis["summary"]["nats"]["connections"] == 2
    for conn in analysis["connections"]:
        assert conn["anomalies"] == [] and conn["undecoded_bytes"] == 0
