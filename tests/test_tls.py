"""TLS records and handshakes (analyzer/tls/decoder.py), told as conversations.

Three kinds of evidence: literal records built here (every contract rule, cut at every offset),
real captures from captures/public fed per direction as tshark's ``follow,tcp,raw``
gives them (compared with the README's TShark figures), and live TLS made in memory by Python's
``ssl`` module (OpenSSL) with a key log, decrypted back to the bytes that were sent.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import ssl
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.x509.oid import NameOID

from analyzer.decoding.events import (
    CONTROL,
    FRAMING,
    OPAQUE,
    PAYLOAD,
    SETUP,
    TEARDOWN,
    TLS,
    UNDECODED,
    Event,
    MessageIds,
    MessageStarted,
    SetupEnded,
    Span,
    StreamDecoder,
)
from analyzer.errors import DecodeError
from analyzer.options import DecodeOptions
from analyzer.tls import decoder as tls
from analyzer.tls.keylog import KeyLog

try:
    from tests.decoder_harness import Result, Step, all_ways, check, run
except ModuleNotFoundError:  # pytest's default "prepend" import mode puts tests/ on sys.path
    from decoder_harness import (  # type: ignore[no-redef,import-not-found]
        Result,
        Step,
        all_ways,
        check,
        run,
    )

CAPTURES = Path(__file__).resolve().parents[1] / "captures" / "public"
ORIG, RESP = 0, 1

# --- literal records ------------------------------------------------------------------------


def record(ctype: int, body: bytes, version: int = 0x0303) -> bytes:
    return bytes([ctype]) + version.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


def handshake(mtype: int, body: bytes) -> bytes:
    return bytes([mtype]) + len(body).to_bytes(3, "big") + body


def ext(kind: int, body: bytes) -> bytes:
    return kind.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


def vec(size: int, body: bytes) -> bytes:
    return len(body).to_bytes(size, "big") + body


def client_hello(
    *,
    random: bytes = b"\x11" * 32,
    sni: str | None = "example.test",
    alpn: Sequence[str] = (),
    versions: Sequence[int] = (),
    psk: bool = False,
    early: bool = False,
) -> bytes:
    extensions = b""
    if sni is not None:
        extensions += ext(0, vec(2, b"\x00" + vec(2, sni.encode())))
    if alpn:
        extensions += ext(16, vec(2, b"".join(vec(1, a.encode()) for a in alpn)))
    if versions:
        extensions += ext(43, vec(1, b"".join(v.to_bytes(2, "big") for v in versions)))
    if early:
        extensions += ext(42, b"")
    if psk:  # pre_shared_key must be last (RFC 8446 4.2.11)
        extensions += ext(
            41, vec(2, vec(2, b"id") + b"\x00\x00\x00\x00") + vec(2, vec(1, b"x" * 32))
        )
    suites = vec(2, b"\x13\x01\xc0\x2f\x0a\x0a")
    body = b"\x03\x03" + random + vec(1, b"") + suites + vec(1, b"\x00") + vec(2, extensions)
    return handshake(1, body)


def server_hello(
    *,
    suite: int = 0xC02F,
    version: int | None = None,
    alpn: str | None = None,
    psk: bool = False,
    random: bytes = b"\x22" * 32,
) -> bytes:
    extensions = b""
    if version is not None:
        extensions += ext(43, version.to_bytes(2, "big"))
    if alpn is not None:
        extensions += ext(16, vec(2, vec(1, alpn.encode())))
    if psk:
        extensions += ext(41, b"\x00\x00")
    body = b"\x03\x03" + random + vec(1, b"") + suite.to_bytes(2, "big") + b"\x00"
    return handshake(2, body + vec(2, extensions))


HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
CCS = record(20, b"\x01")
# A TLS 1.2 AES-GCM record body without keys: 8-byte explicit nonce + plaintext + 16-byte tag.
GCM_OVERHEAD = 5 + 8 + 16


def make() -> StreamDecoder:
    return tls.TlsDecoder(MessageIds(), DecodeOptions())


def tls12_full(app_len: int = 30, alpn: str | None = None) -> list[Step]:
    """ClientHello; ServerHello..ServerHelloDone; client key exchange + CCS + Finished; server
    CCS + Finished; one application data record each way; the client's close_notify."""
    return [
        (ORIG, record(22, client_hello(alpn=["h2", "http/1.1"] if alpn else ()), 0x0301)),
        (
            RESP,
            record(22, server_hello(alpn=alpn) + handshake(11, b"\x00" * 40) + handshake(14, b"")),
        ),
        (ORIG, record(22, handshake(16, b"\x00" * 33)) + CCS + record(22, b"\x99" * 40)),
        (RESP, CCS + record(22, b"\x98" * 40)),
        (ORIG, record(23, b"\x97" * app_len)),
        (RESP, record(23, b"\x96" * (app_len + 10))),
        (ORIG, record(21, b"\x95" * 26)),
    ]


