"""TLS record decryption from logged secrets — the API ``analyzer/tls/decoder.py`` uses.

Sans-IO and stateless apart from each direction's record sequence number (and, in TLS 1.0 CBC,
the chained IV).  Typical use::

    info = CIPHER_SUITES.get(suite)                  # None: cannot decrypt this suite
    # TLS <= 1.2 (RFC 5246): one master secret per handshake, logged as CLIENT_RANDOM
    to_resp, to_orig = tls12_decryptors(version, suite, master, client_random, server_random,
                                        encrypt_then_mac=etm_negotiated)
    # TLS 1.3 (RFC 8446): one decryptor per traffic secret and direction
    hs_server = tls13_decryptor(suite, server_handshake_traffic_secret)
    app_server = tls13_decryptor(suite, tls13_next_secret(suite, secret))   # after KeyUpdate
    content_type, plaintext = app_server.decrypt(23, 0x0303, fragment)

``RecordDecryptor.decrypt(content_type, version, fragment)`` takes the record header's type and
version and the record body (the ``length`` bytes after the 5-byte header) and returns the real
content type and the plaintext.  It counts records itself: call it once per record, in order,
starting with the first record the peer protected with these keys (sequence number 0: RFC 5246
6.1, RFC 8446 5.3).  Any failure (bad tag, MAC or padding, a body too short) raises
``DecodeError("tls.decrypt_failed")`` and leaves the decryptor exactly as it was, so the caller may
try the same record with other keys (as a server skips rejected 0-RTT records, RFC 8446 4.2.10).
An unknown suite or version given to a factory raises ``DecodeError("tls.unsupported_cipher")``.
No message or exception ever contains key material.

What is covered (``CIPHER_SUITES``): TLS 1.3 AES-GCM, ChaCha20-Poly1305 and AES-CCM suites;
TLS 1.0-1.2 AES-GCM (RFC 5288), AES-CCM (RFC 6655, 7251), ChaCha20-Poly1305 (RFC 7905),
AES-CBC with HMAC-SHA1/SHA256/SHA384 (MAC-then-encrypt, or encrypt-then-MAC of RFC 7366), and the
NULL-cipher suites.  TLS 1.3 drafts 18-28 (versions 0x7f12-0x7f1c) are accepted by
``tls13_decryptor(..., version=...)``: the "TLS 1.3, " label prefix before draft 20 and the empty
additional data before draft 25.  Not covered: SSL 3.0 (its own MAC and key derivation), 3DES,
RC4, Camellia, ARIA, and compression.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from analyzer.errors import DecodeError

#: Anomaly named by every decryption failure.
DECRYPT_FAILED: Final = "tls.decrypt_failed"
#: Anomaly named when a factory is given a suite or version this module cannot decrypt.
UNSUPPORTED: Final = "tls.unsupported_cipher"

TLS1_0, TLS1_1, TLS1_2, TLS1_3 = 0x0301, 0x0302, 0x0303, 0x0304
#: TLS 1.3 drafts put 0x7f00 + draft number in supported_versions (RFC 8446 draft history).
DRAFT_BASE = 0x7F00
#: The oldest draft whose record protection matches this module (draft-18 shipped in browsers).
FIRST_DRAFT, LAST_DRAFT = 18, 28
#: draft-20 changed the HKDF label prefix from "TLS 1.3, " to "tls13 ".
DRAFT_TLS13_PREFIX = 20
#: draft-25 made the record header the AEAD additional data (it was empty before).
DRAFT_HEADER_AAD = 25

#: AES block length, also the explicit CBC IV of TLS >= 1.1 (RFC 5246 6.2.3.2).
AES_BLOCK_BYTES = 16
#: The 48-byte master secret of TLS <= 1.2 (RFC 5246 8.1).
MASTER_SECRET_BYTES = 48
#: ClientHello and ServerHello randoms (RFC 5246 7.4.1.2).
RANDOM_BYTES = 32
#: Per-record nonce of the AEAD ciphers (RFC 8446 5.3, RFC 7905 2, RFC 5288 3).
AEAD_NONCE_BYTES = 12
#: The explicit part of the TLS 1.2 GCM/CCM nonce carried at the start of each record (RFC 5288 3).
EXPLICIT_NONCE_BYTES = 8
#: Authentication tag of GCM, ChaCha20-Poly1305 and CCM; CCM_8 suites use 8 (RFC 6655 3).
AEAD_TAG_BYTES = 16

#: Output length of each HMAC hash (RFC 2104 with the FIPS 180-4 / RFC 1321 digests).
HASH_BYTES: dict[str, int] = {"md5": 16, "sha1": 20, "sha256": 32, "sha384": 48}


@dataclass(frozen=True, slots=True, kw_only=True)
class SuiteInfo:
    """One cipher suite's record protection (one row of ``CIPHER_SUITES``)."""

    #: IANA code point
    code: int
    #: IANA name, e.g. "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    name: str
    #: a TLS 1.3 suite (key and IV from HKDF-Expand-Label, inner content type)
    tls13: bool
    #: "aes-gcm" | "aes-ccm" | "chacha20-poly1305" | "aes-cbc" | "null"
    cipher: str
    #: encryption key bytes (0 for NULL)
    key_len: int
    #: implicit IV bytes from the key block: 4-byte GCM/CCM salt in 1.2, 12 for ChaCha20 and
    #: TLS 1.3, 16 for CBC (used as the first IV only by TLS 1.0), 0 for NULL
    fixed_iv_len: int
    #: explicit nonce/IV bytes at the start of each record: 8 for GCM/CCM in 1.2, 16 for CBC in
    #: TLS >= 1.1 (0 in TLS 1.0, see ``fixed_expansion_bytes``), 0 otherwise
    record_iv_len: int
    #: HMAC hash for CBC and NULL suites ("md5" | "sha1" | "sha256" | "sha384"), None for AEAD
    mac: str | None
    #: HMAC output bytes appended to each record (0 for AEAD)
    mac_len: int
    #: AEAD tag bytes appended to each record (0 for CBC and NULL)
    tag_len: int
    #: hash of the TLS 1.2 PRF / TLS 1.3 HKDF: "sha256" | "sha384"
    prf_hash: str


