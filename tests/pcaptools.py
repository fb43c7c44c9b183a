"""Rewrite classic pcap files in tests: shift packets in time, drop some (no scapy: exact bytes).

Only what the tests need: little- or big-endian classic pcap, micro- or nanosecond stamps; each
record keeps its bytes and original length, so a rewritten capture differs only where asked.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from pathlib import Path

_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000),  # microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}


@dataclass(frozen=True, slots=True)
class Record:
    ts_ns: int
    data: bytes
    orig_len: int


@dataclass(frozen=True, slots=True)
class Pcap:
    header: bytes
    order: str
    ns_per_unit: int
    records: tuple[Record, ...]

    def with_records(self, records: list[Record]) -> Pcap:
        return replace(self, records=tuple(records))

    def write(self, path: Path) -> Path:
        parts = [self.header]
        for r in self.records:
            seconds, rest = divmod(r.ts_ns, 1_000_000_000)
            parts.append(
                struct.pack(
                    self.order + "IIII", seconds, rest // self.ns_per_unit, len(r.data), r.orig_len
                )
            )
            parts.append(r.data)
        path.write_bytes(b"".join(parts))
        return path


def read(path: Path) -> Pcap:
    raw = path.read_bytes()
    order, ns_per_unit = _MAGICS[raw[:4]]
    records = []
    offset = 24
    while offset + 16 <= len(raw):
        seconds, fraction, incl, orig = struct.unpack_from(order + "IIII", raw, offset)
        offset += 16
        records.append(
            Record(
                seconds * 1_000_000_000 + fraction * ns_per_unit, raw[offset : offset + incl], orig
            )
        )
        offset += incl
    return Pcap(raw[:24], order, ns_per_unit, tuple(records))


def tcp_payload_length(frame: bytes) -> int:
    """TCP payload bytes of an Ethernet/IPv4 frame (0 for anything else)."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
        return 0
    ihl = (frame[14] & 0x0F) * 4
    total = struct.unpack_from("!H", frame, 16)[0]
    data_offset = (frame[14 + ihl + 12] >> 4) * 4
    return max(total - ihl - data_offset, 0)


def tcp_ports(frame: bytes) -> tuple[int, int]:
    ihl = (frame[14] & 0x0F) * 4
    sport, dport = struct.unpack_from("!HH", frame, 14 + ihl)
    return sport, dport
