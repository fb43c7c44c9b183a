"""AMQP 0-9-1 on the wire: frame layout, the buckets of methods, and decoding a method frame's
payload (pamqp behind a memo of the hot Basic methods).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import NamedTuple

from pamqp import commands, exceptions
from pamqp.base import Frame as PamqpMethod

from analyzer.decoding.events import (
    SETUP,
    TEARDOWN,
)

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
