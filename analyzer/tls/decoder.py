"""TLS records and handshakes: a sans-IO StreamDecoder on the ciphertext stream.

``TlsDecoder`` frames the TLS record layer (RFC 8446 5.1, RFC 5246 6.2), reassembles and parses
the handshake, counts handshakes (DESIGN.md section 4), charges every ciphertext byte to the
ledger (DESIGN.md section 3) and, with secrets from ``options.keylog``, decrypts application data
(``analyzer.tls.crypto``) and hands the plaintext to an inner ``DetectingDecoder`` whose spans are
translated back to the ciphertext offsets where the plaintext sits.

Ledger, per record:

* handshake records (header + content), ChangeCipherSpec, and in TLS 1.3 the encrypted handshake
  records (EncryptedExtensions ... Finished, EndOfEarlyData, NewSessionTicket): ``SETUP``/``TLS``;
  a record carrying only KeyUpdate: ``CONTROL``/``TLS``;
* alerts: close_notify ``TEARDOWN``/``TLS``, others ``CONTROL``/``TLS``.  An alert encrypted
  without keys (TLS <= 1.2) is taken as close_notify: nearly all are, and a fatal one ends the
  connection as well (approximation);
* decrypted application data: the plaintext keeps the inner decoder's owner and layer; the header
  and the expansion (explicit nonce, tag, MAC, padding, TLS 1.3 inner type byte) are ``TLS``,
  split pro rata (``accounting.apportion``) among the owners of the record's plaintext once the
  inner decoder has spanned all of it;
* an empty application data record (TLS 1.0 CBC's countermeasure) is charged with the next
  record of its direction (``CONTROL`` if none comes); heartbeats are ``CONTROL``/``TLS``;
* application data without keys: ``UNDECODED``; the header and the suite's fixed expansion
  (``tlscrypto.fixed_expansion_bytes``: a lower bound for CBC, whose padding is unknowable) are
  ``TLS``, the rest ``OPAQUE``.  ``SetupEnded`` marks the first application data record.

With keys, 0-RTT records (RFC 8446 4.2.10) are held until the ServerHello names the suite, then
read with the early secret; without it, the first client record the handshake secret opens ends
the early data, and the unreadable record just before it was EndOfEarlyData (setup) when
EncryptedExtensions accepted early data.  A record that fails to authenticate is anomaly
``tls.decrypt_failed``; that direction is not decrypted again (its sequence number is lost).

TLS 1.3 without keys (Wireshark's heuristic): the server's protected records from its ServerHello
up to the client's Finished are handshake; the client's protected records before the ServerHello
are 0-RTT application data, and its first protected record after it is its Finished (the first two
when early data is taken as accepted: EndOfEarlyData travels in its own record).  0.5-RTT data the
server sends before the client's Finished is therefore counted as setup, and NewSessionTicket
records after it as undecoded data.

Early data without keys: reported accepted when the client offered it and the server selected a
PSK (the server may still have rejected it; only EncryptedExtensions, encrypted, would tell).
Handshakes: a ClientHello starts one (its retry after HelloRetryRequest does not).  TLS <= 1.2:
full when the server sent ServerHelloDone, resumed when its ChangeCipherSpec came without one
(session id or ticket resumption; PSK suites without Certificate still send ServerHelloDone, so
they count as full, as TShark does).  TLS 1.3: resumed when the ServerHello carries pre_shared_key.

Nothing derived from secrets ever goes into an anomaly or a note.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

from analyzer.accounting.apportion import apportion
from analyzer.decoding.detect import DetectingDecoder
from analyzer.decoding.events import (
    CONTROL,
    OPAQUE,
    ORIG,
    SETUP,
    TEARDOWN,
    TLS,
    UNDECODED,
    Anomaly,
    Answering,
    Event,
    MessageIds,
    ProtocolIdentified,
    SetupEnded,
    Span,
    StreamDecoder,
    TlsHandshake,
    Unsolicited,
)
from analyzer.errors import DecodeError
from analyzer.options import DecodeOptions
from analyzer.tls.crypto import (
    CIPHER_SUITES,
    RecordDecryptor,
    fixed_expansion_bytes,
    tls12_decryptors,
    tls13_decryptor,
    tls13_next_secret,
)

# --- bounds -----------------------------------------------------------------------------------

#: RFC 8446 5.2 / RFC 5246 6.2.3: a protected record's body is at most 2^14 + 2048 bytes (TLS 1.3
#: allows only 2^14 + 256, but TLS 1.2 CBC/compression may use the full 2048 expansion).
MAX_RECORD_BYTES = 2**14 + 2048
RECORD_HEADER_BYTES = 5
HANDSHAKE_HEADER_BYTES = 4
#: Handshake messages longer than this are counted but not parsed (only certificate chains get
#: near it; nothing this module reads is in them).  Bounds the reassembly buffer.
MAX_HANDSHAKE_BYTES = 256 * 1024
#: Client records held while waiting for the ServerHello that says how to read them (0-RTT data:
#: OpenSSL's default max_early_data is 16 KiB; browsers send far less).  Past it they go opaque.
MAX_HELD_BYTES = 64 * 1024
#: Decrypted records whose plaintext the inner decoder has not fully spanned yet.  The inner
#: decoders buffer at most a header block (64 KiB) or frame, a few records; past this the oldest
#: record's expansion is charged with what is known.
MAX_PENDING_RECORDS = 4096

# --- protocol facts -------------------------------------------------------------------------

CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT = 20, 21, 22, 23, 24
CONTENT_TYPES = frozenset({CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT})

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

CLOSE_NOTIFY = 0
ALERT_FATAL = 2

SSL3, TLS1_0, TLS1_1, TLS1_2, TLS1_3 = 0x0300, 0x0301, 0x0302, 0x0303, 0x0304
VERSION_NAMES: dict[int, str] = {
    SSL3: "SSL 3.0",
    TLS1_0: "1.0",
    TLS1_1: "1.1",
    TLS1_2: "1.2",
    TLS1_3: "1.3",
}
#: TLS 1.3 drafts announce 0x7f00 + draft number.
DRAFT_MAJOR = 0x7F
#: RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest (SHA-256 of
#: "HelloRetryRequest").
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
#: ALPN protocol ids (IANA) -> the decoder of what runs inside.
ALPN_PROTOCOLS: dict[str, str] = {"h2": "http2", "http/1.1": "http1", "http/1.0": "http1"}

#: RFC 5246 7.4.1.2 / RFC 8446 4.1.2: the hello randoms.
RANDOM_BYTES = 32

# TLS 1.3 secret labels of the NSS key log, by direction role.
CLIENT_EARLY = "CLIENT_EARLY_TRAFFIC_SECRET"
CLIENT_HANDSHAKE = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
SERVER_HANDSHAKE = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
CLIENT_TRAFFIC = "CLIENT_TRAFFIC_SECRET_0"
SERVER_TRAFFIC = "SERVER_TRAFFIC_SECRET_0"


def version_name(version: int) -> str:
    """ "1.2", "SSL 3.0", "draft-0x7f14", or the hex of anything else."""
    if version in VERSION_NAMES:
        return VERSION_NAMES[version]
    if version >> 8 == DRAFT_MAJOR:
        return f"draft-0x{version:04x}"
    return f"0x{version:04x}"


def is_tls13(version: int) -> bool:
    return version == TLS1_3 or version >> 8 == DRAFT_MAJOR


def is_grease(value: int) -> bool:
    """RFC 8701 GREASE values (0x0a0a, 0x1a1a, ...) are offered only to be ignored."""
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF


# --- hello parsing ----------------------------------------------------------------------------


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


# --- per-handshake and per-direction state ----------------------------------------------------


class _Handshake:
    """One handshake of the connection, from its ClientHello to its outcome."""

    __slots__ = (
        "alpn",
        "certificate",
        "client",
        "decrypted",
        "early_accepted",
        "emitted",
        "hello_done",
        "retry",
        "server",
        "server_ccs",
    )

    def __init__(self, client: ClientHello | None) -> None:
        self.client = client
        self.server: ServerHello | None = None
        #: a HelloRetryRequest came: the next ClientHello belongs to this handshake
        self.retry = False
        self.certificate = False
        self.hello_done = False
        #: TLS <= 1.2: the server sent ChangeCipherSpec (its flight is over)
        self.server_ccs = False
        self.alpn: str | None = None
        #: EncryptedExtensions said early_data (None: not seen)
        self.early_accepted: bool | None = None
        self.decrypted = False
        self.emitted = False

    @property
    def tls13(self) -> bool:
        return self.server is not None and is_tls13(self.server.version)

    def outcome(self) -> TlsHandshake:
        server, client = self.server, self.client
        if server is None:
            version = client.max_version if client is not None else TLS1_2
            return TlsHandshake(version_name(version), False, None, self._sni(), None, False, False)
        if self.tls13:
            resumed = server.psk
            early = self.early_accepted
            if early is None:  # approximation without keys: see the module docstring
                early = server.psk and client is not None and client.early_data
        else:
            resumed = self.server_ccs and not self.hello_done and not self.certificate
            early = False
        alpn = self.alpn or server.alpn
        suite = CIPHER_SUITES.get(server.cipher_suite) if server.cipher_suite is not None else None
        # Without keys only an AEAD suite of TLS <= 1.2 has a fixed expansion; TLS 1.3 padding
        # and CBC padding are invisible, and an unknown suite's expansion is not known at all.
        exact = suite is not None and not suite.tls13 and suite.cipher != "aes-cbc"
        return TlsHandshake(
            version_name(server.version),
            resumed,
            server.cipher_suite,
            self._sni(),
            alpn,
            early,
            self.decrypted,
            overhead_estimated=not self.decrypted and not exact,
        )

    def _sni(self) -> str | None:
        return self.client.sni if self.client is not None else None


class _PlainRecord:
    """Where a decrypted record's plaintext sits, and whose it turned out to be."""

    __slots__ = ("cipher_start", "covered", "overhead", "plain_end", "plain_start", "tally")

    def __init__(
        self, plain_start: int, plain_end: int, cipher_start: int, overhead: list[tuple[int, int]]
    ) -> None:
        #: plaintext offsets (the inner decoder's stream) [plain_start, plain_end)
        self.plain_start = plain_start
        self.plain_end = plain_end
        #: ciphertext offset of the plaintext's first byte
        self.cipher_start = cipher_start
        #: ciphertext ranges of header and expansion, charged once the owners are known
        self.overhead = overhead
        #: owner -> plaintext bytes spanned so far
        self.tally: dict[int, int] = {}
        self.covered = 0


