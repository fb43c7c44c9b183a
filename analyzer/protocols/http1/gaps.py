"""Gaps: bytes never captured, inside a body (framing stays in step) or not (sync is lost)."""

from __future__ import annotations

from analyzer.decoding.events import FRAMING, OPAQUE, ORIG, UNDECODED, Anomaly
from analyzer.protocols.http1.framer import Framer
from analyzer.protocols.http1.state import (
    CHUNKED,
    CLOSE,
    DATA,
    DATA_END,
    DEAD,
    HEAD,
    HOLD,
    LENGTH,
    MAX_PENDING_EXCHANGES,
    RESYNC,
    Direction,
    Exchange,
)


class Gaps(Framer):
    """What a gap costs each direction, and the bytes it leaves undecoded."""

    def _gap(self, direction: int, length: int, ordinal: int, ts: float) -> None:
        if self._inner is not None:
            self._out += self._inner.gap(direction, length, ordinal, ts)
            return
        st = self._dirs[direction]
        if st.mode == HOLD:
            self._hold(("gap", direction, length, ordinal, ts), 0)
            return
        self._ts = ts
        broken = st.pos < len(st.buf)
        if broken:
            self._charge_rest(st)
        st.buf.clear()
        st.pos = 0
        st.base = st.end
        st.chunks.clear()
        if not broken and st.mode == LENGTH and st.remaining < length:
            # The body ended inside the gap: the message is complete, the rest is unknown.
            length -= st.remaining
            st.base = st.end = st.end + st.remaining
            st.remaining = 0
            self._message_done(st)
            if st.mode == HOLD:  # an Upgrade request ended: what follows waits for the answer
                self._hold(("gap", direction, length, ordinal, ts), 0)
                return
        st.end += length
        st.base = st.end
        if not broken and self._skip_in_body(st, length):
            return
        if st.mode != DEAD:
            self._lose_sync(st, length)

    def _skip_in_body(self, st: Direction, length: int) -> bool:
        """A gap inside a body of known extent keeps the framing in step (True)."""
        if st.mode == CLOSE:
            return True
        if st.mode == LENGTH or (st.mode == CHUNKED and st.chunk_state == DATA):
            if length > st.remaining:
                return False
            st.remaining -= length
            if st.remaining == 0:
                if st.mode == LENGTH:
                    self._message_done(st)
                else:
                    st.chunk_state = DATA_END
            return True
        return False

    def _lose_sync(self, st: Direction, length: int) -> None:
        """A gap where the framing cannot follow: resynchronise on the next start line."""
        self._out.append(Anomaly("http1.gap"))
        current = st.exchange
        st.exchange = None
        st.started = False
        st.mode = RESYNC
        st.resync_noted = False
        st.line_start = False
        count, total = st.whole_count, st.whole_bytes
        if st.direction == ORIG:
            # Requests lost in the gap still get responses: hold their places in the queue.
            lost = round(length * count / total) if total else int(current is None)
            if current is None:
                lost = max(lost, 1)
            for _ in range(min(lost, MAX_PENDING_EXCHANGES - len(self._pending))):
                self._pending.append(Exchange(None))
            return
        if st.suspects:
            st.lost_bytes += length  # another gap before the next response was found
            return
        if current is None and self._pending and self._pending[0].answered:
            current = self._pending[0]  # between an interim and the final response
        st.lost_at_boundary = current is None
        st.lost_bytes = length
        if current is not None:
            # Part of the loss is the rest of the response in progress: about the mean size
            # less what was seen of it.
            if current.resp_start is not None and count:
                seen = st.base - length - current.resp_start
                st.lost_bytes -= max(0, total // count - seen)
            if self._pending and self._pending[0] is current:
                self._note_bodies(self._pending.popleft())
        st.suspects = len(self._pending)

    def _charge_rest(self, st: Direction) -> bool:
        """Undecoded bytes left at a gap or the end: part of a message if one was started.
        False if there were none."""
        if st.pos >= len(st.buf):
            return False
        exchange = st.exchange
        if st.mode in (HEAD, CHUNKED) and exchange is not None and exchange.message is not None:
            self._out.append(Anomaly("http1.truncated"))
            self._charge(st, st.pos, len(st.buf), exchange.message, FRAMING)
        else:
            if st.mode == HEAD:
                self._out.append(Anomaly("http1.truncated"))
            elif st.mode == RESYNC and not st.resync_noted:
                st.resync_noted = True
                self._out.append(Anomaly("http1.resync"))
            self._charge(st, st.pos, len(st.buf), UNDECODED, OPAQUE)
        st.pos = len(st.buf)
        return True
