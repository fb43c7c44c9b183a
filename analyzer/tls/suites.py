"""The cipher suites wireprobe can decrypt: one row of record-protection facts per suite.

Every parameter follows from the suite's IANA name (``suite_from_name``), so the table cannot
disagree with itself.  ``fixed_expansion_bytes`` says what a protected record adds to its
plaintext when no keys are at hand (the ledger's ``tls`` layer, DESIGN.md section 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from analyzer.errors import DecodeError

#: Anomaly named when a factory is given a suite or version this package cannot decrypt.
UNSUPPORTED: Final = "tls.unsupported_cipher"

TLS1_1 = 0x0302

#: AES block length, also the explicit CBC IV of TLS >= 1.1 (RFC 5246 6.2.3.2).
AES_BLOCK_BYTES = 16
#: Per-record nonce of the AEAD ciphers (RFC 8446 5.3, RFC 7905 2, RFC 5288 3).
AEAD_NONCE_BYTES = 12
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


#: Every suite this package can decrypt, by code point.
CIPHER_SUITES: dict[int, SuiteInfo] = {
    code: suite_from_name(code, name) for code, name in SUITE_NAMES.items()
}


def lookup_suite(suite: int, *, tls13: bool) -> SuiteInfo:
    """The table row of ``suite`` for the TLS generation asked, or ``tls.unsupported_cipher``."""
    info = CIPHER_SUITES.get(suite)
    if info is None or info.tls13 != tls13:
        raise DecodeError(UNSUPPORTED, f"cipher suite 0x{suite:04x}")
    return info
