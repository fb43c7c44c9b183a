"""Decrypted application data: plaintext offsets back to the ciphertext, and record overhead.

The inner decoder (HTTP, AMQP, ...) sees one direction's plaintext as a stream of its own and
spans it in plaintext offsets.  ``PlainStream`` remembers where each record's plaintext sits in
the ciphertext stream, moves the inner spans there, and once a record's plaintext is fully spanned
charges its header and expansion (DESIGN.md section 3: ``tls`` layer) pro rata to the owners of
that plaintext (``accounting.apportion``).
"""

from __future__ import annotations

import bisect

from analyzer.accounting.apportion import apportion
from analyzer.decoding.events import CONTROL, TLS, UNDECODED, Event, Span
from analyzer.tls.records import add_span

#: Decrypted records whose plaintext the inner decoder has not fully spanned yet.  The inner
#: decoders buffer at most a header block (64 KiB) or frame, a few records; past this the oldest
#: record's expansion is charged with what is known.
MAX_PENDING_RECORDS = 4096


class _PlainRecord:
    """Where a decrypted record's plaintext sits, and whose it turned out to be."""

    __slots__ = ("cipher_start", "covered", "overhead", "plain_end", "plain_start", "tally")

    def __init__(
        self, plain_start: int, plain_end: int, cipher_start: int, overhead: list[tuple[int, int]]
    ) -> None:
        #: plaintext offsets (the inner decoder's stream) [plain_start, plain_end)
        self.plain_start = plain_start
        self.plain_end = plain_end
        #: ciphertext offset of the plaintext's first byte
        self.cipher_start = cipher_start
        #: ciphertext ranges of header and expansion, charged once the owners are known
        self.overhead = overhead
        #: owner -> plaintext bytes spanned so far
        self.tally: dict[int, int] = {}
        self.covered = 0


class PlainStream:
    """One direction's decrypted records, in plaintext order."""

    __slots__ = ("direction", "orphans", "plain_offset", "records", "starts")

    def __init__(self, direction: int) -> None:
        self.direction = direction
        #: plaintext offset of the next record's first byte
        self.plain_offset = 0
        self.records: list[_PlainRecord] = []
        #: ``plain_start`` of each record in ``records`` (bisected by ``translate``)
        self.starts: list[int] = []
        #: header and expansion of empty records, waiting for the next record's owners
        self.orphans: list[tuple[int, int]] = []

    def add(
        self, cipher_start: int, plain_len: int, overhead: list[tuple[int, int]], out: list[Event]
    ) -> bool:
        """Note a decrypted record; False when it was empty (nothing for the inner decoder)."""
        if not plain_len:
            # An empty record (sent before data in TLS 1.0 CBC to randomise the next record's
            # IV) exists only for the record after it: charge it with that one.
            self.orphans += overhead
            return False
        overhead, self.orphans = self.orphans + overhead, []
        start = self.plain_offset
        record = _PlainRecord(start, start + plain_len, cipher_start, overhead)
        self.records.append(record)
        self.starts.append(record.plain_start)
        self.plain_offset = record.plain_end
        if len(self.records) > MAX_PENDING_RECORDS:
            oldest = next((r for r in self.records if r.overhead), None)
            if oldest is not None:
                self._charge_overhead(oldest, out)
        return True

    def translate(self, span: Span, out: list[Event]) -> None:
        """Move an inner decoder's span to the ciphertext offsets of its plaintext."""
        d = self.direction
        pos = span.start
        i = bisect.bisect_right(self.starts, pos) - 1
        while pos < span.end and 0 <= i < len(self.records):
            record = self.records[i]
            stop = min(span.end, record.plain_end)
            shift = record.cipher_start - record.plain_start
            add_span(out, d, pos + shift, stop + shift, span.owner, span.layer)
            record.tally[span.owner] = record.tally.get(span.owner, 0) + stop - pos
            record.covered += stop - pos
            if record.covered >= record.plain_end - record.plain_start and record.overhead:
                self._charge_overhead(record, out)
            pos = stop
            i += 1
        self._drop_done()

    def finish(self, out: list[Event]) -> None:
        """Charge every record's overhead with what is known; empty records left are control."""
        for record in self.records:
            if record.overhead:
                self._charge_overhead(record, out)
        self.records, self.starts = [], []
        for a, b in self.orphans:
            add_span(out, self.direction, a, b, CONTROL, TLS)
        self.orphans = []

    def _charge_overhead(self, record: _PlainRecord, out: list[Event]) -> None:
        """The record's header and expansion, split pro rata among its plaintext's owners."""
        d = self.direction
        owners = list(record.tally) or [UNDECODED]
        total = sum(b - a for a, b in record.overhead)
        shares = apportion(total, [record.tally.get(o, 0) for o in owners])
        ranges = list(record.overhead)
        record.overhead = []
        for owner, share in zip(owners, shares, strict=True):
            while share > 0 and ranges:
                a, b = ranges[0]
                take = min(share, b - a)
                add_span(out, d, a, a + take, owner, TLS)
                share -= take
                ranges[0] = (a + take, b)
                if a + take == b:
                    ranges.pop(0)
            ranges = [(a, b) for a, b in ranges if a < b]

    def _drop_done(self) -> None:
        """Forget leading records that are fully spanned and charged."""
        done = 0
        for record in self.records:
            if record.overhead or record.covered < record.plain_end - record.plain_start:
                break
            done += 1
        if done:
            del self.records[:done]
            del self.starts[:done]