class TestRecordsWithoutKeys:
    def test_a_tls12_full_handshake_is_setup_and_its_data_undecoded(self) -> None:
        whole, cuts = all_ways(make, tls12_full())
        assert whole.protocols == ["tls"]
        [hs] = whole.handshakes
        assert (hs.version, hs.resumed, hs.cipher_suite, hs.sni) == (
            "1.2",
            False,
            0xC02F,
            "example.test",
        )
        assert not hs.decrypted and not hs.early_data
        app = [len(d) for _, d in tls12_full()[4:6]]
        setup = sum(len(d) for _, d in tls12_full()[:4])
        assert whole.layer_bytes(SETUP) == {TLS: setup}
        # Header + nonce + tag of each application record is TLS; the rest is what nobody read.
        assert whole.layer_bytes(UNDECODED) == {
            TLS: 2 * GCM_OVERHEAD,
            OPAQUE: sum(app) - 2 * GCM_OVERHEAD,
        }
        # An encrypted alert is taken for close_notify.
        assert whole.layer_bytes(TEARDOWN) == {TLS: 31}
        assert not whole.anomalies
        assert [e for e in whole.events if isinstance(e, SetupEnded)] == [SetupEnded(5)]
        # Cut anywhere, a handshake is reported once the ClientHello is whole, never before.
        hello_len = len(tls12_full()[0][1])
        assert [len(r.handshakes) for r in cuts[: hello_len + 1]] == [0] * hello_len + [1]

    def test_a_record_cut_short_is_opaque_and_named(self) -> None:
        steps = tls12_full()
        cut = run(make, steps, cut=len(steps[0][1]) + 7)
        assert cut.anomalies == {"tls.truncated_record": 1}
        assert cut.layer_bytes(UNDECODED) == {OPAQUE: 7}
        assert cut.layer_bytes(SETUP) == {TLS: len(steps[0][1])}
        # The ClientHello alone still counts as a handshake (DESIGN.md 4: ClientHello seen).
        assert [h.version for h in cut.handshakes] == ["1.2"]

    def test_bytes_arriving_one_at_a_time_change_nothing(self) -> None:
        whole = run(make, tls12_full())
        bytewise = run(make, tls12_full(), chunk=1)
        assert bytewise.owner_bytes() == whole.owner_bytes()
        assert bytewise.handshakes == whole.handshakes

    def test_resumption_is_a_server_flight_without_server_hello_done(self) -> None:
        steps = [
            (ORIG, record(22, client_hello())),
            (
                RESP,
                record(22, server_hello() + handshake(4, b"\x00" * 20))
                + CCS
                + record(22, b"\x01" * 40),
            ),
            (ORIG, CCS + record(22, b"\x02" * 40)),
            (ORIG, record(23, b"\x03" * 50)),
        ]
        whole, _ = all_ways(make, steps)
        [hs] = whole.handshakes
        assert hs.resumed and hs.version == "1.2"

    def test_alpn_names_the_inner_protocol_even_without_keys(self) -> None:
        whole = run(make, tls12_full(alpn="h2"))
        assert whole.protocols == ["tls", "http2"]
        assert whole.handshakes[0].alpn == "h2"

    def test_tls13_psk_resumption_with_early_data_offered(self) -> None:
        steps = [
            (
                ORIG,
                record(
                    22,
                    client_hello(versions=[0x0A0A, 0x0304, 0x0303], psk=True, early=True),
                    0x0301,
                ),
            ),
            (ORIG, CCS + record(23, b"\x05" * 40)),  # 0-RTT data
            (RESP, record(22, server_hello(suite=0x1301, version=0x0304, psk=True)) + CCS),
            (RESP, record(23, b"\x06" * 60)),  # EncryptedExtensions + Finished
            (ORIG, record(23, b"\x07" * 21) + record(23, b"\x08" * 53)),  # EndOfEarlyData, Finished
            (ORIG, record(23, b"\x09" * 100)),
            (RESP, record(23, b"\x0a" * 200)),
        ]
        whole, _ = all_ways(make, steps)
        [hs] = whole.handshakes
        assert (hs.version, hs.resumed, hs.cipher_suite) == ("1.3", True, 0x1301)
        # Without keys, early data accepted is inferred from offer + PSK (module docstring).
        assert hs.early_data
        setup = sum(len(d) for _, d in steps[:5]) - (5 + 40)
        assert whole.layer_bytes(SETUP) == {TLS: setup}
        # 0-RTT and the two application records: header + 16-byte tag + inner type byte each.
        assert whole.layer_bytes(UNDECODED) == {TLS: 3 * 22, OPAQUE: 40 + 100 + 200 - 3 * 17}
        assert [e.ordinal for e in whole.events if isinstance(e, SetupEnded)] == [2]

    def test_hello_retry_request_does_not_start_a_second_handshake(self) -> None:
        steps = [
            (ORIG, record(22, client_hello(versions=[0x0304]))),
            (RESP, record(22, server_hello(suite=0x1302, version=0x0304, random=HRR_RANDOM)) + CCS),
            (ORIG, CCS + record(22, client_hello(versions=[0x0304]))),
            (
                RESP,
                record(22, server_hello(suite=0x1302, version=0x0304)) + record(23, b"\x01" * 90),
            ),
            (ORIG, record(23, b"\x02" * 70)),
            (ORIG, record(23, b"\x03" * 80)),
        ]
        whole, _ = all_ways(make, steps)
        [hs] = whole.handshakes
        assert (hs.version, hs.resumed, hs.cipher_suite) == ("1.3", False, 0x1302)
        # The client's first protected record is its Finished: setup.  The next one is data.
        assert whole.layer_bytes(UNDECODED) == {TLS: 22, OPAQUE: 80 - 17}

    def test_an_encrypted_renegotiation_is_setup_but_uncounted_without_keys(self) -> None:
        # After ChangeCipherSpec a handshake record is protected: its ClientHello is unreadable
        # (tls-renegotiation.pcap shows 1 handshake of 5 without keys, as TShark does).
        renegotiation = record(22, client_hello(random=b"\x33" * 32))
        whole = run(make, [*tls12_full()[:4], (ORIG, renegotiation)])
        assert len(whole.handshakes) == 1
        setup = sum(len(d) for _, d in tls12_full()[:4]) + len(renegotiation)
        assert whole.layer_bytes(SETUP) == {TLS: setup}

    def test_garbage_is_not_tls(self) -> None:
        steps = [(ORIG, b"GET / HTTP/1.1\r\n\r\n"), (RESP, b"\x16\x03\x03\xff\xff" + b"x" * 20)]
        whole, _ = all_ways(make, steps)
        assert whole.anomalies == {"tls.not_tls": 2}
        assert whole.handshakes == []
        assert whole.owner_bytes() == {(UNDECODED, OPAQUE): sum(len(d) for _, d in steps)}

    def test_an_oversized_record_length_stops_framing(self) -> None:
        steps = [*tls12_full()[:1], (ORIG, b"\x17\x03\x03\x48\x01" + b"z" * 30)]
        whole = run(make, steps)
        assert whole.anomalies == {"tls.bad_record": 1}
        assert whole.layer_bytes(UNDECODED) == {OPAQUE: 35}

    def test_a_gap_makes_the_rest_of_that_direction_opaque(self) -> None:
        decoder = make()
        events: list[Event] = []
        steps = tls12_full()
        for i, (d, data) in enumerate(steps[:4]):
            events += decoder.feed(d, data, i, float(i))
        events += decoder.gap(ORIG, 100, 5, 5.0)
        events += decoder.feed(ORIG, steps[4][1], 6, 6.0)
        events += decoder.feed(RESP, steps[5][1], 7, 7.0)
        events += decoder.finish(8.0)
        result = Result(events=events)
        assert result.anomalies == {"tls.gap": 1}
        orig_after = [s for s in result.spans if s.direction == ORIG and s.start >= 100]
        assert {(s.owner, s.layer) for s in orig_after} == {(UNDECODED, OPAQUE)}
        # The other direction still frames its records.
        assert result.layer_bytes(UNDECODED)[TLS] == GCM_OVERHEAD

    def test_heartbeat_and_warning_alerts_are_control(self) -> None:
        steps = [
            (ORIG, record(22, client_hello())),
            (ORIG, record(24, b"\x01\x00\x10" + b"h" * 16)),
            (RESP, record(21, b"\x01\x5a")),  # user_canceled, warning
            (RESP, record(21, b"\x02\x28")),  # handshake_failure, fatal
        ]
        whole, _ = all_ways(make, steps)
        assert whole.layer_bytes(CONTROL) == {TLS: 24 + 7 + 7}
        assert whole.anomalies == {"tls.fatal_alert": 1}


