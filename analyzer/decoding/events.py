"""The contract between stream decoders and the ledger.

A decoder (TLS, HTTP/1.1, HTTP/2, AMQP, or the opaque fallback) is a sans-IO object that is fed
the reassembled, in-order byte stream of each direction of one TCP connection and returns a list
of events.  It never sees packets; the ledger (``accounting.py``) maps the byte ranges named in
``Span`` events back onto the packets that carried them, splits header bytes pro rata and proves
the conservation law of DESIGN.md section 3.

Offsets are positions in the decoder's own input stream for one direction: the first byte the
decoder is fed in a direction has offset ``base[direction]`` (0 unless the decoder was built with
another base, as an HTTP/2 decoder taking over after ``Upgrade: h2c`` is).  A gap advances the
offset without data.

Rules every decoder keeps (tests in ``tests/`` check them on every decoder):

1. Every byte fed must, by the time ``finish`` returns, be covered by exactly one ``Span``.
   Spans may be returned late (a header block waits for its end) and in any order, but never
   overlap.  Bytes skipped by ``gap`` need no span: no packet in the capture carried them.
2. "Need more data" is an empty list, never an exception.  Malformed input becomes an
   ``Anomaly`` plus spans to ``UNDECODED``/``OPAQUE`` for the bytes that could not be decoded;
   only bugs raise.
3. Message ids come from the shared ``MessageIds`` of the connection, so that decoders that hand
   over to one another (HTTP/1.1 -> HTTP/2, TLS -> plaintext) never reuse an id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# The events below are slotted dataclasses, not frozen ones (STYLE.md habit 7's exception for the
# hot path): a decoder creates several per message, and a frozen dataclass's __init__ assigns
# each field through object.__setattr__, 0.62 us against 0.16 us for five fields here.  Treat
# them as values all the same: nothing mutates an event after it is made.

# Directions of a connection: ``orig`` sent the first SYN (else the first packet seen).
ORIG = 0
RESP = 1

# Owners of bytes that belong to no single message (DESIGN.md section 2).  Message ids are >= 0.
SETUP = -1
TEARDOWN = -2
CONTROL = -3
UNDECODED = -4
BUCKET_NAMES: dict[int, str] = {
    SETUP: "setup",
    TEARDOWN: "teardown",
    CONTROL: "control",
    UNDECODED: "undecoded",
}

# Layers of the ledger (DESIGN.md section 3), used as indexes into a ledger row.
LINK, IP, TCP, TLS, FRAMING, PAYLOAD, OPAQUE = range(7)
LAYER_NAMES: tuple[str, ...] = ("link", "ip", "tcp", "tls", "framing", "payload", "opaque")
N_LAYERS = len(LAYER_NAMES)


class MessageIds:
    """Allocates message ids for one connection, shared by every decoder on it."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def next(self) -> int:
        """Return a fresh id (0, 1, 2, ... in the order messages are first seen)."""
        value = self._next
        self._next += 1
        return value


@dataclass(slots=True)
class Span:
    """Bytes ``[start, end)`` of one direction's stream belong to ``owner`` at ``layer``."""

    direction: int
    start: int
    end: int
    #: a message id (>= 0) or one of SETUP, TEARDOWN, CONTROL, UNDECODED
    owner: int
    #: one of TLS, FRAMING, PAYLOAD, OPAQUE (LINK/IP/TCP are the ledger's own)
    layer: int


@dataclass(slots=True)
class MessageStarted:
    """The first byte of a message was decoded."""

    message: int
    #: protocol of the message: "http1", "http2" or "amqp"
    protocol: str
    #: "exchange" (HTTP/1.1), "stream" or "push" (HTTP/2), "publish", "deliver", "get", "return"
    kind: str
    #: direction whose bytes start the message and that may wait for its answer
    sender: int
    #: capture ordinal of the packet that delivered the message's first byte
    ordinal: int
    ts: float


