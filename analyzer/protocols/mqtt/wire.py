"""MQTT 3.1, 3.1.1 and 5.0 control packets: pure functions over bytes (no state, no events).

Written from the OASIS specifications: MQTT Version 3.1.1 (29 October 2014) and MQTT Version
5.0 (7 March 2019); section numbers below are 5.0's, with 3.1.1's where they differ.  Every
packet is a fixed header (type and flags in one byte, then the Remaining Length, a variable
byte integer of at most four bytes, section 1.5.5), a variable header and a payload.  Functions
take a buffer and an offset and return what they read plus the offset after it; ``None`` means
"the bytes end first", ``MalformedPacket`` that they cannot be MQTT.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from analyzer.errors import DecodeError

# Control packet types (section 2.1.2).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = range(1, 8)
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)
PACKET_NAMES: dict[int, str] = {
    CONNECT: "CONNECT",
    CONNACK: "CONNACK",
    PUBLISH: "PUBLISH",
    PUBACK: "PUBACK",
    PUBREC: "PUBREC",
    PUBREL: "PUBREL",
    PUBCOMP: "PUBCOMP",
    SUBSCRIBE: "SUBSCRIBE",
    SUBACK: "SUBACK",
    UNSUBSCRIBE: "UNSUBSCRIBE",
    UNSUBACK: "UNSUBACK",
    PINGREQ: "PINGREQ",
    PINGRESP: "PINGRESP",
    DISCONNECT: "DISCONNECT",
    AUTH: "AUTH",
}

#: Protocol levels (section 3.1.2.2): 3 is MQTT 3.1 ("MQIsdp"), 4 is 3.1.1, 5 is 5.0.
LEVEL_31, LEVEL_311, LEVEL_5 = 3, 4, 5
#: Protocol Name of CONNECT and the levels that use it.
PROTOCOL_NAMES: dict[bytes, frozenset[int]] = {
    b"MQTT": frozenset({LEVEL_311, LEVEL_5}),
    b"MQIsdp": frozenset({LEVEL_31}),
}

#: A variable byte integer has at most four bytes (section 1.5.5): 268,435,455 at most.
MAX_VARINT_BYTES = 4
#: Fixed header: one type byte and the Remaining Length.
MAX_FIXED_HEADER_BYTES = 1 + MAX_VARINT_BYTES

_U16 = struct.Struct(">H")

# MQTT 5 property identifiers and the width of their values (section 2.2.2.2): a fixed number
# of bytes, or one of the variable encodings below.
_VARINT, _STRING, _BINARY, _PAIR = -1, -2, -3, -4
PROPERTY_WIDTHS: dict[int, int] = {
    0x01: 1,  # Payload Format Indicator
    0x02: 4,  # Message Expiry Interval
    0x03: _STRING,  # Content Type
    0x08: _STRING,  # Response Topic
    0x09: _BINARY,  # Correlation Data
    0x0B: _VARINT,  # Subscription Identifier
    0x11: 4,  # Session Expiry Interval
    0x12: _STRING,  # Assigned Client Identifier
    0x13: 2,  # Server Keep Alive
    0x15: _STRING,  # Authentication Method
    0x16: _BINARY,  # Authentication Data
    0x17: 1,  # Request Problem Information
    0x18: 4,  # Will Delay Interval
    0x19: 1,  # Request Response Information
    0x1A: _STRING,  # Response Information
    0x1C: _STRING,  # Server Reference
    0x1F: _STRING,  # Reason String
    0x21: 2,  # Receive Maximum
    0x22: 2,  # Topic Alias Maximum
    0x23: 2,  # Topic Alias
    0x24: 1,  # Maximum QoS
    0x25: 1,  # Retain Available
    0x26: _PAIR,  # User Property
    0x27: 4,  # Maximum Packet Size
    0x28: 1,  # Wildcard Subscription Available
    0x29: 1,  # Subscription Identifier Available
    0x2A: 1,  # Shared Subscription Available
}
TOPIC_ALIAS = 0x23


class MalformedPacket(DecodeError):
    """The bytes break the specification; ``anomaly`` names how (``mqtt.condition``)."""


def read_varint(buf: bytes | bytearray, pos: int, end: int) -> tuple[int, int] | None:
    """The variable byte integer at ``pos`` (section 1.5.5) and the offset after it.

    Raises ``MalformedPacket("mqtt.bad_remaining_length")`` when a fourth byte still says
    "more follows": no MQTT integer is that long, so the stream cannot be framed past it.
    """
    value = 0
    for i in range(MAX_VARINT_BYTES):
        if pos + i >= end:
            return None
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise MalformedPacket("mqtt.bad_remaining_length", f"5-byte variable integer at {pos}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedHeader:
    """The first bytes of a control packet (section 2.1)."""

    #: control packet type, 1 to 15
    kind: int
    #: the low four bits of the first byte (PUBLISH: DUP, QoS, RETAIN)
    flags: int
    #: bytes of the fixed header itself (2 to 5)
    header_bytes: int
    #: the Remaining Length: variable header plus payload
    remaining: int

    @property
    def total_bytes(self) -> int:
        return self.header_bytes + self.remaining


def read_fixed_header(buf: bytes | bytearray, pos: int, end: int) -> FixedHeader | None:
    """The fixed header at ``pos``, None when ``end`` comes first."""
    if pos >= end:
        return None
    first = buf[pos]
    kind = first >> 4
    if kind == 0:
        raise MalformedPacket("mqtt.bad_packet_type", "type 0 is reserved")
    got = read_varint(buf, pos + 1, end)
    if got is None:
        return None
    remaining, after = got
    return FixedHeader(kind=kind, flags=first & 0x0F, header_bytes=after - pos, remaining=remaining)


def _u16(buf: bytes | bytearray, pos: int, end: int) -> int:
    if pos + 2 > end:
        raise MalformedPacket("mqtt.bad_packet", f"two-byte field past the packet at {pos}")
    return int(_U16.unpack_from(buf, pos)[0])


def _prefixed(buf: bytes | bytearray, pos: int, end: int) -> tuple[bytes, int]:
    """A two-byte length and that many bytes (UTF-8 string or binary data, section 1.5.4/6)."""
    size = _u16(buf, pos, end)
    stop = pos + 2 + size
    if stop > end:
        raise MalformedPacket("mqtt.bad_packet", f"string of {size} bytes past the packet")
    return bytes(buf[pos + 2 : stop]), stop


def _whole_varint(buf: bytes | bytearray, pos: int, end: int) -> tuple[int, int]:
    got = read_varint(buf, pos, end)
    if got is None:
        raise MalformedPacket("mqtt.bad_properties", f"variable integer cut at {pos}")
    return got


def read_properties(buf: bytes | bytearray, pos: int, end: int) -> tuple[dict[int, int], int]:
    """An MQTT 5 property block (section 2.2.2): its integer properties and the offset after.

    String and binary properties are skipped (the decoder needs only the Topic Alias); an
    unknown identifier makes the rest of the block unreadable, so it is malformed.
    """
    length, pos = _whole_varint(buf, pos, end)
    stop = pos + length
    if stop > end:
        raise MalformedPacket("mqtt.bad_properties", f"{length} property bytes past the packet")
    values: dict[int, int] = {}
    while pos < stop:
        ident, pos = _whole_varint(buf, pos, stop)
        width = PROPERTY_WIDTHS.get(ident)
        if width is None:
            raise MalformedPacket("mqtt.bad_properties", f"unknown property 0x{ident:02x}")
        if width > 0:
            if pos + width > stop:
                raise MalformedPacket("mqtt.bad_properties", f"property 0x{ident:02x} cut")
            values[ident] = int.from_bytes(buf[pos : pos + width], "big")
            pos += width
        elif width == _VARINT:
            values[ident], pos = _whole_varint(buf, pos, stop)
        else:
            _, pos = _prefixed(buf, pos, stop)
            if width == _PAIR:
                _, pos = _prefixed(buf, pos, stop)
    return values, stop


@dataclass(frozen=True, slots=True, kw_only=True)
class Connect:
    """What the decoder keeps of a CONNECT packet (section 3.1)."""

    #: protocol level: 3 (3.1), 4 (3.1.1) or 5 (5.0)
    level: int
    #: the will message's payload as [start, end) offsets in the buffer, or None without a will
    will_payload: tuple[int, int] | None


def read_connect(buf: bytes | bytearray, pos: int, end: int) -> Connect:
    """The CONNECT variable header and payload from ``pos`` (after the fixed header) to ``end``."""
    name, pos = _prefixed(buf, pos, end)
    if name not in PROTOCOL_NAMES or pos + 4 > end:
        raise MalformedPacket("mqtt.bad_connect", f"protocol name {name!r}")
    level, flags = buf[pos], buf[pos + 1]
    pos += 4  # level, connect flags, keep alive (section 3.1.2)
    if level == LEVEL_5:
        _, pos = read_properties(buf, pos, end)
    _, pos = _prefixed(buf, pos, end)  # client identifier
    will: tuple[int, int] | None = None
    if flags & 0x04:  # Will Flag (section 3.1.2.5)
        if level == LEVEL_5:
            _, pos = read_properties(buf, pos, end)
        _, pos = _prefixed(buf, pos, end)  # will topic
        size = _u16(buf, pos, end)
        if pos + 2 + size > end:
            raise MalformedPacket("mqtt.bad_connect", "will payload past the packet")
        will = (pos + 2, pos + 2 + size)
    return Connect(level=level, will_payload=will)


def detect_connect(head: bytes) -> bool | None:
    """Do a direction's first bytes open with an MQTT CONNECT (True, False, None: too few)?

    The fixed header 0x10, a Remaining Length, then the Protocol Name "MQTT" or "MQIsdp" with
    its two-byte length: eight bytes that HTTP, TLS and AMQP never start with.
    """
    if not head:
        return None
    if head[0] != CONNECT << 4:
        return False
    try:
        got = read_varint(head, 1, len(head))
    except MalformedPacket:
        return False
    if got is None:
        return None
    _, pos = got
    seen = head[pos : pos + 8]
    for name in PROTOCOL_NAMES:
        wanted = _U16.pack(len(name)) + name
        if seen.startswith(wanted):
            return True
        if wanted.startswith(seen):
            return None
    return False


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish:
    """The variable header of a PUBLISH (section 3.3.2)."""

    qos: int
    dup: bool
    retain: bool
    #: the Topic Name as sent (may be empty in MQTT 5 when a Topic Alias stands for it)
    topic: bytes
    #: Packet Identifier (QoS 1 and 2 only)
    packet_id: int | None
    #: MQTT 5 Topic Alias property, if any
    alias: int | None
    #: offset of the first payload byte
    payload_start: int


def read_publish(buf: bytes | bytearray, pos: int, end: int, flags: int, level: int) -> Publish:
    """The PUBLISH variable header from ``pos`` to at most ``end``."""
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacket("mqtt.bad_qos", "QoS 3 is reserved (section 3.3.1.2)")
    topic, pos = _prefixed(buf, pos, end)
    packet_id = None
    if qos:
        packet_id = _u16(buf, pos, end)
        pos += 2
    alias = None
    if level == LEVEL_5:
        props, pos = read_properties(buf, pos, end)
        alias = props.get(TOPIC_ALIAS)
    return Publish(
        qos=qos,
        dup=bool(flags & 0x08),
        retain=bool(flags & 0x01),
        topic=topic,
        packet_id=packet_id,
        alias=alias,
        payload_start=pos,
    )


def read_packet_id(buf: bytes | bytearray, pos: int, end: int) -> int:
    """The Packet Identifier that opens PUBACK, PUBREC, PUBREL and PUBCOMP (section 3.4.2)."""
    return _u16(buf, pos, end)
