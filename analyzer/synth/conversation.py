"""The application conversation as labelled bytes: what each side writes, in which flight.

A *flight* is what one side writes in one burst before it waits for (or reacts to) the other
side: the network model (``tcp.py``) lays each flight into its own segments and times it from
the flight it reacts to.  Every byte written carries its ledger label (DESIGN.md section 3): the
owner (a message index, or SETUP/TEARDOWN/CONTROL from ``analyzer.decoding.events``) and the layer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Chunk:
    """Bytes written by one side with one label."""

    #: the bytes as they go on the wire (ciphertext once ``tlswrap`` has run)
    data: bytes
    #: a message index (>= 0) or SETUP, TEARDOWN, CONTROL
    owner: int
    #: TLS, FRAMING or PAYLOAD (``analyzer.decoding.events`` layer constants)
    layer: int
    #: messages whose first byte the marked byte is (the analyzer's MessageStarted)
    starts: tuple[int, ...] = ()
    #: messages whose answer's first byte the marked byte is (MessageAnswered)
    answers: tuple[int, ...] = ()
    #: offset in ``data`` of the marked byte: 0 in cleartext; the last byte of the TLS record
    #: once encrypted, since a decrypting observer sees the plaintext when the record is whole
    mark_offset: int = 0
    #: written together with the chunk before it (one ``SSLObject.write``, so one TLS record):
    #: used where one protocol unit has several owners (an AMQP ack with multiple=true)
    joined: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Flight:
    """What one side writes in one burst."""

    #: ORIG or RESP
    direction: int
    chunks: tuple[Chunk, ...]
    #: index of the flight whose arrival triggers this one; None: the flight just before it
    reacts_to: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageInfo:
    """One message of a connection (DESIGN.md section 2)."""

    #: direction whose bytes start the message
    sender: int
    #: "exchange", "stream", "publish" or "deliver"
    kind: str
    #: whether the sender gets an answer it may wait for (fire-and-forget publishes do not)
    answered: bool
    #: waits the answer ends (2 for MQTT QoS 2: PUBREC, then PUBCOMP after PUBREL)
    waits: int = 1
    #: the message's protocol when not the connection's (a WebSocket Upgrade is "http1")
    protocol: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Conversation:
    """One connection's application bytes, before or after TLS."""

    #: "http1", "http2" or "amqp"
    protocol: str
    flights: tuple[Flight, ...]
    #: indexed by message index
    messages: tuple[MessageInfo, ...]
    #: ALPN protocol the client offers when TLS is on (None: no ALPN)
    alpn: str | None


def flight_bytes(flight: Flight) -> int:
    """Stream bytes of a flight."""
    return sum(len(chunk.data) for chunk in flight.chunks)
