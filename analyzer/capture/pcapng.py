"""pcapng (draft-ietf-opsawg-pcapng section 4, "Block Definition"; Appendix A, the obsolete Packet
Block): several sections and interfaces, Enhanced, Simple and obsolete Packet Blocks, Decryption
Secrets Blocks handed to a callback.

A problem inside the file ends or skips what it must and is counted in the file's
``CaptureStats``; the first Section Header Block is checked when the file is opened
(analyzer/capture/reader.py), so this module raises nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from analyzer.capture.records import (
    BAD_BLOCK,
    BAD_INTERFACE,
    BAD_OPTION,
    BAD_RECORD,
    MAX_RECORD_BYTES,
    UNKNOWN_BLOCK,
    UNSUPPORTED_VERSION,
    CaptureStats,
    RawPacket,
    SecretsCallback,
    count,
    end_of_data,
    store_totals,
)
from analyzer.capture.sources import Source

PCAPNG_MAGIC: Final = b"\x0a\x0d\x0d\x0a"  # the Section Header Block type, a palindrome
SHB_TYPE: Final = 0x0A0D0D0A
IDB_TYPE: Final = 0x00000001
PB_TYPE: Final = 0x00000002  # obsolete Packet Block (Appendix A)
SPB_TYPE: Final = 0x00000003
EPB_TYPE: Final = 0x00000006
DSB_TYPE: Final = 0x0000000A
#: Blocks that carry nothing wireprobe uses: skipped without an anomaly (pcapng section 10.1).
SKIPPED_BLOCKS: Final[dict[int, str]] = {
    0x00000004: "Name Resolution Block",
    0x00000005: "Interface Statistics Block",
    0x00000007: "IRIG Timestamp Block",
    0x00000008: "ARINC 429 Block",
    0x00000009: "systemd Journal Export Block",
    0x00000BAD: "Custom Block (copiable)",
    0x40000BAD: "Custom Block (not copiable)",
}
BYTE_ORDER_MAGIC: Final = 0x1A2B3C4D
PCAPNG_MAJOR_VERSION: Final = 1
BLOCK_MIN_BYTES: Final = 12  # type, total length, trailing total length
SHB_MIN_BYTES: Final = 28  # + byte-order magic, major, minor, 64-bit section length
IDB_MIN_BYTES: Final = 20  # + link type, reserved, snaplen
EPB_MIN_BYTES: Final = 32  # + interface id, ts high, ts low, captured length, original length
SPB_MIN_BYTES: Final = 16  # + original length
PB_MIN_BYTES: Final = 32  # + interface id (16 bits), drops (16 bits), then as an EPB
DSB_MIN_BYTES: Final = 20  # + secrets type, secrets length
OPT_END: Final = 0
IF_TSRESOL: Final = 9
IF_TSOFFSET: Final = 14
#: if_tsresol absent: microseconds (pcapng section 4.2).
DEFAULT_UNITS_PER_S: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class _Layout:
    """The pcapng structures in one section's byte order."""

    head: struct.Struct  # block type, block total length
    epb_at: struct.Struct  # head + the fixed fields of an EPB, in one unpack for the fast path
    u32: struct.Struct
    version: struct.Struct  # SHB major, minor
    idb: struct.Struct  # link type, reserved, snaplen
    epb: struct.Struct  # interface id, ts high, ts low, captured length, original length
    pb: struct.Struct  # interface id, drops, ts high, ts low, captured length, original length
    dsb: struct.Struct  # secrets type, secrets length
    option: struct.Struct  # option code, option length
    i64: struct.Struct


def _layout(order: str) -> _Layout:
    return _Layout(
        head=struct.Struct(order + "II"),
        epb_at=struct.Struct(order + "IIIIIII"),
        u32=struct.Struct(order + "I"),
        version=struct.Struct(order + "HH"),
        idb=struct.Struct(order + "HHI"),
        epb=struct.Struct(order + "IIIII"),
        pb=struct.Struct(order + "HHIIII"),
        dsb=struct.Struct(order + "II"),
        option=struct.Struct(order + "HH"),
        i64=struct.Struct(order + "q"),
    )


