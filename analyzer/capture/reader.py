"""Reading capture files: the only module of wireprobe that opens one (DESIGN.md section 6).

Formats: classic pcap (both byte orders, micro- and nanosecond magics, Kuznetzov's "modified"
variant), pcapng (several sections and interfaces; Enhanced, Simple and obsolete Packet Blocks;
Decryption Secrets Blocks), either of them gzip-compressed, from a path or from standard input
(``"-"``).  References: draft-ietf-opsawg-pcap ("File Header", "Packet Record") and
draft-ietf-opsawg-pcapng (section 4, "Block Definition"; Appendix A, the obsolete Packet Block).

Streaming (DESIGN.md section 7): each file is read in ``CHUNK_BYTES`` reads into one buffer and
records are unpacked with ``struct.Struct.unpack_from`` on it; the only per-packet object is the
``RawPacket`` tuple.  Memory per open file is bounded by ``CHUNK_BYTES + MAX_RECORD_BYTES``
whatever the file length.

A whole file that cannot be read (missing, empty, not a capture, header cut) raises
``CaptureError`` in the constructor.  A problem in the middle of a file ends or skips what it
must, keeps every packet read before, and is counted as an anomaly in that file's
``CaptureStats`` (Zeek-style stable names, see ``ANOMALIES``): never a traceback, never a hang.
"""

from __future__ import annotations

import gzip
import heapq
import struct
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import BinaryIO, Final

from analyzer.capture.sources import (
    BAD_GZIP,
    GZIP_BOMB,
    GZIP_TRAILING,
    READ_ERROR,
    TRUNCATED,
    Closable,
    Counted,
    Readable,
    Replay,
    Source,
    read_up_to,
)
from analyzer.capture.sources import (
    CHUNK_BYTES as CHUNK_BYTES,  # re-exported: the chunk size is part of the reader's contract
)
from analyzer.errors import CaptureError

#: One packet as the pipeline sees it: (ts seconds, link type, original length on the wire,
#: captured bytes).  A plain tuple: it is the only object made per packet.
RawPacket = tuple[float, int, int, bytes]

#: ``on_secrets(secrets_type, data)``, called for each pcapng Decryption Secrets Block; it may
#: return the name of an anomaly its content showed (counted in the file's ``CaptureStats``).
SecretsCallback = Callable[[int, bytes], str | None]

STDIN_PATH: Final = "-"


#: Largest pcap record or pcapng block accepted, in bytes.  Ethernet-family frames stay under
#: 256 KiB (Wireshark's WTAP_MAX_PACKET_SIZE_STANDARD, which already covers GRO/TSO super-frames);
#: a few link types (D-Bus, USB) legitimately go higher, so the bound leaves room for them while a
#: corrupt length field claiming gigabytes is refused before anything is allocated.
MAX_RECORD_BYTES: Final = 16 << 20


#: Secrets type of a TLS key log (SSLKEYLOGFILE text) in a Decryption Secrets Block: "TLSK".
SECRETS_TLS_KEY_LOG: Final = 0x544C534B

# Anomaly names (DESIGN.md habit 4: stable, because baselines and users' scripts read them).
BAD_RECORD: Final = "capture.bad_record"  # captured length > original length, or absurd
BAD_BLOCK: Final = "pcapng.bad_block"  # block framing or a length inside a block is wrong
UNKNOWN_BLOCK: Final = "pcapng.unknown_block"  # a block type this reader does not know (skipped)
BAD_INTERFACE: Final = "pcapng.bad_interface"  # a packet names an interface never described
BAD_OPTION: Final = "pcapng.bad_option"  # interface options overrun their block (defaults kept)
UNSUPPORTED_VERSION: Final = "pcapng.unsupported_version"  # a section's major version is not 1
ANOMALIES: Final = (
    TRUNCATED,
    BAD_RECORD,
    READ_ERROR,
    BAD_GZIP,
    GZIP_BOMB,
    GZIP_TRAILING,
    BAD_BLOCK,
    UNKNOWN_BLOCK,
    BAD_INTERFACE,
    BAD_OPTION,
    UNSUPPORTED_VERSION,
)


@dataclass(slots=True)
class CaptureStats:
    """What was read from one input file; filled while its packets are read."""

    path: str  # the path as given ("-" for standard input)
    packets: int = 0  # packets delivered
    wire_bytes: int = 0  # sum of their original lengths (bytes on the wire)
    link_types: list[int] = field(default_factory=list)  # declared link types, first-seen order
    first_ts: float | None = None  # earliest packet timestamp (s); None without packets
    last_ts: float | None = None  # latest packet timestamp (s); None without packets
    anomalies: dict[str, int] = field(default_factory=dict)  # anomaly name -> count


def _count(stats: CaptureStats, anomaly: str) -> None:
    stats.anomalies[anomaly] = stats.anomalies.get(anomaly, 0) + 1


