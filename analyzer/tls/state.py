"""The state of one TLS connection: its handshakes' facts and each direction's progress.

``Handshake`` gathers what one handshake says (DESIGN.md section 4: version, resumed, ALPN, SNI,
early data) and turns it into the ``TlsHandshake`` event; ``Direction`` holds one direction's
record framing, handshake reassembly, keys and decrypted plaintext; ``ConnectionState`` is the
base of ``TlsDecoder`` holding both, and emits the facts once they are known.
"""

from __future__ import annotations

from analyzer.decoding.events import (
    ORIG,
    RESP,
    Event,
    MessageIds,
    ProtocolIdentified,
    SetupEnded,
    StreamDecoder,
    TlsHandshake,
)
from analyzer.options import DecodeOptions
from analyzer.tls.crypto import CIPHER_SUITES, RecordDecryptor
from analyzer.tls.handshake import ClientHello, ServerHello
from analyzer.tls.plaintext import PlainStream
from analyzer.tls.records import TLS1_2, is_tls13, version_name

#: ALPN protocol ids (IANA) -> the decoder of what runs inside.
ALPN_PROTOCOLS: dict[str, str] = {"h2": "http2", "http/1.1": "http1", "http/1.0": "http1"}

# TLS 1.3 secret labels of the NSS key log, by direction role.
CLIENT_EARLY = "CLIENT_EARLY_TRAFFIC_SECRET"
CLIENT_HANDSHAKE = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
SERVER_HANDSHAKE = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
CLIENT_TRAFFIC = "CLIENT_TRAFFIC_SECRET_0"
SERVER_TRAFFIC = "SERVER_TRAFFIC_SECRET_0"

# 1.3 protection phases of a direction.
CLEAR, EARLY, HANDSHAKE_KEYS, APPLICATION_KEYS = range(4)

_Held = tuple[int, int, int, bytes, int, float]  # (start, type, version, fragment, ordinal, ts)


class Handshake:
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


class Direction:
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
        "pending",
        "phase",
        "plain",
        "secret",
        "seen",
    )

    def __init__(self, direction: int, base: int) -> None:
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
        #: decrypted application data on its way to the inner decoder
        self.plain = PlainStream(direction)


class ConnectionState:
    """What ``TlsDecoder`` knows about its connection, and the facts it emits from it."""

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
        self._dirs = (Direction(ORIG, base[0]), Direction(RESP, base[1]))
        self._client = ORIG
        self._hs: Handshake | None = None
        self._inner: StreamDecoder | None = None
        self._announced = False
        self._alpn_announced = False
        self._setup_ended = False
        self._client_finished = False
        self._replaying_early = False
        #: ordinal of the packet whose record is being read, and the Answering/Unsolicited
        #: marks of its handshake messages; they go out after the feed's spans, so that spans
        #: that touch still merge into one (``add_span``)
        self._record_ordinal = 0
        self._marks: list[Event] = []
        #: records framed and session tickets read in the current feed: a packet is unsolicited
        #: only when tickets are all it carried (a CONNACK or SETTINGS beside one answers)
        self._feed_records = 0
        self._feed_tickets = 0
        #: the connection's negotiated version and suite (last ServerHello)
        self._version = 0
        self._suite: int | None = None

    def _secret(self, label: str, hs: Handshake) -> bytes | None:
        keylog = self._options.keylog
        if keylog is None or hs.client is None:
            return None
        return keylog.secret(label, hs.client.random)

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

    def _first_application(self, ordinal: int, out: list[Event]) -> None:
        if not self._setup_ended:
            self._setup_ended = True
            if self._hs is not None and self._hs.server is not None:
                self._emit_handshake(out)  # data flows: what the handshake says is known
            out.append(SetupEnded(ordinal))