LAYOUTS: Final = {order: _layout(order) for order in "<>"}


def section_layout(buf: bytes, pos: int) -> _Layout | None:
    """The byte order a Section Header Block at ``pos`` declares, None if its magic is wrong."""
    for layout in LAYOUTS.values():
        if layout.u32.unpack_from(buf, pos + 8)[0] == BYTE_ORDER_MAGIC:
            return layout
    return None


#: An interface of the current section: link type, timestamp units per second (a float: dividing
#: by it is faster than by an int and exact for tick counts below 2**53), timestamp offset in
#: seconds, snaplen (0 = none).
_Interface = tuple[int, float, int, int]


@dataclass(slots=True)
class _Section:
    """The state one Section Header Block starts afresh."""

    layout: _Layout
    interfaces: list[_Interface] = field(default_factory=list)


def pcapng_packets(
    src: Source, stats: CaptureStats, on_secrets: SecretsCallback | None
) -> Iterator[RawPacket]:
    """The packets of a pcapng file, block by block.

    A well-formed Enhanced Packet Block already in the buffer (nearly every block of a capture)
    takes the inline fast path: one unpack for its fixed fields, one for its trailing length.
    Every other block, and any EPB that fails a check, goes through ``_next_block``, which also
    refills the buffer and names what is wrong.
    """
    section = _Section(LAYOUTS["<"])
    epb_at, u32 = section.layout.epb_at.unpack_from, section.layout.u32.unpack_from
    interfaces = section.interfaces
    n_interfaces = 0
    buf, pos, end = src.buf, src.pos, len(src.buf)
    ts = 0.0  # last timestamp of the section: Simple Packet Blocks have none of their own
    n = wire = 0
    lo, hi = float("inf"), float("-inf")
    try:
        while True:
            if end - pos >= EPB_MIN_BYTES:
                btype, blen, iface, ts_high, ts_low, cap, orig = epb_at(buf, pos)
                if (
                    btype == EPB_TYPE
                    and cap <= orig
                    and cap <= blen - EPB_MIN_BYTES
                    and blen <= end - pos
                    and not blen & 3
                    and iface < n_interfaces
                    and u32(buf, pos + blen - 4)[0] == blen
                ):
                    link_type, units, offset, _snaplen = interfaces[iface]
                    ts = ((ts_high << 32) | ts_low) / units + offset
                    if ts < lo:
                        lo = ts
                    if ts > hi:
                        hi = ts
                    n += 1
                    wire += orig
                    yield (ts, link_type, orig, buf[pos + 28 : pos + 28 + cap])
                    pos += blen
                    continue
            src.pos = pos
            packet = _next_block(src, section, ts, stats, on_secrets)
            if packet is _STOP:
                break
            if packet is not None:
                ts = packet[0]
                if ts < lo:
                    lo = ts
                if ts > hi:
                    hi = ts
                n += 1
                wire += packet[2]
                yield packet
            if section.interfaces is not interfaces:  # a Section Header Block started afresh
                interfaces = section.interfaces
                epb_at, u32 = section.layout.epb_at.unpack_from, section.layout.u32.unpack_from
                ts = 0.0
            n_interfaces = len(interfaces)
            buf, pos, end = src.buf, src.pos, len(src.buf)
    finally:
        store_totals(stats, n, wire, lo, hi)
        src.close()


#: Returned by ``_next_block`` when the file must not be read further.
_STOP: Final[RawPacket] = (0.0, -1, 0, b"")


