"""One direction of a TCP connection: sequence numbers to an in-order byte stream.

Sans-IO: ``StreamAssembler.segment`` takes one segment and returns what became deliverable, in
order, as pieces: ``bytes`` for data, an ``int`` for the length of a gap.  Reordered segments
wait in a bounded buffer; retransmitted bytes are counted, never delivered twice; missing bytes
are reported as gaps, never invented.  A gap is declared when it can no longer be filled: the
peer acknowledged past it (the capture lost the segment), the buffer bound was reached, or the
stream ended.

Offsets are 64-bit positions relative to ``base`` (the sequence number after the SYN, or of the
first byte seen when the capture starts mid-connection), so sequence-number wrap-around is
invisible to everything downstream.
"""

from __future__ import annotations

import bisect

SEQ_MOD = 1 << 32
_HALF = 1 << 31

#: Out-of-order bytes held per direction while waiting for a hole to fill.  Linux's default
#: tcp_rmem maximum is 6 MiB; a receiver cannot have more than its window outstanding, so a capture
#: needing more than this has lost the segment for good.
MAX_BUFFERED_BYTES = 8 * 1024 * 1024
#: Out-of-order segments held per direction (bounds the bookkeeping of tiny segments).
MAX_BUFFERED_SEGMENTS = 4096

#: ``bytes``: stream data; ``int``: that many bytes never captured (a gap).
Piece = bytes | int


class StreamAssembler:
    """Reassembles one direction.  ``base`` is set by the first SYN or data seen."""

    __slots__ = (
        "_acked_past",
        "_held",
        "_starts",
        "base",
        "fin_offset",
        "gap_bytes",
        "gaps",
        "held_bytes",
        "next",
        "overlap_mismatches",
        "retransmitted_bytes",
        "syn_seen",
    )

    def __init__(self) -> None:
        #: sequence number of stream offset 0, None until known
        self.base: int | None = None
        #: offset of the next byte to deliver
        self.next = 0
        #: stream offset of the FIN, when one was seen
        self.fin_offset: int | None = None
        self.syn_seen = False
        self.retransmitted_bytes = 0
        self.gap_bytes = 0
        self.gaps = 0
        self.overlap_mismatches = 0
        # Out-of-order segments: parallel sorted lists of start offsets and (start, end, data),
        # data None for bytes known to exist but not captured (snaplen).
        self._starts: list[int] = []
        self._held: list[tuple[int, int, bytes | None]] = []
        #: bytes waiting for a hole to fill (0 whenever nothing is held: the fast path's test)
        self.held_bytes = 0
        #: the hole (its start) an ACK already passed once
        self._acked_past = -1

    # -- sequence numbers -------------------------------------------------------------------

    def syn(self, seq: int) -> None:
        """A SYN with sequence number ``seq``: the stream starts right after it."""
        if self.base is None:
            self.base = (seq + 1) % SEQ_MOD
            self.syn_seen = True

    def offset(self, seq: int) -> int:
        """The 64-bit stream offset of sequence number ``seq`` (nearest to ``next``)."""
        assert self.base is not None
        rel = (seq - self.base) % SEQ_MOD
        candidate = (self.next - (self.next % SEQ_MOD)) + rel
        if candidate - self.next > _HALF:
            candidate -= SEQ_MOD
        elif self.next - candidate > _HALF:
            candidate += SEQ_MOD
        return candidate

    # -- segments ---------------------------------------------------------------------------

    def segment(self, start: int, data: bytes, wire_len: int) -> list[Piece]:
        """Bytes ``[start, start + wire_len)`` arrived; ``data`` is the captured prefix of them."""
        end = start + wire_len
        pieces: list[Piece] = []
        if end <= self.next:
            self.retransmitted_bytes += wire_len
            return pieces
        if start < self.next:
            self.retransmitted_bytes += self.next - start
            cut = self.next - start
            data = data[cut:]
            start = self.next
        captured_end = start + len(data)
        if start == self.next and not self._held:
            # The common case: in order, nothing waiting.
            if data:
                pieces.append(data)
            self.next = captured_end
            if captured_end < end:
                self._skip(end, pieces)
            return pieces
        self._hold(start, data, end)
        self._drain(pieces)
        self._enforce_bounds(pieces)
        return pieces

    def acked(self, offset: int) -> list[Piece]:
        """The peer acknowledged everything before ``offset``: holes below it are permanent.

        Only once a second ACK passes the same hole: a capture can show an ACK before the
        segment it acknowledges (packets of both directions reordered on the way to the
        capture point), and that segment, arriving next, fills the hole."""
        pieces: list[Piece] = []
        if self._held and offset > self.next:
            if self._acked_past != self.next:
                self._acked_past = self.next
                return pieces
            self._skip(min(offset, self._starts[0]), pieces)
            self._drain(pieces)
        return pieces

    def skip_to(self, offset: int) -> list[Piece]:
        """Bytes up to ``offset`` will never come (the FIN is there): a gap to it."""
        pieces: list[Piece] = []
        self._skip(offset, pieces)
        return pieces

    def flush(self) -> list[Piece]:
        """The stream is over: give up on every hole and deliver what is held."""
        pieces: list[Piece] = []
        while self._held:
            self._skip(self._starts[0], pieces)
            self._drain(pieces)
        return pieces

    # -- internals --------------------------------------------------------------------------

    def _skip(self, to: int, pieces: list[Piece]) -> None:
        if to > self.next:
            pieces.append(to - self.next)
            self.gap_bytes += to - self.next
            self.gaps += 1
            self.next = to

    def _hold(self, start: int, data: bytes, end: int) -> None:
        index = bisect.bisect_left(self._starts, start)
        if index < len(self._starts) and self._starts[index] == start:
            old_start, old_end, old_data = self._held[index]
            overlap = min(old_end, end) - start
            self.retransmitted_bytes += overlap
            if old_data is not None and data[:overlap] != old_data[: len(data[:overlap])]:
                self.overlap_mismatches += 1
            if end <= old_end:
                return
            # A longer segment supersedes the held one (keep the longer capture).
            self.held_bytes -= old_end - old_start
            del self._starts[index]
            del self._held[index]
        captured_end = start + len(data)
        if data:
            self._insert(start, captured_end, data)
        if captured_end < end:
            self._insert(captured_end, end, None)

    def _insert(self, start: int, end: int, data: bytes | None) -> None:
        index = bisect.bisect_left(self._starts, start)
        self._starts.insert(index, start)
        self._held.insert(index, (start, end, data))
        self.held_bytes += end - start

    def _drain(self, pieces: list[Piece]) -> None:
        while self._held and self._starts[0] <= self.next:
            start, end, data = self._held.pop(0)
            del self._starts[0]
            self.held_bytes -= end - start
            if end <= self.next:
                self.retransmitted_bytes += end - start
                continue
            if start < self.next:
                self.retransmitted_bytes += self.next - start
            if data is None:
                self._skip(end, pieces)
                continue
            fresh = data[self.next - start :]
            if fresh:
                pieces.append(fresh)
            self.next = end

    def _enforce_bounds(self, pieces: list[Piece]) -> None:
        while self._held and (
            self.held_bytes > MAX_BUFFERED_BYTES or len(self._held) > MAX_BUFFERED_SEGMENTS
        ):
            self._skip(self._starts[0], pieces)
            self._drain(pieces)
