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

The suite table lives in ``analyzer.tls.suites`` and the key schedule (PRF, HKDF) in
``analyzer.tls.keys``; their names are importable from here too, as before the split.
"""

from __future__ import annotations

import hmac
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from analyzer.errors import DecodeError
from analyzer.tls.keys import (
    DRAFT_BASE,
    DRAFT_HEADER_AAD,
    DRAFT_TLS13_PREFIX,
    FIRST_DRAFT,
    LAST_DRAFT,
    MASTER_SECRET_BYTES,
    RANDOM_BYTES,
    TLS1_0,
    TLS1_1,
    TLS1_2,
    TLS1_3,
    draft_number,
    hkdf_expand,
    hkdf_expand_label,
    hmac_digest,
    p_hash,
    prf,
    tls12_key_block,
    tls13_next_secret,
    tls13_traffic_keys,
    xor_bytes,
)
from analyzer.tls.suites import (
    AEAD_NONCE_BYTES,
    AEAD_TAG_BYTES,
    AES_BLOCK_BYTES,
    CIPHER_BY_NAME,
    CIPHER_SUITES,
    HASH_BYTES,
    MAC_BY_SUFFIX,
    SUITE_NAMES,
    UNSUPPORTED,
    SuiteInfo,
    explicit_iv_bytes,
    fixed_expansion_bytes,
    implicit_iv_bytes,
    lookup_suite,
    suite_from_name,
)

__all__ = [
    "AEAD_NONCE_BYTES",
    "AEAD_TAG_BYTES",
    "AES_BLOCK_BYTES",
    "CIPHER_BY_NAME",
    "CIPHER_SUITES",
    "DECRYPT_FAILED",
    "DRAFT_BASE",
    "DRAFT_HEADER_AAD",
    "DRAFT_TLS13_PREFIX",
    "EXPLICIT_NONCE_BYTES",
    "FIRST_DRAFT",
    "HASH_BYTES",
    "LAST_DRAFT",
    "MAC_BY_SUFFIX",
    "MASTER_SECRET_BYTES",
    "RANDOM_BYTES",
    "SUITE_NAMES",
    "TLS1_0",
    "TLS1_1",
    "TLS1_2",
    "TLS1_3",
    "UNSUPPORTED",
    "Aead12Decryptor",
    "CbcDecryptor",
    "NullDecryptor",
    "RecordDecryptor",
    "SuiteInfo",
    "Tls13Decryptor",
    "draft_number",
    "explicit_iv_bytes",
    "fixed_expansion_bytes",
    "hkdf_expand",
    "hkdf_expand_label",
    "hmac_digest",
    "implicit_iv_bytes",
    "lookup_suite",
    "p_hash",
    "prf",
    "suite_from_name",
    "tls12_decryptor",
    "tls12_decryptors",
    "tls13_decryptor",
    "tls13_next_secret",
    "xor_bytes",
]

#: Anomaly named by every decryption failure.
DECRYPT_FAILED: Final = "tls.decrypt_failed"
#: The explicit part of the TLS 1.2 GCM/CCM nonce carried at the start of each record (RFC 5288 3).
EXPLICIT_NONCE_BYTES = 8


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
    client_mac, server_mac, client_key, server_key, client_iv, server_iv = tls12_key_block(
        version, info, master_secret, client_random, server_random
    )
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


def tls13_decryptor(suite: int, traffic_secret: bytes, *, version: int = TLS1_3) -> RecordDecryptor:
    """Decryptor for records protected with one TLS 1.3 traffic secret (RFC 8446 7.3).

    ``version`` is the negotiated version from supported_versions: 0x0304, or a draft
    0x7f12-0x7f1c whose label prefix and additional data differ (see the module docstring).
    """
    info = lookup_suite(suite, tls13=True)
    key, iv, header_aad = tls13_traffic_keys(info, traffic_secret, version)
    return Tls13Decryptor(info, key, iv, header_aad=header_aad)