def fixed_expansion_bytes(info: SuiteInfo, version: int) -> int:
    """Bytes every protected record adds to its plaintext, known without keys.

    AEAD in 1.2: explicit nonce + tag; TLS 1.3: tag + the inner content-type byte (padding is
    unknowable); CBC: explicit IV (TLS >= 1.1) + MAC + the padding-length byte (further padding
    is unknowable, so this is a lower bound); NULL: the MAC.
    """
    if info.tls13:
        return info.tag_len + 1
    if info.cipher == "aes-cbc":
        explicit_iv = info.record_iv_len if version >= TLS1_1 else 0
        return explicit_iv + info.mac_len + 1
    return info.record_iv_len + info.tag_len + info.mac_len


# IANA names of the suites decrypted (https://www.iana.org/assignments/tls-parameters).  Every
# record-protection parameter follows from the name (see ``suite_from_name``), so the table
# cannot disagree with itself.
SUITE_NAMES: dict[int, str] = {
    # TLS 1.3, RFC 8446 B.4
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0x1304: "TLS_AES_128_CCM_SHA256",
    0x1305: "TLS_AES_128_CCM_8_SHA256",
    # NULL ciphers (RFC 5246 A.5, RFC 4785, RFC 4492, RFC 5487)
    0x0001: "TLS_RSA_WITH_NULL_MD5",
    0x0002: "TLS_RSA_WITH_NULL_SHA",
    0x003B: "TLS_RSA_WITH_NULL_SHA256",
    0x002C: "TLS_PSK_WITH_NULL_SHA",
    0x00B0: "TLS_PSK_WITH_NULL_SHA256",
    0xC006: "TLS_ECDHE_ECDSA_WITH_NULL_SHA",
    0xC010: "TLS_ECDHE_RSA_WITH_NULL_SHA",
    # AES-CBC (RFC 5246 A.5, RFC 4492, RFC 5289, RFC 4279, RFC 5487, RFC 5489)
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x0032: "TLS_DHE_DSS_WITH_AES_128_CBC_SHA",
    0x0038: "TLS_DHE_DSS_WITH_AES_256_CBC_SHA",
    0x0033: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    0x0039: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    0x0034: "TLS_DH_anon_WITH_AES_128_CBC_SHA",
    0x003A: "TLS_DH_anon_WITH_AES_256_CBC_SHA",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256",
    0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
    0x0040: "TLS_DHE_DSS_WITH_AES_128_CBC_SHA256",
    0x006A: "TLS_DHE_DSS_WITH_AES_256_CBC_SHA256",
    0x0067: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    0x006B: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    0x006C: "TLS_DH_anon_WITH_AES_128_CBC_SHA256",
    0x006D: "TLS_DH_anon_WITH_AES_256_CBC_SHA256",
    0x008C: "TLS_PSK_WITH_AES_128_CBC_SHA",
    0x008D: "TLS_PSK_WITH_AES_256_CBC_SHA",
    0x0090: "TLS_DHE_PSK_WITH_AES_128_CBC_SHA",
    0x0091: "TLS_DHE_PSK_WITH_AES_256_CBC_SHA",
    0x0094: "TLS_RSA_PSK_WITH_AES_128_CBC_SHA",
    0x0095: "TLS_RSA_PSK_WITH_AES_256_CBC_SHA",
    0x00AE: "TLS_PSK_WITH_AES_128_CBC_SHA256",
    0x00AF: "TLS_PSK_WITH_AES_256_CBC_SHA384",
    0x00B2: "TLS_DHE_PSK_WITH_AES_128_CBC_SHA256",
    0x00B3: "TLS_DHE_PSK_WITH_AES_256_CBC_SHA384",
    0x00B6: "TLS_RSA_PSK_WITH_AES_128_CBC_SHA256",
    0x00B7: "TLS_RSA_PSK_WITH_AES_256_CBC_SHA384",
    0xC004: "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA",
    0xC005: "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC00E: "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA",
    0xC00F: "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC018: "TLS_ECDH_anon_WITH_AES_128_CBC_SHA",
    0xC019: "TLS_ECDH_anon_WITH_AES_256_CBC_SHA",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC025: "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA256",
    0xC026: "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    0xC029: "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA256",
    0xC02A: "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA384",
    0xC035: "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA",
    0xC036: "TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA",
    0xC037: "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256",
    0xC038: "TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA384",
    # AES-GCM (RFC 5288, RFC 5289, RFC 5487, RFC 8442)
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256",
    0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    0x00A2: "TLS_DHE_DSS_WITH_AES_128_GCM_SHA256",
    0x00A3: "TLS_DHE_DSS_WITH_AES_256_GCM_SHA384",
    0x00A6: "TLS_DH_anon_WITH_AES_128_GCM_SHA256",
    0x00A7: "TLS_DH_anon_WITH_AES_256_GCM_SHA384",
    0x00A8: "TLS_PSK_WITH_AES_128_GCM_SHA256",
    0x00A9: "TLS_PSK_WITH_AES_256_GCM_SHA384",
    0x00AA: "TLS_DHE_PSK_WITH_AES_128_GCM_SHA256",
    0x00AB: "TLS_DHE_PSK_WITH_AES_256_GCM_SHA384",
    0x00AC: "TLS_RSA_PSK_WITH_AES_128_GCM_SHA256",
    0x00AD: "TLS_RSA_PSK_WITH_AES_256_GCM_SHA384",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02D: "TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02E: "TLS_ECDH_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xC031: "TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256",
    0xC032: "TLS_ECDH_RSA_WITH_AES_256_GCM_SHA384",
    0xD001: "TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256",
    0xD002: "TLS_ECDHE_PSK_WITH_AES_256_GCM_SHA384",
    # AES-CCM (RFC 6655, RFC 7251, RFC 8442)
    0xC09C: "TLS_RSA_WITH_AES_128_CCM",
    0xC09D: "TLS_RSA_WITH_AES_256_CCM",
    0xC09E: "TLS_DHE_RSA_WITH_AES_128_CCM",
    0xC09F: "TLS_DHE_RSA_WITH_AES_256_CCM",
    0xC0A0: "TLS_RSA_WITH_AES_128_CCM_8",
    0xC0A1: "TLS_RSA_WITH_AES_256_CCM_8",
    0xC0A2: "TLS_DHE_RSA_WITH_AES_128_CCM_8",
    0xC0A3: "TLS_DHE_RSA_WITH_AES_256_CCM_8",
    0xC0A4: "TLS_PSK_WITH_AES_128_CCM",
    0xC0A5: "TLS_PSK_WITH_AES_256_CCM",
    0xC0A6: "TLS_DHE_PSK_WITH_AES_128_CCM",
    0xC0A7: "TLS_DHE_PSK_WITH_AES_256_CCM",
    0xC0A8: "TLS_PSK_WITH_AES_128_CCM_8",
    0xC0A9: "TLS_PSK_WITH_AES_256_CCM_8",
    0xC0AA: "TLS_PSK_DHE_WITH_AES_128_CCM_8",
    0xC0AB: "TLS_PSK_DHE_WITH_AES_256_CCM_8",
    0xC0AC: "TLS_ECDHE_ECDSA_WITH_AES_128_CCM",
    0xC0AD: "TLS_ECDHE_ECDSA_WITH_AES_256_CCM",
    0xC0AE: "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
    0xC0AF: "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8",
    0xD003: "TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256",
    0xD005: "TLS_ECDHE_PSK_WITH_AES_128_CCM_SHA256",
    # ChaCha20-Poly1305 (RFC 7905)
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAA: "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAB: "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAC: "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAD: "TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAE: "TLS_RSA_PSK_WITH_CHACHA20_POLY1305_SHA256",
}