# 1.3 protection phases of a direction.
CLEAR, EARLY, HANDSHAKE_KEYS, APPLICATION_KEYS = range(4)

_Held = tuple[int, int, int, bytes, int, float]  # (start, type, version, fragment, ordinal, ts)


class _Direction:
    """One direction's record framing, handshake reassembly and keys."""

    __slots__ = (
        "buf",
        "dead",
        "decryptor",
        "deferred",
        "early",
        "early_trial",
        "encrypted",
        "guessed_handshake_records",
        "held",
        "held_bytes",
        "hs_buf",
        "hs_parse",
        "hs_skip",
        "offset",
        "orphans",
        "pending",
        "phase",
        "plain_offset",
        "records",
        "secret",
        "seen",
        "starts",
    )

    def __init__(self, base: int) -> None:
        #: stream offset of ``buf[0]``
        self.offset = base
        self.buf = bytearray()
        #: framing lost (garbage, gap): the rest of the direction is opaque
        self.dead = False
        #: some bytes were fed (the first record decides "not TLS at all")
        self.seen = False
        self.hs_buf = bytearray()
        self.hs_skip = 0
        #: handshake content is readable (plaintext, or decrypted)
        self.hs_parse = True
        #: TLS <= 1.2: this direction sent ChangeCipherSpec, its records are protected
        self.encrypted = False
        self.decryptor: RecordDecryptor | None = None
        #: TLS <= 1.2: the decryptor that takes over at this direction's ChangeCipherSpec
        self.pending: RecordDecryptor | None = None
        #: TLS 1.3 client: 0-RTT decryptor, and the handshake secret to try when it fails
        self.early: RecordDecryptor | None = None
        self.early_trial: bytes | None = None
        #: TLS 1.3 client: the last unreadable record while 0-RTT may still run (start,
        #: version, length, ordinal); the next record tells whether it was EndOfEarlyData
        self.deferred: tuple[int, int, int, int] | None = None
        #: TLS 1.3: current traffic secret (for KeyUpdate)
        self.secret: bytes | None = None
        self.phase = CLEAR
        #: TLS 1.3 without keys: protected handshake records still expected from this side
        self.guessed_handshake_records = 0
        self.held: list[_Held] = []
        self.held_bytes = 0
        self.plain_offset = 0
        self.records: list[_PlainRecord] = []
        self.starts: list[int] = []
        #: header and expansion of empty records, waiting for the next record's owners
        self.orphans: list[tuple[int, int]] = []


