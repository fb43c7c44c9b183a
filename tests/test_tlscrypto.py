"""Record decryption: real captures with their key logs, and live OpenSSL sessions in memory.

Each test reads as the conversation a passive observer has with a TLS connection: split both
directions into records, read the hellos in clear, look the secrets up in the key log, and open
every protected record in order.  ``MiniSession`` below is the smallest such observer (the real
one is ``analyzer/tls/decoder.py``); the figures compared with are tshark's, from the captures' README.
"""

from __future__ import annotations

import datetime
import functools
import hmac
import os
import ssl
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from analyzer.errors import DecodeError
from analyzer.tls.crypto import (
    CIPHER_SUITES,
    CbcDecryptor,
    RecordDecryptor,
    fixed_expansion_bytes,
    hkdf_expand_label,
    prf,
    tls12_decryptors,
    tls13_decryptor,
    tls13_next_secret,
)
from analyzer.tls.keylog import KeyLog

CAPTURES = Path(__file__).resolve().parents[1] / "captures" / "public"
TESTS = Path(__file__).resolve().parent

CCS, ALERT, HANDSHAKE, APP_DATA = 20, 21, 22, 23
CLIENT_HELLO, SERVER_HELLO, END_OF_EARLY_DATA, FINISHED = 1, 2, 5, 20
EXT_ENCRYPT_THEN_MAC, EXT_SUPPORTED_VERSIONS = 22, 43

Record = tuple[int, int, bytes]  # content type, header version, fragment


# --- reading captures ---------------------------------------------------------------------------


