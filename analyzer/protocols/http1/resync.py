"""Finding the next start line: after joining mid-connection, or after a gap."""

from __future__ import annotations

from analyzer.decoding.events import OPAQUE, RESP, UNDECODED, Anomaly
from analyzer.protocols.http1.state import HEAD, Direction
from analyzer.protocols.http1.upgrade import Upgrade
from analyzer.protocols.http1.wire import (
    MAX_HEADER_BYTES,
    RESYNC_STATUS,
    RESYNC_VERSION,
    request_line,
)


class Resync(Upgrade):
    """Resynchronising a direction on the next start line."""

    def _resync(self, st: Direction) -> bool:
        """Skip to the next start line; the bytes before it cannot be decoded.

        A start line is looked for where a message can begin: at a line start, or where a
        packet's data begins (bodies often end without a line feed, and senders start a new
        message in a new segment)."""
        buf = st.buf
        # Start lines end with LF: with no new LF since the last search there is nothing new
        # to find, and rescanning the partial line on every packet would be quadratic.
        fresh = max(st.pos, st.resync_scanned - st.base)
        st.resync_scanned = st.base + len(buf)
        found = self._find_start_line(st) if buf.find(b"\n", fresh) >= 0 else None
        if found is not None:
            self._skip(st, found)
            st.mode = HEAD
            st.resync_noted = False
            return True
        # A start line may still begin after the last LF, or at a later packet's start.
        cut = buf.rfind(b"\n", st.pos) + 1
        if cut > st.pos:
            st.line_start = True
        if len(buf) - cut > MAX_HEADER_BYTES:
            cut = len(buf)
            st.line_start = False
        self._skip(st, cut)
        return False

    def _find_start_line(self, st: Direction) -> int | None:
        """Index of the first complete start line at a place a message may begin."""
        buf = st.buf
        if st.direction == RESP:
            # The status line begins with its fixed version text: the search is linear.
            for match in RESYNC_STATUS.finditer(buf, st.pos):
                if self._may_start(st, match.start()):
                    return match.start()
            return None
        # A request line ends with its version: find those, then where the line may begin.
        for match in RESYNC_VERSION.finditer(buf, st.pos):
            line_begin = buf.rfind(b"\n", st.pos, match.start()) + 1
            starts = [line_begin] if line_begin > st.pos or self._may_start(st, st.pos) else []
            starts += [
                start - st.base
                for start, _, _ in st.chunks
                if st.base + max(line_begin, st.pos) < start < st.base + match.start()
            ]
            for start in starts:
                if request_line(buf, start, match.end() - 1) is not None:
                    return start
        return None

    def _may_start(self, st: Direction, index: int) -> bool:
        if index == 0:
            if st.line_start:
                return True
        elif st.buf[index - 1] == 0x0A:
            return True
        offset = st.base + index
        return any(start == offset for start, _, _ in st.chunks)

    def _skip(self, st: Direction, upto: int) -> None:
        if upto > st.pos:
            if not st.resync_noted:
                st.resync_noted = True
                self._out.append(Anomaly("http1.resync"))
            self._charge(st, st.pos, upto, UNDECODED, OPAQUE)
            st.lost_bytes += upto - st.pos
            st.pos = upto
