"""AMQP 0-9-1: frame the byte stream, charge every frame to a message or a connection bucket.

The stream of each direction is the 8-byte protocol header ``AMQP\\x00\\x00\\x09\\x01`` (sent by
the client, or by a server refusing the client's version) and then frames (AMQP 0-9-1 section
4.2.3): a 7-byte header (type u8, channel u16, size u32), ``size`` payload bytes and the
frame-end octet 0xCE.  We frame the stream ourselves and hand only whole method frames to pamqp:
pamqp cannot tell a truncated frame from a malformed one (DESIGN.md section 6).

Messages (DESIGN.md section 2) are the content-carrying methods Basic.Publish, Basic.Deliver,
Basic.GetOk and Basic.Return with their content header and body frames, matched per channel and
direction (content frames of one channel are never interleaved, section 4.2.6; channels are).
Acknowledgements are charged to the messages they acknowledge:

- publisher confirms: after Confirm.Select on a channel, the broker numbers the client's
  publishes 1, 2, 3, ... (RabbitMQ "Publisher Confirms"); Basic.Ack/Nack from the other side with
  tag n confirms publish n, or every unconfirmed one <= n with ``multiple`` (tag 0 + multiple:
  all, spec section 1.8.3.13);
- consumer acks: Basic.Ack/Nack/Reject from the other side with a Basic.Deliver's or
  Basic.GetOk's delivery tag.

Matching looks at the lane (sender direction, channel) opposite the ack, so it does not matter
which side originated the TCP connection (captures that start mid-connection often get it wrong).

Choices where the capture cannot tell us everything:

- Mid-connection captures have no Confirm.Select.  Publishes on a channel whose Channel.Open was
  not seen are kept as "maybe confirmed"; when a broker ack arrives for them we infer the
  numbering from that first ack (``_infer_confirms``) and record ``amqp.confirm_inferred``.
  With more than ``MAX_UNCONFIRMED_GUESSES`` of them and no ack, the channel is taken to have no
  confirms.  An ack that matches nothing is CONTROL plus ``amqp.unmatched_ack``.
- A message that may still be acknowledged (confirm mode, a consumer not known to be no_ack)
  ends at its ack, at Channel.CloseOk, or at ``finish``, with the ts of its last byte seen.
- Basic.Get waits (bytes and all) for its answer: GetOk makes it a message, so its id is
  allocated then; GetEmpty (or no answer) makes it CONTROL.  No id is ever left unused.
- Content frames whose method was not captured are charged to UNDECODED with their real layers
  (framing, payload) plus ``amqp.orphan_content``: decoded, but no message is invented.
- Resynchronisation (mid-frame start, bad frame-end, bad type, a gap we cannot bridge) accepts
  only a whole method frame with a known class/method or a heartbeat; skipped bytes are opaque.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from pamqp import commands, exceptions
from pamqp.base import Frame as PamqpMethod

from analyzer.accounting.apportion import apportion
from analyzer.decoding.events import (
    CONTROL,
    FRAMING,
    OPAQUE,
    PAYLOAD,
    SETUP,
    TEARDOWN,
    UNDECODED,
    Anomaly,
    Answering,
    Event,
    MessageAnswered,
    MessageEnded,
    MessageIds,
    MessageNote,
    MessageStarted,
    ProtocolIdentified,
    Span,
    Unsolicited,
)
from analyzer.options import DecodeOptions
from analyzer.protocols.amqp.properties import rpc_properties

PROTOCOL = "amqp"
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
PROTOCOL_HEADER_BYTES = 8
FRAME_HEADER = struct.Struct(">BHI")  # type, channel, payload size (spec section 4.2.3)
FRAME_HEADER_BYTES = FRAME_HEADER.size
FRAME_END = 0xCE
FRAME_METHOD, FRAME_CONTENT_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_TYPES = frozenset({FRAME_METHOD, FRAME_CONTENT_HEADER, FRAME_BODY, FRAME_HEARTBEAT})
METHOD_INDEX = struct.Struct(">I")  # class id u16 + method id u16, as pamqp indexes them
CONTENT_HEADER = struct.Struct(">HHQ")  # class id, weight (always 0), body size (section 4.2.6.1)

#: Largest frame we hold in memory to check its frame-end before charging it.  RabbitMQ's
#: default frame_max is 128 KiB and the negotiated maximum is 2^32-1; bigger frames are charged
#: as they stream past (body frames as their message's payload) and checked at the end.
MAX_BUFFERED_FRAME_BYTES = 1024 * 1024
#: While resynchronising (mid-connection start, after garbage or a gap) a candidate frame must be
#: no bigger than RabbitMQ's default frame_max (131072), so a false candidate costs little waiting.
MAX_RESYNC_FRAME_BYTES = 128 * 1024
#: Messages per lane waiting for an acknowledgement.  Consumers with prefetch 0 can leave many
#: deliveries unacked; past this the oldest is ended unacknowledged so memory stays bounded.
MAX_UNACKED_PER_LANE = 65536
#: Publishes tracked on a channel whose Confirm.Select may predate the capture.  Publishers
#: using confirms keep a bounded window in flight (typically tens to hundreds); with more
#: unconfirmed than this and no ack yet, the channel is taken to have no confirms.
MAX_UNCONFIRMED_GUESSES = 1024
#: Consumer tags whose no_ack flag we remember per connection; real clients use a handful per
#: channel, so this only guards memory against hostile input.
MAX_TRACKED_CONSUMERS = 4096
#: Decoded Basic.Publish payloads remembered per connection.  A publisher repeats the same
#: exchange, routing key and flags byte for byte, so most publishes decode with one lookup;
#: a few hundred covers a publisher's distinct routing keys, and the memo starts over when full.
MAX_MEMO_PUBLISHES = 256

#: Content-carrying methods and the kind of message they start (DESIGN.md section 2).
MESSAGE_KINDS: dict[str, str] = {
    "Basic.Publish": "publish",
    "Basic.Deliver": "deliver",
    "Basic.GetOk": "get",
    "Basic.Return": "return",
}
#: Acknowledgements and the value of the message's "ack" note.
ACK_KINDS: dict[str, str] = {"Basic.Ack": "ack", "Basic.Nack": "nack", "Basic.Reject": "reject"}
#: Where non-message methods go (DESIGN.md section 2); anything unlisted is CONTROL (Queue.*,
#: Exchange.*, Basic.Qos/Consume/Cancel/Recover, Channel.Flow, Connection.Blocked, Tx.*, ...).
METHOD_BUCKETS: dict[str, int] = {
    "Connection.Start": SETUP,
    "Connection.StartOk": SETUP,
    "Connection.Secure": SETUP,
    "Connection.SecureOk": SETUP,
    "Connection.Tune": SETUP,
    "Connection.TuneOk": SETUP,
    "Connection.Open": SETUP,
    "Connection.OpenOk": SETUP,
    "Channel.Open": SETUP,
    "Channel.OpenOk": SETUP,
    "Confirm.Select": SETUP,
    "Confirm.SelectOk": SETUP,
    "Channel.Close": TEARDOWN,
    "Channel.CloseOk": TEARDOWN,
    "Connection.Close": TEARDOWN,
    "Connection.CloseOk": TEARDOWN,
}

# Framing modes of one direction.
_START, _FRAMES, _RESYNC, _STREAM = range(4)
_RESYNC_CANDIDATE = re.compile(rb"[\x01\x08]")  # only method and heartbeat frames resync
_PAMQP_ERRORS = (
    exceptions.UnmarshalingException,
    ValueError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    UnicodeDecodeError,
)


#: What the framing reads from: a direction's buffer, or a feed's bytes parsed in place when
#: nothing is buffered (the common case: whole frames in one packet, never copied).
Buffer = bytes | bytearray


def _frame_header(buf: Buffer, pos: int) -> tuple[int, int, int]:
    """(type, channel, payload size) of the frame header at ``pos``."""
    kind, channel, size = FRAME_HEADER.unpack_from(buf, pos)
    return int(kind), int(channel), int(size)


class _Fast(NamedTuple):
    """The fields we read of a content-carrying or acknowledgement method, unpacked with
    struct (``_FAST_METHODS``); read with the same ``getattr`` calls as a pamqp method.
    A named tuple, not a frozen dataclass: one is built per message and per ack, and a
    frozen dataclass's ``__init__`` costs three times as much (hence positional arguments on
    the hot paths too: keywords cost half as much again)."""

    name: str
    exchange: str | None = None
    routing_key: str | None = None
    reply_code: int | None = None
    delivery_tag: int | None = None
    consumer_tag: str | None = None
    multiple: bool = False


Method = PamqpMethod | _Fast

_SHORT = struct.Struct(">H")
_LONG_LONG = struct.Struct(">q")  # pamqp's longlong is signed


def _short_string(payload: Buffer, at: int) -> tuple[str, int]:
    """The AMQP short string (u8 length + UTF-8) at ``at``, and the offset after it.
    Raises IndexError when it is cut short (the caller then asks pamqp)."""
    end = at + 1 + payload[at]
    if end > len(payload):
        raise IndexError(at)
    return payload[at + 1 : end].decode("utf-8"), end


def _short_strings(payload: Buffer, at: int, count: int) -> tuple[list[str], int]:
    """``count`` AMQP short strings from ``at``, and the offset after them."""
    values = []
    for _ in range(count):
        value, at = _short_string(payload, at)
        values.append(value)
    return values, at


def _fast_publish(payload: Buffer) -> _Fast:
    # Basic.Publish: ticket short, exchange shortstr, routing-key shortstr, mandatory and
    # immediate bits (one octet).  The two strings are read inline: this runs per message.
    size = len(payload)
    at = 7 + payload[6]  # after the exchange
    if at > size:
        raise IndexError(at)
    end = at + 1 + payload[at]  # after the routing key
    if end >= size:  # the routing key is cut short, or the bits octet is missing
        raise IndexError(end)
    exchange = payload[7:at].decode("utf-8")
    return _Fast("Basic.Publish", exchange, payload[at + 1 : end].decode("utf-8"))


def _fast_return(payload: Buffer) -> _Fast:
    # Basic.Return: reply-code short, reply-text, exchange, routing-key shortstrs.
    (reply_code,) = _SHORT.unpack_from(payload, 4)
    (_, exchange, routing_key), _ = _short_strings(payload, 6, 3)
    return _Fast("Basic.Return", exchange, routing_key, reply_code=reply_code)


def _fast_deliver(payload: Buffer) -> _Fast:
    # Basic.Deliver: consumer-tag shortstr, delivery-tag longlong, redelivered bit (one
    # octet), exchange and routing-key shortstrs.
    consumer_tag, at = _short_string(payload, 4)
    (tag,) = _LONG_LONG.unpack_from(payload, at)
    if at + 8 >= len(payload):
        raise IndexError(at)
    exchange, at = _short_string(payload, at + 9)
    routing_key, _ = _short_string(payload, at)
    # reply_code None, delivery_tag, consumer_tag
    return _Fast("Basic.Deliver", exchange, routing_key, None, tag, consumer_tag)


def _fast_get_ok(payload: Buffer) -> _Fast:
    # Basic.GetOk: delivery-tag longlong, redelivered bit (one octet), exchange and
    # routing-key shortstrs, message-count long.
    (tag,) = _LONG_LONG.unpack_from(payload, 4)
    if len(payload) <= 12:
        raise IndexError(12)
    (exchange, routing_key), end = _short_strings(payload, 13, 2)
    if end + 4 > len(payload):
        raise IndexError(end)
    return _Fast("Basic.GetOk", exchange, routing_key, delivery_tag=tag)


def _fast_ack(name: str, has_multiple: bool) -> Callable[[Buffer], _Fast]:
    # Basic.Ack / Nack / Reject: delivery-tag longlong, then bits (multiple first, if any).
    def decode(payload: Buffer) -> _Fast:
        (tag,) = _LONG_LONG.unpack_from(payload, 4)
        bits = payload[12]
        # exchange, routing_key, reply_code None; delivery_tag; consumer_tag None; multiple
        return _Fast(name, None, None, None, tag, None, has_multiple and bool(bits & 1))

    return decode


#: Methods unpacked by hand: they come once per message (content) or per acknowledgement, and
#: pamqp's generic field-by-field unmarshal costs several times the rest of their frame's work.
#: Same values as pamqp; anything cut short or not UTF-8 is handed to pamqp to judge.
_FAST_METHODS: dict[int, Callable[[Buffer], _Fast]] = {
    0x003C0028: _fast_publish,
    0x003C0032: _fast_return,
    0x003C003C: _fast_deliver,
    0x003C0047: _fast_get_ok,
    0x003C0050: _fast_ack("Basic.Ack", has_multiple=True),
    0x003C005A: _fast_ack("Basic.Reject", has_multiple=False),
    0x003C0078: _fast_ack("Basic.Nack", has_multiple=True),
}


def _decode_method(payload: Buffer) -> Method | None:
    """The method in a whole method frame's payload, decoded by pamqp; None if it is not one.

    This is what ``pamqp.frame.unmarshal`` does for method frames, minus its framing checks,
    which we have already made.
    """
    if len(payload) < METHOD_INDEX.size:
        return None
    index: int
    (index,) = METHOD_INDEX.unpack_from(payload)
    fast = _FAST_METHODS.get(index)
    if fast is not None:
        try:
            return fast(payload)
        except (IndexError, struct.error, UnicodeDecodeError):
            pass  # malformed or cut short: pamqp decides what it is
    factory = commands.INDEX_MAPPING.get(index)
    if factory is None:
        return None
    method: PamqpMethod = factory()
    try:
        method.unmarshal(bytes(payload[METHOD_INDEX.size :]))
    except _PAMQP_ERRORS:
        return None
    return method


@dataclass(slots=True, eq=False)
class _Message:
    """One content-carrying method being decoded (mutable: it fills in as frames arrive)."""

    id: int
    kind: str
    channel: int
    #: ts of the message's latest byte so far (MessageEnded uses it when no ack comes)
    last_ts: float
    delivery_tag: int | None = None
    #: None until the content header arrives
    body_size: int | None = None
    body_seen: int = 0
    content_done: bool = False
    #: an acknowledgement may still come (confirm mode, consumer not known to be no_ack)
    awaiting_ack: bool = False
    answered: bool = False
    ack: str | None = None
    ended: bool = False


@dataclass(slots=True, eq=False)
class _Lane:
    """What one direction sends on one channel: its content in progress and its unacked messages."""

    content: _Message | None = None
    #: Confirm.Select was seen for this sender: its publishes are numbered from 1
    confirm: bool = False
    next_seq: int = 1
    #: the lane's beginning (Channel.Open) was seen, so "no Confirm.Select" means no confirms
    known: bool = False
    #: delivery tag (or publish sequence number) -> message waiting for its acknowledgement
    unacked: dict[int, _Message] = field(default_factory=dict)
    #: the tags of ``unacked`` were added in ascending order (brokers number them so), which
    #: lets a multiple ack take the ones it covers from the front instead of scanning them all
    ordered: bool = True
    #: publishes seen without Confirm.Select on a lane whose beginning was not captured
    unnumbered: list[_Message] = field(default_factory=list)

    def wait_for_ack(self, tag: int, message: _Message) -> None:
        """``message`` waits for an acknowledgement of ``tag``."""
        unacked = self.unacked
        if not unacked:
            self.ordered = True
        elif self.ordered and tag <= next(reversed(unacked)):
            self.ordered = False
        unacked[tag] = message


@dataclass(slots=True, eq=False)
class _PendingGet:
    """A Basic.Get waiting for GetOk (a message) or GetEmpty (control): its bytes wait too."""

    direction: int
    start: int
    end: int
    ordinal: int
    ts: float
    no_ack: bool


@dataclass(slots=True, eq=False)
class _Direction:
    """Framing state of one direction's byte stream."""

    offset: int
    #: bytes not yet charged, starting at stream offset ``offset``
    buf: bytearray = field(default_factory=bytearray)
    mode: int = _START
    #: (stream offset, ordinal, ts) of each feed whose bytes are in ``buf``
    feeds: list[tuple[int, int, float]] = field(default_factory=list)
    # A body frame charged as it streams past (_STREAM): bytes left including the frame-end.
    stream_left: int = 0
    stream_message: _Message | None = None


