"""Header blocks: HEADERS, PUSH_PROMISE and CONTINUATION frames assembled into blocks,
decoded with the direction's HPACK state, and noted on their message."""

from __future__ import annotations

from hpack import HPACKError
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import HeadersFrame, PushPromiseFrame

from analyzer.decoding.events import (
    CONTROL,
    FRAMING,
    ORIG,
    RESP,
)
from analyzer.protocols.http2.bodies import _Bodies
from analyzer.protocols.http2.frames import (
    _STREAM_ID_MASK,
    END_HEADERS,
    END_STREAM,
    MAX_HEADER_BLOCK_BYTES,
    PADDED,
    PRIORITY_FLAG,
)
from analyzer.protocols.http2.state import (
    _Block,
    _Decoded,
    _Side,
    _Stream,
    _When,
)


class _Blocks(_Bodies):
    """Assembles and decodes header blocks."""

    def _on_headers(
        self,
        side: _Side,
        flags: int,
        stream_id: int,
        body: bytes,
        start: int,
        end: int,
        when: _When,
    ) -> None:
        direction = side.direction
        stream = self._streams.get(stream_id) or self._stream_for(direction, stream_id, when)
        if stream is None:
            self._span(direction, start, end, CONTROL, FRAMING)
        else:
            self._span(direction, start, end, stream.message, FRAMING)
            if direction == RESP and not stream.answered:
                self._answer(stream, direction, when)
        fragment: bytes | None = body
        if flags & (PADDED | PRIORITY_FLAG):
            # Pad length and priority fields around the fragment: hyperframe cuts them off.
            frame = HeadersFrame(stream_id)
            frame.parse_flags(flags)
            try:
                frame.parse_body(memoryview(body))
                fragment = frame.data
            except HyperframeError:
                self._anomaly("http2.bad_frame_body")
                fragment = None
        request = direction == ORIG
        end_stream = bool(flags & END_STREAM)
        if flags & END_HEADERS and fragment is not None:
            # The usual case, a block in one frame: decoded straight from it, no _Block.
            if stream is not None:
                stream.encoded[direction] += len(fragment)
            if len(fragment) > MAX_HEADER_BLOCK_BYTES:
                self._anomaly("http2.header_block_too_large")
                fragment = None
            self._complete_block(side, stream, request, end_stream, fragment)
            return
        block = _Block(stream_id, stream, request, end_stream)
        self._add_fragment(side, block, fragment, bool(flags & END_HEADERS))

    def _on_push_promise(
        self,
        side: _Side,
        flags: int,
        stream_id: int,
        body: bytes,
        start: int,
        end: int,
        when: _When,
    ) -> None:
        frame = PushPromiseFrame(stream_id)
        frame.parse_flags(flags)
        try:
            frame.parse_body(memoryview(body))
        except HyperframeError:
            self._anomaly("http2.bad_frame_body")
            parent = self._stream_for(side.direction, stream_id, when)
            self._span(side.direction, start, end, self._owner(parent), FRAMING)
            self._lose_hpack(side, "http2.hpack_error")
            return
        promised = frame.promised_stream_id & _STREAM_ID_MASK
        pushed = self._streams.get(promised) or self._closed.get(promised)
        if pushed is None:
            pushed = self._new_stream(promised, "push", side.direction, when)
        self._span(side.direction, start, end, pushed.message, FRAMING)
        block = _Block(stream_id, pushed, request=True, end_stream=False)
        self._add_fragment(side, block, frame.data, bool(flags & END_HEADERS))

    def _on_continuation(
        self,
        side: _Side,
        flags: int,
        stream_id: int,
        body: bytes,
        start: int,
        end: int,
        when: _When,
    ) -> None:
        block = side.block
        if block is not None and block.stream_id == stream_id:
            self._span(side.direction, start, end, self._owner(block.stream), FRAMING)
            self._add_fragment(side, block, body, bool(flags & END_HEADERS))
            return
        # RFC 9113 section 6.10: only right after HEADERS/PUSH_PROMISE/CONTINUATION of the same
        # stream.  Its block's start is unknown, so it cannot be decoded.
        if block is not None:
            self._broken_block(side)
        elif side.hpack_ok:  # after a gap or a late start an orphan is expected, not odd
            self._anomaly("http2.bad_continuation")
        stream = self._stream_for(side.direction, stream_id, when)
        self._span(side.direction, start, end, self._owner(stream), FRAMING)
        side.hpack_ok = False
        if stream is not None:
            stream.encoded[side.direction] += len(body)
            stream.decoded[side.direction] = None

    # --- header blocks ---------------------------------------------------------------------

    def _add_fragment(
        self, side: _Side, block: _Block, fragment: bytes | None, end_headers: bool
    ) -> None:
        if fragment is None:
            block.decodable = False
        else:
            if block.stream is not None:
                block.stream.encoded[side.direction] += len(fragment)
            if block.decodable:
                if len(block.fragments) + len(fragment) > MAX_HEADER_BLOCK_BYTES:
                    self._anomaly("http2.header_block_too_large")
                    block.decodable = False
                    block.fragments = bytearray()
                else:
                    block.fragments += fragment
        side.block = None if end_headers else block
        if end_headers:
            fragments = bytes(block.fragments) if block.decodable else None
            self._complete_block(side, block.stream, block.request, block.end_stream, fragments)

    def _complete_block(
        self,
        side: _Side,
        stream: _Stream | None,
        request: bool,
        end_stream: bool,
        block: bytes | None,
    ) -> None:
        """A header block is complete: decode it (None: it cannot be) and note its fields.
        ``request``: request fields rather than response ones; ``end_stream``: the HEADERS
        frame carried END_STREAM, which takes effect now."""
        fields: _Decoded | None = None
        if block is None:
            # The dynamic table may have changed in the part we could not decode.
            side.hpack_ok = False
        elif side.hpack_ok:
            try:
                fields = side.decode_block(block)
            except HPACKError:
                self._lose_hpack(side, "http2.hpack_error")
        if stream is None:
            return
        direction = side.direction
        decoded = stream.decoded[direction]
        if fields is None or decoded is None:
            stream.decoded[direction] = None
        else:
            stream.decoded[direction] = decoded + fields.size
            self._note_fields(stream, fields, request)
            if fields.grpc and request and direction == ORIG and stream.grpc is None:
                self._open_call(stream, fields)
        if stream.stream_id not in self._streams:
            self._note_hpack(stream)  # a late block (after RST_STREAM) updates the figure
        if end_stream:
            self._end_side(stream, direction)

    def _broken_block(self, side: _Side, anomaly: str | None = "http2.bad_continuation") -> None:
        """An open header block that will never complete: it cannot be decoded."""
        block = side.block
        if block is None:
            return
        side.block = None
        side.hpack_ok = False
        if anomaly is not None:
            self._anomaly(anomaly)
        if block.stream is not None:
            block.stream.decoded[side.direction] = None