# --- opening and validating a file (the only place CaptureError is raised) ---------------------

GZIP_MAGIC: Final = b"\x1f\x8b"
PCAPNG_MAGIC: Final = b"\x0a\x0d\x0d\x0a"  # the Section Header Block type, a palindrome


@dataclass(frozen=True, slots=True)
class _PcapFlavour:
    """What a classic pcap magic number says about the rest of the file."""

    order: str  # struct byte-order character
    units_per_s: int  # the record's ts_frac counts these per second
    record_header_bytes: int  # 16, or 24 in Kuznetzov's patched libpcap


#: Classic pcap magic numbers as the 4 bytes appear in the file.  0xa1b2c3d4 microseconds,
#: 0xa1b23c4d nanoseconds (draft-ietf-opsawg-pcap, "File Header"); 0xa1b2cd34 is the "modified"
#: format of old Red Hat tcpdump, with 8 more bytes (ifindex, protocol, pkt_type) per record.
PCAP_MAGICS: Final[dict[bytes, _PcapFlavour]] = {
    bytes.fromhex("d4c3b2a1"): _PcapFlavour("<", 1_000_000, 16),
    bytes.fromhex("a1b2c3d4"): _PcapFlavour(">", 1_000_000, 16),
    bytes.fromhex("4d3cb2a1"): _PcapFlavour("<", 1_000_000_000, 16),
    bytes.fromhex("a1b23c4d"): _PcapFlavour(">", 1_000_000_000, 16),
    bytes.fromhex("34cdb2a1"): _PcapFlavour("<", 1_000_000, 24),
    bytes.fromhex("a1b2cd34"): _PcapFlavour(">", 1_000_000, 24),
}
PCAP_FILE_HEADER_BYTES: Final = 24
#: The link-type field's upper 16 bits carry the FCS length and reserved bits; the link type is
#: the lower 16 (draft-ietf-opsawg-pcap, "LinkType and additional information").
PCAP_LINK_TYPE_MASK: Final = 0xFFFF


def _open_stream(path: str, stdin: BinaryIO | None) -> tuple[Readable, list[Closable]]:
    """The stream of ``path`` and the objects to close when done (not stdin: it is not ours)."""
    if path == STDIN_PATH:
        if stdin is not None:
            return stdin, []
        if sys.stdin is None:  # a daemon or "<&-": there is nothing to read
            raise CaptureError(path, "no standard input")
        return sys.stdin.buffer, []
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed by Source.close at end of reading
    except FileNotFoundError as err:
        raise CaptureError(path, "no such file") from err
    except IsADirectoryError as err:
        raise CaptureError(path, "is a directory") from err
    except PermissionError as err:
        raise CaptureError(path, "permission denied") from err
    except OSError as err:
        raise CaptureError(path, f"cannot open ({err.strerror or err})") from err
    return stream, [stream]


def _read_head(path: str, stream: Readable, size: int) -> bytes:
    """The next ``size`` header bytes (fewer at end of data); a failure is a CaptureError."""
    try:
        return read_up_to(stream, size)
    except EOFError as err:
        raise CaptureError(path, "truncated gzip data") from err
    except (zlib.error, gzip.BadGzipFile) as err:
        raise CaptureError(path, f"corrupt gzip data ({err})") from err
    except OSError as err:
        raise CaptureError(path, f"read error ({err.strerror or err})") from err


def _check_magic(path: str, head: bytes) -> None:
    """Raise unless ``head`` (at most 4 bytes) starts a pcap or pcapng file."""
    if not head:
        raise CaptureError(path, "empty file")
    known = (PCAPNG_MAGIC, *PCAP_MAGICS)
    if len(head) == 4 and head in known:
        return
    if len(head) < 4 and any(magic.startswith(head) for magic in known):
        raise CaptureError(path, "truncated file header")
    raise CaptureError(path, f"not a pcap or pcapng file (magic 0x{head.hex()})")


class _CaptureFile:
    """One opened, validated input file, read once by ``packets``."""

    __slots__ = ("_flavour", "_source", "stats")

    def __init__(self, path: str, stdin: BinaryIO | None) -> None:
        stream, closers = _open_stream(path, stdin)
        try:
            self._flavour, self._source = _start(path, stream, closers)
        except CaptureError:
            for opened in closers:
                opened.close()
            raise
        self.stats = CaptureStats(path=path)
        if isinstance(self._flavour, _PcapFlavour):
            self.stats.link_types.append(_pcap_link_type(self._flavour, self._source.buf))

    def packets(self, on_secrets: SecretsCallback | None) -> Iterator[RawPacket]:
        """The file's packets; the reader closes the file when it ends or is closed."""
        # Returned, not delegated with ``yield from``: no extra generator frame per packet.
        if isinstance(self._flavour, _PcapFlavour):
            return _pcap_packets(self._source, self._flavour, self.stats)
        return _pcapng_packets(self._source, self.stats, on_secrets)

    def close(self) -> None:
        self._source.close()