# --- the decoder ------------------------------------------------------------------------------


class TlsDecoder:
    """TLS record layer, handshake, key-log decryption; see the module docstring."""

    def __init__(
        self,
        ids: MessageIds,
        options: DecodeOptions,
        *,
        base: tuple[int, int] = (0, 0),
        ports: tuple[int, int] = (0, 0),
    ) -> None:
        self._ids = ids
        self._options = options
        self._ports = ports
        self._dirs = (_Direction(base[0]), _Direction(base[1]))
        self._client = ORIG
        self._hs: _Handshake | None = None
        self._inner: StreamDecoder | None = None
        self._announced = False
        self._alpn_announced = False
        self._setup_ended = False
        self._client_finished = False
        self._replaying_early = False
        #: ordinal of the packet whose record is being read, and the Answering/Unsolicited
        #: marks of its handshake messages; they go out after the feed's spans, so that spans
        #: that touch still merge into one (``_span``)
        self._record_ordinal = 0
        self._marks: list[Event] = []
        #: records framed and session tickets read in the current feed: a packet is unsolicited
        #: only when tickets are all it carried (a CONNACK or SETTINGS beside one answers)
        self._feed_records = 0
        self._feed_tickets = 0
        #: the connection's negotiated version and suite (last ServerHello)
        self._version = 0
        self._suite: int | None = None

    # -- StreamDecoder -------------------------------------------------------------------------

    def feed(self, direction: int, data: bytes, ordinal: int, ts: float) -> list[Event]:
        out = self._announce()
        st = self._dirs[direction]
        if st.dead:
            _span(out, direction, st.offset, st.offset + len(data), UNDECODED, OPAQUE)
            st.offset += len(data)
            return out
        st.buf += data
        self._feed_records = self._feed_tickets = 0
        self._frame(direction, ordinal, ts, out)
        if self._feed_tickets and self._feed_tickets >= self._feed_records:
            self._marks.append(Unsolicited(direction, ordinal))
        if self._marks:
            out += self._marks
            self._marks = []
        return out

    def gap(self, direction: int, length: int, ordinal: int, ts: float) -> list[Event]:
        out = self._announce()
        st = self._dirs[direction]
        if not st.dead:
            # Record boundaries and sequence numbers are lost with the missing bytes.
            out.append(Anomaly("tls.gap"))
            self._kill(direction, out)
        st.offset += length
        return out

    def eof(self, direction: int, ordinal: int, ts: float) -> list[Event]:
        out: list[Event] = []
        if self._inner is not None:
            self._from_inner(self._inner.eof(direction, ordinal, ts), out)
        return out

    def finish(self, ts: float) -> list[Event]:
        out = self._announce()
        for direction in (0, 1):
            self._release_held(direction, out)
            self._flush_deferred(direction, False, out)
        out += self._marks
        self._marks = []
        for direction, st in enumerate(self._dirs):
            if st.buf and not st.dead:
                out.append(Anomaly("tls.truncated_record"))
                self._kill(direction, out)
        if self._inner is not None:
            self._from_inner(self._inner.finish(ts), out)
        for direction, st in enumerate(self._dirs):
            for record in st.records:
                if record.overhead:
                    self._charge_overhead(direction, record, out)
            st.records, st.starts = [], []
            for a, b in st.orphans:
                _span(out, direction, a, b, CONTROL, TLS)
            st.orphans = []
        self._emit_handshake(out)
        return out

    # -- record framing ------------------------------------------------------------------------

    def _announce(self) -> list[Event]:
        if self._announced:
            return []
        self._announced = True
        return [ProtocolIdentified("tls")]

    def _frame(self, d: int, ordinal: int, ts: float, out: list[Event]) -> None:
        """Cut whole records off the direction's buffer and process each."""
        st = self._dirs[d]
        buf = st.buf
        pos = 0
        while len(buf) - pos >= RECORD_HEADER_BYTES:
            ctype = buf[pos]
            version = int.from_bytes(buf[pos + 1 : pos + 3], "big")
            length = int.from_bytes(buf[pos + 3 : pos + 5], "big")
            if ctype not in CONTENT_TYPES or buf[pos + 1] != 3 or length > MAX_RECORD_BYTES:
                out.append(Anomaly("tls.bad_record" if st.seen else "tls.not_tls"))
                del buf[:pos]
                st.offset += pos
                self._kill(d, out)
                return
            end = pos + RECORD_HEADER_BYTES + length
            if len(buf) < end:
                break
            st.seen = True
            fragment = bytes(buf[pos + RECORD_HEADER_BYTES : end])
            self._record(d, st.offset + pos, ctype, version, fragment, ordinal, ts, out)
            pos = end
            self._after_record(out)
        if pos:
            del buf[:pos]
            st.offset += pos

    def _kill(self, d: int, out: list[Event]) -> None:
        """Charge what is buffered, and everything after, to undecoded/opaque."""
        st = self._dirs[d]
        st.dead = True
        if st.buf:
            _span(out, d, st.offset, st.offset + len(st.buf), UNDECODED, OPAQUE)
            st.offset += len(st.buf)
            st.buf = bytearray()
        # Nothing further reaches the inner decoder from this side; records it holds still
        # resolve through its finish.

    def _after_record(self, out: list[Event]) -> None:
        """Client records held for the ServerHello can go once it has been read."""
        if self._hs is not None and self._hs.server is not None:  # (a retry is not kept)
            self._release_held(self._client, out)

    def _record(
        self,
        d: int,
        start: int,
        ctype: int,
        version: int,
        fragment: bytes,
        ordinal: int,
        ts: float,
        out: list[Event],
    ) -> None:
        st = self._dirs[d]
        end = start + RECORD_HEADER_BYTES + len(fragment)
        self._record_ordinal = ordinal
        self._feed_records += 1
        if self._holds(d, ctype):
            st.held.append((start, ctype, version, fragment, ordinal, ts))
            st.held_bytes += len(fragment)
            if st.held_bytes > MAX_HELD_BYTES:
                self._release_held(d, out)
            return
        if ctype == CHANGE_CIPHER_SPEC:
            _span(out, d, start, end, SETUP, TLS)
            self._change_cipher_spec(d, out)
        elif ctype == APPLICATION_DATA or st.encrypted:
            # TLS <= 1.2 protects every record type after ChangeCipherSpec (RFC 5246 6.2.3),
            # and each one counts in the sequence number.
            self._protected(d, start, ctype, version, fragment, ordinal, ts, out)
        elif ctype == HANDSHAKE:
            _span(out, d, start, end, self._handshake_owner(fragment), TLS)
            self._handshake_bytes(d, fragment, out)
        elif ctype == ALERT:
            self._alert(d, start, end, fragment, out)
        else:  # heartbeat (RFC 6520): keep-alive traffic of no message
            _span(out, d, start, end, CONTROL, TLS)

    def _holds(self, d: int, ctype: int) -> bool:
        """0-RTT data comes before the ServerHello that says which keys it needs."""
        hs = self._hs
        return (
            ctype == APPLICATION_DATA
            and d == self._client
            and hs is not None
            and hs.client is not None
            and hs.client.early_data
            and hs.server is None
            and not self._replaying_early
        )

    def _release_held(self, d: int, out: list[Event]) -> None:
        st = self._dirs[d]
        if not st.held:
            return
        held, st.held, st.held_bytes = st.held, [], 0
        self._replaying_early = True
        for start, ctype, version, fragment, ordinal, ts in held:
            self._record(d, start, ctype, version, fragment, ordinal, ts, out)
        self._replaying_early = False

    # -- plaintext content types ---------------------------------------------------------------

    def _alert(self, d: int, start: int, end: int, content: bytes, out: list[Event]) -> None:
        """RFC 8446 6: close_notify is teardown; any other alert is control."""
        if len(content) >= 2 and content[1] == CLOSE_NOTIFY:
            _span(out, d, start, end, TEARDOWN, TLS)
            return
        _span(out, d, start, end, CONTROL, TLS)
        if len(content) >= 2 and content[0] == ALERT_FATAL:
            out.append(Anomaly("tls.fatal_alert"))

    def _handshake_owner(self, content: bytes) -> int:
        """KeyUpdate alone in its record is control (RFC 8446 4.6.3); the rest is setup."""
        if content[:HANDSHAKE_HEADER_BYTES] == KEY_UPDATE_HEADER and len(content) == 5:
            return CONTROL
        return SETUP

    def _change_cipher_spec(self, d: int, out: list[Event]) -> None:
        """TLS <= 1.2: this side's next records are protected with the pending keys."""
        hs = self._hs
        if hs is None or hs.server is None or hs.tls13:
            return  # TLS 1.3 middlebox-compatibility CCS (RFC 8446 D.4): no meaning
        st = self._dirs[d]
        st.encrypted = True
        st.decryptor, st.pending = st.pending, None
        if st.decryptor is None:
            st.hs_parse = False
            st.hs_buf = bytearray()
            st.hs_skip = 0
        if d != self._client:
            hs.server_ccs = True
            self._emit_handshake(out)  # an abbreviated handshake's server flight ends here

    # -- handshake messages --------------------------------------------------------------------

    def _handshake_bytes(self, d: int, content: bytes, out: list[Event]) -> None:
        """Reassemble handshake messages across records (RFC 8446 5.1) and act on each."""
        st = self._dirs[d]
        if not st.hs_parse:
            return
        if st.hs_skip:
            skipped = min(st.hs_skip, len(content))
            st.hs_skip -= skipped
            content = content[skipped:]
        buf = st.hs_buf
        buf += content
        while len(buf) >= HANDSHAKE_HEADER_BYTES:
            mtype = buf[0]
            length = int.from_bytes(buf[1:4], "big")
            if length > MAX_HANDSHAKE_BYTES:
                out.append(Anomaly("tls.handshake_too_long"))
                self._message(d, mtype, None, out)
                st.hs_skip = HANDSHAKE_HEADER_BYTES + length - len(buf)
                buf.clear()
                if st.hs_skip < 0:  # cannot happen: the message was incomplete
                    st.hs_skip = 0
                return
            if len(buf) < HANDSHAKE_HEADER_BYTES + length:
                return
            body = bytes(buf[HANDSHAKE_HEADER_BYTES : HANDSHAKE_HEADER_BYTES + length])
            del buf[: HANDSHAKE_HEADER_BYTES + length]
            try:
                self._message(d, mtype, body, out)
            except DecodeError as err:
                out.append(Anomaly(err.anomaly))
                st.hs_parse = False
                buf.clear()
                return
            if not st.hs_parse:  # the message switched this side to unreadable keys
                buf.clear()
                return

    def _message(self, d: int, mtype: int, body: bytes | None, out: list[Event]) -> None:
        """Act on one whole handshake message (``body`` None: too long to keep)."""
        hs = self._hs
        if mtype != NEW_SESSION_TICKET:
            # A flight of the handshake: whatever unsolicited data shares its packet (an HTTP/2
            # server's SETTINGS after its Finished), the packet answers the peer.
            self._marks.append(Answering(d, self._record_ordinal))
        if mtype == CLIENT_HELLO and body is not None:
            self._client_hello(d, parse_client_hello(body), out)
        elif mtype == SERVER_HELLO and body is not None:
            self._server_hello(d, parse_server_hello(body), out)
        elif hs is None:
            return
        elif mtype == ENCRYPTED_EXTENSIONS and body is not None:
            hs.alpn, hs.early_accepted = parse_encrypted_extensions(body)
        elif mtype == CERTIFICATE and d != self._client:
            hs.certificate = True
        elif mtype == SERVER_HELLO_DONE:
            hs.hello_done = True
            self._emit_handshake(out)
        elif mtype == FINISHED and hs.tls13:
            self._tls13_finished(d, out)
        elif mtype == END_OF_EARLY_DATA:
            self._use_secret(d, CLIENT_HANDSHAKE, HANDSHAKE_KEYS)
        elif mtype == KEY_UPDATE and hs.tls13:
            self._key_update(d)
        elif mtype == NEW_SESSION_TICKET and hs.tls13:
            # Sent whenever the server likes after the handshake (RFC 8446 4.6.1): no answer.
            self._feed_tickets += 1

    def _client_hello(self, d: int, hello: ClientHello, out: list[Event]) -> None:
        """Each ClientHello starts a handshake, except the retry after HelloRetryRequest."""
        hs = self._hs
        if hs is not None and hs.retry and d == self._client:
            hs.client, hs.retry = hello, False
            return
        if hs is not None:
            self._emit_handshake(out)
        if hs is None:
            self._client = d
        self._hs = _Handshake(hello)

    def _server_hello(self, d: int, hello: ServerHello, out: list[Event]) -> None:
        hs = self._hs
        if hs is None or hs.server is not None:
            # Capture started after the ClientHello (or a stray ServerHello): count it anyway.
            if hs is not None:
                self._emit_handshake(out)
            self._client = 1 - d
            hs = self._hs = _Handshake(None)
        if hello.hrr:
            hs.retry = True
            self._release_held(self._client, out)  # 0-RTT is rejected after a retry
            return
        hs.server = hello
        self._version, self._suite = hello.version, hello.cipher_suite
        if hs.tls13:
            self._tls13_keys(hs, hello)
            if self._dirs[d].decryptor is None:
                self._emit_handshake(out)  # nothing more will be learnt without keys
        else:
            self._tls12_keys(hs, hello, out)

    def _secret(self, label: str, hs: _Handshake) -> bytes | None:
        keylog = self._options.keylog
        if keylog is None or hs.client is None:
            return None
        return keylog.secret(label, hs.client.random)

    def _tls12_keys(self, hs: _Handshake, hello: ServerHello, out: list[Event]) -> None:
        """Both sides switch to the new keys at their ChangeCipherSpec (RFC 5246 7.1)."""
        master = self._secret("CLIENT_RANDOM", hs)
        if master is None or hs.client is None:
            return
        try:
            to_server, to_client = tls12_decryptors(
                hello.version,
                hello.cipher_suite,
                master,
                hs.client.random,
                hello.random,
                encrypt_then_mac=hello.encrypt_then_mac,
            )
        except DecodeError as err:
            out.append(Anomaly(err.anomaly))
            return
        self._dirs[self._client].pending = to_server
        self._dirs[1 - self._client].pending = to_client
        hs.decrypted = True

    def _tls13_keys(self, hs: _Handshake, hello: ServerHello) -> None:
        """RFC 8446 7.1: each side reads with its handshake secret after the ServerHello (the
        client with its early secret first when it offered 0-RTT)."""
        client, server = self._dirs[self._client], self._dirs[1 - self._client]
        server.phase = client.phase = HANDSHAKE_KEYS
        self._use_secret(1 - self._client, SERVER_HANDSHAKE, HANDSHAKE_KEYS)
        server.hs_parse = server.decryptor is not None
        server.hs_buf.clear()
        hs.decrypted = (
            self._secret(SERVER_TRAFFIC, hs) is not None
            or self._secret(CLIENT_TRAFFIC, hs) is not None
        ) and hello.cipher_suite in CIPHER_SUITES
        early = hs.client is not None and hs.client.early_data
        if early and self._secret(CLIENT_HANDSHAKE, hs) is not None:
            # Which records are 0-RTT shows only by which keys open them (RFC 8446 4.2.10).
            client.phase = EARLY
            client.early = self._decryptor(self._secret(CLIENT_EARLY, hs))
            client.early_trial = self._secret(CLIENT_HANDSHAKE, hs)
        else:
            self._use_secret(self._client, CLIENT_HANDSHAKE, HANDSHAKE_KEYS)
        if client.decryptor is None and client.phase != EARLY:
            # Without keys: its Finished (and EndOfEarlyData) are the first protected records.
            accepted = early and hello.psk
            client.guessed_handshake_records = 2 if accepted else 1

    def _decryptor(self, secret: bytes | None) -> RecordDecryptor | None:
        if secret is None or self._suite is None:
            return None
        try:
            return tls13_decryptor(self._suite, secret, version=self._version)
        except DecodeError:
            return None

    def _use_secret(self, d: int, label: str, phase: int) -> None:
        st = self._dirs[d]
        hs = self._hs
        secret = self._secret(label, hs) if hs is not None else None
        st.phase = phase
        st.secret = secret
        st.decryptor = self._decryptor(secret)
        st.early = None
        st.hs_parse = st.decryptor is not None

    def _tls13_finished(self, d: int, out: list[Event]) -> None:
        if d == self._client:
            self._client_finished = True
            self._use_secret(d, CLIENT_TRAFFIC, APPLICATION_KEYS)
        else:
            self._use_secret(d, SERVER_TRAFFIC, APPLICATION_KEYS)
            self._emit_handshake(out)

    def _key_update(self, d: int) -> None:
        """RFC 8446 4.6.3: the sender's next records use the next traffic secret."""
        st = self._dirs[d]
        if st.secret is None or self._suite is None:
            st.decryptor = None
            return
        st.secret = tls13_next_secret(self._suite, st.secret)
        st.decryptor = self._decryptor(st.secret)

    def _emit_handshake(self, out: list[Event]) -> None:
        hs = self._hs
        if hs is None or hs.emitted:
            return
        hs.emitted = True
        outcome = hs.outcome()
        out.append(outcome)
        protocol = ALPN_PROTOCOLS.get(outcome.alpn or "")
        if protocol is not None and not self._alpn_announced and self._inner is None:
            # DESIGN.md 5: the protocol comes from ALPN when present (the inner decoder, if
            # it ever runs, announces again and wins).
            self._alpn_announced = True
            out.append(ProtocolIdentified(protocol))

    # -- protected records ---------------------------------------------------------------------

    def _protected(
        self,
        d: int,
        start: int,
        ctype: int,
        version: int,
        fragment: bytes,
        ordinal: int,
        ts: float,
        out: list[Event],
    ) -> None:
        st = self._dirs[d]
        early = st.phase == EARLY and not self._replaying_early
        try:
            opened = self._open(d, ctype, version, fragment)
        except DecodeError as err:
            out.append(Anomaly(err.anomaly))
            st.decryptor = st.pending = st.early = None
            st.early_trial = None
            st.hs_parse = False
            st.phase = APPLICATION_KEYS
            opened = None
        if early and st.phase != EARLY:
            # The handshake keys opened this record: an unreadable one just before it was
            # EndOfEarlyData if the server took early data (RFC 8446 4.5), else 0-RTT data.
            self._flush_deferred(d, bool(self._hs and self._hs.early_accepted), out)
        if opened is None:
            if early and st.phase == EARLY:
                self._flush_deferred(d, False, out)
                st.deferred = (start, version, len(fragment), ordinal)
                return
            self._unreadable(d, start, ctype, version, len(fragment), ordinal, out)
            return
        real, plain = opened
        end = start + RECORD_HEADER_BYTES + len(fragment)
        if real == HANDSHAKE:
            _span(out, d, start, end, self._handshake_owner(plain), TLS)
            self._handshake_bytes(d, plain, out)
        elif real == ALERT:
            self._alert(d, start, end, plain, out)
        elif real == APPLICATION_DATA:
            self._application(d, start, version, len(fragment), plain, ordinal, ts, out)
        else:
            _span(out, d, start, end, CONTROL, TLS)

    def _open(self, d: int, ctype: int, version: int, fragment: bytes) -> tuple[int, bytes] | None:
        """Decrypt with this side's keys: None when there are none, DecodeError on failure."""
        st = self._dirs[d]
        if st.phase == EARLY:
            return self._open_early(d, ctype, version, fragment)
        if st.decryptor is None or self._replaying_early:
            # 0-RTT records held for the ServerHello, with no early keys to read them.
            return None
        return st.decryptor.decrypt(ctype, version, fragment)

    def _open_early(
        self, d: int, ctype: int, version: int, fragment: bytes
    ) -> tuple[int, bytes] | None:
        """A 1.3 client record after 0-RTT was offered: early keys, else the handshake keys
        (the first record they open ends the early data), else undecryptable 0-RTT."""
        st = self._dirs[d]
        if st.early is not None:
            try:
                return st.early.decrypt(ctype, version, fragment)
            except DecodeError:
                st.early = None
        trial = self._decryptor(st.early_trial)
        if trial is None:
            return None
        try:
            opened = trial.decrypt(ctype, version, fragment)
        except DecodeError:
            return None
        st.phase, st.decryptor, st.secret = HANDSHAKE_KEYS, trial, st.early_trial
        st.early_trial = None
        st.hs_parse = True
        return opened

    def _unreadable(
        self,
        d: int,
        start: int,
        ctype: int,
        version: int,
        length: int,
        ordinal: int,
        out: list[Event],
    ) -> None:
        """A protected record without (working) keys."""
        end = start + RECORD_HEADER_BYTES + length
        if ctype == HANDSHAKE:
            _span(out, d, start, end, SETUP, TLS)
            return
        if ctype == ALERT:
            _span(out, d, start, end, TEARDOWN, TLS)  # taken as close_notify (docstring)
            return
        if ctype == HEARTBEAT:
            _span(out, d, start, end, CONTROL, TLS)
            return
        if self._guess_tls13_handshake(d):
            _span(out, d, start, end, SETUP, TLS)
            return
        self._opaque_application(d, start, version, length, ordinal, out)

    def _flush_deferred(self, d: int, setup: bool, out: list[Event]) -> None:
        st = self._dirs[d]
        if st.deferred is None:
            return
        start, version, length, ordinal = st.deferred
        st.deferred = None
        if setup:
            _span(out, d, start, start + RECORD_HEADER_BYTES + length, SETUP, TLS)
        else:
            self._opaque_application(d, start, version, length, ordinal, out)

    def _opaque_application(
        self, d: int, start: int, version: int, length: int, ordinal: int, out: list[Event]
    ) -> None:
        """Application data nobody can read: the suite's known expansion is TLS, the rest opaque."""
        end = start + RECORD_HEADER_BYTES + length
        self._first_application(ordinal, out)
        info = CIPHER_SUITES.get(self._suite) if self._suite is not None else None
        expansion = fixed_expansion_bytes(info, self._version) if info is not None else 0
        prefix = self._explicit_nonce(version)
        suffix = min(max(expansion - prefix, 0), length - min(prefix, length))
        prefix = min(prefix, length)
        body_start = start + RECORD_HEADER_BYTES + prefix
        _span(out, d, start, body_start, UNDECODED, TLS)
        _span(out, d, body_start, end - suffix, UNDECODED, OPAQUE)
        _span(out, d, end - suffix, end, UNDECODED, TLS)

    def _guess_tls13_handshake(self, d: int) -> bool:
        """TLS 1.3 without keys: is this protected record part of the handshake (docstring)?"""
        hs = self._hs
        if hs is None or not hs.tls13 or self._replaying_early:
            return False
        st = self._dirs[d]
        if st.phase == EARLY:
            return False  # the handshake keys could not open it: 0-RTT data
        if d == self._client:
            if st.guessed_handshake_records <= 0:
                return False
            st.guessed_handshake_records -= 1
            if st.guessed_handshake_records == 0:
                self._client_finished = True
            return True
        return not self._client_finished

    def _explicit_nonce(self, version: int) -> int:
        """Bytes before the plaintext in a protected record (RFC 5288 3, RFC 5246 6.2.3.2)."""
        info = CIPHER_SUITES.get(self._suite) if self._suite is not None else None
        if info is None or info.tls13:
            return 0
        if info.cipher == "aes-cbc" and self._version < TLS1_1:
            return 0
        return info.record_iv_len

    def _first_application(self, ordinal: int, out: list[Event]) -> None:
        if not self._setup_ended:
            self._setup_ended = True
            if self._hs is not None and self._hs.server is not None:
                self._emit_handshake(out)  # data flows: what the handshake says is known
            out.append(SetupEnded(ordinal))

    # -- decrypted application data and the inner decoder -------------------------------------

    def _application(
        self,
        d: int,
        start: int,
        version: int,
        length: int,
        plain: bytes,
        ordinal: int,
        ts: float,
        out: list[Event],
    ) -> None:
        self._first_application(ordinal, out)
        st = self._dirs[d]
        end = start + RECORD_HEADER_BYTES + length
        prefix = min(self._explicit_nonce(version), length - len(plain))
        cipher_start = start + RECORD_HEADER_BYTES + prefix
        overhead = [(start, cipher_start), (cipher_start + len(plain), end)]
        if not plain:
            # An empty record (sent before data in TLS 1.0 CBC to randomise the next record's
            # IV) exists only for the record after it: charge it with that one.
            st.orphans += overhead
            return
        overhead, st.orphans = st.orphans + overhead, []
        record = _PlainRecord(st.plain_offset, st.plain_offset + len(plain), cipher_start, overhead)
        st.records.append(record)
        st.starts.append(record.plain_start)
        st.plain_offset = record.plain_end
        if len(st.records) > MAX_PENDING_RECORDS:
            oldest = next((r for r in st.records if r.overhead), None)
            if oldest is not None:
                self._charge_overhead(d, oldest, out)
        if st.dead:
            return
        inner = self._inner_decoder()
        self._from_inner(inner.feed(d, plain, ordinal, ts), out)

    def _inner_decoder(self) -> StreamDecoder:
        if self._inner is None:
            alpn = self._hs.outcome().alpn if self._hs is not None else None
            protocol = ALPN_PROTOCOLS.get(alpn or "")
            self._inner = _INNER_FACTORY(self._ids, self._options, self._ports, protocol)
        return self._inner

    def _from_inner(self, events: list[Event], out: list[Event]) -> None:
        """Pass the inner decoder's events on, its spans moved to ciphertext offsets."""
        for event in events:
            if isinstance(event, Span):
                self._translate(event, out)
            elif isinstance(event, ProtocolIdentified) and event.protocol == "unknown":
                continue  # "tls" says more than an undetected plaintext protocol
            else:
                out.append(event)

    def _translate(self, span: Span, out: list[Event]) -> None:
        d = span.direction
        st = self._dirs[d]
        pos = span.start
        i = bisect.bisect_right(st.starts, pos) - 1
        while pos < span.end and 0 <= i < len(st.records):
            record = st.records[i]
            stop = min(span.end, record.plain_end)
            shift = record.cipher_start - record.plain_start
            _span(out, d, pos + shift, stop + shift, span.owner, span.layer)
            record.tally[span.owner] = record.tally.get(span.owner, 0) + stop - pos
            record.covered += stop - pos
            if record.covered >= record.plain_end - record.plain_start and record.overhead:
                self._charge_overhead(d, record, out)
            pos = stop
            i += 1
        self._drop_done(d)

    def _charge_overhead(self, d: int, record: _PlainRecord, out: list[Event]) -> None:
        """The record's header and expansion, split pro rata among its plaintext's owners."""
        owners = list(record.tally) or [UNDECODED]
        total = sum(b - a for a, b in record.overhead)
        shares = apportion(total, [record.tally.get(o, 0) for o in owners])
        ranges = list(record.overhead)
        record.overhead = []
        for owner, share in zip(owners, shares, strict=True):
            while share > 0 and ranges:
                a, b = ranges[0]
                take = min(share, b - a)
                _span(out, d, a, a + take, owner, TLS)
                share -= take
                ranges[0] = (a + take, b)
                if a + take == b:
                    ranges.pop(0)
            ranges = [(a, b) for a, b in ranges if a < b]

    def _drop_done(self, d: int) -> None:
        """Forget leading records that are fully spanned and charged."""
        st = self._dirs[d]
        done = 0
        for record in st.records:
            if record.overhead or record.covered < record.plain_end - record.plain_start:
                break
            done += 1
        if done:
            del st.records[:done]
            del st.starts[:done]


def _span(out: list[Event], d: int, start: int, end: int, owner: int, layer: int) -> None:
    """Append a span, merged with the previous one when they touch (fewer events)."""
    if end <= start:
        return
    last = out[-1] if out else None
    if (
        isinstance(last, Span)
        and last.direction == d
        and last.end == start
        and last.owner == owner
        and last.layer == layer
    ):
        out[-1] = Span(d, last.start, end, owner, layer)
        return
    out.append(Span(d, start, end, owner, layer))


def _detecting(
    ids: MessageIds, options: DecodeOptions, ports: tuple[int, int], protocol: str | None
) -> StreamDecoder:
    return DetectingDecoder(ids, options, ports, protocol=protocol)


#: Builds the plaintext decoder (a seam for tests that want to record what it is fed).
_INNER_FACTORY: Callable[
    [MessageIds, DecodeOptions, tuple[int, int], str | None], StreamDecoder
] = _detecting