class AmqpDecoder:
    """Sans-IO AMQP 0-9-1 decoder: bytes of both directions in, ledger events out."""

    def __init__(
        self, ids: MessageIds, options: DecodeOptions, *, base: tuple[int, int] = (0, 0)
    ) -> None:
        self._ids = ids
        self._options = options
        self._dirs = (_Direction(base[0]), _Direction(base[1]))
        self._lanes: dict[tuple[int, int], _Lane] = {}
        self._gets: dict[int, _PendingGet] = {}  # channel -> Basic.Get waiting for its answer
        self._consumers: dict[tuple[int, str], bool] = {}  # (channel, consumer tag) -> no_ack
        self._consume_no_ack: dict[int, bool] = {}  # channel -> no_ack of a Consume awaiting Ok
        self._messages: dict[int, _Message] = {}  # started and not yet ended
        self._publishes: dict[bytes, Method] = {}  # Basic.Publish payload -> its decoded value
        self._blocked = False
        self._announced = False
        self._events: list[Event] = []
        # The span being grown per direction: [start, end, owner, layer] (merged when adjacent).
        self._open: list[list[int] | None] = [None, None]
        self._ordinal = 0
        self._ts = 0.0

    # ---------------------------------------------------------------- the StreamDecoder API

    def feed(self, direction: int, data: bytes, ordinal: int, ts: float) -> list[Event]:
        self._ordinal, self._ts = ordinal, ts
        if not self._announced:
            self._begin(ordinal, ts)
        state = self._dirs[direction]
        buf = state.buf
        if buf:
            # The bytes complete (or extend) a frame already buffered.
            state.feeds.append((state.offset + len(buf), ordinal, ts))
            buf += data
            taken = self._parse(direction, buf)
            if taken:
                del buf[:taken]
                state.offset += taken
                self._prune_feeds(state)
        else:
            # The usual case: whole frames parsed straight from the packet's bytes; only an
            # incomplete tail is copied into the buffer to wait for the next feed.
            taken = self._parse(direction, data)
            state.offset += taken
            if taken < len(data):
                state.feeds.append((state.offset, ordinal, ts))
                buf += data[taken:] if taken else data
        return self._end()

    def gap(self, direction: int, length: int, ordinal: int, ts: float) -> list[Event]:
        self._begin(ordinal, ts)
        self._anomaly("amqp.gap")
        state = self._dirs[direction]
        if state.mode == _STREAM and length < state.stream_left:
            # The gap lies inside a streamed frame's payload: the frame-end still tells us if
            # we are in step, and the missing bytes are body bytes nobody captured.
            self._count_body(state.stream_message, length)
            state.stream_left -= length
            state.offset += length
        elif not self._gap_in_body_frame(direction, length):
            self._lose_sync(direction, length)
        return self._end()

    def eof(self, direction: int, ordinal: int, ts: float) -> list[Event]:
        self._begin(ordinal, ts)
        return self._end()

    def finish(self, ts: float) -> list[Event]:
        self._begin(self._ordinal, ts)
        for direction, state in enumerate(self._dirs):
            if state.buf or state.mode == _STREAM:
                self._anomaly("amqp.truncated_frame")
            self._charge_buffer(direction, UNDECODED, OPAQUE)
            state.mode = _RESYNC
        for channel in list(self._gets):
            self._resolve_get_as_control(channel)
        for message in list(self._messages.values()):
            if not message.content_done:
                self._anomaly("amqp.truncated_content")
            message.content_done = True
            message.awaiting_ack = False
            self._maybe_end(message, message.last_ts)
        return self._end()

    # ---------------------------------------------------------------- event plumbing

    def _begin(self, ordinal: int, ts: float) -> None:
        self._ordinal, self._ts = ordinal, ts
        if not self._announced:
            self._announced = True
            self._events.append(ProtocolIdentified(PROTOCOL))

    def _end(self) -> list[Event]:
        spans = self._open
        if spans[0] is not None or spans[1] is not None:
            self._flush_spans()
        events, self._events = self._events, []
        return events

    def _flush_spans(self) -> None:
        # Both directions spelled out: this runs before every MessageEnded and at every call's
        # end.  Notes and anomalies do not flush: the ledger handles them apart from spans, so a
        # message's framing can grow as one span across its method, header and body frames.
        spans = self._open
        orig, resp = spans
        if orig is not None:
            self._events.append(Span(0, orig[0], orig[1], orig[2], orig[3]))
            spans[0] = None
        if resp is not None:
            self._events.append(Span(1, resp[0], resp[1], resp[2], resp[3]))
            spans[1] = None

    def _emit(self, event: Event) -> None:
        # Open spans stay open: only MessageEnded needs them out first (``_maybe_end``).
        self._events.append(event)

    def _anomaly(self, name: str) -> None:
        self._emit(Anomaly(name))

    def _charge(self, direction: int, start: int, end: int, owner: int, layer: int) -> None:
        if start >= end:
            return
        span = self._open[direction]
        if span is not None and span[1] == start and span[2] == owner and span[3] == layer:
            span[1] = end
            return
        if span is not None:
            self._events.append(Span(direction, span[0], span[1], span[2], span[3]))
        self._open[direction] = [start, end, owner, layer]

    def _charge_frame(self, direction: int, start: int, size: int, owner: int, layer: int) -> None:
        """A whole frame: header and frame-end are framing, the payload is ``layer``."""
        end = start + FRAME_HEADER_BYTES + size + 1
        if layer == FRAMING or size == 0:
            self._charge(direction, start, end, owner, FRAMING)
            return
        # What three ``_charge`` calls would do, in fewer steps: the header joins the open span
        # if it can; the payload cannot merge with anything, so it goes out at once; the
        # frame-end stays open (the next frame of the message may join it).
        payload = start + FRAME_HEADER_BYTES
        spans = self._open
        events = self._events
        last = spans[direction]
        if last is not None and last[1] == start and last[2] == owner and last[3] == FRAMING:
            events.append(Span(direction, last[0], payload, owner, FRAMING))
        else:
            if last is not None:
                events.append(Span(direction, last[0], last[1], last[2], last[3]))
            events.append(Span(direction, start, payload, owner, FRAMING))
        events.append(Span(direction, payload, end - 1, owner, layer))
        spans[direction] = [end - 1, end, owner, FRAMING]

    def _charge_buffer(self, direction: int, owner: int, layer: int) -> None:
        state = self._dirs[direction]
        self._charge(direction, state.offset, state.offset + len(state.buf), owner, layer)
        state.offset += len(state.buf)
        state.buf.clear()
        state.feeds.clear()

    def _feed_at(self, state: _Direction, offset: int) -> tuple[int, float]:
        """Ordinal and ts of the feed that delivered stream byte ``offset`` (still buffered;
        the current feed when nothing was: frames parsed straight from it leave no record)."""
        found = (self._ordinal, self._ts)
        for start, ordinal, ts in state.feeds:
            if start > offset:
                break
            found = (ordinal, ts)
        return found

    # ---------------------------------------------------------------- framing

    def _parse(self, direction: int, buf: Buffer) -> int:
        """Consume whole frames from ``buf`` (the direction's buffer, or a feed's bytes when
        nothing is buffered; its first byte is at stream offset ``offset``) and return how many
        bytes were consumed: the caller keeps the rest, an incomplete frame, for the next feed.

        Each step returns the bytes it took (0 is fine when it only changed mode) or None when
        it needs more data; ``_frames`` takes as many frames as it can in one step and leaves
        the mode at _FRAMES only when it needs more data.
        """
        state = self._dirs[direction]
        size = len(buf)
        pos = 0
        while pos < size:
            step: int | None
            mode = state.mode
            if mode == _FRAMES:  # the usual case first
                pos = self._frames(direction, buf, pos)
                if state.mode == _FRAMES:
                    break
                continue
            if mode == _STREAM:
                step = self._stream(direction, state.offset + pos, buf, pos, size - pos)
            elif mode == _START:
                step = self._start(direction, buf, pos)
            else:
                step = self._resync(direction, buf, pos)
            if step is None:
                break
            pos += step
        return pos

    @staticmethod
    def _prune_feeds(state: _Direction) -> None:
        feeds = state.feeds
        keep = 0
        while keep + 1 < len(feeds) and feeds[keep + 1][0] <= state.offset:
            keep += 1
        if not state.buf:
            feeds.clear()
        elif keep:
            del feeds[:keep]

    def _start(self, direction: int, buf: Buffer, pos: int) -> int | None:
        """The first bytes of a direction: the protocol header, a frame, or mid-frame bytes."""
        state = self._dirs[direction]
        head = bytes(buf[pos : pos + PROTOCOL_HEADER_BYTES])
        if head[:4] == PROTOCOL_HEADER[:4]:
            if len(head) < PROTOCOL_HEADER_BYTES:
                return None
            if head != PROTOCOL_HEADER:
                self._anomaly("amqp.protocol_version")
            start = state.offset + pos
            self._charge(direction, start, start + PROTOCOL_HEADER_BYTES, SETUP, FRAMING)
            state.mode = _FRAMES
            return PROTOCOL_HEADER_BYTES
        if PROTOCOL_HEADER.startswith(head):
            return None
        verdict = self._whole_frame_at(buf, pos, any_type=True)
        if verdict is None:
            return None
        # A capture that starts mid-connection: in step if a whole frame is here, else resync.
        state.mode = _FRAMES if verdict else _RESYNC
        if not verdict:
            self._anomaly("amqp.unsynced_start")
        return 0

    @staticmethod
    def _whole_frame_at(buf: Buffer, pos: int, *, any_type: bool) -> bool | None:
        """Is there a plausible whole frame at ``pos``?  None: cannot tell yet."""
        if len(buf) - pos < FRAME_HEADER_BYTES:
            return None
        kind, channel, size = _frame_header(buf, pos)
        if kind not in FRAME_TYPES or size > MAX_RESYNC_FRAME_BYTES:
            return False
        if kind == FRAME_HEARTBEAT and (channel or size):
            return False
        if not any_type and kind not in (FRAME_METHOD, FRAME_HEARTBEAT):
            return False
        if kind == FRAME_METHOD:
            if size < METHOD_INDEX.size:
                return False
            if len(buf) - pos < FRAME_HEADER_BYTES + METHOD_INDEX.size:
                return None
            index = int(METHOD_INDEX.unpack_from(buf, pos + FRAME_HEADER_BYTES)[0])
            if index not in commands.INDEX_MAPPING:
                return False
        end = pos + FRAME_HEADER_BYTES + size
        if len(buf) <= end:
            return None
        return buf[end] == FRAME_END

    def _resync(self, direction: int, buf: Buffer, pos: int) -> int | None:
        """Skip to the next plausible method or heartbeat frame; skipped bytes are opaque."""
        state = self._dirs[direction]
        scan = pos
        while True:
            found = _RESYNC_CANDIDATE.search(buf, scan)
            if found is None:
                candidate, verdict = len(buf), None
            else:
                candidate = found.start()
                verdict = self._whole_frame_at(buf, candidate, any_type=False)
            if verdict is False:
                scan = candidate + 1
                continue
            self._charge(direction, state.offset + pos, state.offset + candidate, UNDECODED, OPAQUE)
            if verdict:
                state.mode = _FRAMES
                return candidate - pos
            return candidate - pos if candidate > pos else None

    def _frames(self, direction: int, buf: Buffer, pos: int) -> int:
        """Whole frames from ``pos`` on, for as long as they come whole and in step: the position
        after the last one taken.  This loop runs for every frame, so the common checks are
        made inline and anything else goes to ``_frame_not_taken``."""
        state = self._dirs[direction]
        offset = state.offset
        available = len(buf)
        kind: int
        channel: int
        size: int
        while available - pos >= FRAME_HEADER_BYTES:
            kind, channel, size = FRAME_HEADER.unpack_from(buf, pos)
            last = pos + FRAME_HEADER_BYTES + size  # the frame-end octet
            if (
                kind not in FRAME_TYPES
                or size > MAX_BUFFERED_FRAME_BYTES
                or last >= available
                or buf[last] != FRAME_END
            ):
                step = self._frame_not_taken(direction, buf, pos, kind, channel, size)
                if step is None:
                    break
                pos += step
                if state.mode != _FRAMES:
                    break
                continue
            start = offset + pos
            # Most frequent first: one body frame or more per message, then its method (or an
            # acknowledgement), then its content header.
            if kind == FRAME_BODY:
                self._body(direction, channel, start, size)
            elif kind == FRAME_METHOD:
                self._method(direction, channel, start, size, buf[pos + FRAME_HEADER_BYTES : last])
            elif kind == FRAME_CONTENT_HEADER:
                self._content_header(direction, channel, start, size, buf, pos)
            else:
                self._charge_frame(direction, start, size, CONTROL, FRAMING)  # heartbeat
                self._events.append(Unsolicited(direction, self._ordinal))
            pos = last + 1
        return pos

    def _frame_not_taken(
        self, direction: int, buf: Buffer, pos: int, kind: int, channel: int, size: int
    ) -> int | None:
        """The frame whose header is at ``pos`` cannot be taken whole: a wrong type, too big to
        buffer, not all here yet, or out of step.  Returns the bytes it took (0 when it only
        changed mode), None when it needs more data."""
        state = self._dirs[direction]
        if kind not in FRAME_TYPES:
            self._anomaly("amqp.bad_frame_type")
            state.mode = _RESYNC
            return 0
        if size > MAX_BUFFERED_FRAME_BYTES:
            message = self._body_target(direction, channel, size) if kind == FRAME_BODY else None
            if message is None:
                # Only a body frame may be this big (frame_max bounds the rest in practice):
                # anything else is a corrupt header, so we skip its first byte and resync.
                self._anomaly("amqp.frame_too_large")
                self._charge(
                    direction, state.offset + pos, state.offset + pos + 1, UNDECODED, OPAQUE
                )
                state.mode = _RESYNC
                return 1
            self._start_stream(direction, buf, pos, message)
            return FRAME_HEADER_BYTES
        if len(buf) - pos < FRAME_HEADER_BYTES + size + 1:
            return None
        # Section 4.2.3: a bad frame-end is a fatal framing error for a peer; for an observer
        # it means we are out of step.  The first byte goes, then we rescan.
        self._anomaly("amqp.bad_frame_end")
        self._charge(direction, state.offset + pos, state.offset + pos + 1, UNDECODED, OPAQUE)
        state.mode = _RESYNC
        return 1

    # ---------------------------------------------------------------- streamed (big) frames

    def _start_stream(self, direction: int, buf: Buffer, pos: int, message: _Message) -> None:
        """Charge a body frame too big to buffer as its bytes arrive (its header is at ``pos``)."""
        state = self._dirs[direction]
        start = state.offset + pos
        kind, _, size = _frame_header(buf, pos)
        assert kind == FRAME_BODY
        self._charge(direction, start, start + FRAME_HEADER_BYTES, message.id, FRAMING)
        state.mode = _STREAM
        state.stream_left = size + 1
        state.stream_message = message

    def _stream(self, direction: int, offset: int, source: Buffer, at: int, available: int) -> int:
        """Charge up to ``available`` bytes of a streamed frame found at ``source[at:]``."""
        state = self._dirs[direction]
        message = state.stream_message
        assert message is not None
        take = min(state.stream_left - 1, available)
        self._charge(direction, offset, offset + take, message.id, PAYLOAD)
        self._count_body(message, take)
        state.stream_left -= take
        if take == available:
            return take
        end = offset + take
        state.mode = _FRAMES
        state.stream_left = 0
        state.stream_message = None
        if source[at + take] == FRAME_END:
            self._charge(direction, end, end + 1, message.id, FRAMING)
            self._body_frame_done(direction, message)
        else:
            self._anomaly("amqp.bad_frame_end")
            self._charge(direction, end, end + 1, UNDECODED, OPAQUE)
            state.mode = _RESYNC
        return take + 1

    # ---------------------------------------------------------------- gaps

    def _gap_in_body_frame(self, direction: int, length: int) -> bool:
        """A gap inside the payload of a buffered, incomplete body frame: stream the rest."""
        state = self._dirs[direction]
        buf = state.buf
        if state.mode != _FRAMES or len(buf) < FRAME_HEADER_BYTES:
            return False
        kind, channel, size = _frame_header(buf, 0)
        total = FRAME_HEADER_BYTES + size + 1
        if kind != FRAME_BODY or len(buf) + length >= total:
            return False
        message = self._body_target(direction, channel, size)
        if message is None:
            return False
        self._start_stream(direction, buf, 0, message)
        del buf[:FRAME_HEADER_BYTES]
        state.offset += FRAME_HEADER_BYTES
        seen = len(buf)
        self._stream(direction, state.offset, buf, 0, seen)
        buf.clear()
        state.feeds.clear()
        state.offset += seen + length
        state.stream_left -= length
        self._count_body(message, length)
        return True

    def _lose_sync(self, direction: int, length: int) -> None:
        """After a gap we cannot bridge: what is buffered is opaque, then resync."""
        state = self._dirs[direction]
        self._charge_buffer(direction, UNDECODED, OPAQUE)
        state.offset += length
        state.mode = _RESYNC
        state.stream_message = None
        for (sender, _), lane in self._lanes.items():
            if sender == direction and lane.content is not None:
                self._anomaly("amqp.truncated_content")
                self._content_done(lane)

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