def test_a_huge_certificate_chain_is_counted_not_kept() -> None:
    """Handshake messages past MAX_HANDSHAKE_BYTES are skipped (bounded memory), not misread."""
    chain = handshake(11, b"\xcc" * (tls.MAX_HANDSHAKE_BYTES + 1000)) + handshake(14, b"")
    records = b"".join(record(22, chain[i : i + 2**14]) for i in range(0, len(chain), 2**14))
    steps = [(ORIG, record(22, client_hello())), (RESP, record(22, server_hello()) + records)]
    whole = run(make, steps, chunk=1500)
    assert whole.anomalies == {"tls.handshake_too_long": 1}
    [hs] = whole.handshakes
    assert not hs.resumed  # ServerHelloDone after the skipped chain was still found
    assert whole.layer_bytes(SETUP) == {TLS: sum(len(d) for _, d in steps)}


def test_early_data_past_the_hold_bound_goes_opaque() -> None:
    early = [(ORIG, record(23, b"\x05" * 2**14)) for _ in range(tls.MAX_HELD_BYTES // 2**14 + 2)]
    steps = [
        (ORIG, record(22, client_hello(versions=[0x0304], psk=True, early=True))),
        *early,
        (RESP, record(22, server_hello(suite=0x1301, version=0x0304, psk=True))),
        (RESP, record(23, b"\x06" * 60)),
    ]
    whole = run(make, steps)
    assert not whole.anomalies
    # The records released when the bound overflowed came before any suite was known: all but
    # their header is opaque.  The last one waited for the ServerHello: its tag and type are TLS.
    released = tls.MAX_HELD_BYTES // 2**14 + 1
    assert whole.layer_bytes(UNDECODED)[OPAQUE] == released * 2**14 + (2**14 - 17)
    assert whole.handshakes[0].resumed


def test_version_names() -> None:
    assert [tls.version_name(v) for v in (0x0300, 0x0301, 0x0302, 0x0303, 0x0304)] == [
        "SSL 3.0",
        "1.0",
        "1.1",
        "1.2",
        "1.3",
    ]
    assert tls.version_name(0x7F14) == "draft-0x7f14"
    assert tls.version_name(0x0305) == "0x0305"


def test_hello_parsers_reject_truncated_bodies() -> None:
    body = client_hello(alpn=["h2"])[4:]
    hello = tls.parse_client_hello(body)
    assert hello.alpn == ("h2",) and hello.sni == "example.test"
    assert hello.cipher_suites == (0x1301, 0xC02F)  # GREASE dropped
    # Cut anywhere, it fails, except right after compression_methods: extensions are optional.
    no_extensions = 2 + 32 + 1 + 2 + 6 + 2
    parsed = []
    for n in range(len(body)):
        try:
            tls.parse_client_hello(body[:n])
            parsed.append(n)
        except DecodeError as err:
            assert err.anomaly == "tls.bad_handshake"
    assert parsed == [no_extensions]


# --- a recording inner decoder --------------------------------------------------------------


class Recorder:
    """Stands in for the plaintext decoder: keeps what it is fed, spans it all as undecoded."""

    instances: ClassVar[list[Recorder]] = []

    def __init__(self, protocol: str | None) -> None:
        self.protocol = protocol
        self.data = [bytearray(), bytearray()]
        Recorder.instances.append(self)

    def feed(self, direction: int, data: bytes, ordinal: int, ts: float) -> list[Event]:
        start = len(self.data[direction])
        self.data[direction] += data
        return [Span(direction, start, start + len(data), UNDECODED, OPAQUE)]

    def gap(self, direction: int, length: int, ordinal: int, ts: float) -> list[Event]:
        return []

    def eof(self, direction: int, ordinal: int, ts: float) -> list[Event]:
        return []

    def finish(self, ts: float) -> list[Event]:
        return []


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Recorder]]:
    Recorder.instances = []

    def factory(
        ids: MessageIds, options: DecodeOptions, ports: tuple[int, int], protocol: str | None
    ) -> StreamDecoder:
        return Recorder(protocol)

    monkeypatch.setattr(tls, "_INNER_FACTORY", factory)
    yield Recorder


