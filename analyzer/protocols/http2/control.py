"""Whole buffered frames: dispatch by type, and the connection-level frames a peer sends on
its own schedule (SETTINGS, PING, WINDOW_UPDATE: unsolicited, DESIGN.md section 4), GOAWAY,
PRIORITY and RST_STREAM."""

from __future__ import annotations

from hyperframe.exceptions import HyperframeError
from hyperframe.frame import SettingsFrame

from analyzer.decoding.events import (
    CONTROL,
    FRAMING,
    SETUP,
    Unsolicited,
)
from analyzer.protocols.http2.blocks import _Blocks
from analyzer.protocols.http2.frames import (
    ACK,
    BUCKET_OF_TYPE,
    CONTINUATION,
    FRAME_HEADER_BYTES,
    HEADERS,
    MAX_HPACK_TABLE_BYTES,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    UNSOLICITED_TYPES,
)
from analyzer.protocols.http2.state import (
    _Side,
    _When,
)


class _Control(_Blocks):
    """Decodes whole buffered frames."""

    def _frame(
        self,
        side: _Side,
        frame_type: int,
        flags: int,
        stream_id: int,
        body: bytes,
        start: int,
        when: _When,
    ) -> None:
        """A whole buffered frame at ``start``."""
        self._frame_counts[frame_type] += 1
        if frame_type in UNSOLICITED_TYPES:
            self._out.append(Unsolicited(side.direction, when[0]))
        end = start + FRAME_HEADER_BYTES + len(body)
        if frame_type == HEADERS:
            self._on_headers(side, flags, stream_id, body, start, end, when)
        elif frame_type == CONTINUATION:
            self._on_continuation(side, flags, stream_id, body, start, end, when)
        elif frame_type == PUSH_PROMISE:
            self._on_push_promise(side, flags, stream_id, body, start, end, when)
        elif frame_type == SETTINGS:
            self._on_settings(side, flags, body, start, end)
        elif frame_type == RST_STREAM:
            stream = self._stream_for(side.direction, stream_id, when)
            self._span(side.direction, start, end, self._owner(stream), FRAMING)
            if stream is not None:
                self._answer(stream, side.direction, when)
                self._end(stream)
        else:
            self._span(side.direction, start, end, BUCKET_OF_TYPE[frame_type], FRAMING)

    def _on_settings(self, side: _Side, flags: int, body: bytes, start: int, end: int) -> None:
        # DESIGN.md section 2: the first SETTINGS of each side and the first ACK of each side
        # (which acknowledges the peer's first SETTINGS, RFC 9113 section 6.5.3) are setup.
        if flags & ACK:
            owner = CONTROL if side.ack_seen else SETUP
            side.ack_seen = True
        else:
            owner = CONTROL if side.settings_seen else SETUP
            side.settings_seen = True
            self._apply_settings(side, flags, body)
        self._span(side.direction, start, end, owner, FRAMING)

    def _apply_settings(self, side: _Side, flags: int, body: bytes) -> None:
        """SETTINGS_HEADER_TABLE_SIZE from one side bounds the table the other side encodes
        with (RFC 7541 section 4.2), so it raises the limit of the other side's decoder."""
        frame = SettingsFrame()
        frame.parse_flags(flags)
        try:
            frame.parse_body(memoryview(body))
        except HyperframeError:
            self._anomaly("http2.bad_frame_body")
            return
        size = frame.settings.get(SettingsFrame.HEADER_TABLE_SIZE)
        if size is not None:
            decoder = self._sides[1 - side.direction].hpack
            granted = min(size, MAX_HPACK_TABLE_BYTES)
            # An observer only widens the limit: shrinking takes effect after the ACK, and the
            # encoder announces it in-band anyway.
            decoder.max_allowed_table_size = max(decoder.max_allowed_table_size, granted)
