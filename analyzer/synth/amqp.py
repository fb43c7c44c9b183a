"""AMQP 0-9-1 conversations: a client and a RabbitMQ-like broker, both speaking through pamqp.

Each side marshals its frames with pamqp and the other side unmarshals them (so every frame is a
frame pamqp accepts).  The broker negotiates as RabbitMQ 3.x does (frame_max 131072, channel_max
2047, heartbeat 60).  Modes:

- ``publish``: fire-and-forget ``Basic.Publish``; nothing answers, so no round trips.
- ``confirm``: ``Confirm.Select``, then one publish at a time, each waiting for its ``Basic.Ack``.
- ``confirm-async``: publishes go out back to back; the broker confirms with ``multiple=true``
  after every ``ASYNC_CONFIRM_EVERY`` publishes (and once for the rest); the client waits for the
  last confirm before closing.
- ``consume``: ``Basic.Qos(prefetch_count=1)`` and ``Basic.Consume``; the broker delivers one
  message at a time and the client acknowledges each (the ack answers the delivery).

Labels (DESIGN.md sections 2-3): the protocol header, ``Connection.*``, ``Channel.Open`` and
``Confirm.Select`` with their OKs are setup; ``Queue.*``, ``Basic.Qos``, ``Basic.Consume`` and
their OKs control; ``Channel.Close``/``Connection.Close`` and OKs teardown.  A message owns its
method frame, content header and body frames and its acknowledgement; frame headers, frame ends,
method and content-header payloads are framing, body-frame payloads payload.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pamqp import body as amqp_body
from pamqp import commands, frame, header
from pamqp.base import Frame
from pamqp.common import FieldTable

from analyzer.accounting.apportion import apportion
from analyzer.decoding.events import CONTROL, FRAMING, ORIG, PAYLOAD, RESP, SETUP, TEARDOWN
from analyzer.synth.conversation import Chunk, Conversation, Flight, MessageInfo

#: RabbitMQ's default frame_max (rabbit.app ``frame_max``), offered in Connection.Tune.
FRAME_MAX_BYTES = 131072
#: 7-byte frame header + frame-end octet (AMQP 0-9-1 section 4.2.3).
FRAME_OVERHEAD_BYTES = 8
CHANNEL_MAX = 2047
HEARTBEAT_S = 60
#: Async confirms: RabbitMQ confirms in batches; one multiple=true ack per this many publishes.
ASYNC_CONFIRM_EVERY = 4
CHANNEL = 1
QUEUE = "synth"
#: A server-named exclusive queue as RabbitMQ names one ("amq.gen-" and 22 characters), where
#: an RPC client takes its replies.
REPLY_QUEUE = "amq.gen-wireprobeSynthReply00"
BROKER_PROPERTIES: FieldTable = {
    "product": "RabbitMQ",
    "version": "3.12.0",
    "platform": "Erlang/OTP 26",
    "capabilities": {"publisher_confirms": True, "consumer_cancel_notify": True},
}
CLIENT_PROPERTIES: FieldTable = {"product": "wireprobe-synth", "version": "1"}


@dataclass(slots=True)
class _Builder:
    flights: list[Flight] = field(default_factory=list)
    #: the kind of ``message_properties`` every message carries
    properties: str = "plain"
    seed: int = 0

    def content(self, method: Frame, message: int, payload: bytes) -> list[Chunk]:
        props = message_properties(self.properties, message, self.seed)
        return _content(method, message, payload, props)

    def send(self, direction: int, chunks: list[Chunk], reacts_to: int | None = None) -> int:
        """Append a flight after the receiver has unmarshalled it; return its index."""
        _check_unmarshals(b"".join(c.data for c in chunks))
        self.flights.append(Flight(direction=direction, chunks=tuple(chunks), reacts_to=reacts_to))
        return len(self.flights) - 1

    def exchange(self, owner: int, request: Frame, reply: Frame, channel: int = 0) -> None:
        """A synchronous method and its OK, both charged to ``owner``."""
        self.send(ORIG, [_method(request, owner, channel)])
        self.send(RESP, [_method(reply, owner, channel)])


def conversation(
    n_messages: int, payload: bytes, mode: str, kind: str = "plain", seed: int = 0
) -> Conversation:
    """``n_messages`` messages on one connection and channel, each with the properties of
    ``kind`` (``message_properties``)."""
    b = _Builder(properties=kind, seed=seed)
    _open(b, mode)
    if mode == "consume":
        _consume(b, n_messages, payload)
    elif mode == "confirm-async":
        _publish_async(b, n_messages, payload)
    else:
        for m in range(n_messages):
            b.send(ORIG, b.content(commands.Basic.Publish(routing_key=QUEUE), m, payload))
            if mode == "confirm":
                b.send(RESP, [_method(commands.Basic.Ack(m + 1), m, CHANNEL, answers=(m,))])
    b.exchange(
        TEARDOWN,
        commands.Channel.Close(200, "Normal shutdown", 0, 0),
        commands.Channel.CloseOk(),
        CHANNEL,
    )
    b.exchange(
        TEARDOWN,
        commands.Connection.Close(200, "Normal shutdown", 0, 0),
        commands.Connection.CloseOk(),
    )
    sender = RESP if mode == "consume" else ORIG
    kind = "deliver" if mode == "consume" else "publish"
    answered = mode != "publish"
    messages = tuple(
        MessageInfo(sender=sender, kind=kind, answered=answered) for _ in range(n_messages)
    )
    return Conversation(protocol="amqp", flights=tuple(b.flights), messages=messages, alpn=None)


def _open(b: _Builder, mode: str) -> None:
    b.send(
        ORIG, [Chunk(data=frame.marshal(header.ProtocolHeader(), 0), owner=SETUP, layer=FRAMING)]
    )
    start = commands.Connection.Start(
        server_properties=BROKER_PROPERTIES, mechanisms="PLAIN AMQPLAIN", locales="en_US"
    )
    b.send(RESP, [_method(start, SETUP)])
    start_ok = commands.Connection.StartOk(
        client_properties=CLIENT_PROPERTIES, mechanism="PLAIN", response="\0guest\0guest"
    )
    b.send(ORIG, [_method(start_ok, SETUP)])
    b.send(
        RESP, [_method(commands.Connection.Tune(CHANNEL_MAX, FRAME_MAX_BYTES, HEARTBEAT_S), SETUP)]
    )
    tune_ok = commands.Connection.TuneOk(CHANNEL_MAX, FRAME_MAX_BYTES, HEARTBEAT_S)
    b.send(ORIG, [_method(tune_ok, SETUP), _method(commands.Connection.Open("/"), SETUP)])
    b.send(RESP, [_method(commands.Connection.OpenOk(), SETUP)])
    b.exchange(SETUP, commands.Channel.Open(), commands.Channel.OpenOk(), CHANNEL)
    if mode in ("confirm", "confirm-async"):
        b.exchange(SETUP, commands.Confirm.Select(), commands.Confirm.SelectOk(), CHANNEL)
    declare_ok = commands.Queue.DeclareOk(QUEUE, 0, 0)
    b.exchange(CONTROL, commands.Queue.Declare(queue=QUEUE, durable=True), declare_ok, CHANNEL)


def _publish_async(b: _Builder, n_messages: int, payload: bytes) -> None:
    previous_publish: int | None = None
    last_ack: int | None = None
    for m in range(n_messages):
        publish = b.content(commands.Basic.Publish(routing_key=QUEUE), m, payload)
        previous_publish = b.send(ORIG, publish, reacts_to=previous_publish)
        if (m + 1) % ASYNC_CONFIRM_EVERY == 0 or m == n_messages - 1:
            covered = tuple(range(m - m % ASYNC_CONFIRM_EVERY, m + 1))
            ack = _shared_ack(commands.Basic.Ack(m + 1, multiple=True), covered)
            last_ack = b.send(RESP, ack, reacts_to=previous_publish)
    # The client closes once the last confirm is in: the flight after this reacts to it.
    assert last_ack == len(b.flights) - 1


def _consume(b: _Builder, n_messages: int, payload: bytes) -> None:
    b.exchange(CONTROL, commands.Basic.Qos(prefetch_count=1), commands.Basic.QosOk(), CHANNEL)
    consume = commands.Basic.Consume(queue=QUEUE, consumer_tag="synth.1")
    b.exchange(CONTROL, consume, commands.Basic.ConsumeOk("synth.1"), CHANNEL)
    for m in range(n_messages):
        deliver = commands.Basic.Deliver("synth.1", m + 1, False, "", QUEUE)
        b.send(RESP, b.content(deliver, m, payload))
        b.send(ORIG, [_method(commands.Basic.Ack(m + 1), m, CHANNEL, answers=(m,))])


def _method(method: Frame, owner: int, channel: int = 0, answers: tuple[int, ...] = ()) -> Chunk:
    return Chunk(data=frame.marshal(method, channel), owner=owner, layer=FRAMING, answers=answers)


def _shared_ack(method: Frame, covered: tuple[int, ...]) -> list[Chunk]:
    """An ack with multiple=true is charged to every message it confirms, in equal shares.

    The frame's bytes are cut in order of delivery tag (``apportion``, as the analyzer does) and
    go out in one write; its first byte answers every covered message.
    """
    data = frame.marshal(method, CHANNEL)
    shares = apportion(len(data), [1] * len(covered))
    chunks, at = [], 0
    for i, (message, size) in enumerate(zip(covered, shares, strict=True)):
        chunks.append(
            Chunk(
                data=data[at : at + size],
                owner=message,
                layer=FRAMING,
                answers=covered if i == 0 else (),
                joined=i > 0,
            )
        )
        at += size
    return chunks


def message_properties(kind: str, message: int, seed: int) -> commands.Basic.Properties:
    """The properties of a message of ``kind``: every message says its content type and asks to
    be persisted; an RPC request names its reply queue and a correlation id, its reply repeats
    the id (RabbitMQ tutorial 6, the shape pika and the Java client produce)."""
    fields: dict[str, object] = {}
    if kind in ("request", "reply"):
        fields["correlation_id"] = correlation_id(message, seed)
    if kind == "request":
        fields["reply_to"] = REPLY_QUEUE
    return commands.Basic.Properties(
        content_type="application/octet-stream",
        delivery_mode=2,
        **fields,  # type: ignore[arg-type]
    )


def correlation_id(message: int, seed: int) -> str:
    """A UUID-shaped id (36 characters, as ``str(uuid.uuid4())``), derived from the message
    and the seed so that runs are reproducible."""
    return f"{seed & 0xFFFFFFFF:08x}-0000-4000-8000-{message:012x}"


def _content(
    method: Frame, message: int, payload: bytes, properties: commands.Basic.Properties
) -> list[Chunk]:
    """A content-carrying method, its content header and its body frames (section 2.3.5)."""
    first = frame.marshal(method, CHANNEL)
    chunks = [Chunk(data=first, owner=message, layer=FRAMING, starts=(message,))]
    content_header = header.ContentHeader(0, len(payload), properties)
    chunks.append(Chunk(data=frame.marshal(content_header, CHANNEL), owner=message, layer=FRAMING))
    piece_bytes = FRAME_MAX_BYTES - FRAME_OVERHEAD_BYTES
    for offset in range(0, len(payload), piece_bytes):
        body_frame = frame.marshal(
            amqp_body.ContentBody(payload[offset : offset + piece_bytes]), CHANNEL
        )
        chunks.append(Chunk(data=body_frame[:7], owner=message, layer=FRAMING))
        chunks.append(Chunk(data=body_frame[7:-1], owner=message, layer=PAYLOAD))
        chunks.append(Chunk(data=body_frame[-1:], owner=message, layer=FRAMING))
    # The method, content header and body frames go out in one write (pika and RabbitMQ's
    # writer both join a message's frames).
    return [replace(c, joined=i > 0) for i, c in enumerate(chunks)]


def _check_unmarshals(data: bytes) -> None:
    """The receiving side parses every frame (pamqp needs whole frames, so frame it here)."""
    offset = 0
    if data.startswith(b"AMQP"):
        frame.unmarshal(data[:8])
        offset = 8
    while offset < len(data):
        size = int.from_bytes(data[offset + 3 : offset + 7], "big")
        end = offset + 7 + size + 1
        consumed, _, _ = frame.unmarshal(data[offset:end])
        if consumed != end - offset:
            raise AssertionError(f"pamqp read {consumed} of a {end - offset}-byte frame")
        offset = end