def _next_block(
    src: Source,
    section: _Section,
    last_ts: float,
    stats: CaptureStats,
    on_secrets: SecretsCallback | None,
) -> RawPacket | None:
    """Read the block at ``src.pos``: a packet, ``None`` (nothing to deliver) or ``_STOP``.

    Steps: 1. type and length (a Section Header Block gives its byte order first), 2. length
    sanity, 3. the whole block in the buffer, 4. trailing length, 5. dispatch on the type.  A
    framing error stops the file: the next block's position cannot be trusted.
    """
    if not src.fill(BLOCK_MIN_BYTES):
        end_of_data(src, stats)
        return _STOP
    buf, pos, layout = src.buf, src.pos, section.layout
    btype, blen = layout.head.unpack_from(buf, pos)
    if btype == SHB_TYPE:
        new_layout = section_layout(buf, pos)
        if new_layout is None:
            count(stats, BAD_BLOCK)
            return _STOP
        layout = new_layout
        blen = layout.u32.unpack_from(buf, pos + 4)[0]
    if blen < BLOCK_MIN_BYTES or blen % 4 or blen > MAX_RECORD_BYTES:
        count(stats, BAD_BLOCK)
        return _STOP
    if not src.fill(blen):
        end_of_data(src, stats)
        return _STOP
    buf, pos = src.buf, src.pos
    if layout.u32.unpack_from(buf, pos + blen - 4)[0] != blen:
        count(stats, BAD_BLOCK)
        return _STOP
    src.pos = pos + blen
    if btype == SHB_TYPE:
        return _section_start(buf, pos, blen, layout, section, stats)
    return _block(buf, pos, btype, blen, section, last_ts, stats, on_secrets)


def _block(
    buf: bytes,
    pos: int,
    btype: int,
    blen: int,
    section: _Section,
    last_ts: float,
    stats: CaptureStats,
    on_secrets: SecretsCallback | None,
) -> RawPacket | None:
    """Dispatch one well-framed block other than a Section Header Block."""
    if btype == EPB_TYPE:
        return _enhanced_packet(buf, pos, blen, section, stats)
    if btype == IDB_TYPE:
        _interface(buf, pos, blen, section, stats)
    elif btype == SPB_TYPE:
        return _simple_packet(buf, pos, blen, section, last_ts, stats)
    elif btype == PB_TYPE:
        return _obsolete_packet(buf, pos, blen, section, stats)
    elif btype == DSB_TYPE:
        _secrets(buf, pos, blen, section.layout, stats, on_secrets)
    elif btype not in SKIPPED_BLOCKS:
        count(stats, UNKNOWN_BLOCK)
    return None


def _section_start(
    buf: bytes, pos: int, blen: int, layout: _Layout, section: _Section, stats: CaptureStats
) -> RawPacket | None:
    """A Section Header Block (pcapng section 4.1): new byte order, no interfaces yet."""
    if blen < SHB_MIN_BYTES:
        count(stats, BAD_BLOCK)
        return _STOP
    if layout.version.unpack_from(buf, pos + 12)[0] != PCAPNG_MAJOR_VERSION:
        # A new major version may lay blocks out differently: nothing after it can be trusted.
        count(stats, UNSUPPORTED_VERSION)
        return _STOP
    section.layout = layout
    section.interfaces = []  # a new list: the reader notices the new section by its identity
    return None


def _interface(buf: bytes, pos: int, blen: int, section: _Section, stats: CaptureStats) -> None:
    """An Interface Description Block (pcapng section 4.2): appended even when malformed, so that
    the interface ids of the blocks after it keep their meaning."""
    if blen < IDB_MIN_BYTES:
        count(stats, BAD_BLOCK)
        section.interfaces.append((0, float(DEFAULT_UNITS_PER_S), 0, 0))
        return
    link_type, _reserved, snaplen = section.layout.idb.unpack_from(buf, pos + 8)
    units, offset = _interface_clock(buf, pos + 16, pos + blen - 4, section.layout, stats)
    section.interfaces.append((link_type, float(units), offset, snaplen))
    if link_type not in stats.link_types:
        stats.link_types.append(link_type)


def _interface_clock(
    buf: bytes, start: int, stop: int, layout: _Layout, stats: CaptureStats
) -> tuple[int, int]:
    """``if_tsresol`` as units per second and ``if_tsoffset`` in seconds, from the IDB options."""
    units, offset = DEFAULT_UNITS_PER_S, 0
    while start + 4 <= stop:
        code, length = layout.option.unpack_from(buf, start)
        if code == OPT_END:
            break
        value = start + 4
        if value + length > stop:
            count(stats, BAD_OPTION)
            break
        if code == IF_TSRESOL and length >= 1:
            # Most significant bit set: a negative power of 2, else of 10 (pcapng section 4.2).
            resol = buf[value]
            units = 2 ** (resol & 0x7F) if resol & 0x80 else 10**resol
        elif code == IF_TSOFFSET and length == 8:
            offset = layout.i64.unpack_from(buf, value)[0]
        start = value + ((length + 3) & ~3)  # option values are padded to 32 bits
    return units, offset