def _start(
    path: str, stream: Readable, closers: list[Closable]
) -> tuple[_PcapFlavour | None, Source]:
    """Steps: 1. magic (through gzip if compressed), 2. the whole file header, 3. the source.

    Returns the pcap flavour (None for pcapng) and a source positioned at the first record (pcap)
    or at the first Section Header Block (pcapng: the block reader parses it again for its state).
    """
    head = _read_head(path, stream, 4)
    compressed = None
    if head[:2] == GZIP_MAGIC:
        # gzip.open streams; wrapping what was read keeps this working on stdin, which can't seek.
        compressed = Counted(Replay(head, stream))
        unzipped = gzip.GzipFile(fileobj=compressed, mode="rb")
        closers.insert(0, unzipped)  # closed before the file under it
        stream = unzipped
        head = _read_head(path, stream, 4)
        if head[:2] == GZIP_MAGIC:
            # Not unwrapped again: each layer multiplies what a bomb can claim (1032:1 each).
            raise CaptureError(path, "gzip inside gzip; decompress the outer layer first")
    _check_magic(path, head)
    if head == PCAPNG_MAGIC:
        header = _pcapng_section_header(path, stream, head)
        return None, Source(stream, header, 0, closers, compressed)
    flavour = PCAP_MAGICS[head]
    header = head + _read_head(path, stream, PCAP_FILE_HEADER_BYTES - 4)
    if len(header) < PCAP_FILE_HEADER_BYTES:
        raise CaptureError(path, "truncated file header")
    return flavour, Source(stream, header, PCAP_FILE_HEADER_BYTES, closers, compressed)


def _pcap_link_type(flavour: _PcapFlavour, header: bytes) -> int:
    (raw,) = struct.unpack_from(flavour.order + "I", header, 20)
    return int(raw) & PCAP_LINK_TYPE_MASK


def _pcapng_section_header(path: str, stream: Readable, head: bytes) -> bytes:
    """The first Section Header Block, whole and checked (pcapng section 4.1)."""
    block = head + _read_head(path, stream, SHB_MIN_BYTES - 4)
    if len(block) < SHB_MIN_BYTES:
        raise CaptureError(path, "truncated file header")
    layout = _section_layout(block, 0)
    if layout is None:
        raise CaptureError(path, "bad pcapng byte-order magic")
    (length,) = layout.u32.unpack_from(block, 4)
    if not SHB_MIN_BYTES <= length <= MAX_RECORD_BYTES or length % 4:
        raise CaptureError(path, f"bad pcapng section header length {length}")
    block += _read_head(path, stream, length - len(block))
    if len(block) < length:
        raise CaptureError(path, "truncated file header")
    if layout.u32.unpack_from(block, length - 4)[0] != length:
        raise CaptureError(path, "bad pcapng section header (trailing length differs)")
    major, minor = layout.version.unpack_from(block, 12)
    if major != PCAPNG_MAJOR_VERSION:
        raise CaptureError(path, f"unsupported pcapng version {major}.{minor}")
    return block


# --- classic pcap -------------------------------------------------------------------------------


def _pcap_packets(src: Source, flavour: _PcapFlavour, stats: CaptureStats) -> Iterator[RawPacket]:
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
                _count(stats, BAD_RECORD)
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
        _end_of_data(src, stats)
    finally:
        _store_totals(stats, n, wire, lo, hi)
        src.close()


def _end_of_data(src: Source, stats: CaptureStats) -> None:
    """Name why the data ended: a read/gzip error, a record cut short, or nothing (clean end)."""
    if src.error is not None:
        _count(stats, src.error)
    elif src.leftover():
        _count(stats, TRUNCATED)


def _store_totals(stats: CaptureStats, n: int, wire: int, lo: float, hi: float) -> None:
    stats.packets = n
    stats.wire_bytes = wire
    if n:
        stats.first_ts, stats.last_ts = lo, hi


# --- pcapng -------------------------------------------------------------------------------------

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


def _section_layout(buf: bytes, pos: int) -> _Layout | None:
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