#: Name fragment -> (cipher, key bytes).  Checked in order: the first match wins.
CIPHER_BY_NAME: tuple[tuple[str, str, int], ...] = (
    ("_CHACHA20_POLY1305", "chacha20-poly1305", 32),
    ("_AES_128_GCM", "aes-gcm", 16),
    ("_AES_256_GCM", "aes-gcm", 32),
    ("_AES_128_CCM", "aes-ccm", 16),
    ("_AES_256_CCM", "aes-ccm", 32),
    ("_AES_128_CBC", "aes-cbc", 16),
    ("_AES_256_CBC", "aes-cbc", 32),
    ("_WITH_NULL", "null", 0),
)

#: Last name component -> HMAC hash of CBC/NULL suites (RFC 5246 A.5: "SHA" means SHA-1).
MAC_BY_SUFFIX: dict[str, str] = {
    "MD5": "md5",
    "SHA": "sha1",
    "SHA256": "sha256",
    "SHA384": "sha384",
}


def suite_from_name(code: int, name: str) -> SuiteInfo:
    """The record-protection row of a suite, read from its IANA name."""
    cipher, key_len = next((c, k) for part, c, k in CIPHER_BY_NAME if part in name)
    suffix = name.rsplit("_", 1)[1]
    tls13 = "_WITH_" not in name
    aead = cipher not in ("aes-cbc", "null")
    mac = None if aead else MAC_BY_SUFFIX[suffix]
    return SuiteInfo(
        code=code,
        name=name,
        tls13=tls13,
        cipher=cipher,
        key_len=key_len,
        fixed_iv_len=implicit_iv_bytes(cipher, tls13),
        record_iv_len=explicit_iv_bytes(cipher, tls13),
        mac=mac,
        mac_len=HASH_BYTES[mac] if mac else 0,
        tag_len=(8 if "_CCM_8" in name else AEAD_TAG_BYTES) if aead else 0,
        # RFC 5246 5: the PRF hash is SHA-256 unless the suite names SHA-384 (RFC 5289 3.2).
        prf_hash="sha384" if suffix == "SHA384" else "sha256",
    )


