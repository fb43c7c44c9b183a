"""Streamed frame bodies (DATA, extension and oversized frames): counted as they arrive,
never held, split into framing and payload."""

from __future__ import annotations

from analyzer.decoding.events import (
    CONTROL,
    FRAMING,
    ORIG,
    PAYLOAD,
    RESP,
    Span,
)
from analyzer.protocols.http2.frames import (
    BUCKET_OF_TYPE,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    FRAME_HEADER_BYTES,
    FRAME_RULES,
    HEADER_BLOCK_TYPES,
    HEADERS,
    PADDED,
    _Buffer,
)
from analyzer.protocols.http2.grpc_calls import Call, _Grpc
from analyzer.protocols.http2.state import (
    _Block,
    _Body,
    _Side,
    _Stream,
    _When,
)


class _Bodies(_Grpc):
    """Charges the bodies of streamed frames to their messages."""

    def _start_body(
        self,
        side: _Side,
        length: int,
        frame_type: int,
        flags: int,
        stream_id: int,
        start: int,
        when: _When,
    ) -> None:
        """A streamed frame: its header is known, its body is counted as it arrives."""
        stream: _Stream | None = None
        completes: _Block | None = None
        payload_from = payload_to = 0
        direction = side.direction
        if frame_type == DATA:
            stream = self._streams.get(stream_id) or self._stream_for(direction, stream_id, when)
            if stream is None:
                owner = CONTROL
            else:
                owner = stream.message
                if direction == RESP and not stream.answered:
                    self._answer(stream, direction, when)
            payload_to = length
            if flags & PADDED:
                payload_from = min(1, length)  # the pad length octet is framing
        elif frame_type in FRAME_RULES:
            owner, completes = self._oversized(side, frame_type, flags, stream_id, when)
        else:
            self._anomaly("http2.unknown_frame")
            owner = CONTROL
        self._span(direction, start, start + FRAME_HEADER_BYTES, owner, FRAMING)
        body = _Body(owner, frame_type, flags, stream, length, 0, payload_from, payload_to)
        body.completes = completes
        side.body = body
        if length == 0:
            self._body_done(side)

    def _data_frame(
        self, side: _Side, flags: int, stream_id: int, length: int, start: int, when: _When
    ) -> None:
        """A whole DATA frame without padding at ``start``: what ``_start_body``,
        ``_count_body`` and ``_body_done`` do for a streamed one, in one step."""
        direction = side.direction
        stream = self._streams.get(stream_id) or self._stream_for(direction, stream_id, when)
        if stream is None:
            owner = CONTROL
        else:
            owner = stream.message
            if direction == RESP and not stream.answered:
                self._answer(stream, direction, when)
        payload = start + FRAME_HEADER_BYTES
        if length:
            # What two ``_span`` calls would do, in fewer steps: the header joins the open span
            # if it can (a response's HEADERS frame); the payload cannot grow (only DATA bodies
            # are payload, and the next frame starts with a header), so both go out at once.
            out = self._out
            last = self._last[direction]
            header_from = start
            if last is not None:
                if last[1] == start and last[2] == owner and last[3] == FRAMING:
                    header_from = last[0]
                else:
                    out.append(Span(direction, last[0], last[1], last[2], last[3]))
                self._last[direction] = None
            out.append(Span(direction, header_from, payload, owner, FRAMING))
            out.append(Span(direction, payload, payload + length, owner, PAYLOAD))
        else:
            self._span(direction, start, payload, owner, FRAMING)
        self._frame_counts[DATA] += 1
        if stream is not None and flags & END_STREAM:
            self._end_side(stream, direction)

    def _oversized(
        self, side: _Side, frame_type: int, flags: int, stream_id: int, when: _When
    ) -> tuple[int, _Block | None]:
        """A metadata frame too large to hold: count it, give up on its direction's HPACK.

        Returns its owner and the header block it completes (END_STREAM applies once its body
        is in)."""
        self._anomaly("http2.frame_too_large")
        if frame_type not in HEADER_BLOCK_TYPES:
            return BUCKET_OF_TYPE.get(frame_type, CONTROL), None
        side.hpack_ok = False
        block = side.block if frame_type == CONTINUATION else None
        if block is None or block.stream_id != stream_id:
            stream = self._stream_for(side.direction, stream_id, when)
            if stream is not None and frame_type == HEADERS:
                self._answer(stream, side.direction, when)
            end_stream = frame_type == HEADERS and bool(flags & END_STREAM)
            block = _Block(stream_id, stream, side.direction == ORIG, end_stream, decodable=False)
        if block.stream is not None:
            block.stream.decoded[side.direction] = None
        if flags & END_HEADERS:
            side.block = None
            return self._owner(block.stream), block
        side.block = block  # its CONTINUATION frames will find their message
        return self._owner(block.stream), None

    def _count_body(
        self,
        side: _Side,
        body: _Body,
        data: _Buffer | None,
        at: int,
        n: int,
        offset: int,
    ) -> None:
        """Charge ``n`` body octets at stream ``offset`` (``data[at:at+n]``; None: a gap)."""
        if n <= 0:
            return
        if body.done == 0 and body.payload_from == 1:
            # RFC 9113 section 6.1: the pad length octet; padding must leave room for it.
            pad = data[at] if data is not None else 0
            if pad > body.length - 1:
                self._anomaly("http2.bad_padding")
                body.payload_to = body.payload_from
            else:
                body.payload_to = body.length - pad
        first, last = body.done, body.done + n
        body.done = last
        call = body.stream.grpc if body.stream is not None else None
        if call is not None:
            self._count_grpc(side.direction, body, call, data, at, first, last, offset)
            return
        if data is None:
            return  # gap bytes need no span: no packet carried them
        if body.payload_from <= first and last <= body.payload_to:
            self._span(side.direction, offset, offset + n, body.owner, PAYLOAD)  # the usual case
            return
        for lo, hi, layer in (
            (0, body.payload_from, FRAMING),
            (body.payload_from, body.payload_to, PAYLOAD),
            (body.payload_to, body.length, FRAMING),
        ):
            lo, hi = max(lo, first), min(hi, last)
            if lo < hi:
                self._span(
                    side.direction, offset + lo - first, offset + hi - first, body.owner, layer
                )

    def _body_done(self, side: _Side) -> None:
        body = side.body
        side.body = None
        if body is None:
            return
        self._frame_counts[body.frame_type] += 1  # whole frames only, as tshark counts
        block = body.completes
        if block is not None and block.end_stream and block.stream is not None:
            self._end_side(block.stream, side.direction)
        if body.stream is None:
            return
        if body.frame_type == DATA and body.flags & END_STREAM:
            self._end_side(body.stream, side.direction)

    def _count_grpc(
        self,
        direction: int,
        body: _Body,
        call: Call,
        data: _Buffer | None,
        at: int,
        first: int,
        last: int,
        offset: int,
    ) -> None:
        """``_count_body`` for a gRPC stream: the payload goes to the call's messages."""
        for lo, hi, layer in (
            (0, body.payload_from, FRAMING),
            (body.payload_from, body.payload_to, PAYLOAD),
            (body.payload_to, body.length, FRAMING),
        ):
            lo, hi = max(lo, first), min(hi, last)
            if lo >= hi:
                continue
            where = offset + lo - first
            if layer == PAYLOAD:
                self._grpc_payload(
                    direction, call, data, at + lo - first, hi - lo, where, self._now
                )
            elif data is not None:
                self._span(direction, where, where + hi - lo, body.owner, layer)