def _pcapng_packets(
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
        _store_totals(stats, n, wire, lo, hi)
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
        _end_of_data(src, stats)
        return _STOP
    buf, pos, layout = src.buf, src.pos, section.layout
    btype, blen = layout.head.unpack_from(buf, pos)
    if btype == SHB_TYPE:
        new_layout = _section_layout(buf, pos)
        if new_layout is None:
            _count(stats, BAD_BLOCK)
            return _STOP
        layout = new_layout
        blen = layout.u32.unpack_from(buf, pos + 4)[0]
    if blen < BLOCK_MIN_BYTES or blen % 4 or blen > MAX_RECORD_BYTES:
        _count(stats, BAD_BLOCK)
        return _STOP
    if not src.fill(blen):
        _end_of_data(src, stats)
        return _STOP
    buf, pos = src.buf, src.pos
    if layout.u32.unpack_from(buf, pos + blen - 4)[0] != blen:
        _count(stats, BAD_BLOCK)
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
        _count(stats, UNKNOWN_BLOCK)
    return None


def _section_start(
    buf: bytes, pos: int, blen: int, layout: _Layout, section: _Section, stats: CaptureStats
) -> RawPacket | None:
    """A Section Header Block (pcapng section 4.1): new byte order, no interfaces yet."""
    if blen < SHB_MIN_BYTES:
        _count(stats, BAD_BLOCK)
        return _STOP
    if layout.version.unpack_from(buf, pos + 12)[0] != PCAPNG_MAJOR_VERSION:
        # A new major version may lay blocks out differently: nothing after it can be trusted.
        _count(stats, UNSUPPORTED_VERSION)
        return _STOP
    section.layout = layout
    section.interfaces = []  # a new list: the reader notices the new section by its identity
    return None


def _interface(buf: bytes, pos: int, blen: int, section: _Section, stats: CaptureStats) -> None:
    """An Interface Description Block (pcapng section 4.2): appended even when malformed, so that
    the interface ids of the blocks after it keep their meaning."""
    if blen < IDB_MIN_BYTES:
        _count(stats, BAD_BLOCK)
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
            _count(stats, BAD_OPTION)
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
        _count(stats, BAD_BLOCK)
        return None
    if not section.interfaces:
        _count(stats, BAD_INTERFACE)
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
        _count(stats, BAD_BLOCK)
        return None
    iface, ts_high, ts_low, cap, orig = section.layout.epb.unpack_from(buf, pos + 8)
    return _timed_packet(buf, pos, blen, section, stats, (iface, ts_high, ts_low, cap, orig))


def _obsolete_packet(
    buf: bytes, pos: int, blen: int, section: _Section, stats: CaptureStats
) -> RawPacket | None:
    """A Packet Block (pcapng Appendix A), written by old tools: an EPB with a 16-bit id."""
    if blen < PB_MIN_BYTES:
        _count(stats, BAD_BLOCK)
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
        _count(stats, BAD_INTERFACE)
        return None
    if cap > blen - EPB_MIN_BYTES:
        _count(stats, BAD_BLOCK)
        return None
    if cap > orig:
        # The block's framing is intact, so the packet is kept: its wire length is at least
        # what was captured.
        _count(stats, BAD_RECORD)
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
        _count(stats, BAD_BLOCK)
        return
    secrets_type, length = layout.dsb.unpack_from(buf, pos + 8)
    if length > blen - DSB_MIN_BYTES:
        _count(stats, BAD_BLOCK)
        return
    if on_secrets is not None:
        anomaly = on_secrets(secrets_type, buf[pos + 16 : pos + 16 + length])
        if anomaly is not None:
            _count(stats, anomaly)


# --- several files as one -----------------------------------------------------------------------

_BY_TS: Final = itemgetter(0)


class CaptureSet:
    """The packets of one or more capture files, merged by timestamp into one stream.

    Every file is opened and its header checked up front, so that a bad path fails before any
    analysis starts.  The set is read once; ``stats`` holds one ``CaptureStats`` per path, filled
    while reading.
    """

    def __init__(
        self,
        paths: Sequence[str],
        *,
        stdin: BinaryIO | None = None,
        on_secrets: SecretsCallback | None = None,
    ) -> None:
        self._on_secrets = on_secrets
        self._files: list[_CaptureFile] = []
        self._read = False
        paths = list(paths)
        if paths.count(STDIN_PATH) > 1:
            raise CaptureError(STDIN_PATH, "standard input named more than once")
        try:
            for path in paths:
                self._files.append(_CaptureFile(path, stdin))
        except CaptureError:
            self.close()
            raise
        self.stats: list[CaptureStats] = [capture.stats for capture in self._files]

    def __iter__(self) -> Iterator[RawPacket]:
        if self._read:
            raise RuntimeError("a CaptureSet can be read only once")
        self._read = True
        streams = [capture.packets(self._on_secrets) for capture in self._files]
        if len(streams) == 1:
            return streams[0]  # no merge: the single-file path pays nothing per packet
        # heapq.merge is lazy (one pending packet per file) and stable: ties keep file order.
        return heapq.merge(*streams, key=_BY_TS)

    def close(self) -> None:
        """Close every file (reading to the end closes each one already)."""
        for capture in self._files:
            capture.close()

    def __enter__(self) -> CaptureSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