def implicit_iv_bytes(cipher: str, tls13: bool) -> int:
    """IV bytes taken from the key block (RFC 5246 6.3) or HKDF (RFC 8446 7.3)."""
    if tls13 or cipher == "chacha20-poly1305":
        return AEAD_NONCE_BYTES
    return {"aes-gcm": 4, "aes-ccm": 4, "aes-cbc": AES_BLOCK_BYTES, "null": 0}[cipher]


def explicit_iv_bytes(cipher: str, tls13: bool) -> int:
    """Nonce/IV bytes carried in each record (RFC 5288 3, RFC 6655 3, RFC 5246 6.2.3.2)."""
    if tls13:
        return 0
    return {"aes-gcm": 8, "aes-ccm": 8, "aes-cbc": AES_BLOCK_BYTES}.get(cipher, 0)


#: Every suite this module can decrypt, by code point.
CIPHER_SUITES: dict[int, SuiteInfo] = {
    code: suite_from_name(code, name) for code, name in SUITE_NAMES.items()
}


# --- key derivation -------------------------------------------------------------------------


def hmac_digest(hash_name: str, key: bytes, data: bytes) -> bytes:
    """HMAC (RFC 2104) with a hashlib hash name."""
    return hmac.new(key, data, hash_name).digest()


def p_hash(hash_name: str, secret: bytes, seed: bytes, length: int) -> bytes:
    """P_hash of RFC 5246 5: HMAC(secret, A(i) + seed) with A(i) = HMAC(secret, A(i-1))."""
    out = b""
    a = seed
    while len(out) < length:
        a = hmac_digest(hash_name, secret, a)
        out += hmac_digest(hash_name, secret, a + seed)
    return out[:length]


