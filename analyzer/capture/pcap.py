"""Classic pcap (draft-ietf-opsawg-pcap, "File Header", "Packet Record"): both byte orders,
micro- and nanosecond magics, and Kuznetzov's "modified" variant with 24-byte record headers.

Records are unpacked with ``struct.Struct.unpack_from`` on the source's buffer; the only object
made per packet is the ``RawPacket`` tuple.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from analyzer.capture.records import (
    BAD_RECORD,
    MAX_RECORD_BYTES,
    CaptureStats,
    RawPacket,
    count,
    end_of_data,
    store_totals,
)
from analyzer.capture.sources import Source


@dataclass(frozen=True, slots=True)
class PcapFlavour:
    """What a classic pcap magic number says about the rest of the file."""

    order: str  # struct byte-order character
    units_per_s: int  # the record's ts_frac counts these per second
    record_header_bytes: int  # 16, or 24 in Kuznetzov's patched libpcap


#: Classic pcap magic numbers as the 4 bytes appear in the file.  0xa1b2c3d4 microseconds,
#: 0xa1b23c4d nanoseconds (draft-ietf-opsawg-pcap, "File Header"); 0xa1b2cd34 is the "modified"
#: format of old Red Hat tcpdump, with 8 more bytes (ifindex, protocol, pkt_type) per record.
PCAP_MAGICS: Final[dict[bytes, PcapFlavour]] = {
    bytes.fromhex("d4c3b2a1"): PcapFlavour("<", 1_000_000, 16),
    bytes.fromhex("a1b2c3d4"): PcapFlavour(">", 1_000_000, 16),
    bytes.fromhex("4d3cb2a1"): PcapFlavour("<", 1_000_000_000, 16),
    bytes.fromhex("a1b23c4d"): PcapFlavour(">", 1_000_000_000, 16),
    bytes.fromhex("34cdb2a1"): PcapFlavour("<", 1_000_000, 24),
    bytes.fromhex("a1b2cd34"): PcapFlavour(">", 1_000_000, 24),
}
PCAP_FILE_HEADER_BYTES: Final = 24
#: The link-type field's upper 16 bits carry the FCS length and reserved bits; the link type is
#: the lower 16 (draft-ietf-opsawg-pcap, "LinkType and additional information").
PCAP_LINK_TYPE_MASK: Final = 0xFFFF


def pcap_link_type(flavour: PcapFlavour, header: bytes) -> int:
    (raw,) = struct.unpack_from(flavour.order + "I", header, 20)
    return int(raw) & PCAP_LINK_TYPE_MASK


def pcap_packets(src: Source, flavour: PcapFlavour, stats: CaptureStats) -> Iterator[RawPacket]:
    """The records of a classic pcap file, from ``src.pos`` (just after the file header)."""
    link_type = stats.link_types[0]
    units = flavour.units_per_s
    head_len = flavour.record_header_bytes
    unpack = struct.Struct(flavour.order + "IIII").unpack_from  # ts_sec, ts_frac, incl, orig
    buf, pos, end = src.buf, src.pos, len(src.buf)
    n = wire = 0
    lo, hi = float("inf"), float("-inf")
    max_record = MAX_RECORD_BYTES  # a local: the loop runs once per packet
    try:
        while True:
            if end - pos < head_len:
                src.pos = pos
                if not src.fill(head_len):
                    break
                buf, pos, end = src.buf, 0, len(src.buf)
            sec, frac, incl, orig = unpack(buf, pos)
            if incl > orig or incl > max_record:
                # Misframed data: the next record's position cannot be trusted, so stop here.
                count(stats, BAD_RECORD)
                return
            start = pos + head_len
            stop = start + incl
            if stop > end:
                src.pos = pos
                if not src.fill(head_len + incl):
                    break
                buf, pos, end = src.buf, 0, len(src.buf)
                start = head_len
                stop = start + incl
            ts = sec + frac / units
            if ts < lo:
                lo = ts
            if ts > hi:
                hi = ts
            n += 1
            wire += orig
            yield (ts, link_type, orig, buf[start:stop])
            pos = stop
        end_of_data(src, stats)
    finally:
        store_totals(stats, n, wire, lo, hi)
        src.close()
