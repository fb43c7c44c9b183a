"""TLS handshake messages (RFC 8446 4, RFC 5246 7.4): the types, and the hellos' facts.

Pure parsing: a message body in, a frozen value out.  ``parse_client_hello``,
``parse_server_hello`` and ``parse_encrypted_extensions`` raise ``DecodeError("tls.bad_handshake")``
when a length field points past the end of its container; nothing else is read from the
messages (certificates, key shares and signatures only count as bytes).
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.errors import DecodeError
from analyzer.tls.records import DRAFT_MAJOR

HANDSHAKE_HEADER_BYTES = 4
#: Handshake messages longer than this are counted but not parsed (only certificate chains get
#: near it; nothing this package reads is in them).  Bounds the reassembly buffer.
MAX_HANDSHAKE_BYTES = 256 * 1024

# Handshake message types (RFC 8446 4, RFC 5246 7.4, RFC 6066 8).
HELLO_REQUEST = 0
CLIENT_HELLO = 1
SERVER_HELLO = 2
NEW_SESSION_TICKET = 4
END_OF_EARLY_DATA = 5
ENCRYPTED_EXTENSIONS = 8
CERTIFICATE = 11
SERVER_KEY_EXCHANGE = 12
CERTIFICATE_REQUEST = 13
SERVER_HELLO_DONE = 14
CERTIFICATE_VERIFY = 15
CLIENT_KEY_EXCHANGE = 16
FINISHED = 20
CERTIFICATE_STATUS = 22
KEY_UPDATE = 24

# Extensions (IANA TLS ExtensionType registry).
EXT_SERVER_NAME = 0
EXT_ALPN = 16
EXT_ENCRYPT_THEN_MAC = 22
EXT_EXTENDED_MASTER_SECRET = 23
EXT_SESSION_TICKET = 35
EXT_PRE_SHARED_KEY = 41
EXT_EARLY_DATA = 42
EXT_SUPPORTED_VERSIONS = 43
EXT_KEY_SHARE = 51

#: A KeyUpdate message's header: type 24, body length 1 (RFC 8446 4.6.3).
KEY_UPDATE_HEADER = bytes([KEY_UPDATE, 0, 0, 1])

#: RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest (SHA-256 of
#: "HelloRetryRequest").
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
#: RFC 5246 7.4.1.2 / RFC 8446 4.1.2: the hello randoms.
RANDOM_BYTES = 32


def is_grease(value: int) -> bool:
    """RFC 8701 GREASE values (0x0a0a, 0x1a1a, ...) are offered only to be ignored."""
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF


class _Short(Exception):
    """A length field points past the end of its container."""


class _Reader:
    """Bounds-checked big-endian reads over one handshake message body."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _Short
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, length_bytes: int) -> bytes:
        return self.take(self.uint(length_bytes))

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def parse_extensions(reader: _Reader) -> dict[int, bytes]:
    """Extensions by type (the first of a repeated type wins); none when the block is absent."""
    if reader.left == 0:
        return {}
    block = _Reader(reader.vector(2))
    out: dict[int, bytes] = {}
    while block.left:
        kind = block.uint(2)
        out.setdefault(kind, block.vector(2))
    return out


def _server_name(data: bytes) -> str | None:
    """RFC 6066 3: the host_name entry (type 0) of the server_name list."""
    names = _Reader(_Reader(data).vector(2))
    while names.left:
        kind = names.uint(1)
        name = names.vector(2)
        if kind == 0:
            return name.decode("ascii", errors="replace")
    return None


def _alpn_list(data: bytes) -> tuple[str, ...]:
    """RFC 7301 3.1: ProtocolNameList."""
    names = _Reader(_Reader(data).vector(2))
    out: list[str] = []
    while names.left:
        out.append(names.vector(1).decode("ascii", errors="replace"))
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientHello:
    """What a ClientHello (RFC 8446 4.1.2, RFC 5246 7.4.1.2) offers."""

    #: legacy_version field (0x0303 in TLS 1.3)
    legacy_version: int
    #: the 32-byte random: names the connection's secrets in the key log
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    #: server_name host_name
    sni: str | None
    #: ALPN protocol ids offered, in preference order
    alpn: tuple[str, ...]
    #: supported_versions offered (GREASE removed); empty when the extension is absent
    versions: tuple[int, ...]
    key_share: bool
    #: pre_shared_key offered (TLS 1.3 resumption)
    psk: bool
    #: early_data offered (0-RTT)
    early_data: bool
    session_ticket: bool
    encrypt_then_mac: bool
    extended_master_secret: bool

    @property
    def max_version(self) -> int:
        return max(self.versions) if self.versions else self.legacy_version


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerHello:
    """What a ServerHello (or HelloRetryRequest) selects."""

    #: negotiated version: supported_versions when present, else the version field
    version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    #: this is a HelloRetryRequest (RFC 8446 4.1.3)
    hrr: bool
    #: pre_shared_key selected (TLS 1.3 resumption)
    psk: bool
    #: ALPN protocol selected (TLS <= 1.2; TLS 1.3 puts it in EncryptedExtensions)
    alpn: str | None
    encrypt_then_mac: bool
    extended_master_secret: bool


