"""The AMQP decoder's framing layer: the byte stream cut into frames (section 4.2.3)."""

from __future__ import annotations

from pamqp import commands

from analyzer.decoding.events import (
    CONTROL,
    FRAMING,
    OPAQUE,
    PAYLOAD,
    SETUP,
    UNDECODED,
    Unsolicited,
)
from analyzer.protocols.amqp.channels import _Channels
from analyzer.protocols.amqp.state import (
    _Direction,
    _Message,
)
from analyzer.protocols.amqp.wire import (
    _FRAMES,
    _RESYNC,
    _RESYNC_CANDIDATE,
    _START,
    _STREAM,
    FRAME_BODY,
    FRAME_CONTENT_HEADER,
    FRAME_END,
    FRAME_HEADER,
    FRAME_HEADER_BYTES,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_TYPES,
    MAX_BUFFERED_FRAME_BYTES,
    MAX_RESYNC_FRAME_BYTES,
    METHOD_INDEX,
    PROTOCOL_HEADER,
    PROTOCOL_HEADER_BYTES,
    Buffer,
    _frame_header,
)


class _Framing(_Channels):
    """Framing: the protocol header, whole and streamed frames, resynchronisation, gaps."""

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