@dataclass(slots=True)
class MessageAnswered:
    """The first byte of the answer the sender may wait for arrived.

    HTTP: the first byte of a response (a 1xx counts).  AMQP: the publisher confirm or consumer
    acknowledgement, or ``Basic.GetOk`` for ``Basic.Get``.  A message that is never answered
    (fire-and-forget publish, lost response) costs no round trip.
    """

    message: int
    ordinal: int
    ts: float
    #: waits on the critical path this answer ends: 2 for an MQTT QoS 2 PUBREC, whose sender
    #: then waits again (PUBREL, PUBCOMP) before the flow is over, and for an HTTP
    #: ``100 Continue`` the client waited for before sending the body; a repeated answer of the
    #: same message only raises this (DESIGN.md section 4)
    waits: int = 1


@dataclass(slots=True)
class MessageEnded:
    """The message's last byte (request, response or acknowledgement) was decoded."""

    message: int
    ts: float


@dataclass(slots=True)
class MessageNote:
    """A protocol fact about a message, kept in its record under ``detail``.

    Values must be JSON-serialisable (str, int, float, bool, None, or dicts/lists of them).
    Examples: ``("method", "GET")``, ``("status", 200)``, ``("hpack", {...})``.
    """

    message: int
    key: str
    value: object


@dataclass(slots=True)
class Unsolicited:
    """The packet ``ordinal`` of ``direction`` delivered data that answers nothing (DESIGN.md 4).

    TLS 1.3 NewSessionTicket, HTTP/2 SETTINGS and their ACKs, WINDOW_UPDATE, PING, AMQP
    heartbeats: a peer sends them on its own schedule, so a packet carrying only such data ends
    no wait, and setup turns skip it (``roundtrips.solicited_turns``).
    """

    direction: int
    ordinal: int


@dataclass(slots=True)
class Answering:
    """The packet ``ordinal`` of ``direction`` delivered data its peer may wait for (a TLS
    handshake message): even if it carried unsolicited data too, it can end a wait."""

    direction: int
    ordinal: int


@dataclass(slots=True)
class Anomaly:
    """Something odd in the input, named ``layer.condition`` (stable: baselines read it)."""

    name: str
    count: int = 1


@dataclass(slots=True)
class ProtocolIdentified:
    """The connection carries ``protocol`` ("http1", "http2", "amqp", "tls", "unknown").

    The last one wins, so an HTTP/1.1 connection upgraded to h2c reports "http2".
    """

    protocol: str


@dataclass(slots=True)
class SetupEnded:
    """Setup is over at this packet even though no message was decoded (TLS without keys).

    The ledger counts setup round trips up to the first message's first byte; without messages it
    uses this hint instead.
    """

    ordinal: int


@dataclass(slots=True)
class TlsHandshake:
    """One TLS handshake on the connection (renegotiation emits another)."""

    #: "SSL 3.0", "1.0", "1.1", "1.2", "1.3", or "draft-0x7f14"-like for unknown versions
    version: str
    #: DESIGN.md section 4: TLS <= 1.2 without Certificate; TLS 1.3 with pre_shared_key accepted
    resumed: bool
    cipher_suite: int | None
    sni: str | None
    alpn: str | None
    #: the server accepted 0-RTT early data
    early_data: bool
    #: the connection's application data could be decrypted with the available keys
    decrypted: bool
    #: record expansion was estimated: without keys, TLS 1.3 and CBC padding cannot be seen,
    #: so the ``tls`` layer holds the suite's fixed part only (a lower bound)
    overhead_estimated: bool = False


Event = (
    Span
    | MessageStarted
    | MessageAnswered
    | MessageEnded
    | MessageNote
    | Unsolicited
    | Answering
    | Anomaly
    | ProtocolIdentified
    | SetupEnded
    | TlsHandshake
)


class StreamDecoder(Protocol):
    """What the ledger drives.  See the module docstring for the rules."""

    def feed(self, direction: int, data: bytes, ordinal: int, ts: float) -> list[Event]:
        """Take the next in-order bytes of ``direction``, delivered by packet ``ordinal``."""
        ...

    def gap(self, direction: int, length: int, ordinal: int, ts: float) -> list[Event]:
        """``length`` bytes of ``direction`` were never captured; the stream goes on after them."""
        ...

    def eof(self, direction: int, ordinal: int, ts: float) -> list[Event]:
        """``direction`` sent FIN (or RST): no more bytes will come from it."""
        ...

    def finish(self, ts: float) -> list[Event]:
        """The connection is over (closed, idle or end of capture): flush everything."""
        ...