def parse_client_hello(body: bytes) -> ClientHello:
    """Parse a ClientHello body; raises ``DecodeError("tls.bad_handshake")`` when malformed."""
    try:
        r = _Reader(body)
        legacy_version = r.uint(2)
        random = r.take(RANDOM_BYTES)
        session_id = r.vector(1)
        suites_raw = r.vector(2)
        r.vector(1)  # compression methods
        ext = parse_extensions(r)
        suites = tuple(
            int.from_bytes(suites_raw[i : i + 2], "big") for i in range(0, len(suites_raw) - 1, 2)
        )
        versions: tuple[int, ...] = ()
        if EXT_SUPPORTED_VERSIONS in ext:
            raw = _Reader(ext[EXT_SUPPORTED_VERSIONS]).vector(1)
            offered = (int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw) - 1, 2))
            versions = tuple(v for v in offered if not is_grease(v))
        return ClientHello(
            legacy_version=legacy_version,
            random=random,
            session_id=session_id,
            cipher_suites=tuple(s for s in suites if not is_grease(s)),
            sni=_server_name(ext[EXT_SERVER_NAME]) if EXT_SERVER_NAME in ext else None,
            alpn=_alpn_list(ext[EXT_ALPN]) if EXT_ALPN in ext else (),
            versions=versions,
            key_share=EXT_KEY_SHARE in ext,
            psk=EXT_PRE_SHARED_KEY in ext,
            early_data=EXT_EARLY_DATA in ext,
            session_ticket=EXT_SESSION_TICKET in ext,
            encrypt_then_mac=EXT_ENCRYPT_THEN_MAC in ext,
            extended_master_secret=EXT_EXTENDED_MASTER_SECRET in ext,
        )
    except _Short as err:
        raise DecodeError("tls.bad_handshake", "ClientHello") from err


def parse_server_hello(body: bytes) -> ServerHello:
    """Parse a ServerHello body, including pre-RFC TLS 1.3 drafts (no session id, no
    compression before draft-22); raises ``DecodeError("tls.bad_handshake")`` when malformed."""
    try:
        r = _Reader(body)
        version = r.uint(2)
        random = r.take(RANDOM_BYTES)
        draft = version >> 8 == DRAFT_MAJOR
        session_id = b"" if draft else r.vector(1)
        suite = r.uint(2)
        if not draft:
            r.uint(1)  # compression method
        ext = parse_extensions(r)
        if EXT_SUPPORTED_VERSIONS in ext:
            version = _Reader(ext[EXT_SUPPORTED_VERSIONS]).uint(2)
        alpn = _alpn_list(ext[EXT_ALPN]) if EXT_ALPN in ext else ()
        return ServerHello(
            version=version,
            random=random,
            session_id=session_id,
            cipher_suite=suite,
            hrr=random == HRR_RANDOM,
            psk=EXT_PRE_SHARED_KEY in ext,
            alpn=alpn[0] if alpn else None,
            encrypt_then_mac=EXT_ENCRYPT_THEN_MAC in ext,
            extended_master_secret=EXT_EXTENDED_MASTER_SECRET in ext,
        )
    except _Short as err:
        raise DecodeError("tls.bad_handshake", "ServerHello") from err


def parse_encrypted_extensions(body: bytes) -> tuple[str | None, bool]:
    """(ALPN selected, early_data accepted) from EncryptedExtensions (RFC 8446 4.3.1)."""
    try:
        ext = parse_extensions(_Reader(body))
        alpn = _alpn_list(ext[EXT_ALPN]) if EXT_ALPN in ext else ()
    except _Short as err:
        raise DecodeError("tls.bad_handshake", "EncryptedExtensions") from err
    return (alpn[0] if alpn else None), EXT_EARLY_DATA in ext
