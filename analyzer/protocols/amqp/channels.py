"""The AMQP decoder's channel layer: what each frame means to its channel's messages."""

from __future__ import annotations

from analyzer.accounting.apportion import apportion
from analyzer.decoding.events import (
    CONTROL,
    FRAMING,
    OPAQUE,
    PAYLOAD,
    UNDECODED,
    Answering,
    MessageAnswered,
    MessageEnded,
    MessageNote,
    MessageStarted,
)
from analyzer.protocols.amqp.base import _Plumbing
from analyzer.protocols.amqp.properties import rpc_properties
from analyzer.protocols.amqp.state import (
    _Lane,
    _Message,
    _PendingGet,
)
from analyzer.protocols.amqp.wire import (
    ACK_KINDS,
    CONTENT_HEADER,
    FRAME_HEADER_BYTES,
    MAX_MEMO_PUBLISHES,
    MAX_TRACKED_CONSUMERS,
    MAX_UNACKED_PER_LANE,
    MAX_UNCONFIRMED_GUESSES,
    MESSAGE_KINDS,
    METHOD_BUCKETS,
    PROTOCOL,
    Buffer,
    Method,
    _decode_method,
)


class _Channels(_Plumbing):
    """Channels: lanes, messages, content and method frames, acknowledgements."""

    # ---------------------------------------------------------------- lanes and messages

    def _lane(self, direction: int, channel: int) -> _Lane:
        lane = self._lanes.get((direction, channel))
        if lane is None:
            lane = self._lanes[(direction, channel)] = _Lane()
        return lane

    def _start_message(
        self, kind: str, sender: int, channel: int, ordinal: int, ts: float, method: Method
    ) -> _Message:
        number = self._ids.next()
        message = _Message(number, kind, channel, self._ts)
        self._messages[number] = message
        events = self._events
        events += (
            MessageStarted(number, PROTOCOL, kind, sender, ordinal, ts),
            MessageNote(number, "method", method.name),
            MessageNote(number, "channel", channel),
        )
        exchange = getattr(method, "exchange", None)
        if isinstance(exchange, str):
            events.append(MessageNote(number, "exchange", exchange))
        routing_key = getattr(method, "routing_key", None)
        if isinstance(routing_key, str):
            events.append(MessageNote(number, "routing_key", routing_key))
        if kind == "return":
            events.append(MessageNote(number, "reply_code", getattr(method, "reply_code", None)))
        if self._blocked and kind == "publish":
            events.append(MessageNote(number, "blocked", True))
        return message

    def _await_ack(self, lane: _Lane, tag: int, message: _Message) -> None:
        message.awaiting_ack = True
        message.delivery_tag = tag
        lane.wait_for_ack(tag, message)
        if len(lane.unacked) > MAX_UNACKED_PER_LANE:
            self._anomaly("amqp.too_many_unacked")
            oldest = lane.unacked.pop(next(iter(lane.unacked)))
            oldest.awaiting_ack = False
            self._maybe_end(oldest, oldest.last_ts)

    def _maybe_end(self, message: _Message, ts: float) -> None:
        if message.ended or not message.content_done or message.awaiting_ack:
            return
        message.ended = True
        del self._messages[message.id]
        self._flush_spans()
        if message.delivery_tag is not None:
            self._events.append(MessageNote(message.id, "delivery_tag", message.delivery_tag))
        self._events += (MessageNote(message.id, "ack", message.ack), MessageEnded(message.id, ts))

    def _content_done(self, lane: _Lane) -> None:
        message = lane.content
        lane.content = None
        if message is not None:
            message.content_done = True
            self._maybe_end(message, message.last_ts)

    def _body_target(self, direction: int, channel: int, size: int) -> _Message | None:
        """The message a body frame of ``size`` bytes on this lane belongs to, if plausible."""
        lane = self._lanes.get((direction, channel))
        message = None if lane is None else lane.content
        if message is None or message.body_size is None:
            return None
        if message.body_seen + size > message.body_size:
            return None
        return message

    def _count_body(self, message: _Message | None, length: int) -> None:
        if message is not None:
            message.body_seen += length
            message.last_ts = self._ts

    def _body_frame_done(self, direction: int, message: _Message) -> None:
        assert message.body_size is not None
        if message.body_seen >= message.body_size:
            self._content_done(self._lane(direction, message.channel))

    # ---------------------------------------------------------------- content frames

    def _content_header(
        self, direction: int, channel: int, start: int, size: int, buf: Buffer, pos: int
    ) -> None:
        lane = self._lanes.get((direction, channel))
        message = None if lane is None else lane.content
        if lane is None or message is None or message.body_size is not None:
            self._orphan(direction, start, size, FRAMING)
            return
        if size < CONTENT_HEADER.size:
            self._anomaly("amqp.bad_content_header")
            self._charge_frame(direction, start, size, UNDECODED, OPAQUE)
            return
        _, _, body_size = CONTENT_HEADER.unpack_from(buf, pos + FRAME_HEADER_BYTES)
        message.body_size = body_size
        message.last_ts = self._ts
        # The whole frame is framing: it extends the method frame's span, still open.
        end = start + FRAME_HEADER_BYTES + size + 1
        span = self._open[direction]
        if span is not None and span[1] == start and span[2] == message.id and span[3] == FRAMING:
            span[1] = end
        else:
            self._charge(direction, start, end, message.id, FRAMING)
        self._events.append(MessageNote(message.id, "body_size", body_size))
        payload = pos + FRAME_HEADER_BYTES
        self._note_rpc(message.id, buf, payload, payload + size)
        if body_size == 0:
            self._content_done(lane)

    def _note_rpc(self, message: int, buf: Buffer, pos: int, end: int) -> None:
        """The properties that pair an RPC's request with its reply across connections
        (analyzer.accounting.rpc), noted only when the message carries them."""
        rpc = rpc_properties(buf, pos, end)
        if rpc.correlation_id:
            self._events.append(MessageNote(message, "correlation_id", rpc.correlation_id))
        if rpc.reply_to:
            self._events.append(MessageNote(message, "reply_to", rpc.reply_to))

    def _body(self, direction: int, channel: int, start: int, size: int) -> None:
        # _body_target, _count_body and _body_frame_done in one: this runs for every body frame.
        lane = self._lanes.get((direction, channel))
        message = None if lane is None else lane.content
        body_size = None if message is None else message.body_size
        if message is None or body_size is None or message.body_seen + size > body_size:
            self._orphan(direction, start, size, PAYLOAD)
            return
        assert lane is not None
        self._charge_frame(direction, start, size, message.id, PAYLOAD)
        message.body_seen += size
        message.last_ts = self._ts
        if message.body_seen >= body_size:
            lane.content = None  # _content_done(lane), inline
            message.content_done = True
            self._maybe_end(message, message.last_ts)

    def _orphan(self, direction: int, start: int, size: int, layer: int) -> None:
        # Content whose method was not captured (mid-connection start, after a gap): we know its
        # layers but not its message, and must not invent one.
        self._anomaly("amqp.orphan_content")
        self._charge_frame(direction, start, size, UNDECODED, layer)

    # ---------------------------------------------------------------- method frames

    def _method(self, direction: int, channel: int, start: int, size: int, payload: Buffer) -> None:
        # Decoding is a pure function of the payload, so a remembered publish is as good as new.
        value = self._publishes.get(payload) if type(payload) is bytes else None
        if value is None:
            value = _decode_method(payload)
            if value is None:
                self._anomaly("amqp.bad_method")
                self._charge_frame(direction, start, size, UNDECODED, OPAQUE)
                return
            if value.name == "Basic.Publish":
                self._remember_publish(payload, value)
        name = value.name
        lane = self._lanes.get((direction, channel))
        if lane is not None and lane.content is not None:
            # Section 4.2.6: content follows its method with nothing in between on a channel.
            self._anomaly("amqp.content_interrupted")
            self._content_done(lane)
        if self._dirs[direction].feeds:
            ordinal, ts = self._feed_at(self._dirs[direction], start)
        else:  # the frame came whole in the current feed
            ordinal, ts = self._ordinal, self._ts
        kind = MESSAGE_KINDS.get(name)
        if kind is not None:
            if lane is None:
                lane = self._lane(direction, channel)
            self._content_method(direction, channel, start, size, value, kind, lane, (ordinal, ts))
        elif name in ACK_KINDS:
            self._ack(direction, channel, start, size, value, (ordinal, ts))
        elif name == "Basic.Get":
            self._get(direction, channel, start, size, value, ordinal, ts)
        elif name == "Basic.GetEmpty":
            self._resolve_get_as_control(channel)
            self._charge_frame(direction, start, size, CONTROL, FRAMING)
        else:
            self._charge_frame(direction, start, size, METHOD_BUCKETS.get(name, CONTROL), FRAMING)
            # Connection.*, Channel.Open, ...: what the peer waits for in setup, even when a
            # TLS session ticket shares the packet (events.Answering).
            self._events.append(Answering(direction, self._ordinal))
            self._side_effects(direction, channel, name, value)

    def _remember_publish(self, payload: Buffer, value: Method) -> None:
        """Keep a decoded Basic.Publish for the next identical payload (MAX_MEMO_PUBLISHES)."""
        if len(self._publishes) >= MAX_MEMO_PUBLISHES:
            self._publishes.clear()
        self._publishes[bytes(payload)] = value

    def _content_method(
        self,
        direction: int,
        channel: int,
        start: int,
        size: int,
        method: Method,
        kind: str,
        lane: _Lane,
        first_byte: tuple[int, float],
    ) -> None:
        """A content-carrying method on ``lane`` (the sender's on ``channel``) starts a message;
        ``first_byte`` is the (ordinal, ts) of the packet that brought the method's first byte."""
        ordinal, ts = first_byte
        get = self._gets.pop(channel, None) if kind == "get" else None
        if kind == "get":
            # The Basic.Get started this message; GetOk is its answer.  A GetOk whose Get was
            # not captured is started and answered by the same packet.
            sender = 1 - direction if get is None else get.direction
            first = (ordinal, ts) if get is None else (get.ordinal, get.ts)
            message = self._start_message(kind, sender, channel, first[0], first[1], method)
            if get is not None:
                self._charge(get.direction, get.start, get.end, message.id, FRAMING)
            self._emit(MessageAnswered(message.id, ordinal, ts))
            message.answered = True
        else:
            message = self._start_message(kind, direction, channel, ordinal, ts, method)
        self._charge(direction, start, start + FRAME_HEADER_BYTES + size + 1, message.id, FRAMING)
        lane.content = message
        self._expect_ack(lane, message, method, get)

    def _expect_ack(
        self, lane: _Lane, message: _Message, method: Method, get: _PendingGet | None
    ) -> None:
        """Decide whether an acknowledgement may come for ``message`` and under which tag."""
        if message.kind == "publish":
            if lane.confirm:
                self._await_ack(lane, lane.next_seq, message)
                lane.next_seq += 1
            elif not lane.known:
                # Confirm.Select may predate the capture: keep it until an ack shows the numbering.
                message.awaiting_ack = True
                lane.unnumbered.append(message)
                if len(lane.unnumbered) > MAX_UNCONFIRMED_GUESSES:
                    self._give_up_confirms(lane)
            return
        tag = getattr(method, "delivery_tag", None)
        if message.kind == "return" or not isinstance(tag, int):
            return
        if message.kind == "get":
            no_ack = get.no_ack if get is not None else None
        else:
            consumer = str(getattr(method, "consumer_tag", ""))
            no_ack = self._consumers.get((message.channel, consumer))
        message.delivery_tag = tag
        if not no_ack:
            self._await_ack(lane, tag, message)

    def _give_up_confirms(self, lane: _Lane) -> None:
        """Too many publishes and no ack: this channel has no confirms; stop waiting."""
        lane.known = True
        guesses, lane.unnumbered = lane.unnumbered, []
        for message in guesses:
            message.awaiting_ack = False
            self._maybe_end(message, message.last_ts)

    def _get(
        self,
        direction: int,
        channel: int,
        start: int,
        size: int,
        method: Method,
        ordinal: int,
        ts: float,
    ) -> None:
        if channel in self._gets:
            self._anomaly("amqp.unanswered_get")
            self._resolve_get_as_control(channel)
        end = start + FRAME_HEADER_BYTES + size + 1
        no_ack = bool(getattr(method, "no_ack", False))
        self._gets[channel] = _PendingGet(direction, start, end, ordinal, ts, no_ack)

    def _resolve_get_as_control(self, channel: int) -> None:
        get = self._gets.pop(channel, None)
        if get is not None:
            self._charge(get.direction, get.start, get.end, CONTROL, FRAMING)

    def _side_effects(self, direction: int, channel: int, name: str, method: Method) -> None:
        """State that later frames depend on: confirm mode, consumers, channel life, blocking."""
        if name == "Confirm.Select":
            lane = self._lane(direction, channel)
            self._give_up_confirms(lane)  # publishes before the select are never confirmed
            lane.confirm, lane.next_seq = True, 1
        elif name == "Channel.Open":
            self._close_channel(channel)
            for sender in (0, 1):
                self._lane(sender, channel).known = True
        elif name == "Channel.CloseOk":
            self._close_channel(channel)
        elif name == "Connection.CloseOk":
            for open_channel in {key[1] for key in self._lanes} | set(self._gets):
                self._close_channel(open_channel)
        elif name == "Basic.Consume":
            no_ack = bool(getattr(method, "no_ack", False))
            tag = str(getattr(method, "consumer_tag", ""))
            if getattr(method, "nowait", False) and tag:
                # No ConsumeOk will come (section 1.8.3.3): the client's tag is the tag.
                self._remember_consumer(channel, tag, no_ack)
            else:
                self._consume_no_ack[channel] = no_ack
        elif name == "Basic.ConsumeOk":
            pending = self._consume_no_ack.pop(channel, None)
            if pending is not None:
                self._remember_consumer(channel, str(getattr(method, "consumer_tag", "")), pending)
        elif name == "Connection.Blocked":
            self._blocked = True
        elif name == "Connection.Unblocked":
            self._blocked = False

    def _remember_consumer(self, channel: int, tag: str, no_ack: bool) -> None:
        if len(self._consumers) < MAX_TRACKED_CONSUMERS:
            self._consumers[(channel, tag)] = no_ack

    def _close_channel(self, channel: int) -> None:
        """A channel ends (or restarts): nothing on it will be acknowledged any more."""
        for sender in (0, 1):
            lane = self._lanes.pop((sender, channel), None)
            if lane is None:
                continue
            if lane.content is not None:
                self._anomaly("amqp.truncated_content")
                self._content_done(lane)
            for message in [*lane.unacked.values(), *lane.unnumbered]:
                message.awaiting_ack = False
                self._maybe_end(message, message.last_ts)
        self._resolve_get_as_control(channel)
        self._consumers = {k: v for k, v in self._consumers.items() if k[0] != channel}

    # ---------------------------------------------------------------- acknowledgements

    def _ack(
        self,
        direction: int,
        channel: int,
        start: int,
        size: int,
        method: Method,
        first_byte: tuple[int, float],
    ) -> None:
        """An ack from ``direction`` settles messages the other direction sent on ``channel``."""
        tag = int(getattr(method, "delivery_tag", 0))
        multiple = bool(getattr(method, "multiple", False))
        lane = self._lane(1 - direction, channel)
        if not lane.confirm and not lane.unacked and lane.unnumbered:
            self._infer_confirms(lane, tag, multiple)
        acked = self._match(lane, tag, multiple)
        if not acked:
            self._anomaly("amqp.unmatched_ack")
            self._charge_frame(direction, start, size, CONTROL, FRAMING)
            return
        total = FRAME_HEADER_BYTES + size + 1
        if len(acked) == 1:  # the usual case: one ack per message
            self._charge(direction, start, start + total, acked[0].id, FRAMING)
        else:
            position = start
            for message, share in zip(acked, apportion(total, [1] * len(acked)), strict=True):
                self._charge(direction, position, position + share, message.id, FRAMING)
                position += share
        kind = ACK_KINDS[method.name]
        for message in acked:
            message.ack = kind
            message.awaiting_ack = False
            message.last_ts = self._ts
            if not message.answered:
                message.answered = True
                self._emit(MessageAnswered(message.id, *first_byte))
            self._maybe_end(message, self._ts)

    @staticmethod
    def _match(lane: _Lane, tag: int, multiple: bool) -> list[_Message]:
        if not multiple:
            message = lane.unacked.pop(tag, None)
            return [] if message is None else [message]
        # Section 1.8.3.13: multiple covers every outstanding tag up to ``tag``; 0 means all.
        if lane.ordered:
            # The tags it covers are the first ones, already in order: stop at the first beyond.
            tags = []
            for t in lane.unacked:
                if tag and t > tag:
                    break
                tags.append(t)
        else:
            tags = sorted(t for t in lane.unacked if tag == 0 or t <= tag)
        return [lane.unacked.pop(t) for t in tags]

    def _infer_confirms(self, lane: _Lane, tag: int, multiple: bool) -> None:
        """Number publishes whose Confirm.Select was not captured, anchored on this first ack.

        A single ack confirms the oldest unconfirmed publish (synchronous confirms, the common
        case); a multiple ack confirms every publish seen so far.  Later publishes continue the
        numbering, so later acks match by tag as usual.
        """
        anchor = 0 if not multiple else len(lane.unnumbered) - 1
        first = tag - anchor
        if tag <= 0 or first < 1:
            return
        self._anomaly("amqp.confirm_inferred")
        for index, message in enumerate(lane.unnumbered):
            lane.wait_for_ack(first + index, message)
            message.delivery_tag = first + index
        lane.next_seq = first + len(lane.unnumbered)
        lane.unnumbered.clear()
        lane.confirm = True