def feed_all(steps: Sequence[Step], keylog: KeyLog | None) -> Result:
    decoder = tls.TlsDecoder(MessageIds(), DecodeOptions(keylog=keylog), ports=(50000, 443))
    result = Result(events=[])
    for ordinal, (direction, data) in enumerate(steps, 1):
        result.events += decoder.feed(direction, data, ordinal, float(ordinal))
        result.fed[direction] += len(data)
    for direction in (ORIG, RESP):
        result.events += decoder.eof(direction, len(steps), float(len(steps)))
    result.events += decoder.finish(float(len(steps) + 1))
    check(result)
    return result


# --- real captures ----------------------------------------------------------------------------


@functools.cache
def follow(name: str, stream: int, options: tuple[str, ...] = ()) -> tuple[Step, ...]:
    """Each direction's TCP payload in order, as ``tshark -z follow,tcp,raw`` gives it (node 0,
    the side that sent first, is the originator; the other side's lines start with a tab)."""
    out = subprocess.run(
        ["tshark", "-r", str(CAPTURES / name), *options, "-q", "-z", f"follow,tcp,raw,{stream}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    body = out.split("=" * 67)[1]
    steps: list[Step] = []
    for line in body.splitlines():
        text = line.strip()
        if not text or text.startswith(("Follow:", "Filter:", "Node ")):
            continue
        steps.append((RESP if line.startswith("\t") else ORIG, bytes.fromhex(text)))
    return tuple(steps)


def keylog_of(*names: str) -> KeyLog:
    keys = KeyLog()
    for name in names:
        keys.load(str(CAPTURES / name))
    return keys


OOO = ("-o", "tcp.reassemble_out_of_order:TRUE")

W = "wireshark/"
TLS13_KEYS = W + "tls13-rfc8446.keys"


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One TLS connection of a public capture and what the README's TShark figures say."""

    capture: str
    stream: int = 0
    #: tshark options for follow (out-of-order reassembly)
    options: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    #: (version, resumed) per handshake, with keys
    handshakes: tuple[tuple[str, bool], ...] = (("1.2", False),)
    sni: str | None = None
    #: ALPN as known with keys
    alpn: str | None = None
    #: decrypted bytes (orig, resp); None when no keys exist
    plain: tuple[int, int] | None = None
    #: HTTP requests TShark finds with keys (None: see the README; not asserted here)
    requests: int | None = 1

    def __str__(self) -> str:
        return f"{Path(self.capture).name}:{self.stream}"


CASES = [
    Case(capture=W + "tls13-rfc8446.pcap", keys=(W + "tls13-rfc8446.keys",),
         handshakes=(("1.3", False),), plain=(23, 117)),
    Case(capture=W + "tls13-rfc8446.pcap", stream=1, keys=(W + "tls13-rfc8446.keys",),
         handshakes=(("1.3", True),), plain=(23 + 24, 237), requests=2),
    Case(capture=W + "tls12-dsb.pcapng", keys=(W + "tls12-dsb-1.keys", W + "tls12-dsb-2.keys"),
         sni="example.com", alpn="http/1.1", plain=(76, 338)),
    Case(capture=W + "tls12-dsb.pcapng", stream=1, keys=(W + "tls12-dsb-1.keys",
         W + "tls12-dsb-2.keys"), sni="example.net", alpn="http/1.1", plain=(76, 338)),
    Case(capture=W + "tls13-20-chacha20poly1305.pcap", keys=(W + "tls13-20-chacha20poly1305.keys",),
         handshakes=(("draft-0x7f14", False),), sni="10.42.0.243", plain=(16, 2608),
         requests=None),
    Case(capture=W + "tls13-20-chacha20poly1305.pcap", stream=1,
         keys=(W + "tls13-20-chacha20poly1305.keys",),
         handshakes=(("draft-0x7f14", False),), sni="10.42.0.243", plain=(16, 2608),
         requests=None),
    Case(capture=W + "dhe1.pcapng.gz", keys=(W + "dhe1_keylog.dat",),
         handshakes=(("1.0", True),), plain=(19, 0), requests=None),
    Case(capture=W + "tls-renegotiation.pcap",
         keys=(W + "tls-renegotiation.derived-by-tshark.keys",),
         handshakes=(("1.2", False),) * 3 + (("1.2", True),) * 2, plain=(86, 2218)),
    Case(capture=W + "http2-data-reassembly.pcap", keys=(W + "http2-data-reassembly.keys",),
         alpn="h2", plain=(120, 76224)),
    Case(capture=W + "http2-brotli.pcapng", keys=(W + "http2-brotli.dsb-extracted.keys",),
         alpn="h2", plain=(124, 250)),
    # README: 89959 B s->c, measured by TShark without out-of-order reassembly; this stream has a
    # segment captured far ahead of its place, and TShark with -o tcp.reassemble_out_of_order:TRUE
    # decrypts 210618 B, as we do (every record authenticates, so none is duplicated or lost).
    Case(capture=W + "http2_follow_multistream.pcapng", options=OOO,
         keys=(W + "http2_follow_multistream.dsb-extracted.keys",),
         sni="www.mozilla.org", alpn="h2", plain=(2183, 210618), requests=19),
    Case(capture=W + "challenge01_ooo_stream.pcapng.gz", options=OOO,
         keys=(W + "challenge01_ooo_stream.dsb-extracted.keys",), handshakes=(("1.3", True),),
         sni="25th.syn-bit.nl", alpn="http/1.1", plain=(5122, 1470678), requests=12),
    Case(capture="scapy/tls_tcp_frag_withnss.pcap.gz", keys=("scapy/tls_tcp_frag_withnss.keys",),
         sni="httpbin.org", plain=(159, 282)),
    Case(capture="zeek/tls13_psk_succesfull.pcap", handshakes=(("1.3", True),), requests=None),
    Case(capture="arkime/tls-client-sessionid.pcap", handshakes=(("1.0", True),), sni="bl.a.im",
         requests=None),
]  # fmt: skip
CHACHA_SUITES = list(range(0xCCA8, 0xCCAF))


def owned(result: Result, direction: int, owner: int) -> int:
    """Bytes of ``direction`` charged to ``owner``."""
    return sum(
        s.end - s.start for s in result.spans if (s.direction, s.owner) == (direction, owner)
    )


def versions(result: Result) -> list[tuple[str, bool]]:
    return [(h.version, h.resumed) for h in result.handshakes]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_capture_with_keys(case: Case, recorder: type[Recorder]) -> None:
    keys = keylog_of(*case.keys) if case.keys else None
    result = feed_all(follow(case.capture, case.stream, case.options), keys)
    assert versions(result) == list(case.handshakes)
    assert result.handshakes[0].sni == case.sni
    assert result.handshakes[0].alpn == case.alpn
    assert not result.anomalies
    if case.plain is None:
        assert not recorder.instances
        return
    assert all(h.decrypted for h in result.handshakes)
    [inner] = recorder.instances
    assert (len(inner.data[ORIG]), len(inner.data[RESP])) == case.plain
    assert inner.protocol == tls.ALPN_PROTOCOLS.get(case.alpn or "")
    # Every byte is charged: handshake to setup, the decrypted records' overhead to the owner of
    # their plaintext (here the recorder's undecoded), nothing opaque but the plaintext itself.
    assert result.layer_bytes(UNDECODED)[OPAQUE] == sum(case.plain)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_capture_without_keys(case: Case, recorder: type[Recorder]) -> None:
    expected = list(case.handshakes)
    if "renegotiation" in case.capture:
        expected = expected[:1]  # the renegotiations travel encrypted
    result = feed_all(follow(case.capture, case.stream, case.options), None)
    assert versions(result) == expected
    [first, *_] = result.handshakes
    assert first.sni == case.sni
    assert not first.decrypted
    # ALPN is in the clear in TLS <= 1.2 only (TLS 1.3 moves it into EncryptedExtensions).
    assert first.alpn == (case.alpn if first.version == "1.2" else None)
    assert not result.anomalies
    assert not recorder.instances
    assert len([e for e in result.events if isinstance(e, SetupEnded)]) == 1


def test_tls13_early_data_without_its_key_is_skipped(recorder: type[Recorder]) -> None:
    """README: with the noearly key log TShark decrypts c->s 23+24 bytes: GET /early is lost."""
    keys = keylog_of("wireshark/tls13-rfc8446-noearly.keys")
    result = feed_all(follow("wireshark/tls13-rfc8446.pcap", 1), keys)
    [inner] = recorder.instances
    assert bytes(inner.data[ORIG]) == b"GET /second HTTP/1.1\r\n\r\n"
    assert len(inner.data[RESP]) == 117 + 120
    assert not result.anomalies
    [hs] = result.handshakes
    assert hs.resumed and hs.early_data  # EncryptedExtensions, decrypted, says accepted
    # The unreadable record just before the Finished was EndOfEarlyData: setup, as with all keys.
    full = feed_all(follow("wireshark/tls13-rfc8446.pcap", 1), keylog_of(TLS13_KEYS))
    assert owned(result, ORIG, SETUP) == owned(full, ORIG, SETUP)
    assert owned(result, ORIG, UNDECODED) == owned(full, ORIG, UNDECODED)


def test_tls13_early_data_with_its_key_reaches_the_inner_decoder(recorder: type[Recorder]) -> None:
    result = feed_all(
        follow("wireshark/tls13-rfc8446.pcap", 1), keylog_of("wireshark/tls13-rfc8446.keys")
    )
    [inner] = recorder.instances
    assert bytes(inner.data[ORIG]) == b"GET /early HTTP/1.1\r\n\r\nGET /second HTTP/1.1\r\n\r\n"
    assert result.handshakes[0].early_data


@pytest.mark.parametrize("stream", range(7))
def test_chacha20_suites(stream: int, recorder: type[Recorder]) -> None:
    """README: seven connections, one per suite 0xcca8..0xccae, 35 B c->s each, 29493 B in all."""
    keys = keylog_of("wireshark/tls12-chacha20poly1305.keys")
    result = feed_all(follow("wireshark/tls12-chacha20poly1305.pcap", stream), keys)
    [hs] = result.handshakes
    assert hs.cipher_suite in CHACHA_SUITES and not hs.resumed and hs.decrypted
    [inner] = recorder.instances
    assert bytes(inner.data[ORIG]) == b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    assert inner.data[RESP].startswith(b"HTTP/1.0 200 ok\r\n")
    assert not result.anomalies


def test_chacha20_totals_match_tshark(recorder: type[Recorder]) -> None:
    keys = keylog_of("wireshark/tls12-chacha20poly1305.keys")
    suites = set()
    for stream in range(7):
        suites.add(
            feed_all(follow("wireshark/tls12-chacha20poly1305.pcap", stream), keys)
            .handshakes[0]
            .cipher_suite
        )
    assert suites == set(CHACHA_SUITES)
    assert sum(len(r.data[ORIG]) + len(r.data[RESP]) for r in recorder.instances) == 29493


@pytest.mark.parametrize("case", [c for c in CASES if c.requests is not None], ids=str)
def test_the_real_inner_decoders_find_the_requests(case: Case) -> None:
    """With the real DetectingDecoder inside: the contract holds on the translated spans, the
    protocol comes from ALPN or content, and the HTTP decoders see TShark's requests."""
    keys = keylog_of(*case.keys)
    result = feed_all(follow(case.capture, case.stream, case.options), keys)
    assert result.protocols[0] == "tls"
    assert result.protocols[-1] == ("http2" if case.alpn == "h2" else "http1")
    assert len(result.started) == case.requests
    assert len(result.answered) == case.requests
    # Setup is the handshake (TLS) and HTTP/2's preface and SETTINGS (framing); every message
    # pays TLS bytes for its share of its records' overhead.
    assert set(result.layer_bytes(SETUP)) <= {TLS, FRAMING}
    for message in result.started:
        assert result.layer_bytes(message.message)[TLS] > 0


def test_cut_anywhere_with_keys(recorder: type[Recorder]) -> None:
    """0-RTT held for the ServerHello, trial decryption and the inner decoder, cut at every byte
    (and fed byte by byte): the contract holds, nothing raises, no anomaly but a cut record."""
    steps = list(follow("wireshark/tls13-rfc8446.pcap", 1))
    keys = keylog_of("wireshark/tls13-rfc8446.keys")

    def keyed() -> StreamDecoder:
        return tls.TlsDecoder(MessageIds(), DecodeOptions(keylog=keys))

    whole, cuts = all_ways(keyed, steps)
    assert versions(whole) == [("1.3", True)]
    for cut in cuts:
        assert set(cut.anomalies) <= {"tls.truncated_record"}


def test_a_wrong_key_is_an_anomaly_not_an_exception(recorder: type[Recorder]) -> None:
    steps = follow("wireshark/tls12-dsb.pcapng", 0)
    text = (CAPTURES / "wireshark/tls12-dsb-1.keys").read_text()
    line = next(x for x in text.splitlines() if x.startswith("CLIENT_RANDOM"))
    label, random, secret = line.split()
    keys = KeyLog()
    keys.add_text(f"{label} {random} {'00' * 48}\n")
    result = feed_all(steps, keys)
    assert result.anomalies == {"tls.decrypt_failed": 2}  # each side's Finished
    assert not recorder.instances
    # Nothing derived from the secret shows in what the decoder said.
    assert secret.lower() not in repr(result.events).lower()


# --- TLS 1.3 sealed here: KeyUpdate, padding, post-handshake messages -----------------------


def expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """RFC 8446 7.1 HKDF-Expand-Label with an empty context (SHA-256), written independently."""
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    return HKDFExpand(hashes.SHA256(), length, info).derive(secret)


class Sealer:
    """Protects records as a TLS 1.3 peer would with one traffic secret (RFC 8446 5.2-5.3)."""

    def __init__(self, secret: bytes) -> None:
        self.aead = AESGCM(expand_label(secret, b"key", 16))
        self.iv = expand_label(secret, b"iv", 12)
        self.seq = 0

    def seal(self, real_type: int, content: bytes, padding: int = 0) -> bytes:
        inner = content + bytes([real_type]) + b"\x00" * padding
        header = b"\x17\x03\x03" + (len(inner) + 16).to_bytes(2, "big")
        nonce = bytes(a ^ b for a, b in zip(self.iv, self.seq.to_bytes(12, "big"), strict=True))
        self.seq += 1
        return header + self.aead.encrypt(nonce, inner, header)


def next_secret(secret: bytes) -> bytes:
    return expand_label(secret, b"traffic upd", 32)


def sealed_tls13() -> tuple[list[Step], KeyLog, dict[str, int]]:
    """A TLS 1.3 connection with made-up secrets: ALPN in EncryptedExtensions, a padded
    response, a NewSessionTicket, a client KeyUpdate, then data under the next secret."""
    random = bytes(range(32))
    secrets = {label: bytes([n]) * 32 for n, label in enumerate(
        ["CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
         "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"], 1)}  # fmt: skip
    keys = KeyLog()
    keys.add_text("".join(f"{k} {random.hex()} {v.hex()}\n" for k, v in secrets.items()))
    server_hs = Sealer(secrets["SERVER_HANDSHAKE_TRAFFIC_SECRET"])
    client_hs = Sealer(secrets["CLIENT_HANDSHAKE_TRAFFIC_SECRET"])
    server_app = Sealer(secrets["SERVER_TRAFFIC_SECRET_0"])
    client_app = Sealer(secrets["CLIENT_TRAFFIC_SECRET_0"])
    client_next = Sealer(next_secret(secrets["CLIENT_TRAFFIC_SECRET_0"]))
    alpn = ext(16, vec(2, vec(1, b"http/1.1")))
    flight = handshake(8, vec(2, alpn)) + handshake(20, b"\xf0" * 32)
    # Sealed in sending order: each Sealer counts its records.
    client_finished = client_hs.seal(22, handshake(20, b"\xf1" * 32))
    get_a = client_app.seal(23, b"GET /a HTTP/1.1\r\n\r\n")
    key_update = client_app.seal(22, handshake(24, b"\x00"))
    get_b = client_next.seal(23, b"GET /b HTTP/1.1\r\n\r\n")
    close = client_next.seal(21, b"\x01\x00")
    steps = [
        (ORIG, record(22, client_hello(random=random, versions=[0x0304], alpn=["http/1.1"]))),
        (RESP, record(22, server_hello(suite=0x1301, version=0x0304)) + CCS
         + server_hs.seal(22, flight)),
        (ORIG, CCS + client_finished + get_a),
        (RESP, server_app.seal(22, handshake(4, b"\x00" * 40))
         + server_app.seal(23, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", padding=10)),
        (ORIG, key_update + get_b),
        (ORIG, close),
    ]  # fmt: skip
    return steps, keys, {"key_update": len(key_update), "close": len(close)}


def test_tls13_key_update_moves_to_the_next_secret(recorder: type[Recorder]) -> None:
    steps, keys, sizes = sealed_tls13()
    result = feed_all(steps, keys)
    assert not result.anomalies
    [hs] = result.handshakes
    assert (hs.version, hs.resumed, hs.alpn, hs.decrypted) == ("1.3", False, "http/1.1", True)
    [inner] = recorder.instances
    assert inner.protocol == "http1"  # from ALPN, learnt in EncryptedExtensions
    assert bytes(inner.data[ORIG]) == b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"
    assert bytes(inner.data[RESP]).endswith(b"\r\n\r\nok")
    assert result.layer_bytes(CONTROL) == {TLS: sizes["key_update"]}
    assert result.layer_bytes(TEARDOWN) == {TLS: sizes["close"]}
    # Three data records: header, tag and inner type byte each, plus the response's padding.
    plain = sum(len(d) for d in inner.data)
    assert result.layer_bytes(UNDECODED) == {OPAQUE: plain, TLS: 3 * 22 + 10}


def test_tls13_sealed_here_cut_anywhere(recorder: type[Recorder]) -> None:
    steps, keys, _ = sealed_tls13()

    def keyed() -> StreamDecoder:
        return tls.TlsDecoder(MessageIds(), DecodeOptions(keylog=keys))

    whole, cuts = all_ways(keyed, steps)
    assert not whole.anomalies
    for cut in cuts:
        assert set(cut.anomalies) <= {"tls.truncated_record"}


def test_tls13_without_the_server_secrets_guesses_like_wireshark(recorder: type[Recorder]) -> None:
    """Client keys only: the server's protected records up to the client's Finished are setup;
    its later ones (the ticket and the response) undecoded."""
    steps, keys, _ = sealed_tls13()
    client_only = KeyLog()
    for label in ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0"):
        secret = keys.secret(label, bytes(range(32)))
        assert secret is not None
        client_only.add_text(f"{label} {bytes(range(32)).hex()} {secret.hex()}\n")
    result = feed_all(steps, client_only)
    assert not result.anomalies
    assert owned(result, RESP, SETUP) == len(steps[1][1])
    assert owned(result, RESP, UNDECODED) == len(steps[3][1])
    [inner] = recorder.instances
    assert bytes(inner.data[ORIG]) == b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"
    assert bytes(inner.data[RESP]) == b""


# --- live TLS from OpenSSL, in memory ---------------------------------------------------------


def self_signed(tmp: Path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wireprobe.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("wireprobe.test")]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


REQUEST = b"GET /memory HTTP/1.1\r\nHost: wireprobe.test\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + bytes(range(256)) * 11 + b"x" * 184


def converse(
    tmp: Path, version: str, ciphers: str | None, alpn: str | None
) -> list[tuple[int, str]]:
    """A client and a server in memory; returns the records each sent, in order (hex)."""
    cert, key = self_signed(tmp)
    tls_version = ssl.TLSVersion[version]
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cert)
    client_ctx.keylog_filename = str(tmp / "keys.log")
    for ctx in (server_ctx, client_ctx):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 on purpose
            ctx.minimum_version = ctx.maximum_version = tls_version
        if ciphers:
            ctx.set_ciphers(ciphers)
        if alpn:
            ctx.set_alpn_protocols([alpn])
    bios = [ssl.MemoryBIO() for _ in range(4)]
    client = client_ctx.wrap_bio(bios[0], bios[1], server_hostname="wireprobe.test")
    server = server_ctx.wrap_bio(bios[2], bios[3], server_side=True)
    steps: list[tuple[int, str]] = []

    def pump() -> None:
        for direction, outgoing, incoming in ((ORIG, bios[1], bios[2]), (RESP, bios[3], bios[0])):
            data = outgoing.read()
            if data:
                steps.append((direction, data.hex()))
                incoming.write(data)

    def attempt(call: Callable[[], object]) -> None:
        with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLWantWriteError):
            call()

    for _ in range(10):
        attempt(client.do_handshake)
        pump()
        attempt(server.do_handshake)
        pump()
    client.write(REQUEST)
    pump()
    assert server.read(len(REQUEST)) == REQUEST
    server.write(RESPONSE)
    pump()
    got = b""
    while len(got) < len(RESPONSE):
        got += client.read(65536)
    attempt(client.unwrap)
    pump()
    return steps


def live_steps(
    tmp: Path, version: str, ciphers: str | None, alpn: str | None, suite13: str | None
) -> tuple[list[Step], KeyLog]:
    """Run ``converse``, in a child process when a TLS 1.3 suite must be forced (Python's ssl has
    no set_ciphersuites; OpenSSL's configuration file does)."""
    if suite13 is None:
        raw = converse(tmp, version, ciphers, alpn)
    else:
        conf = tmp / "openssl.cnf"
        conf.write_text(
            "openssl_conf = init\n[init]\nssl_conf = ssl\n[ssl]\nsystem_default = sys\n"
            f"[sys]\nCiphersuites = {suite13}\n"
        )
        code = (
            "import json, sys, pathlib; from tests.test_tls import converse; "
            f"print(json.dumps(converse(pathlib.Path({str(tmp)!r}), {version!r}, None, {alpn!r})))"
        )
        env = dict(os.environ, OPENSSL_CONF=str(conf))
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
        ).stdout
        raw = [tuple(x) for x in json.loads(out)]
    keys = KeyLog()
    keys.load(str(tmp / "keys.log"))
    return [(d, bytes.fromhex(h)) for d, h in raw], keys


VERSION_NAMES = {"TLSv1": "1.0", "TLSv1_1": "1.1", "TLSv1_2": "1.2", "TLSv1_3": "1.3"}
LIVE = [
    ("TLSv1_2", "ECDHE-ECDSA-AES128-GCM-SHA256", None, 0xC02B),
    ("TLSv1_2", "ECDHE-ECDSA-AES256-GCM-SHA384", "http/1.1", 0xC02C),
    ("TLSv1_2", "ECDHE-ECDSA-CHACHA20-POLY1305", None, 0xCCA9),
    ("TLSv1_2", "ECDHE-ECDSA-AES128-SHA", None, 0xC009),  # CBC, encrypt-then-MAC by default
    ("TLSv1_2", "ECDHE-ECDSA-AES256-SHA384", None, 0xC024),
    # OpenSSL 3 allows TLS 1.0/1.1 only at security level 0.  TLS 1.0: implicit IV chaining
    # and 1/n-1 record splitting; TLS 1.1: explicit IV.
    ("TLSv1", "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0", None, 0xC009),
    ("TLSv1_1", "ECDHE-ECDSA-AES256-SHA:@SECLEVEL=0", None, 0xC00A),
    ("TLSv1_3", "TLS_AES_128_GCM_SHA256", "h2", 0x1301),
    ("TLSv1_3", "TLS_AES_256_GCM_SHA384", None, 0x1302),
    ("TLSv1_3", "TLS_CHACHA20_POLY1305_SHA256", None, 0x1303),
]


@pytest.mark.parametrize(
    ("version", "cipher", "alpn", "suite"), LIVE, ids=[c for _, c, _, _ in LIVE]
)
def test_live_openssl_session_decrypts_to_what_was_sent(
    tmp_path: Path,
    recorder: type[Recorder],
    version: str,
    cipher: str,
    alpn: str | None,
    suite: int,
) -> None:
    tls13 = version == "TLSv1_3"
    steps, keys = live_steps(
        tmp_path, version, None if tls13 else cipher, alpn, cipher if tls13 else None
    )
    result = feed_all(steps, keys)
    [hs] = result.handshakes
    assert (hs.version, hs.cipher_suite, hs.alpn, hs.decrypted) == (
        VERSION_NAMES[version],
        suite,
        alpn,
        True,
    )
    assert not result.anomalies
    [inner] = recorder.instances
    assert bytes(inner.data[ORIG]) == REQUEST
    assert bytes(inner.data[RESP]) == RESPONSE
    assert result.layer_bytes(TEARDOWN) == {TLS: len(steps[-1][1])}
    # Without keys the same bytes split into setup and undecoded; in TLS 1.2 the estimate of
    # the TLS overhead never exceeds the real one (CBC padding is unknowable).  In TLS 1.3 the
    # NewSessionTickets after the client's Finished look like data (module docstring).
    blind = feed_all(steps, None)
    if not tls13:
        assert blind.layer_bytes(UNDECODED)[TLS] <= result.layer_bytes(UNDECODED)[TLS]
        assert blind.layer_bytes(SETUP) == result.layer_bytes(SETUP)


def test_live_session_with_real_inner_decoder_spans_every_byte(tmp_path: Path) -> None:
    steps, keys = live_steps(tmp_path, "TLSv1_3", None, "http/1.1", None)
    result = feed_all(steps, keys)
    starts = [e for e in result.events if isinstance(e, MessageStarted)]
    # Until the HTTP decoder exists the fallback is opaque; once it does, one exchange appears.
    assert len(starts) <= 1
    assert result.protocols[0] == "tls"
    assert {layer for (_, layer) in result.owner_bytes()} <= {TLS, OPAQUE, FRAMING, PAYLOAD}
