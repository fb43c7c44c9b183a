"""MQTT 3.1.1 conversations: a client publishing to a Mosquitto-like broker.

The packets are encoded here from the OASIS MQTT 3.1.1 specification (section 2: fixed header
and Remaining Length; section 3: the packets), independently of the decoder's reader, so the
generator's ground truth checks the decoder rather than repeating it.  The client connects with
a clean session, publishes ``n`` messages at one QoS with one in flight (Mosquitto's
``max_inflight_messages 1`` behaviour; paho-mqtt's default window is 20), and disconnects:

- QoS 0: PUBLISH back to back; nothing answers, so no round trips;
- QoS 1: each PUBLISH waits for its PUBACK (one round trip);
- QoS 2: PUBLISH, PUBREC, PUBREL, PUBCOMP before the next (two round trips).

Labels (DESIGN.md sections 2-3, issue 16): CONNECT and CONNACK are setup, DISCONNECT teardown;
a message owns its PUBLISH and acknowledgements; the fixed header, topic and Packet Identifier
are framing, the application message payload.
"""

from __future__ import annotations

import struct

from analyzer.decoding.events import FRAMING, ORIG, PAYLOAD, RESP, SETUP, TEARDOWN
from analyzer.synth.conversation import Chunk, Conversation, Flight, MessageInfo

QOS_LEVELS = (0, 1, 2)
TOPIC = b"wireprobe/synth"
CLIENT_ID = b"wireprobe-synth"
#: Mosquitto's and paho-mqtt's default keep alive.
KEEP_ALIVE_S = 60
#: Protocol level 4 is MQTT 3.1.1 (section 3.1.2.2).
LEVEL_311 = 4
# Control packet types (section 2.2.1).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, DISCONNECT = 1, 2, 3, 4, 5, 6, 7, 14


def _remaining_length(value: int) -> bytes:
    """Section 2.2.3: seven bits per byte, least significant group first."""
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _fixed(kind: int, flags: int, length: int) -> bytes:
    return bytes([kind << 4 | flags]) + _remaining_length(length)


def _string(value: bytes) -> bytes:
    return struct.pack(">H", len(value)) + value


def _whole(kind: int, flags: int, body: bytes) -> bytes:
    return _fixed(kind, flags, len(body)) + body


def connect_packet() -> bytes:
    """CONNECT with Clean Session (section 3.1)."""
    body = _string(b"MQTT") + bytes([LEVEL_311, 0x02]) + struct.pack(">H", KEEP_ALIVE_S)
    return _whole(CONNECT, 0, body + _string(CLIENT_ID))


def publish_chunks(message: int, payload: bytes, qos: int, packet_id: int) -> list[Chunk]:
    """PUBLISH (section 3.3): the head is framing, the application message payload."""
    head = _string(TOPIC) + (struct.pack(">H", packet_id) if qos else b"")
    fixed = _fixed(PUBLISH, qos << 1, len(head) + len(payload))
    chunks = [Chunk(data=fixed + head, owner=message, layer=FRAMING, starts=(message,))]
    if payload:
        chunks.append(Chunk(data=payload, owner=message, layer=PAYLOAD, joined=True))
    return chunks


def _ack(kind: int, packet_id: int, message: int, answers: bool) -> Chunk:
    flags = 0x02 if kind == PUBREL else 0  # section 3.6.1: PUBREL's flags are 0010
    return Chunk(
        data=_whole(kind, flags, struct.pack(">H", packet_id)),
        owner=message,
        layer=FRAMING,
        answers=(message,) if answers else (),
    )


def conversation(n_messages: int, payload: bytes, qos: int) -> Conversation:
    """``n_messages`` publishes at ``qos`` on one connection."""
    flights = [
        Flight(direction=ORIG, chunks=(Chunk(data=connect_packet(), owner=SETUP, layer=FRAMING),)),
        Flight(
            direction=RESP,
            chunks=(Chunk(data=_whole(CONNACK, 0, b"\x00\x00"), owner=SETUP, layer=FRAMING),),
        ),
    ]
    for m in range(n_messages):
        packet_id = m % 65535 + 1  # section 2.3.1: non-zero, 16 bits
        chunks = tuple(publish_chunks(m, payload, qos, packet_id))
        flights.append(Flight(direction=ORIG, chunks=chunks))
        if qos == 1:
            flights.append(Flight(direction=RESP, chunks=(_ack(PUBACK, packet_id, m, True),)))
        elif qos == 2:
            flights.append(Flight(direction=RESP, chunks=(_ack(PUBREC, packet_id, m, True),)))
            flights.append(Flight(direction=ORIG, chunks=(_ack(PUBREL, packet_id, m, False),)))
            flights.append(Flight(direction=RESP, chunks=(_ack(PUBCOMP, packet_id, m, False),)))
    flights.append(
        Flight(
            direction=ORIG,
            chunks=(Chunk(data=_whole(DISCONNECT, 0, b""), owner=TEARDOWN, layer=FRAMING),),
        )
    )
    messages = tuple(
        MessageInfo(sender=ORIG, kind="publish", answered=qos > 0, waits=max(qos, 1))
        for _ in range(n_messages)
    )
    return Conversation(protocol="mqtt", flights=tuple(flights), messages=messages, alpn=None)