def prf(
    version: int, prf_hash: str, secret: bytes, label: bytes, seed: bytes, length: int
) -> bytes:
    """The TLS PRF: RFC 5246 5 for TLS 1.2, RFC 2246 5 (P_MD5 XOR P_SHA-1) for TLS 1.0/1.1."""
    if version >= TLS1_2:
        return p_hash(prf_hash, secret, label + seed, length)
    # RFC 2246 5: the secret is cut in two halves that share a byte when its length is odd.
    half = (len(secret) + 1) // 2
    md5 = p_hash("md5", secret[:half], label + seed, length)
    sha1 = p_hash("sha1", secret[len(secret) - half :], label + seed, length)
    return xor_bytes(md5, sha1)


def hkdf_expand(hash_name: str, prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand of RFC 5869 2.3."""
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac_digest(hash_name, prk, block + info + bytes([counter]))
        out += block
        counter += 1
    return out[:length]


def hkdf_expand_label(
    hash_name: str,
    secret: bytes,
    label: bytes,
    context: bytes,
    length: int,
    *,
    prefix: bytes = b"tls13 ",
) -> bytes:
    """HKDF-Expand-Label of RFC 8446 7.1 (``prefix`` is "TLS 1.3, " in drafts before 20)."""
    full_label = prefix + label
    hkdf_label = (
        length.to_bytes(2, "big")
        + bytes([len(full_label)])
        + full_label
        + bytes([len(context)])
        + context
    )
    return hkdf_expand(hash_name, secret, hkdf_label, length)


def xor_bytes(left: bytes, right: bytes) -> bytes:
    """Bytewise XOR of two equal-length strings."""
    return (int.from_bytes(left, "big") ^ int.from_bytes(right, "big")).to_bytes(len(left), "big")


def seq_bytes(seq: int) -> bytes:
    """The 64-bit record sequence number as used in MACs and AEAD data (RFC 5246 6.2.3.1)."""
    return seq.to_bytes(8, "big")


def per_record_nonce(iv: bytes, seq: int) -> bytes:
    """RFC 8446 5.3 / RFC 7905 2: the sequence number, left-padded to the IV length, XOR the IV."""
    return xor_bytes(iv, seq.to_bytes(len(iv), "big"))


def header_aad(seq: int, content_type: int, version: int, length: int) -> bytes:
    """TLS <= 1.2 MAC/AEAD input: seq_num + type + version + length (RFC 5246 6.2.3.1, 6.2.3.3)."""
    return (
        seq_bytes(seq)
        + bytes([content_type])
        + version.to_bytes(2, "big")
        + length.to_bytes(2, "big")
    )


def failed(detail: str) -> DecodeError:
    """The one error of record decryption; ``detail`` names the check, never any key material."""
    return DecodeError(DECRYPT_FAILED, detail)


# --- record decryptors ----------------------------------------------------------------------

Aead = AESGCM | AESCCM | ChaCha20Poly1305


def make_aead(info: SuiteInfo, key: bytes) -> Aead:
    """The cryptography AEAD object for a suite's key."""
    if info.cipher == "chacha20-poly1305":
        return ChaCha20Poly1305(key)
    if info.cipher == "aes-ccm":
        return AESCCM(key, tag_length=info.tag_len)
    return AESGCM(key)


def aead_open(aead: Aead, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """Decrypt and authenticate, turning the library's errors into ``tls.decrypt_failed``."""
    try:
        return aead.decrypt(nonce, ciphertext, aad)
    except InvalidTag as err:
        raise failed("bad AEAD tag") from err
    except ValueError as err:  # e.g. ciphertext shorter than the tag
        raise failed("bad AEAD input") from err


class RecordDecryptor:
    """Opens the records one peer protected with one set of keys, in order.

    ``decrypt(content_type, version, fragment)`` -> ``(real content type, plaintext)``; see the
    module docstring.  Subclasses implement ``_open`` for one record-protection scheme; state
    (the sequence number, the TLS 1.0 chained IV) changes only when a record opens.
    """

    __slots__ = ("_seq", "suite")

    def __init__(self, suite: SuiteInfo) -> None:
        #: the suite whose keys this decryptor holds
        self.suite = suite
        self._seq = 0

    @property
    def seq(self) -> int:
        """Sequence number of the next record to open (0 for the first, RFC 5246 6.1)."""
        return self._seq

    def decrypt(self, content_type: int, version: int, fragment: bytes) -> tuple[int, bytes]:
        """(real content type, plaintext) of the next record, from its header and body.

        Raises ``DecodeError("tls.decrypt_failed")`` on a bad tag, MAC or padding, leaving the
        sequence number unchanged.
        """
        result = self._open(content_type, version, bytes(fragment))
        self._seq += 1
        return result

    def _open(self, content_type: int, version: int, fragment: bytes) -> tuple[int, bytes]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.suite.name} seq={self._seq}>"


class Tls13Decryptor(RecordDecryptor):
    """TLS 1.3 record protection (RFC 8446 5.2-5.4)."""

    __slots__ = ("_aead", "_header_aad", "_iv")

    def __init__(self, suite: SuiteInfo, key: bytes, iv: bytes, *, header_aad: bool) -> None:
        super().__init__(suite)
        self._aead = make_aead(suite, key)
        self._iv = iv
        self._header_aad = header_aad

    def _open(self, content_type: int, version: int, fragment: bytes) -> tuple[int, bytes]:
        # RFC 8446 5.2: the additional data is the record header as sent.
        header = (
            bytes([content_type]) + version.to_bytes(2, "big") + len(fragment).to_bytes(2, "big")
        )
        aad = header if self._header_aad else b""
        inner = aead_open(self._aead, per_record_nonce(self._iv, self._seq), fragment, aad)
        # RFC 8446 5.4: TLSInnerPlaintext = content || type || zeros; the type is the last
        # non-zero byte, and a record of zeros only is an error.
        content = inner.rstrip(b"\x00")
        if not content:
            raise failed("no inner content type")
        return content[-1], content[:-1]


class Aead12Decryptor(RecordDecryptor):
    """TLS 1.2 AEAD: GCM/CCM, explicit nonce (RFC 5288 3, RFC 6655 3); ChaCha20 (RFC 7905)."""

    __slots__ = ("_aead", "_iv")

    def __init__(self, suite: SuiteInfo, key: bytes, iv: bytes) -> None:
        super().__init__(suite)
        self._aead = make_aead(suite, key)
        self._iv = iv

    def _open(self, content_type: int, version: int, fragment: bytes) -> tuple[int, bytes]:
        explicit = self.suite.record_iv_len
        if len(fragment) < explicit + self.suite.tag_len:
            raise failed("record shorter than nonce and tag")
        if explicit:
            # GCMNonce = salt (4 bytes from the key block) + nonce_explicit (8, in the record).
            nonce = self._iv + fragment[:explicit]
        else:
            nonce = per_record_nonce(self._iv, self._seq)
        ciphertext = fragment[explicit:]
        plain_len = len(ciphertext) - self.suite.tag_len
        aad = header_aad(self._seq, content_type, version, plain_len)
        return content_type, aead_open(self._aead, nonce, ciphertext, aad)


class CbcDecryptor(RecordDecryptor):
    """TLS 1.0-1.2 AES-CBC + HMAC, MAC-then-encrypt (RFC 5246 6.2.3.2) or EtM (RFC 7366)."""

    __slots__ = ("_etm", "_explicit_iv", "_iv", "_key", "_mac_key")

    def __init__(
        self, suite: SuiteInfo, version: int, mac_key: bytes, key: bytes, iv: bytes, *, etm: bool
    ) -> None:
        super().__init__(suite)
        self._mac_key = mac_key
        self._key = key
        # TLS 1.0 chains the IV across records (RFC 2246 6.2.3.2); 1.1 and later carry it.
        self._explicit_iv = version >= TLS1_1
        self._iv = iv
        self._etm = etm

    def _open(self, content_type: int, version: int, fragment: bytes) -> tuple[int, bytes]:
        if self._etm:
            body = self._check_mac(content_type, version, fragment)
            iv, ciphertext = self._split_iv(body)
            content = strip_padding(self._cbc_decrypt(iv, ciphertext))
        else:
            iv, ciphertext = self._split_iv(fragment)
            content = self._check_mac(
                content_type, version, strip_padding(self._cbc_decrypt(iv, ciphertext))
            )
        if not self._explicit_iv:
            self._iv = ciphertext[-AES_BLOCK_BYTES:]
        return content_type, content

    def _split_iv(self, body: bytes) -> tuple[bytes, bytes]:
        """(IV, ciphertext): the first block in TLS >= 1.1, the chained IV in TLS 1.0."""
        if self._explicit_iv:
            return body[:AES_BLOCK_BYTES], body[AES_BLOCK_BYTES:]
        return self._iv, body

    def _cbc_decrypt(self, iv: bytes, ciphertext: bytes) -> bytes:
        if not ciphertext or len(ciphertext) % AES_BLOCK_BYTES or len(iv) != AES_BLOCK_BYTES:
            raise failed("CBC ciphertext not whole blocks")
        decryptor = Cipher(algorithms.AES(self._key), modes.CBC(iv)).decryptor()
        return decryptor.update(ciphertext) + decryptor.finalize()

    def _check_mac(self, content_type: int, version: int, data: bytes) -> bytes:
        """``data`` without its trailing MAC, after checking the MAC over the rest."""
        return check_mac(self.suite, self._mac_key, self._seq, content_type, version, data)


class NullDecryptor(RecordDecryptor):
    """NULL cipher with an HMAC (RFC 5246 6.2.3.1): the content is in clear, only the MAC checks."""

    __slots__ = ("_mac_key",)

    def __init__(self, suite: SuiteInfo, mac_key: bytes) -> None:
        super().__init__(suite)
        self._mac_key = mac_key

    def _open(self, content_type: int, version: int, fragment: bytes) -> tuple[int, bytes]:
        return content_type, check_mac(
            self.suite, self._mac_key, self._seq, content_type, version, fragment
        )


def check_mac(
    suite: SuiteInfo, mac_key: bytes, seq: int, content_type: int, version: int, data: bytes
) -> bytes:
    """``data`` minus its trailing HMAC, checked over seq + header + the rest (RFC 5246 6.2.3.1)."""
    assert suite.mac is not None  # only CBC and NULL suites, which always have one
    if len(data) < suite.mac_len:
        raise failed("record shorter than its MAC")
    content, mac = data[: len(data) - suite.mac_len], data[len(data) - suite.mac_len :]
    expected = hmac_digest(
        suite.mac, mac_key, header_aad(seq, content_type, version, len(content)) + content
    )
    if not hmac.compare_digest(mac, expected):
        raise failed("bad MAC")
    return content


def strip_padding(padded: bytes) -> bytes:
    """Drop CBC padding: padding_length + 1 bytes all equal to padding_length (RFC 5246 6.2.3.2)."""
    pad = padded[-1]
    if pad + 1 > len(padded) or padded[-pad - 1 :] != bytes([pad]) * (pad + 1):
        raise failed("bad CBC padding")
    return padded[: -pad - 1]


# --- factories ------------------------------------------------------------------------------


def lookup_suite(suite: int, *, tls13: bool) -> SuiteInfo:
    """The table row of ``suite`` for the TLS generation asked, or ``tls.unsupported_cipher``."""
    info = CIPHER_SUITES.get(suite)
    if info is None or info.tls13 != tls13:
        raise DecodeError(UNSUPPORTED, f"cipher suite 0x{suite:04x}")
    return info


def tls12_decryptors(
    version: int,
    suite: int,
    master_secret: bytes,
    client_random: bytes,
    server_random: bytes,
    *,
    encrypt_then_mac: bool = False,
) -> tuple[RecordDecryptor, RecordDecryptor]:
    """(client->server, server->client) decryptors for TLS 1.0-1.2 from the master secret.

    ``version`` is the negotiated version (ServerHello), ``encrypt_then_mac`` whether the server
    echoed the encrypt_then_mac extension (RFC 7366; CBC suites only, ignored otherwise).
    """
    info = lookup_suite(suite, tls13=False)
    if version not in (TLS1_0, TLS1_1, TLS1_2):
        raise DecodeError(UNSUPPORTED, f"version 0x{version:04x}")
    if info.cipher not in ("aes-cbc", "null") and version < TLS1_2:
        raise DecodeError(UNSUPPORTED, f"AEAD suite 0x{suite:04x} before TLS 1.2")
    if len(master_secret) != MASTER_SECRET_BYTES or len(client_random) != RANDOM_BYTES:
        raise DecodeError(UNSUPPORTED, "master secret or client random of the wrong length")
    if len(server_random) != RANDOM_BYTES:
        raise DecodeError(UNSUPPORTED, "server random of the wrong length")
    # RFC 5246 6.3: key_block = PRF(master_secret, "key expansion", server_random + client_random)
    # cut into client/server MAC keys, client/server keys, client/server IVs.
    sizes = (
        info.mac_len,
        info.mac_len,
        info.key_len,
        info.key_len,
        info.fixed_iv_len,
        info.fixed_iv_len,
    )
    block = prf(
        version,
        info.prf_hash,
        master_secret,
        b"key expansion",
        server_random + client_random,
        sum(sizes),
    )
    parts: list[bytes] = []
    for size in sizes:
        parts.append(block[:size])
        block = block[size:]
    client_mac, server_mac, client_key, server_key, client_iv, server_iv = parts
    etm = encrypt_then_mac and info.cipher == "aes-cbc"
    return (
        tls12_decryptor(info, version, client_mac, client_key, client_iv, etm=etm),
        tls12_decryptor(info, version, server_mac, server_key, server_iv, etm=etm),
    )


def tls12_decryptor(
    info: SuiteInfo, version: int, mac_key: bytes, key: bytes, iv: bytes, *, etm: bool
) -> RecordDecryptor:
    """One direction's decryptor for the suite's record-protection scheme."""
    if info.cipher == "aes-cbc":
        return CbcDecryptor(info, version, mac_key, key, iv, etm=etm)
    if info.cipher == "null":
        return NullDecryptor(info, mac_key)
    return Aead12Decryptor(info, key, iv)


def draft_number(version: int) -> int | None:
    """The draft number of a TLS 1.3 draft version (0x7f14 -> 20), None for RFC 8446."""
    if version == TLS1_3:
        return None
    if DRAFT_BASE + FIRST_DRAFT <= version <= DRAFT_BASE + LAST_DRAFT:
        return version - DRAFT_BASE
    raise DecodeError(UNSUPPORTED, f"version 0x{version:04x}")


def tls13_decryptor(suite: int, traffic_secret: bytes, *, version: int = TLS1_3) -> RecordDecryptor:
    """Decryptor for records protected with one TLS 1.3 traffic secret (RFC 8446 7.3).

    ``version`` is the negotiated version from supported_versions: 0x0304, or a draft
    0x7f12-0x7f1c whose label prefix and additional data differ (see the module docstring).
    """
    info = lookup_suite(suite, tls13=True)
    draft = draft_number(version)
    if len(traffic_secret) != HASH_BYTES[info.prf_hash]:
        raise DecodeError(UNSUPPORTED, "traffic secret of the wrong length for the suite")
    prefix = b"TLS 1.3, " if draft is not None and draft < DRAFT_TLS13_PREFIX else b"tls13 "
    key = hkdf_expand_label(info.prf_hash, traffic_secret, b"key", b"", info.key_len, prefix=prefix)
    iv = hkdf_expand_label(
        info.prf_hash, traffic_secret, b"iv", b"", info.fixed_iv_len, prefix=prefix
    )
    header_aad = draft is None or draft >= DRAFT_HEADER_AAD
    return Tls13Decryptor(info, key, iv, header_aad=header_aad)


def tls13_next_secret(suite: int, traffic_secret: bytes) -> bytes:
    """The next generation of an application traffic secret after KeyUpdate (RFC 8446 7.2)."""
    info = lookup_suite(suite, tls13=True)
    length = HASH_BYTES[info.prf_hash]
    return hkdf_expand_label(info.prf_hash, traffic_secret, b"traffic upd", b"", length)
