"""The TLS key schedule: from a logged secret to record keys (RFC 5246 5-6.3, RFC 8446 7).

Pure functions of bytes.  TLS <= 1.2 cuts a key block out of the PRF of the master secret; TLS 1.3
expands each traffic secret with HKDF-Expand-Label into a key and an IV, and KeyUpdate derives
the next secret from the current one.  Nothing here ever puts key material in an error message.
"""

from __future__ import annotations

import hmac

from analyzer.errors import DecodeError
from analyzer.tls.suites import HASH_BYTES, UNSUPPORTED, SuiteInfo, lookup_suite

TLS1_0, TLS1_1, TLS1_2, TLS1_3 = 0x0301, 0x0302, 0x0303, 0x0304
#: TLS 1.3 drafts put 0x7f00 + draft number in supported_versions (RFC 8446 draft history).
DRAFT_BASE = 0x7F00
#: The oldest draft whose record protection matches this module (draft-18 shipped in browsers).
FIRST_DRAFT, LAST_DRAFT = 18, 28
#: draft-20 changed the HKDF label prefix from "TLS 1.3, " to "tls13 ".
DRAFT_TLS13_PREFIX = 20
#: draft-25 made the record header the AEAD additional data (it was empty before).
DRAFT_HEADER_AAD = 25

#: The 48-byte master secret of TLS <= 1.2 (RFC 5246 8.1).
MASTER_SECRET_BYTES = 48
#: ClientHello and ServerHello randoms (RFC 5246 7.4.1.2).
RANDOM_BYTES = 32


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


def tls12_key_block(
    version: int, info: SuiteInfo, master_secret: bytes, client_random: bytes, server_random: bytes
) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes]:
    """(client MAC key, server MAC key, client key, server key, client IV, server IV).

    RFC 5246 6.3: key_block = PRF(master_secret, "key expansion", server_random + client_random),
    cut in that order.
    """
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
    return client_mac, server_mac, client_key, server_key, client_iv, server_iv


def draft_number(version: int) -> int | None:
    """The draft number of a TLS 1.3 draft version (0x7f14 -> 20), None for RFC 8446."""
    if version == TLS1_3:
        return None
    if DRAFT_BASE + FIRST_DRAFT <= version <= DRAFT_BASE + LAST_DRAFT:
        return version - DRAFT_BASE
    raise DecodeError(UNSUPPORTED, f"version 0x{version:04x}")


def tls13_traffic_keys(
    info: SuiteInfo, traffic_secret: bytes, version: int
) -> tuple[bytes, bytes, bool]:
    """(key, IV, whether the record header is the AEAD additional data) of one traffic secret
    (RFC 8446 7.3), for RFC 8446 or a draft 0x7f12-0x7f1c (see ``analyzer.tls.crypto``)."""
    draft = draft_number(version)
    if len(traffic_secret) != HASH_BYTES[info.prf_hash]:
        raise DecodeError(UNSUPPORTED, "traffic secret of the wrong length for the suite")
    prefix = b"TLS 1.3, " if draft is not None and draft < DRAFT_TLS13_PREFIX else b"tls13 "
    key = hkdf_expand_label(info.prf_hash, traffic_secret, b"key", b"", info.key_len, prefix=prefix)
    iv = hkdf_expand_label(
        info.prf_hash, traffic_secret, b"iv", b"", info.fixed_iv_len, prefix=prefix
    )
    return key, iv, draft is None or draft >= DRAFT_HEADER_AAD


def tls13_next_secret(suite: int, traffic_secret: bytes) -> bytes:
    """The next generation of an application traffic secret after KeyUpdate (RFC 8446 7.2)."""
    info = lookup_suite(suite, tls13=True)
    length = HASH_BYTES[info.prf_hash]
    return hkdf_expand_label(info.prf_hash, traffic_secret, b"traffic upd", b"", length)
