"""MQTT 3.1, 3.1.1 and 5.0: frame each direction into control packets, charge every byte.

Definitions (DESIGN.md section 2, issue 16): a message is one PUBLISH, kind ``publish`` when the
client sends it and ``deliver`` when the broker does; its acknowledgements belong to it, matched
by Packet Identifier on the sender's lane (QoS 1: PUBACK; QoS 2: PUBREC, PUBREL, PUBCOMP).
CONNECT (a will's payload included) and CONNACK, and AUTH before CONNACK, are setup; SUBSCRIBE,
SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ and PINGRESP control; DISCONNECT teardown.  The fixed
header, topic, Packet Identifier and MQTT 5 properties of a PUBLISH are framing, the
application message after them payload.

The client is ``orig``: detection swaps the directions of a connection whose CONNECT came from
``resp``.  Round trips (DESIGN.md section 4): QoS 0 is never answered; QoS 1 is answered by
PUBACK; QoS 2 by PUBREC and again, after the sender's PUBREL, by PUBCOMP, so its answer counts
two waits.

Choices where the capture cannot tell us everything:

- Without the CONNECT (a capture joined mid-connection) the protocol level is unknown: 3.1.1 is
  assumed (``mqtt.level_assumed``), so an MQTT 5 stream then shows ``mqtt.bad_properties``.
- The Remaining Length is the only way to find the next packet; when it is malformed, or a gap
  leaves us inside an unknown packet, the rest of that direction is charged ``undecoded``.
- A packet bigger than ``MAX_BUFFERED_PACKET_BYTES`` is charged as it streams past: its head is
  decoded from the first bytes, the rest charged to the same owner.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from analyzer.decoding.events import (
    CONTROL,
    FRAMING,
    OPAQUE,
    ORIG,
    PAYLOAD,
    SETUP,
    TEARDOWN,
    UNDECODED,
    Event,
    MessageAnswered,
    MessageEnded,
    MessageIds,
    MessageNote,
    MessageStarted,
    ProtocolIdentified,
    SetupEnded,
)
from analyzer.decoding.spans import EventWriter
from analyzer.options import DecodeOptions
from analyzer.protocols.mqtt.wire import (
    AUTH,
    CONNACK,
    CONNECT,
    DISCONNECT,
    LEVEL_311,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    FixedHeader,
    MalformedPacket,
    read_connect,
    read_fixed_header,
    read_packet_id,
    read_publish,
)

PROTOCOL = "mqtt"

#: Largest packet held whole before it is charged.  Brokers' default maximum packet sizes are
#: far larger (Mosquitto: 256 MiB, the protocol's limit) but real messages are mostly small;
#: bigger packets are charged as they stream past, so memory stays bounded.
MAX_BUFFERED_PACKET_BYTES = 1024 * 1024
#: Characters of a topic kept in a message's ``topic`` note (and per Topic Alias): topics are
#: short in practice, and hostile ones must not grow the records or the alias tables.
MAX_NOTED_TOPIC_CHARS = 256
#: MQTT 5 reason codes of 0x80 and above are failures (section 2.4); a failed PUBREC ends QoS 2.
FAILURE_REASON = 0x80

#: (QoS, stage) of the flow an acknowledgement continues (sections 4.3.2 and 4.3.3).
ACK_STEPS: dict[int, tuple[int, int]] = {
    PUBACK: (1, 0),
    PUBREC: (2, 0),
    PUBREL: (2, 1),
    PUBCOMP: (2, 2),
}
#: Owner of the packets that are neither messages nor their acknowledgements.
PACKET_BUCKETS: dict[int, int] = {
    CONNECT: SETUP,
    CONNACK: SETUP,
    DISCONNECT: TEARDOWN,
}

# What a direction is doing: framing packets, streaming a big packet, or lost (undecodable).
_PACKETS, _STREAM, _LOST = range(3)


@dataclass(slots=True)
class _Message:
    """A PUBLISH whose acknowledgements may still come."""

    id: int
    sender: int
    qos: int
    #: QoS 2: 0 waiting for PUBREC, 1 for PUBREL, 2 for PUBCOMP
    stage: int = 0


@dataclass(slots=True)
class _Direction:
    """One direction's framing state."""

    #: stream offset of ``buf[0]``
    offset: int
    buf: bytearray = field(default_factory=bytearray)
    #: (stream offset, ordinal, ts) of each feed whose bytes are still in ``buf``
    feeds: list[tuple[int, int, float]] = field(default_factory=list)
    mode: int = _PACKETS
    #: streaming a big packet: bytes still to come, and where they go
    stream_left: int = 0
    stream_owner: int = UNDECODED
    stream_layer: int = OPAQUE
    #: the streamed packet is a QoS 0 PUBLISH, which ends with its last byte
    stream_ends: int | None = None
    #: MQTT 5 Topic Alias -> topic, set by this direction's PUBLISHes (section 3.3.2.3.4)
    aliases: dict[int, str] = field(default_factory=dict)


