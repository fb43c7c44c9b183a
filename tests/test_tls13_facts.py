"""TLS 1.3 facts come from where the protocol puts them (issue #17): the ALPN of every handshake,
full, resumed (PSK) or 0-RTT, is in the encrypted EncryptedExtensions, read with the key log.

Two kinds of evidence: connections sealed here with made-up secrets (the 0-RTT one sends early
data before the server has said which ALPN it picked or whether it takes early data), and a full
then a resumed handshake made in memory by Python's ``ssl`` (OpenSSL) with a key log.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from test_tls import (
    CCS,
    Recorder,
    Sealer,
    client_hello,
    ext,
    feed_all,
    handshake,
    owned,
    record,
    recorder,
    self_signed,
    server_hello,
    vec,
)

from analyzer.decoding.events import ORIG, RESP, UNDECODED, MessageIds, StreamDecoder
from analyzer.options import DecodeOptions
from analyzer.tls import decoder as tls
from analyzer.tls.keylog import KeyLog

try:
    from tests.decoder_harness import Step, all_ways
except ModuleNotFoundError:  # pytest's default "prepend" import mode puts tests/ on sys.path
    from decoder_harness import Step, all_ways  # type: ignore[no-redef,import-not-found]

__all__ = ["recorder"]  # the fixture, imported to be found by pytest

RANDOM = bytes(range(32))
LABELS = (
    "CLIENT_EARLY_TRAFFIC_SECRET",
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0",
    "SERVER_TRAFFIC_SECRET_0",
)
#: The client offers h2 first; the server picks the second: only EncryptedExtensions says which.
OFFERED = ["h2", "http/1.1"]
EARLY_GET = b"GET /early HTTP/1.1\r\n\r\n"
GET = b"GET /a HTTP/1.1\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def sealed_bytes(content: int) -> int:
    """A TLS 1.3 record of ``content`` bytes: header, inner content type, AES-GCM tag."""
    return 5 + content + 1 + 16


def sealed(kind: str, *, accept_early: bool = True) -> tuple[list[Step], KeyLog]:
    """A TLS 1.3 connection sealed here: ``full``, ``resumed`` (PSK) or ``0rtt`` (PSK with early
    data, accepted or not in EncryptedExtensions), then one request and its response."""
    secrets = {label: bytes([n]) * 32 for n, label in enumerate(LABELS, 1)}
    keys = KeyLog()
    keys.add_text("".join(f"{k} {RANDOM.hex()} {v.hex()}\n" for k, v in secrets.items()))
    seal = {label: Sealer(secret) for label, secret in secrets.items()}
    resumed, early = kind != "full", kind == "0rtt"
    accepted = early and accept_early
    extensions = ext(16, vec(2, vec(1, b"http/1.1"))) + (ext(42, b"") if accepted else b"")
    flight = handshake(8, vec(2, extensions))
    if not resumed:  # Certificate and CertificateVerify only in a full handshake
        flight += handshake(11, b"\x00" * 50) + handshake(15, b"\x00" * 40)
    flight += handshake(20, b"\xf0" * 32)
    hello = client_hello(random=RANDOM, versions=[0x0304], alpn=OFFERED, psk=resumed, early=early)
    first = record(22, hello) + CCS
    if early:
        first += seal["CLIENT_EARLY_TRAFFIC_SECRET"].seal(23, EARLY_GET)
    answer = record(22, server_hello(suite=0x1301, version=0x0304, psk=resumed)) + CCS
    answer += seal["SERVER_HANDSHAKE_TRAFFIC_SECRET"].seal(22, flight)
    finish = b""
    if accepted:  # EndOfEarlyData, still under the early secret (RFC 8446 4.5)
        finish += seal["CLIENT_EARLY_TRAFFIC_SECRET"].seal(22, handshake(5, b""))
    finish += seal["CLIENT_HANDSHAKE_TRAFFIC_SECRET"].seal(22, handshake(20, b"\xf1" * 32))
    finish += seal["CLIENT_TRAFFIC_SECRET_0"].seal(23, GET)
    response = seal["SERVER_TRAFFIC_SECRET_0"].seal(23, OK)
    return [(ORIG, first), (RESP, answer), (ORIG, finish), (RESP, response)], keys


@pytest.mark.parametrize("kind", ["full", "resumed", "0rtt"])
def test_alpn_comes_from_encrypted_extensions(kind: str, recorder: type[Recorder]) -> None:
    steps, keys = sealed(kind)
    result = feed_all(steps, keys)
    assert not result.anomalies
    [hs] = result.handshakes
    assert (hs.version, hs.resumed, hs.early_data, hs.decrypted) == (
        "1.3",
        kind != "full",
        kind == "0rtt",
        True,
    )
    assert hs.alpn == "http/1.1"
    [inner] = recorder.instances
    # The plaintext decoder is the one ALPN names, the 0-RTT request included.
    assert inner.protocol == "http1"
    assert bytes(inner.data[ORIG]) == (EARLY_GET if kind == "0rtt" else b"") + GET
    assert bytes(inner.data[RESP]) == OK


@pytest.mark.parametrize("kind", ["full", "resumed", "0rtt"])
def test_without_keys_the_alpn_of_tls13_is_unknown(kind: str, recorder: type[Recorder]) -> None:
    steps, _ = sealed(kind)
    [hs] = feed_all(steps, None).handshakes
    assert hs.alpn is None  # the offer is not the answer
    assert not recorder.instances


def test_rejected_early_data_is_reported_and_never_decoded(recorder: type[Recorder]) -> None:
    steps, keys = sealed("0rtt", accept_early=False)
    result = feed_all(steps, keys)
    assert not result.anomalies
    [hs] = result.handshakes
    assert (hs.resumed, hs.early_data, hs.alpn) == (True, False, "http/1.1")
    [inner] = recorder.instances
    # The server skipped the 0-RTT record (RFC 8446 4.2.10), so its request never happened.
    assert bytes(inner.data[ORIG]) == GET
    # Undecoded: the whole early record, and the request with its record's header, tag and type.
    assert owned(result, ORIG, UNDECODED) == sealed_bytes(len(EARLY_GET)) + sealed_bytes(len(GET))


def test_early_data_waits_for_encrypted_extensions_cut_anywhere(
    recorder: type[Recorder],
) -> None:
    steps, keys = sealed("0rtt")

    def keyed() -> StreamDecoder:
        return tls.TlsDecoder(MessageIds(), DecodeOptions(keylog=keys))

    whole, cuts = all_ways(keyed, steps)
    assert not whole.anomalies
    assert [hs.alpn for hs in whole.handshakes] == ["http/1.1"]
    for cut in cuts:
        assert set(cut.anomalies) <= {"tls.truncated_record"}
        assert {hs.alpn for hs in cut.handshakes} <= {"http/1.1", None}


# --- full, then resumed, from OpenSSL in memory ---------------------------------------------


def connect(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, session: ssl.SSLSession | None
) -> tuple[list[Step], ssl.SSLObject]:
    """One TLS connection in memory, one request and response; the records each side sent."""
    bios = [ssl.MemoryBIO() for _ in range(4)]
    client = client_ctx.wrap_bio(
        bios[0], bios[1], server_hostname="wireprobe.test", session=session
    )
    server = server_ctx.wrap_bio(bios[2], bios[3], server_side=True)
    steps: list[Step] = []

    def pump() -> None:
        for direction, outgoing, incoming in ((ORIG, bios[1], bios[2]), (RESP, bios[3], bios[0])):
            data = outgoing.read()
            if data:
                steps.append((direction, data))
                incoming.write(data)

    def attempt(call: Callable[[], object]) -> None:
        with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLWantWriteError):
            call()

    for _ in range(6):
        attempt(client.do_handshake)
        pump()
        attempt(server.do_handshake)
        pump()
    client.write(GET)
    pump()
    assert server.read(len(GET)) == GET
    server.write(OK)
    pump()
    assert client.read(len(OK)) == OK  # reads the session tickets too
    return steps, client


def test_openssl_full_then_resumed_both_report_alpn(
    tmp_path: Path, recorder: type[Recorder]
) -> None:
    cert, key = self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cert)
    client_ctx.keylog_filename = str(tmp_path / "keys.log")
    for ctx in (server_ctx, client_ctx):
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.set_alpn_protocols(["http/1.1"])
    full_steps, first = connect(client_ctx, server_ctx, None)
    resumed_steps, second = connect(client_ctx, server_ctx, first.session)
    assert not first.session_reused and second.session_reused
    keys = KeyLog()
    keys.load(str(tmp_path / "keys.log"))
    for steps, resumed in ((full_steps, False), (resumed_steps, True)):
        result = feed_all(steps, keys)
        assert not result.anomalies
        [hs] = result.handshakes
        assert (hs.version, hs.resumed, hs.alpn, hs.decrypted) == ("1.3", resumed, "http/1.1", True)
        assert feed_all(steps, None).handshakes[0].alpn is None
    assert [i.protocol for i in recorder.instances] == ["http1", "http1"]
    assert [bytes(i.data[ORIG]) for i in recorder.instances] == [GET, GET]
