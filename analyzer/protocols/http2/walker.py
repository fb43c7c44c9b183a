"""Frame walking: each direction's state machine (preface, server preface, frames, resync),
cutting the byte stream into frames by their length fields and finding frames again after a
gap or a mid-connection start."""

from __future__ import annotations

from analyzer.decoding.events import (
    FRAMING,
    OPAQUE,
    SETUP,
    UNDECODED,
)
from analyzer.protocols.http2.control import _Control
from analyzer.protocols.http2.frames import (
    _CANDIDATE,
    _FRAME_HEADER,
    _STREAM_ID_MASK,
    _STREAM_ONLY_TYPES,
    ACK,
    BUFFERED_TYPES,
    CONTINUATION,
    DATA,
    FRAME_HEADER_BYTES,
    HEADERS,
    PADDED,
    PREFACE,
    RESYNC_CHAIN,
    SETTINGS,
    _Buffer,
    breaks_rules,
    parse_frame_header,
    plausible,
)
from analyzer.protocols.http2.state import (
    _FIRST,
    _FRAMES,
    _PREFACE,
    _RESYNC,
    _Side,
)


class _Walker(_Control):
    """Cuts each direction into frames."""

    # --- the per-direction state machine -------------------------------------------------

    def _drain(self, side: _Side, buf: _Buffer, *, final: bool) -> None:
        """Decode ``buf`` (``side.buf``, or fresh input when nothing was held), which starts at
        offset ``side.consumed``; keep an incomplete frame in ``side.buf`` for later."""
        i = 0
        while i < len(buf):
            body = side.body
            if body is not None:
                n = min(body.length - body.done, len(buf) - i)
                self._count_body(side, body, buf, i, n, side.consumed + i)
                i += n
                if body.done == body.length:
                    self._body_done(side)
                continue
            if side.mode == _FRAMES:
                step = self._frames(side, buf, i)
                if step == i and side.mode == _FRAMES:
                    break  # the next frame is incomplete
            elif side.mode == _RESYNC:
                step = self._step_resync(side, buf, i, final)
            elif side.mode == _PREFACE:
                step = self._step_preface(side, buf, i)
            else:
                step = self._step_first(side, buf, i)
            if step < 0:
                break
            i = step
        if buf is side.buf:
            del side.buf[:i]
        elif i < len(buf):
            side.buf = bytearray(buf[i:])
        side.consumed += i
        if i and side.consumed >= side.fresh:
            side.buf_when = self._now

    def _step_preface(self, side: _Side, buf: _Buffer, i: int) -> int:
        head = bytes(buf[i : i + len(PREFACE)])
        if head == PREFACE:
            start = side.consumed + i
            self._span(side.direction, start, start + len(PREFACE), SETUP, FRAMING)
            side.mode = _FRAMES
            return i + len(PREFACE)
        if PREFACE.startswith(head):
            return -1
        # No preface: the capture joined mid-connection (detection then needed a --port
        # override).  The settings exchange and the HPACK tables' history are lost.
        self._midstream = True
        self._anomaly("http2.no_preface")
        self._join_midstream(side)
        return i

    def _step_first(self, side: _Side, buf: _Buffer, i: int) -> int:
        """resp's first frame must be SETTINGS: the server connection preface (RFC 9113 3.4)."""
        if len(buf) - i < FRAME_HEADER_BYTES:
            return -1
        _length, frame_type, flags, raw_stream = parse_frame_header(buf, i)
        if not self._midstream and frame_type == SETTINGS and not flags & ACK and not raw_stream:
            side.mode = _FRAMES
            return i
        self._anomaly("http2.mid_connection")
        self._join_midstream(side)
        return i

    def _join_midstream(self, side: _Side) -> None:
        side.settings_seen = side.ack_seen = True  # later SETTINGS are not setup
        self._lose_hpack(side, "http2.hpack_after_gap")
        side.mode = _RESYNC

    def _frames(self, side: _Side, buf: _Buffer, i: int) -> int:
        """Decode frames from ``i`` for as long as they come whole and in step; returns the
        position after them.  It stops at an incomplete frame (having taken nothing when the
        first one is), at a streamed body (its header taken, ``side.body`` set) and at a frame
        header that is out of step (``side.mode`` set to resync).  This loop runs for every
        frame, so the common cases are made inline, and what stays put during it is bound to
        locals (the stream offset of ``buf[0]`` and who delivered the held bytes)."""
        available = len(buf)
        base, fresh, now, held_when = side.consumed, side.fresh, self._now, side.buf_when
        stream_only_types = _STREAM_ONLY_TYPES
        max_buffered = self._bounds.buffered_frame
        high: int
        low: int
        frame_type: int
        flags: int
        raw_stream: int
        while available - i >= FRAME_HEADER_BYTES:
            high, low, frame_type, flags, raw_stream = _FRAME_HEADER.unpack_from(buf, i)
            length = (high << 8) | low
            stream_id = raw_stream & _STREAM_ID_MASK
            # The common types need only a stream id; the full rules for the others.
            if not (stream_id and frame_type in stream_only_types) and breaks_rules(
                length, frame_type, flags, raw_stream
            ):
                self._anomaly("http2.bad_frame")
                side.hpack_ok = False
                side.block = None
                side.mode = _RESYNC
                return i
            if side.block is not None and frame_type != CONTINUATION:
                self._broken_block(side)
            start = base + i
            when = now if start >= fresh else held_when
            end = i + FRAME_HEADER_BYTES + length
            if frame_type == DATA:
                if end > available or flags & PADDED or stream_id in self._grpc_streams:
                    # Streamed: the body is counted as it arrives, never held.
                    self._start_body(side, length, frame_type, flags, stream_id, start, when)
                    return i + FRAME_HEADER_BYTES
                self._data_frame(side, flags, stream_id, length, start, when)
            elif frame_type == HEADERS and length <= max_buffered:
                if end > available:
                    return i
                self._frame_counts[HEADERS] += 1
                body = bytes(buf[i + FRAME_HEADER_BYTES : end])
                self._on_headers(side, flags, stream_id, body, start, start + end - i, when)
            elif frame_type in BUFFERED_TYPES and length <= max_buffered:
                if end > available:
                    return i
                body = bytes(buf[i + FRAME_HEADER_BYTES : end])
                self._frame(side, frame_type, flags, stream_id, body, start, when)
            else:
                self._start_body(side, length, frame_type, flags, stream_id, start, when)
                return i + FRAME_HEADER_BYTES
            i = end
        return i

    def _step_resync(self, side: _Side, buf: _Buffer, i: int, final: bool) -> int:
        j, found = self._scan(buf, i, final)
        if j > i:
            if not side.skipping:
                side.skipping = True
                self._anomaly("http2.resync")
            self._span(side.direction, side.consumed + i, side.consumed + j, UNDECODED, OPAQUE)
        if found:
            side.mode = _FRAMES
            side.skipping = False
            side.block = None
            return j
        return j if j > i else -1

    def _scan(self, buf: _Buffer, i: int, final: bool) -> tuple[int, bool]:
        """(where garbage ends, whether a frame starts there) searching from ``i``; see
        ``_candidate`` for what makes a frame start."""
        pos = i
        while True:
            match = _CANDIDATE.search(buf, pos)
            if match is None:
                # Positions too near the end for the pattern may still start a header.
                return (len(buf) if final else max(pos, len(buf) - 5, i)), False
            at = match.start()
            verdict = self._candidate(buf, at, final)
            if verdict is None:
                return at, False
            if verdict:
                return at, True
            pos = at + 1

    @staticmethod
    def _candidate(buf: _Buffer, at: int, final: bool) -> bool | None:
        """Is a frame at ``at``?  None: cannot tell until more bytes come.

        ``RESYNC_CHAIN`` plausible headers in a row, each where the previous frame ends, are
        the evidence (SETTINGS bodies and binary payloads often look like one header); at
        ``final`` a shorter chain that ends exactly at the end of the data is enough.
        """
        for _ in range(RESYNC_CHAIN):
            if at + FRAME_HEADER_BYTES > len(buf):
                return at == len(buf) if final else None
            length, frame_type, flags, raw_stream = parse_frame_header(buf, at)
            if not plausible(length, frame_type, flags, raw_stream):
                return False
            at += FRAME_HEADER_BYTES + length
        return True

    def _lose_step(self, side: _Side, length: int) -> None:
        """A gap hides frame boundaries: charge what was held, then resync after the gap."""
        if side.buf:
            end = side.consumed + len(side.buf)
            self._span(side.direction, side.consumed, end, UNDECODED, OPAQUE)
        side.consumed += len(side.buf) + length
        side.fresh = side.consumed
        side.buf.clear()
        self._lose_hpack(side, "http2.hpack_after_gap")
        if side.block is not None:
            self._broken_block(side, anomaly=None)
        if side.mode in (_PREFACE, _FIRST):
            side.settings_seen = side.ack_seen = True
        side.mode = _RESYNC

    def _finish_side(self, side: _Side) -> None:
        if side.mode == _RESYNC and side.buf:
            self._drain(side, side.buf, final=True)
        if side.body is not None:
            self._anomaly("http2.truncated_frame")
            side.body = None
        if side.buf:
            self._charge_leftover(side)
        if side.block is not None:
            self._anomaly("http2.truncated_header_block")
            if side.block.stream is not None:
                side.block.stream.decoded[side.direction] = None
            side.block = None

    def _charge_leftover(self, side: _Side) -> None:
        """Bytes of an incomplete frame (or preface) at the end: opaque, to whom they belong."""
        owner = UNDECODED
        if side.mode == _PREFACE:
            owner = SETUP
        elif side.mode == _FRAMES:
            self._anomaly("http2.truncated_frame")
            if len(side.buf) >= FRAME_HEADER_BYTES:
                stream_id = parse_frame_header(side.buf)[3] & _STREAM_ID_MASK
                known = self._streams.get(stream_id) or self._closed.get(stream_id)
                if known is not None:
                    owner = known.message
        start = side.consumed
        self._span(side.direction, start, start + len(side.buf), owner, OPAQUE)
        side.consumed += len(side.buf)
        side.buf.clear()