class MqttDecoder(EventWriter):
    """Sans-IO MQTT decoder: bytes of both directions in, ledger events out."""

    def __init__(
        self, ids: MessageIds, options: DecodeOptions, *, base: tuple[int, int] = (0, 0)
    ) -> None:
        self._ids = ids
        self._options = options
        self._dirs = (_Direction(base[0]), _Direction(base[1]))
        #: protocol level from CONNECT; None until one is seen
        self._level: int | None = None
        self._connected = False
        #: (sender direction, packet id) -> PUBLISH waiting for acknowledgement
        self._inflight: dict[tuple[int, int], _Message] = {}
        self._events: list[Event] = [ProtocolIdentified(PROTOCOL)]
        self._ordinal = 0
        self._ts = 0.0

    # ---------------------------------------------------------------- the StreamDecoder API

    def feed(self, direction: int, data: bytes, ordinal: int, ts: float) -> list[Event]:
        self._ordinal, self._ts = ordinal, ts
        state = self._dirs[direction]
        at = 0
        if state.mode == _STREAM:
            at = self._stream(direction, data)
        if at < len(data):
            if state.mode == _LOST:
                start = state.offset + len(state.buf)
                self._span(direction, start, start + len(data) - at, UNDECODED, OPAQUE)
                state.offset += len(data) - at
            else:
                state.feeds.append((state.offset + len(state.buf), ordinal, ts))
                state.buf += data[at:] if at else data
                self._parse(direction)
        return self._flush()

    def gap(self, direction: int, length: int, ordinal: int, ts: float) -> list[Event]:
        self._ordinal, self._ts = ordinal, ts
        state = self._dirs[direction]
        self._anomaly("mqtt.gap")
        if state.mode == _STREAM and length < state.stream_left:
            # Inside a streamed packet: its end is still known, so framing survives.
            state.stream_left -= length
            state.offset += length
            return self._flush()
        self._lose(direction)
        state.offset += length
        return self._flush()

    def eof(self, direction: int, ordinal: int, ts: float) -> list[Event]:
        return self._flush()

    def finish(self, ts: float) -> list[Event]:
        self._ts = ts
        for direction, state in enumerate(self._dirs):
            if state.buf or state.mode == _STREAM:
                self._anomaly("mqtt.truncated_packet")
            if state.mode == _STREAM and state.stream_ends is not None:
                self._events.append(MessageEnded(state.stream_ends, ts))
            state.mode = _PACKETS
            self._charge_buffer(direction)
        for message in self._inflight.values():
            self._events.append(MessageEnded(message.id, ts))
        self._inflight.clear()
        return self._flush()

    # ---------------------------------------------------------------- plumbing

    def _origin(self, state: _Direction, offset: int) -> tuple[int, float]:
        """(ordinal, ts) of the feed that delivered the byte at stream ``offset``."""
        feeds = state.feeds
        i = bisect.bisect_right(feeds, (offset, 1 << 62, 0.0)) - 1
        if i < 0:
            return self._ordinal, self._ts
        return feeds[i][1], feeds[i][2]

    def _consume(self, state: _Direction, taken: int) -> None:
        """Drop ``taken`` decoded bytes from the front of ``state.buf``."""
        if not taken:
            return
        del state.buf[:taken]
        state.offset += taken
        feeds = state.feeds
        keep = bisect.bisect_right(feeds, (state.offset, 1 << 62, 0.0)) - 1
        if keep > 0:
            del feeds[:keep]

    def _charge_buffer(self, direction: int) -> None:
        """Every buffered byte to ``undecoded`` (a cut packet, or framing lost)."""
        state = self._dirs[direction]
        self._span(direction, state.offset, state.offset + len(state.buf), UNDECODED, OPAQUE)
        self._consume(state, len(state.buf))
        state.feeds.clear()

    def _lose(self, direction: int) -> None:
        """Framing is lost for good in this direction: the rest of it is undecoded."""
        state = self._dirs[direction]
        if state.mode == _STREAM and state.stream_ends is not None:
            self._events.append(MessageEnded(state.stream_ends, self._ts))
        self._charge_buffer(direction)
        state.mode = _LOST

    # ---------------------------------------------------------------- framing

    def _parse(self, direction: int) -> None:
        """Decode every whole packet in the buffer; start streaming a too-big one."""
        state = self._dirs[direction]
        buf = state.buf
        pos = 0
        while pos < len(buf):
            try:
                header = read_fixed_header(buf, pos, len(buf))
            except MalformedPacket as err:
                self._consume(state, pos)
                self._anomaly(err.anomaly)
                self._lose(direction)
                return
            if header is None:
                break
            available = len(buf) - pos
            if header.total_bytes <= available:
                self._packet(direction, pos, header, header.total_bytes)
                pos += header.total_bytes
                continue
            if available >= MAX_BUFFERED_PACKET_BYTES:
                self._packet(direction, pos, header, available)
                pos += available
            break
        self._consume(state, pos)

    def _stream(self, direction: int, data: bytes) -> int:
        """Charge the next bytes of a streamed packet; how many of ``data`` it took."""
        state = self._dirs[direction]
        take = min(len(data), state.stream_left)
        end = state.offset + take
        self._span(direction, state.offset, end, state.stream_owner, state.stream_layer)
        state.offset += take
        state.stream_left -= take
        if not state.stream_left:
            state.mode = _PACKETS
            if state.stream_ends is not None:
                self._events.append(MessageEnded(state.stream_ends, self._ts))
                state.stream_ends = None
        return take

    def _packet(self, direction: int, pos: int, header: FixedHeader, have: int) -> None:
        """Charge the packet at ``pos``, of which ``have`` bytes are buffered (all, unless it is
        too big to hold: then the rest streams to the owner of its last byte here)."""
        state = self._dirs[direction]
        end = pos + have
        whole = have == header.total_bytes
        ends: int | None = None
        if header.kind == PUBLISH:
            owner, layer, ends = self._publish(direction, pos, header, end)
        elif whole:
            owner, layer, ends = self._other(direction, pos, header, end)
        else:
            # Only a PUBLISH has a reason to be this big; anything else is charged unread.
            self._anomaly("mqtt.oversized_packet")
            owner, layer = UNDECODED, OPAQUE
            self._span(direction, state.offset + pos, state.offset + end, owner, layer)
        if whole:
            if ends is not None:
                self._events.append(MessageEnded(ends, self._ts))
            return
        state.mode = _STREAM
        state.stream_left = header.total_bytes - have
        state.stream_owner, state.stream_layer = owner, layer
        state.stream_ends = ends

    def _other(
        self, direction: int, pos: int, header: FixedHeader, end: int
    ) -> tuple[int, int, int | None]:
        """Charge a whole packet that is not a PUBLISH: (owner, layer, message it ends)."""
        state = self._dirs[direction]
        start = state.offset + pos
        kind = header.kind
        owner = PACKET_BUCKETS.get(kind, CONTROL)
        ends: int | None = None
        if kind in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            owner, ends = self._acknowledgement(direction, pos, header, end)
        elif kind == CONNECT:
            self._connect(direction, pos, header, end)
            return SETUP, FRAMING, None
        elif kind == CONNACK:
            self._connected = True
            ordinal, _ = self._origin(state, start)
            self._events.append(SetupEnded(ordinal))
        elif kind == AUTH and not self._connected:
            owner = SETUP
        layer = OPAQUE if owner == UNDECODED else FRAMING
        self._span(direction, start, state.offset + end, owner, layer)
        return owner, layer, ends

    def _connect(self, direction: int, pos: int, header: FixedHeader, end: int) -> None:
        """CONNECT is setup; a will's payload is application payload (still setup)."""
        state = self._dirs[direction]
        start = state.offset + pos
        try:
            connect = read_connect(state.buf, pos + header.header_bytes, end)
        except MalformedPacket as err:
            self._anomaly(err.anomaly)
            self._span(direction, start, state.offset + end, SETUP, FRAMING)
            return
        self._level = connect.level
        will = connect.will_payload
        if will is None:
            self._span(direction, start, state.offset + end, SETUP, FRAMING)
            return
        self._span(direction, start, state.offset + will[0], SETUP, FRAMING)
        self._span(direction, state.offset + will[0], state.offset + will[1], SETUP, PAYLOAD)
        self._span(direction, state.offset + will[1], state.offset + end, SETUP, FRAMING)

    def _level_or_assume(self) -> int:
        if self._level is None:
            self._anomaly("mqtt.level_assumed")
            self._level = LEVEL_311
        return self._level

    # ---------------------------------------------------------------- messages

    def _publish(
        self, direction: int, pos: int, header: FixedHeader, end: int
    ) -> tuple[int, int, int | None]:
        """A PUBLISH starts a message: (owner, layer of its last byte here, message it ends)."""
        state = self._dirs[direction]
        start = state.offset + pos
        level = self._level_or_assume()
        try:
            publish = read_publish(state.buf, pos + header.header_bytes, end, header.flags, level)
        except MalformedPacket as err:
            self._anomaly(err.anomaly)
            self._span(direction, start, state.offset + end, UNDECODED, OPAQUE)
            return UNDECODED, OPAQUE, None
        message = self._ids.next()
        ordinal, ts = self._origin(state, start)
        kind = "publish" if direction == ORIG else "deliver"
        self._events += (
            MessageStarted(message, PROTOCOL, kind, direction, ordinal, ts),
            MessageNote(message, "topic", self._topic(state, publish.topic, publish.alias)),
            MessageNote(message, "qos", publish.qos),
        )
        if publish.retain:
            self._events.append(MessageNote(message, "retain", True))
        payload_start = state.offset + publish.payload_start
        self._span(direction, start, payload_start, message, FRAMING)
        self._span(direction, payload_start, state.offset + end, message, PAYLOAD)
        if publish.packet_id is None:
            return message, PAYLOAD, message  # QoS 0: over with its last byte
        key = (direction, publish.packet_id)
        previous = self._inflight.pop(key, None)
        if previous is not None:
            # The id came again before its flow completed: a resend (DUP set, section 3.3.1.1)
            # is a message of its own on the wire; without DUP the id was reused, an error.
            if not publish.dup:
                self._anomaly("mqtt.packet_id_reused")
            self._events.append(MessageEnded(previous.id, self._ts))
        self._inflight[key] = _Message(id=message, sender=direction, qos=publish.qos)
        return message, PAYLOAD, None

    def _topic(self, state: _Direction, raw: bytes, alias: int | None) -> str:
        topic = raw.decode("utf-8", "replace")[:MAX_NOTED_TOPIC_CHARS]
        if alias is None:
            return topic
        if raw:
            state.aliases[alias] = topic
            return topic
        known = state.aliases.get(alias)
        if known is None:
            self._anomaly("mqtt.unknown_topic_alias")
            return ""
        return known

    def _acknowledgement(
        self, direction: int, pos: int, header: FixedHeader, end: int
    ) -> tuple[int, int | None]:
        """The owner of a PUBACK, PUBREC, PUBREL or PUBCOMP, and the message it ends."""
        state = self._dirs[direction]
        body = pos + header.header_bytes
        try:
            packet_id = read_packet_id(state.buf, body, end)
        except MalformedPacket as err:
            self._anomaly(err.anomaly)
            return UNDECODED, None
        kind = header.kind
        # PUBREL travels with the PUBLISH; the others answer it from the other side.
        sender = direction if kind == PUBREL else 1 - direction
        key = (sender, packet_id)
        message = self._inflight.get(key)
        if message is None or (message.qos, message.stage) != ACK_STEPS[kind]:
            self._anomaly("mqtt.unmatched_ack")
            return CONTROL, None
        if kind in (PUBACK, PUBREC):
            ordinal, ts = self._origin(state, state.offset + pos)
            # QoS 2's sender waits for PUBREC and then, after PUBREL, for PUBCOMP.
            waits = 2 if kind == PUBREC else 1
            self._events.append(MessageAnswered(message.id, ordinal, ts, waits))
        # MQTT 5: a PUBREC with a failure reason code ends the QoS 2 flow (section 4.3.3).
        failed = kind == PUBREC and header.remaining > 2 and state.buf[body + 2] >= FAILURE_REASON
        if kind in (PUBACK, PUBCOMP) or failed:
            del self._inflight[key]
            return message.id, message.id
        message.stage += 1
        return message.id, None
