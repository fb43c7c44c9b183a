"""Messages and TLS handshakes on every public capture, against tshark's figures.

tshark's counts come from ``tshark-figures.json`` (captures-public/README.md says how each was
made).  Messages are compared with what tshark counts for the same thing: HTTP/1.1 requests,
HTTP/2 streams, AMQP content-carrying methods (Basic.Publish 60.40, Basic.Deliver 60.60,
Basic.GetOk 60.71, Basic.Return 60.50).  Where the two disagree, ``EXCEPTIONS`` gives
wireprobe's figure and the reason it is right.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import PUBLIC, analyze_json, check_conservation

from analyzer.tls.keylog import KeyLog

ENTRIES: list[dict[str, Any]] = json.loads((PUBLIC / "tshark-figures.json").read_text())["entries"]
IDS = [f"{e['file']}+{e.get('keylog') or 'nokeys'}" for e in ENTRIES]
AMQP_MESSAGE_METHODS = ("60.40", "60.50", "60.60", "60.71")

#: (file, keylog) -> (wireprobe's messages, why tshark's figure differs)
EXCEPTIONS: dict[tuple[str, str | None], tuple[int, str]] = {
    ("wireshark/tls13-rfc8446.pcap", "wireshark/tls13-rfc8446-noearly.keys"): (
        3,
        "without the early traffic secret the 0-RTT request (GET /early) cannot be decrypted, "
        "but its response can: the exchange is counted from its response (tshark: 2 requests, "
        "3 responses)",
    ),
    ("wireshark/tls13-20-chacha20poly1305.pcap", "wireshark/tls13-20-chacha20poly1305.keys"): (
        2,
        "the plaintext is 'GET / HTTP/1.0' and a 200 response on each connection; tshark does "
        "not try HTTP on openssl s_server's port 4433, so it counts none",
    ),
    (
        "wireshark/http2_follow_multistream.pcapng",
        "wireshark/http2_follow_multistream.dsb-extracted.keys",
    ): (
        19,
        "tshark counts 24 stream ids, 5 of which (3, 5, 7, 9, 11) only ever carry PRIORITY "
        "frames: Firefox's idle dependency-tree streams, which carry no request (19 :method)",
    ),
    ("arkime/http2-nghttp2.pcap", None): (
        2,
        "tshark counts 7 stream ids: stream 1 (GET /), pushed stream 2, and 5 PRIORITY-only "
        "idle streams nghttp2 creates for its dependency tree; tshark also fails to decode the "
        "request's HEADERS+CONTINUATION (README), which wireprobe decodes",
    ),
    ("scapy/http2_h2c.pcap", None): (
        2,
        "tshark counts the HTTP/1.1 upgrade request and HTTP/2 stream 1 separately; they are one "
        "exchange (stream 1 answers the upgrade request), plus stream 3: 2 messages",
    ),
}


def _keylog(entry: dict[str, Any]) -> KeyLog:
    keylog = KeyLog()
    for name in (entry.get("keylog") or "").split("+"):
        if name:
            keylog.load(str(PUBLIC / name))
    return keylog


def _tshark_messages(figures: dict[str, Any]) -> int:
    counts = figures["counts"]
    methods = figures.get("amqp_methods", {})
    return (
        counts.get("http_requests", 0)
        + figures.get("http2_streams", 0)
        + sum(methods.get(m, 0) for m in AMQP_MESSAGE_METHODS)
    )


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_messages_and_handshakes_equal_tshark(entry: dict[str, Any]) -> None:
    result = analyze_json([PUBLIC / entry["file"]], keylog=_keylog(entry))
    check_conservation(result)
    figures = entry["with_keys"] if entry.get("keylog") else entry["without_keys"]
    key = (entry["file"], entry.get("keylog"))
    want = EXCEPTIONS[key][0] if key in EXCEPTIONS else _tshark_messages(figures)
    # tshark's figures count HTTP/2 streams; the gRPC messages inside a call's stream are
    # messages of their own here, cross-checked with tshark's grpc dissector in test_grpc.py.
    messages = [m for m in result["messages"] if m["protocol"] != "grpc"]
    assert len(messages) == want
    tls = [c["tls"] for c in result["connections"] if c["tls"]]
    assert sum(t["handshakes"] for t in tls) == figures["counts"].get("tls_hs_1", 0)
    assert sum(t["resumed_handshakes"] for t in tls) == figures.get("tls_resumed_handshakes", 0)
    if entry.get("keylog"):
        assert all(t["decrypted"] for t in tls), "every handshake decrypts with its key log"


@pytest.mark.parametrize(
    ("name", "estimated"),
    [
        ("zeek/tls13_psk_succesfull.pcap", True),  # TLS 1.3: inner padding invisible
        ("wireshark/dhe1.pcapng.gz", True),  # TLS 1.0 CBC: padding invisible
        ("wireshark/tls12-chacha20poly1305.pcap", False),  # AEAD in 1.2: fixed expansion
    ],
)
def test_record_overhead_without_keys_is_marked_estimated_where_padding_hides(
    name: str, estimated: bool
) -> None:
    result = analyze_json([PUBLIC / name])
    flags = {c["tls"]["overhead_estimated"] for c in result["connections"]}
    assert flags == {estimated}
    assert all(not c["tls"]["decrypted"] for c in result["connections"])