@functools.cache
def tcp_streams(capture: str, count: int, *options: str) -> list[tuple[bytes, bytes]]:
    """(client bytes, server bytes) of TCP streams 0..count-1, by tshark's follow,tcp,raw."""
    args = ["tshark", "-r", str(CAPTURES / capture), "-q", *options]
    for index in range(count):
        args += ["-z", f"follow,tcp,raw,{index}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    streams: dict[int, tuple[bytes, bytes]] = {}
    for block in out.split("Follow: tcp,raw")[1:]:
        # tshark prints the blocks in no fixed order: each names its stream.
        index = int(block.split("tcp.stream eq ", 1)[1].split()[0])
        first, second = bytearray(), bytearray()
        for text in block.split("Node 1:", 1)[1].splitlines()[1:]:
            if text.startswith("==="):
                break
            (second if text.startswith("\t") else first).extend(bytes.fromhex(text.strip()))
        # Node 0 is whoever sent first; the client is the side whose stream opens with a hello.
        pair = (bytes(first), bytes(second))
        streams[index] = pair if pair[0][5:6] == bytes([CLIENT_HELLO]) else pair[::-1]
    assert sorted(streams) == list(range(count))
    return [streams[index] for index in range(count)]


def split_records(stream: bytes) -> list[Record]:
    """TLS records of one direction (RFC 5246 6.2.1): type(1) version(2) length(2) fragment."""
    records = []
    offset = 0
    while offset + 5 <= len(stream):
        length = int.from_bytes(stream[offset + 3 : offset + 5], "big")
        fragment = stream[offset + 5 : offset + 5 + length]
        assert len(fragment) == length, "stream ends inside a record"
        records.append(
            (stream[offset], int.from_bytes(stream[offset + 1 : offset + 3], "big"), fragment)
        )
        offset += 5 + length
    assert offset == len(stream)
    return records


def handshake_messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, body) of whole handshake messages (RFC 8446 4): type(1) length(3) body."""
    offset = 0
    while offset + 4 <= len(data):
        length = int.from_bytes(data[offset + 1 : offset + 4], "big")
        yield data[offset], data[offset + 4 : offset + 4 + length]
        offset += 4 + length


def extensions(data: bytes) -> dict[int, bytes]:
    """Extension type -> data, from a list with its 2-byte length prefix."""
    found = {}
    offset = 2
    while offset + 4 <= len(data):
        kind = int.from_bytes(data[offset : offset + 2], "big")
        length = int.from_bytes(data[offset + 2 : offset + 4], "big")
        found[kind] = data[offset + 4 : offset + 4 + length]
        offset += 4 + length
    return found


@dataclass
class Hellos:
    client_random: bytes
    server_random: bytes
    version: int
    suite: int
    encrypt_then_mac: bool


def read_hellos(client: list[Record], server: list[Record]) -> Hellos:
    """Randoms, negotiated version and suite from the first ClientHello and ServerHello."""
    kind, client_hello = next(handshake_messages(client[0][2]))
    assert kind == CLIENT_HELLO
    kind, hello = next(handshake_messages(server[0][2]))
    assert kind == SERVER_HELLO
    version = int.from_bytes(hello[:2], "big")
    if version >> 8 == 0x7F:  # drafts before 22: no session id, no compression (draft-20 4.1.3)
        suite, rest = hello[34:36], hello[36:]
    else:
        after_session = 35 + hello[34]
        suite, rest = hello[after_session : after_session + 2], hello[after_session + 3 :]
    found = extensions(rest)
    if EXT_SUPPORTED_VERSIONS in found:
        version = int.from_bytes(found[EXT_SUPPORTED_VERSIONS], "big")
    return Hellos(
        client_random=client_hello[2:34],
        server_random=hello[2:34],
        version=version,
        suite=int.from_bytes(suite, "big"),
        encrypt_then_mac=EXT_ENCRYPT_THEN_MAC in found,
    )


# --- the observer -------------------------------------------------------------------------------


@dataclass
class Direction:
    """What one direction revealed: application bytes, handshake messages, records left closed."""

    app: bytearray = field(default_factory=bytearray)
    handshake: list[int] = field(default_factory=list)
    alerts: list[bytes] = field(default_factory=list)
    undecrypted: int = 0


def open_tls12(
    client: list[Record], server: list[Record], keys: KeyLog
) -> tuple[Direction, Direction]:
    """Decrypt a TLS 1.0-1.2 connection with one handshake: everything after each CCS."""
    hellos = read_hellos(client, server)
    master = keys.secret("CLIENT_RANDOM", hellos.client_random)
    assert master is not None
    decryptors = tls12_decryptors(
        hellos.version,
        hellos.suite,
        master,
        hellos.client_random,
        hellos.server_random,
        encrypt_then_mac=hellos.encrypt_then_mac,
    )
    return open_after_ccs(client, decryptors[0]), open_after_ccs(server, decryptors[1])


def open_after_ccs(records: list[Record], decryptor: RecordDecryptor) -> Direction:
    seen = Direction()
    protected = False
    for content_type, version, fragment in records:
        if not protected:
            protected = content_type == CCS
            continue
        real_type, plain = decryptor.decrypt(content_type, version, fragment)
        collect(seen, real_type, plain)
    return seen


def collect(seen: Direction, content_type: int, plain: bytes) -> None:
    if content_type == APP_DATA:
        seen.app += plain
    elif content_type == HANDSHAKE:
        seen.handshake += [kind for kind, _ in handshake_messages(plain)]
    elif content_type == ALERT:
        seen.alerts.append(plain)


def open_tls13(
    client: list[Record], server: list[Record], keys: KeyLog
) -> tuple[Direction, Direction]:
    """Decrypt a TLS 1.3 connection: handshake keys until Finished, then traffic secret 0."""
    hellos = read_hellos(client, server)

    def decryptor(label: str) -> RecordDecryptor | None:
        secret = keys.secret(label, hellos.client_random)
        if secret is None:
            return None
        return tls13_decryptor(hellos.suite, secret, version=hellos.version)

    early = decryptor("CLIENT_EARLY_TRAFFIC_SECRET")
    client_keys: list[RecordDecryptor | None] = [early] if early else []
    client_keys += [
        decryptor("CLIENT_HANDSHAKE_TRAFFIC_SECRET"),
        decryptor("CLIENT_TRAFFIC_SECRET_0"),
    ]
    server_keys: list[RecordDecryptor | None] = [
        decryptor("SERVER_HANDSHAKE_TRAFFIC_SECRET"),
        decryptor("SERVER_TRAFFIC_SECRET_0"),
    ]
    client_switch = (END_OF_EARLY_DATA, FINISHED) if early else (FINISHED,)
    return open_tls13_direction(client, client_keys, client_switch), open_tls13_direction(
        server, server_keys, (FINISHED,)
    )


def open_tls13_direction(
    records: list[Record], keys: list[RecordDecryptor | None], switch_after: tuple[int, ...]
) -> Direction:
    """Records after the hello, ignoring compatibility CCS; the next key after each message in
    ``switch_after``.  A record the current key cannot open is skipped as a server skips
    rejected 0-RTT data (RFC 8446 4.2.10), which needs the decryptor to survive a failure."""
    seen = Direction()
    stage = 0
    for content_type, version, fragment in records[1:]:
        if content_type == CCS:
            continue
        current = keys[stage]
        assert current is not None
        try:
            real_type, plain = current.decrypt(content_type, version, fragment)
        except DecodeError:
            seen.undecrypted += 1
            continue
        collect(seen, real_type, plain)
        if (
            real_type == HANDSHAKE
            and stage < len(switch_after)
            and switch_after[stage] in seen.handshake
        ):
            stage += 1
    return seen


def load_keys(*names: str) -> KeyLog:
    keys = KeyLog()
    for name in names:
        keys.load(str(CAPTURES / name))
    return keys


# --- real captures ------------------------------------------------------------------------------


def test_tls13_full_handshake_and_0rtt_resumption_decrypt_like_tshark() -> None:
    keys = load_keys("wireshark/tls13-rfc8446.keys")
    (c0, s0), (c1, s1) = tcp_streams("wireshark/tls13-rfc8446.pcap", 2)
    client, server = open_tls13(split_records(c0), split_records(s0), keys)
    assert bytes(client.app).startswith(b"GET /first HTTP/1.1")
    assert (len(client.app), len(server.app)) == (23, 117)
    assert server.app.startswith(b"HTTP/1.")
    # The server's flight: EncryptedExtensions, Certificate, CertificateVerify, Finished; then
    # NewSessionTickets under the application key.
    assert server.handshake[:4] == [8, 11, 15, FINISHED]
    assert server.handshake.count(4) == 2

    client, server = open_tls13(split_records(c1), split_records(s1), keys)
    assert client.app.startswith(b"GET /early")
    assert b"GET /second" in client.app
    assert client.handshake[:2] == [END_OF_EARLY_DATA, FINISHED]
    assert (len(client.app), len(server.app)) == (23 + 24, 237)
    assert 11 not in server.handshake  # resumed with a PSK: no Certificate
    assert client.undecrypted == server.undecrypted == 0


def test_without_the_early_secret_the_0rtt_record_is_skipped_and_the_rest_decrypts() -> None:
    keys = load_keys("wireshark/tls13-rfc8446-noearly.keys")
    c1, s1 = tcp_streams("wireshark/tls13-rfc8446.pcap", 2)[1]
    client, server = open_tls13(split_records(c1), split_records(s1), keys)
    # tshark: c->s 24 bytes; the 0-RTT request and the EndOfEarlyData stay closed.
    assert client.app.startswith(b"GET /second")
    assert len(client.app) == 24
    assert client.undecrypted == 2
    assert len(server.app) == 237


def test_tls13_draft20_chacha20_uses_tls13_labels_and_no_additional_data() -> None:
    keys = load_keys("wireshark/tls13-20-chacha20poly1305.keys")
    for c, s in tcp_streams("wireshark/tls13-20-chacha20poly1305.pcap", 2):
        client, server = open_tls13(split_records(c), split_records(s), keys)
        assert read_hellos(split_records(c), split_records(s)).version == 0x7F14
        assert (len(client.app), len(server.app)) == (16, 2608)


def test_tls13_psk_resumed_with_twelve_requests_and_1_47_mb_out_of_order() -> None:
    keys = load_keys("wireshark/challenge01_ooo_stream.dsb-extracted.keys")
    c, s = tcp_streams(
        "wireshark/challenge01_ooo_stream.pcapng.gz", 1, "-o", "tcp.reassemble_out_of_order:TRUE"
    )[0]
    client, server = open_tls13(split_records(c), split_records(s), keys)
    assert (len(client.app), len(server.app)) == (5122, 1470678)
    assert client.app.count(b"GET /") == 12
    assert server.app.count(b"HTTP/1.1 200") == 12


@pytest.mark.parametrize(
    ("capture", "key_files", "client_bytes", "server_bytes", "first_line"),
    [
        ("wireshark/tls12-dsb.pcapng", ("tls12-dsb-1.keys", "tls12-dsb-2.keys"), 76, 338,
         b"HEAD / "),
        ("wireshark/http2-data-reassembly.pcap", ("http2-data-reassembly.keys",), 120, 76224,
         b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        ("wireshark/http2-brotli.pcapng", ("http2-brotli.dsb-extracted.keys",), 124, 250,
         b"PRI * HTTP/2.0"),
        # The README's 89959 is tshark without tcp.reassemble_out_of_order: it loses the server
        # stream at frame 101.  With the option tshark's follow,tls gives 210618, as here.
        ("wireshark/http2_follow_multistream.pcapng",
         ("http2_follow_multistream.dsb-extracted.keys",), 2183, 210618, b"PRI * HTTP/2.0"),
        ("scapy/tls_tcp_frag_withnss.pcap.gz", ("../scapy/tls_tcp_frag_withnss.keys",), 159, 282,
         b"GET /uuid"),
        ("wireshark/dhe1.pcapng.gz", ("dhe1_keylog.dat",), 19, 0, b"GET /test HTTP/1.0\n"),
    ],
)  # fmt: skip
def test_tls12_and_tls10_captures_decrypt_to_tsharks_byte_counts(
    capture: str,
    key_files: tuple[str, ...],
    client_bytes: int,
    server_bytes: int,
    first_line: bytes,
) -> None:
    keys = load_keys(*(f"wireshark/{name}" for name in key_files))
    streams = tcp_streams(capture, 2 if "dsb.pcapng" in capture else 1)
    for c, s in streams:
        client, server = open_tls12(split_records(c), split_records(s), keys)
        assert client.handshake[0] == server.handshake[0] == FINISHED
        assert (len(client.app), len(server.app)) == (client_bytes, server_bytes)
        assert client.app.startswith(first_line)
        assert server_bytes == 0 or server.app.startswith((b"HTTP/1.", b"\x00\x00"))


def test_dhe1_is_tls10_with_dhe_rsa_aes256_cbc_sha() -> None:
    c, s = tcp_streams("wireshark/dhe1.pcapng.gz", 1)[0]
    hellos = read_hellos(split_records(c), split_records(s))
    assert (hellos.version, CIPHER_SUITES[hellos.suite].name) == (
        0x0301,
        "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    )


def test_seven_chacha20_suites_of_tls12_decrypt() -> None:
    keys = load_keys("wireshark/tls12-chacha20poly1305.keys")
    suites, server_bytes = [], []
    for c, s in tcp_streams("wireshark/tls12-chacha20poly1305.pcap", 7):
        client, server = open_tls12(split_records(c), split_records(s), keys)
        suites.append(read_hellos(split_records(c), split_records(s)).suite)
        assert len(client.app) == 35
        assert client.app.startswith(b"GET ")
        server_bytes.append(len(server.app))
    assert sorted(suites) == list(range(0xCCA8, 0xCCAF))
    # tshark-figures.json, tls_follow_decrypted per stream (the README's 29493 total adds the
    # 7 x 35 client bytes to these).
    assert server_bytes == [4240, 4234, 4127, 4138, 4138, 4245, 4126]


# --- failures -----------------------------------------------------------------------------------


def dsb_connection() -> tuple[list[Record], list[Record], Hellos, bytes]:
    c, s = tcp_streams("wireshark/tls12-dsb.pcapng", 2)[0]
    client, server = split_records(c), split_records(s)
    hellos = read_hellos(client, server)
    master = load_keys("wireshark/tls12-dsb-1.keys").secret("CLIENT_RANDOM", hellos.client_random)
    assert master is not None
    return client, server, hellos, master


def first_protected(records: list[Record]) -> Record:
    return records[[kind for kind, _, _ in records].index(CCS) + 1]


def test_a_wrong_master_secret_fails_with_the_anomaly_name_and_no_key_material() -> None:
    client, _, hellos, master = dsb_connection()
    wrong = bytes([master[0] ^ 1]) + master[1:]
    decryptor, _ = tls12_decryptors(
        hellos.version, hellos.suite, wrong, hellos.client_random, hellos.server_random
    )
    with pytest.raises(DecodeError) as caught:
        decryptor.decrypt(*first_protected(client))
    assert caught.value.anomaly == "tls.decrypt_failed"
    assert master.hex() not in str(caught.value) and wrong.hex() not in str(caught.value)


def test_a_flipped_bit_fails_and_leaves_the_decryptor_able_to_open_the_good_record() -> None:
    client, _, hellos, master = dsb_connection()
    decryptor, _ = tls12_decryptors(
        hellos.version, hellos.suite, master, hellos.client_random, hellos.server_random
    )
    content_type, version, fragment = first_protected(client)
    for position in (0, 8, len(fragment) // 2, len(fragment) - 1):  # nonce, body, tag
        bad = bytearray(fragment)
        bad[position] ^= 0x10
        with pytest.raises(DecodeError, match=r"tls\.decrypt_failed"):
            decryptor.decrypt(content_type, version, bytes(bad))
    with pytest.raises(DecodeError):
        decryptor.decrypt(APP_DATA, version, fragment)  # the header is authenticated too
    assert decryptor.seq == 0
    assert decryptor.decrypt(content_type, version, fragment)[1][:1] == bytes([FINISHED])
    assert decryptor.seq == 1


def test_records_too_short_for_their_overhead_fail_cleanly() -> None:
    _, _, hellos, master = dsb_connection()
    decryptor, _ = tls12_decryptors(
        hellos.version, hellos.suite, master, hellos.client_random, hellos.server_random
    )
    for size in (0, 1, 8, 23):
        with pytest.raises(DecodeError, match=r"tls\.decrypt_failed"):
            decryptor.decrypt(APP_DATA, 0x0303, bytes(size))


def test_unknown_suites_versions_and_secret_lengths_are_unsupported_not_crashes() -> None:
    randoms = bytes(32)
    cases: list[Callable[[], object]] = [
        lambda: tls12_decryptors(0x0303, 0x000A, bytes(48), randoms, randoms),  # 3DES
        lambda: tls12_decryptors(0x0300, 0x002F, bytes(48), randoms, randoms),  # SSL 3.0
        lambda: tls12_decryptors(0x0302, 0xC02F, bytes(48), randoms, randoms),  # GCM in 1.1
        lambda: tls12_decryptors(0x0303, 0x1301, bytes(48), randoms, randoms),  # a 1.3 suite
        lambda: tls12_decryptors(0x0303, 0xC02F, bytes(47), randoms, randoms),
        lambda: tls13_decryptor(0xC02F, bytes(32)),
        lambda: tls13_decryptor(0x1302, bytes(32)),  # SHA-384 suite wants 48 bytes
        lambda: tls13_decryptor(0x1301, bytes(32), version=0x7F10),  # draft-16
    ]
    for case in cases:
        with pytest.raises(DecodeError, match=r"tls\.unsupported_cipher"):
            case()


# --- records built by hand: padding rules -------------------------------------------------------

KEY_16, MAC_KEY_20, IV_16 = bytes(range(16)), bytes(range(20, 40)), bytes(range(40, 56))


def cbc_record(
    content: bytes, padding: bytes, *, seq: int = 0, content_type: int = APP_DATA
) -> bytes:
    """A TLS 1.1 MAC-then-encrypt AES-128-CBC-SHA record (RFC 4346 6.2.3.2), explicit IV."""
    header = (
        seq.to_bytes(8, "big")
        + bytes([content_type])
        + b"\x03\x02"
        + len(content).to_bytes(2, "big")
    )
    mac = hmac.new(MAC_KEY_20, header + content, "sha1").digest()
    encryptor = Cipher(algorithms.AES(KEY_16), modes.CBC(IV_16)).encryptor()
    return IV_16 + encryptor.update(content + mac + padding) + encryptor.finalize()


def cbc_decryptor() -> RecordDecryptor:
    return CbcDecryptor(CIPHER_SUITES[0x002F], 0x0302, MAC_KEY_20, KEY_16, IV_16, etm=False)


def test_cbc_padding_of_any_allowed_length_is_removed() -> None:
    decryptor = cbc_decryptor()
    content = b"hello world"  # 11 + 20 MAC + 1 length byte = 32: whole blocks without padding
    for seq, pad in enumerate((0, 16, 240)):  # RFC 5246 6.2.3.2: up to 255 bytes of padding
        record = cbc_record(content, bytes([pad]) * (pad + 1), seq=seq)
        assert decryptor.decrypt(APP_DATA, 0x0302, record) == (APP_DATA, content)


@pytest.mark.parametrize(
    "padding",
    [b"\x10" * 8 + b"\x11" + b"\x10" * 8, b"\xff"],  # one unequal byte; more than the record
)
def test_cbc_padding_with_wrong_bytes_is_a_decrypt_failure(padding: bytes) -> None:
    record = cbc_record(b"hello world", padding)
    with pytest.raises(DecodeError, match="bad CBC padding"):
        cbc_decryptor().decrypt(APP_DATA, 0x0302, record)


def test_cbc_mac_covers_the_sequence_number_and_content_type() -> None:
    record = cbc_record(b"hello world", b"\x00", seq=1)
    with pytest.raises(DecodeError, match="bad MAC"):
        cbc_decryptor().decrypt(APP_DATA, 0x0302, record)  # the decryptor is at seq 0
    with pytest.raises(DecodeError, match="bad MAC"):
        cbc_decryptor().decrypt(ALERT, 0x0302, cbc_record(b"hello world", b"\x00"))


def tls13_record(
    secret: bytes, inner: bytes, seq: int = 0, *, prefix: bytes = b"tls13 ", aad: bool = True
) -> bytes:
    """A TLS 1.3 AES-128-GCM record of the given TLSInnerPlaintext (RFC 8446 5.2)."""
    key = hkdf_expand_label("sha256", secret, b"key", b"", 16, prefix=prefix)
    iv = hkdf_expand_label("sha256", secret, b"iv", b"", 12, prefix=prefix)
    nonce = bytes(a ^ b for a, b in zip(iv, seq.to_bytes(12, "big"), strict=True))
    header = b"\x17\x03\x03" + (len(inner) + 16).to_bytes(2, "big")
    return AESGCM(key).encrypt(nonce, inner, header if aad else b"")


@pytest.mark.parametrize(
    ("version", "prefix", "aad"),
    [
        (0x7F12, b"TLS 1.3, ", False),  # draft-18: old label prefix, no additional data
        (0x7F14, b"tls13 ", False),  # draft-20 (as in tls13-20-chacha20poly1305.pcap)
        (0x7F1C, b"tls13 ", True),  # draft-28: the record header is the additional data
        (0x0304, b"tls13 ", True),
    ],
)
def test_tls13_drafts_differ_in_label_prefix_and_additional_data(
    version: int, prefix: bytes, aad: bool
) -> None:
    secret = bytes(range(32))
    record = tls13_record(secret, b"draft\x17", prefix=prefix, aad=aad)
    assert tls13_decryptor(0x1301, secret, version=version).decrypt(23, 0x0303, record) == (
        APP_DATA,
        b"draft",
    )
    other = tls13_record(secret, b"draft\x17", prefix=prefix, aad=not aad)
    with pytest.raises(DecodeError):
        tls13_decryptor(0x1301, secret, version=version).decrypt(23, 0x0303, other)


def test_tls13_strips_zero_padding_and_reads_the_inner_content_type() -> None:
    secret = bytes(range(32))
    decryptor = tls13_decryptor(0x1301, secret)
    padded = tls13_record(secret, b"hello" + bytes([HANDSHAKE]) + bytes(100), seq=0)
    assert decryptor.decrypt(APP_DATA, 0x0303, padded) == (HANDSHAKE, b"hello")
    # An empty alert-free record: only the type byte (RFC 8446 5.4 allows zero-length data).
    assert decryptor.decrypt(APP_DATA, 0x0303, tls13_record(secret, b"\x17", seq=1)) == (
        APP_DATA,
        b"",
    )
    with pytest.raises(DecodeError, match="no inner content type"):
        decryptor.decrypt(APP_DATA, 0x0303, tls13_record(secret, bytes(20), seq=2))
    with pytest.raises(DecodeError, match="bad AEAD tag"):  # additional data = the real header
        decryptor.decrypt(APP_DATA, 0x0301, tls13_record(secret, b"x\x17", seq=2))


def test_nothing_shown_by_this_module_contains_key_material(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client, _, hellos, master = dsb_connection()
    keys = load_keys("wireshark/tls12-dsb-1.keys")
    shown = [repr(keys), str(keys)]
    decryptors = tls12_decryptors(
        hellos.version, hellos.suite, master, hellos.client_random, hellos.server_random
    )
    shown += [repr(d) for d in decryptors]
    secret13 = bytes(range(32))
    shown.append(repr(tls13_decryptor(0x1301, secret13)))
    broken = bytearray(first_protected(client)[2])
    broken[-1] ^= 1
    for attempt_decrypt in (
        lambda: decryptors[0].decrypt(HANDSHAKE, 0x0303, bytes(broken)),
        lambda: cbc_decryptor().decrypt(APP_DATA, 0x0302, cbc_record(b"x" * 11, b"\x05")),
        lambda: tls13_decryptor(0x1302, secret13),
    ):
        with pytest.raises(DecodeError) as caught:
            attempt_decrypt()
        shown += [str(caught.value), repr(caught.value), caught.value.detail]
    out = capsys.readouterr()
    text = "\n".join([*shown, out.out, out.err]).lower()
    for secret in (master, secret13, KEY_16, MAC_KEY_20):
        assert secret.hex()[:16] not in text
    assert "keylog 1 entries" in text  # the test looked at real output


# --- known answers ------------------------------------------------------------------------------


def test_tls12_prf_matches_openssl_tls1_prf() -> None:
    # openssl kdf -keylen 100 -kdfopt digest:SHA256 -kdfopt hexsecret:9bbe...db35
    #   -kdfopt seed:"test label" -kdfopt hexseed:a0ba...198c TLS1-PRF
    secret = bytes.fromhex("9bbe436ba940f017b17652849a71db35")
    seed = bytes.fromhex("a0ba9f936cda311827a6f796ffd5198c")
    out = prf(0x0303, "sha256", secret, b"test label", seed, 100)
    assert out.hex().startswith("e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a")
    assert out.hex().endswith("a48082d122ee42c5a72e5a5110fff70187347b66")


def test_tls10_prf_splits_an_odd_secret_into_overlapping_halves_like_openssl() -> None:
    # openssl kdf ... -kdfopt digest:MD5-SHA1 -kdfopt hexsecret:9bbe...db35ff ... TLS1-PRF
    secret = bytes.fromhex("9bbe436ba940f017b17652849a71db35ff")
    seed = bytes.fromhex("a0ba9f936cda311827a6f796ffd5198c")
    assert prf(0x0301, "sha256", secret, b"test label", seed, 40).hex() == (
        "617270adf8c791af59bc8878a208b8aaad4f4238c514510b72be81f2119c71661f819001d49c9a30"
    )


def test_hkdf_expand_label_gives_the_rfc8448_server_handshake_key_and_iv() -> None:
    # RFC 8448 3 (Simple 1-RTT Handshake): server handshake traffic secret -> key, iv.
    secret = bytes.fromhex("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
    assert hkdf_expand_label("sha256", secret, b"key", b"", 16).hex() == (
        "3fce516009c21727d0f2e4e86ee403bc"
    )
    assert hkdf_expand_label("sha256", secret, b"iv", b"", 12).hex() == "5d313eb2671276ee13000b30"


def test_key_update_derives_the_next_generation_with_the_traffic_upd_label() -> None:
    # RFC 8446 7.2 and 7.1, HkdfLabel written out: length 48, "tls13 traffic upd", no context.
    secret = bytes(range(48))
    info = b"\x00\x30" + b"\x11tls13 traffic upd" + b"\x00"
    expected = HKDFExpand(hashes.SHA384(), 48, info).derive(secret)
    assert tls13_next_secret(0x1302, secret) == expected
    info = b"\x00\x20" + b"\x11tls13 traffic upd" + b"\x00"
    expected = HKDFExpand(hashes.SHA256(), 32, info).derive(secret[:32])
    assert tls13_next_secret(0x1303, secret[:32]) == expected


def test_the_suite_table_rows_follow_their_names() -> None:
    gcm, chacha, cbc = CIPHER_SUITES[0xC030], CIPHER_SUITES[0xCCA9], CIPHER_SUITES[0xC028]
    assert (gcm.key_len, gcm.fixed_iv_len, gcm.record_iv_len, gcm.tag_len, gcm.prf_hash) == (
        32, 4, 8, 16, "sha384"
    )  # fmt: skip
    assert (chacha.fixed_iv_len, chacha.record_iv_len, chacha.tag_len) == (12, 0, 16)
    assert (cbc.mac, cbc.mac_len, cbc.prf_hash, cbc.tag_len) == ("sha384", 48, "sha384", 0)
    assert CIPHER_SUITES[0x002F].mac == "sha1"
    assert CIPHER_SUITES[0x002F].prf_hash == "sha256"
    assert CIPHER_SUITES[0x1305].tag_len == 8
    assert all(info.tls13 == (0x1301 <= code <= 0x1305) for code, info in CIPHER_SUITES.items())
    assert fixed_expansion_bytes(gcm, 0x0303) == 24
    assert fixed_expansion_bytes(chacha, 0x0303) == 16
    assert fixed_expansion_bytes(CIPHER_SUITES[0x1301], 0x0304) == 17
    assert fixed_expansion_bytes(CIPHER_SUITES[0x002F], 0x0301) == 21  # MAC + pad length byte
    assert fixed_expansion_bytes(CIPHER_SUITES[0x002F], 0x0302) == 37  # + explicit IV


# --- live OpenSSL sessions in memory ------------------------------------------------------------

#: OpenSSL's SSL_OP_NO_ENCRYPT_THEN_MAC (SSL_OP_BIT(19)); Python's ssl module has no name for it.
OP_NO_ENCRYPT_THEN_MAC = 1 << 19
REQUEST = b"GET /memory HTTP/1.1\r\nHost: wireprobe.test\r\n\r\n"
SECOND_REQUEST = b"GET /again HTTP/1.1\r\nHost: wireprobe.test\r\n\r\n"
#: 40 000 body bytes: more than two maximal records (2**14, RFC 8446 5.1), so several sequence
#: numbers and a short last record are exercised.
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 40000\r\n\r\n" + bytes(range(250)) * 160


def write_certificate(directory: Path, kind: str) -> tuple[Path, Path]:
    """A self-signed certificate and key ("rsa" or "ec") as PEM files in ``directory``."""
    key = (
        rsa.generate_private_key(65537, 2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wireprobe.test")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{kind}.crt", directory / f"{kind}.key"
    cert_path.write_bytes(cert.public_bytes(Encoding.PEM))
    key_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return cert_path, key_path


@dataclass
class Wire:
    """The bytes each side put on the (memory) wire, as a capture would hold them."""

    c2s: bytearray = field(default_factory=bytearray)
    s2c: bytearray = field(default_factory=bytearray)


def converse(
    directory: Path, kind: str, version: ssl.TLSVersion, ciphers: str | None, *, etm: bool = True
) -> Wire:
    """A client and a server in memory: handshake, two requests, one long response, close."""
    cert, key = write_certificate(directory, kind)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    client_ctx.keylog_filename = str(directory / "session.keys")
    with warnings.catch_warnings():  # TLS 1.0 and 1.1 are deprecated, and tested on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        for ctx in (server_ctx, client_ctx):
            ctx.minimum_version = ctx.maximum_version = version
            if ciphers:
                ctx.set_ciphers(ciphers)
    if not etm:
        server_ctx.options |= OP_NO_ENCRYPT_THEN_MAC
    bios = [ssl.MemoryBIO() for _ in range(4)]  # client in, client out, server in, server out
    client = client_ctx.wrap_bio(bios[0], bios[1], server_hostname="wireprobe.test")
    server = server_ctx.wrap_bio(bios[2], bios[3], server_side=True)
    wire = Wire()

    def pump() -> None:
        c2s, s2c = bios[1].read(), bios[3].read()
        wire.c2s += c2s
        wire.s2c += s2c
        bios[2].write(c2s)
        bios[0].write(s2c)

    for _ in range(8):
        finished = [attempt(side.do_handshake) for side in (client, server)]
        pump()
        if all(finished):
            break
    client.write(REQUEST)
    client.write(SECOND_REQUEST)
    pump()
    assert read_all(server) == REQUEST + SECOND_REQUEST
    server.write(RESPONSE)
    pump()
    assert read_all(client) == RESPONSE
    attempt(client.unwrap)  # close_notify
    pump()
    return wire


def attempt(step: Callable[[], object]) -> bool:
    """Run an SSLObject step; False while it waits for the peer."""
    try:
        step()
    except ssl.SSLWantReadError:
        return False
    return True


def read_all(side: ssl.SSLObject) -> bytes:
    data = bytearray()
    while True:
        try:
            data += side.read(1 << 16)
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            return bytes(data)


def check_conversation(wire: Wire, keylog: Path, suite: int) -> tuple[Direction, Direction]:
    keys = KeyLog()
    keys.load(str(keylog))
    client_records, server_records = split_records(bytes(wire.c2s)), split_records(bytes(wire.s2c))
    hellos = read_hellos(client_records, server_records)
    assert hellos.suite == suite
    opener = open_tls13 if CIPHER_SUITES[suite].tls13 else open_tls12
    client, server = opener(client_records, server_records, keys)
    assert bytes(client.app) == REQUEST + SECOND_REQUEST
    assert bytes(server.app) == RESPONSE
    assert client.alerts == [b"\x01\x00"]  # warning close_notify (RFC 8446 6.1)
    return client, server


TLS12 = ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize(
    ("kind", "version", "ciphers", "etm", "suite"),
    [
        ("rsa", TLS12, "ECDHE-RSA-AES128-GCM-SHA256", True, 0xC02F),
        ("rsa", TLS12, "AES256-GCM-SHA384", True, 0x009D),
        ("rsa", TLS12, "ECDHE-RSA-CHACHA20-POLY1305", True, 0xCCA8),
        ("ec", TLS12, "ECDHE-ECDSA-AES128-CCM", True, 0xC0AC),
        ("ec", TLS12, "ECDHE-ECDSA-AES256-CCM8", True, 0xC0AF),
        ("rsa", TLS12, "ECDHE-RSA-AES128-SHA", True, 0xC013),
        ("rsa", TLS12, "ECDHE-RSA-AES128-SHA", False, 0xC013),
        ("rsa", TLS12, "AES256-SHA256", False, 0x003D),
        ("ec", TLS12, "ECDHE-ECDSA-AES256-SHA384", True, 0xC024),
        ("ec", TLS12, "ECDHE-ECDSA-AES256-SHA384", False, 0xC024),
        ("rsa", ssl.TLSVersion.TLSv1_1, "ECDHE-RSA-AES256-SHA:@SECLEVEL=0", False, 0xC014),
        ("rsa", ssl.TLSVersion.TLSv1, "ECDHE-RSA-AES128-SHA:@SECLEVEL=0", False, 0xC013),
        ("rsa", ssl.TLSVersion.TLSv1, "ECDHE-RSA-AES128-SHA:@SECLEVEL=0", True, 0xC013),
        ("rsa", TLS12, "NULL-SHA256:@SECLEVEL=0", False, 0x003B),
        ("rsa", ssl.TLSVersion.TLSv1_3, None, False, 0x1302),  # OpenSSL's first choice
    ],
)
def test_an_openssl_session_in_memory_decrypts_to_what_was_sent(
    tmp_path: Path, kind: str, version: ssl.TLSVersion, ciphers: str | None, etm: bool, suite: int
) -> None:
    try:
        wire = converse(tmp_path, kind, version, ciphers, etm=etm)
    except ssl.SSLError as err:  # pragma: no cover - depends on how OpenSSL was built
        pytest.fail(f"this OpenSSL cannot run {ciphers} over {version.name}: {err}")
    client_records = split_records(bytes(wire.c2s))
    hellos = read_hellos(client_records, split_records(bytes(wire.s2c)))
    if CIPHER_SUITES[suite].cipher == "aes-cbc":
        assert hellos.encrypt_then_mac == etm
    check_conversation(wire, tmp_path / "session.keys", suite)


#: TLS 1.3 suites by OpenSSL name.  Python's ssl module cannot choose TLS 1.3 suites, but
#: OpenSSL reads them from its configuration file at start-up, so each runs in a child process
#: started with OPENSSL_CONF naming a file that allows only that suite.
TLS13_SUITES = {
    "TLS_AES_128_GCM_SHA256": 0x1301,
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
    "TLS_AES_128_CCM_SHA256": 0x1304,
    "TLS_AES_128_CCM_8_SHA256": 0x1305,
}
OPENSSL_CONF = """openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Ciphersuites = {suite}
"""


def test_each_tls13_suite_from_openssl_decrypts_to_what_was_sent(tmp_path: Path) -> None:
    children = {}
    for name in TLS13_SUITES:
        directory = tmp_path / name
        directory.mkdir()
        (directory / "openssl.cnf").write_text(OPENSSL_CONF.format(suite=name))
        env = dict(os.environ, OPENSSL_CONF=str(directory / "openssl.cnf"))
        env["PYTHONPATH"] = str(TESTS.parent)
        children[name] = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(directory)],
            env=env,
            stderr=subprocess.PIPE,
        )
    for name, child in children.items():
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err.decode()
        directory = tmp_path / name
        wire = Wire(
            bytearray((directory / "c2s").read_bytes()), bytearray((directory / "s2c").read_bytes())
        )
        client, server = check_conversation(wire, directory / "session.keys", TLS13_SUITES[name])
        assert client.handshake == [FINISHED]
        assert server.handshake[:5] == [8, 11, 15, FINISHED, 4]  # EE Cert CV Fin NST


def converse_to_files(directory: Path) -> None:
    """Child process: one TLS 1.3 conversation, its wire bytes written next to its key log."""
    wire = converse(directory, "ec", ssl.TLSVersion.TLSv1_3, None)
    (directory / "c2s").write_bytes(wire.c2s)
    (directory / "s2c").write_bytes(wire.s2c)


if __name__ == "__main__":
    converse_to_files(Path(sys.argv[1]))
