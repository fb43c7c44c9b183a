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

from analyzer.decoding.events import (
    OPAQUE,
    UNDECODED,
    Event,
)
from analyzer.protocols.amqp.framing import _Framing

# Names other modules and the tests import from here, where they lived before the split.
from analyzer.protocols.amqp.wire import (  # noqa: F401
    _RESYNC,
    _STREAM,
    ACK_KINDS,
    CONTENT_HEADER,
    FRAME_BODY,
    FRAME_CONTENT_HEADER,
    FRAME_END,
    FRAME_HEADER,
    FRAME_HEADER_BYTES,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_TYPES,
    MAX_BUFFERED_FRAME_BYTES,
    MAX_MEMO_PUBLISHES,
    MAX_RESYNC_FRAME_BYTES,
    MAX_TRACKED_CONSUMERS,
    MAX_UNACKED_PER_LANE,
    MAX_UNCONFIRMED_GUESSES,
    MESSAGE_KINDS,
    METHOD_BUCKETS,
    METHOD_INDEX,
    PROTOCOL,
    PROTOCOL_HEADER,
    PROTOCOL_HEADER_BYTES,
    Buffer,
    Method,
)


class AmqpDecoder(_Framing):
    """Sans-IO AMQP 0-9-1 decoder: bytes of both directions in, ledger events out.

    One class in three layers, each its own module: ``framing`` (bytes to frames) over
    ``channels`` (frames to messages) over ``base`` (state and event plumbing)."""

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