def _simple_packet(
    buf: bytes, pos: int, blen: int, section: _Section, last_ts: float, stats: CaptureStats
) -> RawPacket | None:
    """A Simple Packet Block (pcapng section 4.4): interface 0, no timestamp of its own."""
    if blen < SPB_MIN_BYTES:
        count(stats, BAD_BLOCK)
        return None
    if not section.interfaces:
        count(stats, BAD_INTERFACE)
        return None
    link_type, _units, _offset, snaplen = section.interfaces[0]
    (orig,) = section.layout.u32.unpack_from(buf, pos + 8)
    # The captured length is not stored: the original length cut by the snaplen and by the block.
    cap = min(orig, blen - SPB_MIN_BYTES)
    if snaplen:
        cap = min(cap, snaplen)
    return (last_ts, link_type, orig, buf[pos + 12 : pos + 12 + cap])


def _enhanced_packet(
    buf: bytes, pos: int, blen: int, section: _Section, stats: CaptureStats
) -> RawPacket | None:
    """An Enhanced Packet Block (pcapng section 4.3) that the fast path turned away."""
    if blen < EPB_MIN_BYTES:
        count(stats, BAD_BLOCK)
        return None
    iface, ts_high, ts_low, cap, orig = section.layout.epb.unpack_from(buf, pos + 8)
    return _timed_packet(buf, pos, blen, section, stats, (iface, ts_high, ts_low, cap, orig))


def _obsolete_packet(
    buf: bytes, pos: int, blen: int, section: _Section, stats: CaptureStats
) -> RawPacket | None:
    """A Packet Block (pcapng Appendix A), written by old tools: an EPB with a 16-bit id."""
    if blen < PB_MIN_BYTES:
        count(stats, BAD_BLOCK)
        return None
    iface, _drops, ts_high, ts_low, cap, orig = section.layout.pb.unpack_from(buf, pos + 8)
    return _timed_packet(buf, pos, blen, section, stats, (iface, ts_high, ts_low, cap, orig))


def _timed_packet(
    buf: bytes,
    pos: int,
    blen: int,
    section: _Section,
    stats: CaptureStats,
    fields: tuple[int, int, int, int, int],
) -> RawPacket | None:
    """The packet of an EPB or PB, whose data both start at byte 28 after 32 bytes of fields.

    ``fields``: interface id, timestamp high and low 32 bits, captured and original length.
    """
    iface, ts_high, ts_low, cap, orig = fields
    if iface >= len(section.interfaces):
        count(stats, BAD_INTERFACE)
        return None
    if cap > blen - EPB_MIN_BYTES:
        count(stats, BAD_BLOCK)
        return None
    if cap > orig:
        # The block's framing is intact, so the packet is kept: its wire length is at least
        # what was captured.
        count(stats, BAD_RECORD)
        orig = cap
    link_type, units, offset, _snaplen = section.interfaces[iface]
    ts = ((ts_high << 32) | ts_low) / units + offset
    return (ts, link_type, orig, buf[pos + 28 : pos + 28 + cap])


def _secrets(
    buf: bytes,
    pos: int,
    blen: int,
    layout: _Layout,
    stats: CaptureStats,
    on_secrets: SecretsCallback | None,
) -> None:
    """A Decryption Secrets Block (pcapng section 4.7), handed over before the packets after it."""
    if blen < DSB_MIN_BYTES:
        count(stats, BAD_BLOCK)
        return
    secrets_type, length = layout.dsb.unpack_from(buf, pos + 8)
    if length > blen - DSB_MIN_BYTES:
        count(stats, BAD_BLOCK)
        return
    if on_secrets is not None:
        anomaly = on_secrets(secrets_type, buf[pos + 16 : pos + 16 + length])
        if anomaly is not None:
            count(stats, anomaly)
