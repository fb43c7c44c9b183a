"""Capture reading: literal pcap/pcapng bytes built here, then the public captures.

Each test builds a file the way a capture tool would (the helpers below pack headers with
struct), hands it to ``CaptureSet`` and checks what comes out: packets, stats, anomalies, or the
one-line ``CaptureError`` a user would see.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import subprocess
import sys
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.capture.reader import (
    BAD_BLOCK,
    BAD_GZIP,
    BAD_INTERFACE,
    BAD_OPTION,
    BAD_RECORD,
    CHUNK_BYTES,
    SECRETS_TLS_KEY_LOG,
    TRUNCATED,
    UNKNOWN_BLOCK,
    UNSUPPORTED_VERSION,
    CaptureSet,
    CaptureStats,
    RawPacket,
)
from analyzer.errors import CaptureError

PUBLIC = Path(__file__).resolve().parents[1] / "captures" / "public"

ETHERNET = 1
RAW_IP = 101
LINUX_SLL = 113
NULL = 0

# --- builders: the bytes a capture tool writes ----------------------------------------------

Record = tuple[int, int, bytes]  # ts seconds, ts fraction (us or ns), captured data


def pcap(
    records: Iterable[Record],
    *,
    order: str = "<",
    ns: bool = False,
    link_type: int = ETHERNET,
    orig_extra: int = 0,
) -> bytes:
    """A classic pcap file; each record's original length is its data length + orig_extra."""
    magic = 0xA1B23C4D if ns else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, link_type)]
    for sec, frac, data in records:
        out.append(struct.pack(order + "IIII", sec, frac, len(data), len(data) + orig_extra))
        out.append(data)
    return b"".join(out)


def record_header(order: str, sec: int, frac: int, incl: int, orig: int) -> bytes:
    return struct.pack(order + "IIII", sec, frac, incl, orig)


def block(order: str, btype: int, body: bytes) -> bytes:
    """A pcapng block: type, total length, body padded to 32 bits, total length again."""
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(order + "II", btype, length) + body + struct.pack(order + "I", length)


def shb(order: str = "<", major: int = 1) -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, major, 0, -1))


def option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def idb(
    order: str = "<",
    link_type: int = ETHERNET,
    *,
    tsresol: int | None = None,
    tsoffset: int | None = None,
    snaplen: int = 0,
) -> bytes:
    options = b""
    if tsresol is not None:
        options += option(order, 9, bytes([tsresol]))
    if tsoffset is not None:
        options += option(order, 14, struct.pack(order + "q", tsoffset))
    if options:
        options += option(order, 0, b"")
    return block(order, 1, struct.pack(order + "HHI", link_type, 0, snaplen) + options)


def epb(order: str, iface: int, ticks: int, data: bytes, orig: int | None = None) -> bytes:
    fields = struct.pack(
        order + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), orig or len(data)
    )
    return block(order, 6, fields + data)


def spb(order: str, data: bytes, orig: int | None = None) -> bytes:
    return block(order, 3, struct.pack(order + "I", orig or len(data)) + data)


def pb(order: str, iface: int, ticks: int, data: bytes) -> bytes:
    fields = struct.pack(
        order + "HHIIII", iface, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)
    )
    return block(order, 2, fields + data)


def dsb(order: str, secrets_type: int, data: bytes) -> bytes:
    return block(order, 0x0A, struct.pack(order + "II", secrets_type, len(data)) + data)


def write(tmp_path: Path, content: bytes, name: str = "c.pcap") -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


def read(paths: list[str], **kwargs: object) -> tuple[list[RawPacket], list[CaptureStats]]:
    captures = CaptureSet(paths, **kwargs)  # type: ignore[arg-type]
    return list(captures), captures.stats


def read_bytes(content: bytes) -> tuple[list[RawPacket], CaptureStats]:
    packets, stats = read(["-"], stdin=io.BytesIO(content))
    return packets, stats[0]


def capture_error(content: bytes) -> str:
    with pytest.raises(CaptureError) as caught:
        CaptureSet(["-"], stdin=io.BytesIO(content))
    return caught.value.reason


# --- classic pcap ---------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize(("ns", "frac", "ts"), [(False, 250_000, 10.25), (True, 250_000, 10.00025)])
def test_pcap_either_byte_order_and_resolution(order: str, ns: bool, frac: int, ts: float) -> None:
    content = pcap([(10, frac, b"abc"), (11, 0, b"defg")], order=order, ns=ns, orig_extra=100)
    packets, stats = read_bytes(content)
    assert packets == [(ts, ETHERNET, 103, b"abc"), (11.0, ETHERNET, 104, b"defg")]
    assert (stats.packets, stats.wire_bytes, stats.link_types) == (2, 207, [ETHERNET])
    assert (stats.first_ts, stats.last_ts, stats.anomalies) == (ts, 11.0, {})


def test_pcap_link_type_drops_fcs_bits() -> None:
    # Upper bits: FCS length 4 and the "FCS present" flag (draft-ietf-opsawg-pcap).
    packets, stats = read_bytes(pcap([(1, 0, b"x")], link_type=0x4400_0000 | RAW_IP))
    assert packets[0][1] == RAW_IP
    assert stats.link_types == [RAW_IP]


def test_pcap_kuznetzov_modified_format_has_longer_record_headers() -> None:
    header = struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 65535, ETHERNET)
    extra = struct.pack("<IHBB", 3, 0x0800, 0, 0)  # ifindex, protocol, pkt_type, padding
    content = header + record_header("<", 5, 0, 2, 60) + extra + b"hi"
    packets, _ = read_bytes(content)
    assert packets == [(5.0, ETHERNET, 60, b"hi")]


def test_pcap_record_cut_by_end_of_file_keeps_what_came_before() -> None:
    content = pcap([(1, 0, b"first"), (2, 0, b"second")])[:-3]
    packets, stats = read_bytes(content)
    assert [p[3] for p in packets] == [b"first"]
    assert stats.anomalies == {TRUNCATED: 1}


def test_pcap_record_header_cut_by_end_of_file() -> None:
    content = pcap([(1, 0, b"first")]) + record_header("<", 2, 0, 5, 5)[:7]
    packets, stats = read_bytes(content)
    assert len(packets) == 1
    assert stats.anomalies == {TRUNCATED: 1}


@pytest.mark.parametrize(
    ("incl", "orig"),
    [(10, 9), (0x7FFF_FFFF, 0x7FFF_FFFF), (0xFFFF_FFFF, 0xFFFF_FFFF)],
    ids=["longer-than-wire", "2GiB", "4GiB"],
)
def test_pcap_bad_record_length_stops_the_file(incl: int, orig: int) -> None:
    content = pcap([(1, 0, b"ok")]) + record_header("<", 2, 0, incl, orig) + b"z" * 64
    packets, stats = read_bytes(content)
    assert [p[3] for p in packets] == [b"ok"]
    assert stats.anomalies == {BAD_RECORD: 1}


def test_pcap_record_larger_than_one_read(tmp_path: Path) -> None:
    big = bytes(range(256)) * (CHUNK_BYTES // 256 + 7)
    path = write(tmp_path, pcap([(1, 0, b"a"), (2, 0, big), (3, 0, b"c")]))
    packets, stats = read([path])
    assert [p[3] for p in packets] == [b"a", big, b"c"]
    assert stats[0].anomalies == {}


def test_pcap_many_records_across_read_boundaries(tmp_path: Path) -> None:
    # Odd sizes make records straddle every 1 MiB read boundary at a different offset.
    records = [(i, i % 1000, bytes([i % 256]) * (i % 1500 + 1)) for i in range(3000)]
    path = write(tmp_path, pcap(records))
    packets, stats = read([path])
    assert [p[3] for p in packets] == [r[2] for r in records]
    assert stats[0].packets == 3000
    assert stats[0].wire_bytes == sum(len(r[2]) for r in records)


def test_short_reads_from_a_pipe_are_reassembled() -> None:
    class Trickle:
        """A pipe that returns at most 3 bytes per read."""

        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def read(self, size: int = -1) -> bytes:
            return self._data.read(min(size, 3) if size >= 0 else 3)

    content = pcap([(1, 0, b"hello"), (2, 0, b"world")])
    captures = CaptureSet(["-"], stdin=cast(BinaryIO, Trickle(content)))
    assert [p[3] for p in captures] == [b"hello", b"world"]
    assert captures.stats[0].anomalies == {}


# --- pcapng ---------------------------------------------------------------------------------


def test_pcapng_two_sections_with_different_byte_orders() -> None:
    content = (
        shb("<")
        + idb("<", ETHERNET)
        + epb("<", 0, 1_000_000, b"little")
        + shb(">")
        + idb(">", RAW_IP)
        + epb(">", 0, 2_000_000, b"big")
    )
    packets, stats = read_bytes(content)
    assert packets == [(1.0, ETHERNET, 6, b"little"), (2.0, RAW_IP, 3, b"big")]
    assert stats.link_types == [ETHERNET, RAW_IP]
    assert stats.anomalies == {}


def test_pcapng_new_section_forgets_interfaces_of_the_old_one() -> None:
    content = (
        shb()
        + idb("<", ETHERNET)
        + idb("<", RAW_IP)
        + shb(">")
        + idb(">", LINUX_SLL)
        + epb(">", 1, 5, b"names interface 1 of the first section")
        + epb(">", 0, 5, b"ok")
    )
    packets, stats = read_bytes(content)
    assert [(p[1], p[3]) for p in packets] == [(LINUX_SLL, b"ok")]
    assert stats.anomalies == {BAD_INTERFACE: 1}


def test_pcapng_interfaces_with_their_own_link_type_and_clock() -> None:
    content = (
        shb()
        + idb("<", ETHERNET, tsresol=9)  # nanoseconds
        + idb("<", LINUX_SLL, tsresol=0x80 | 10, tsoffset=1000)  # 2^-10 s, +1000 s
        + epb("<", 0, 1_500_000_000, b"ns")
        + epb("<", 1, 512, b"binary")
    )
    packets, stats = read_bytes(content)
    assert packets == [(1.5, ETHERNET, 2, b"ns"), (1000.5, LINUX_SLL, 6, b"binary")]
    assert stats.link_types == [ETHERNET, LINUX_SLL]
    assert (stats.first_ts, stats.last_ts) == (1.5, 1000.5)


def test_pcapng_64_bit_timestamps_use_the_high_word() -> None:
    ticks = 1_700_000_000_123_456  # microseconds since 1970: above 2**32
    packets, _ = read_bytes(shb() + idb() + epb("<", 0, ticks, b"x"))
    assert packets[0][0] == pytest.approx(1_700_000_000.123456, abs=1e-6)


def test_pcapng_secrets_arrive_before_the_packets_after_them() -> None:
    seen: list[object] = []
    content = (
        shb()
        + idb("<", ETHERNET)
        + epb("<", 0, 1_000_000, b"before")
        + dsb("<", SECRETS_TLS_KEY_LOG, b"CLIENT_RANDOM aa bb\n")
        + dsb("<", 0x57474B4C, b"wireguard")  # other types are passed on too
        + spb("<", b"simple")
        + epb("<", 0, 3_000_000, b"after")
    )
    captures = CaptureSet(
        ["-"], stdin=io.BytesIO(content), on_secrets=lambda kind, data: seen.append((kind, data))
    )
    for packet in captures:
        seen.append(packet[3])
    assert seen == [
        b"before",
        (SECRETS_TLS_KEY_LOG, b"CLIENT_RANDOM aa bb\n"),
        (0x57474B4C, b"wireguard"),
        b"simple",
        b"after",
    ]


def test_simple_packet_takes_interface_0_and_the_last_timestamp() -> None:
    content = (
        shb()
        + idb("<", RAW_IP, snaplen=4)
        + spb("<", b"abcdefgh"[:4], orig=8)  # cut by the snaplen
        + epb("<", 0, 7_000_000, b"t")
        + spb("<", b"wxyz")
        + shb()
        + idb("<", ETHERNET)
        + spb("<", b"new section")
    )
    packets, stats = read_bytes(content)
    assert packets == [
        (0.0, RAW_IP, 8, b"abcd"),  # no timestamp seen yet in the section
        (7.0, RAW_IP, 1, b"t"),
        (7.0, RAW_IP, 4, b"wxyz"),
        (0.0, ETHERNET, 11, b"new section"),
    ]
    assert stats.wire_bytes == 24


def test_simple_packet_before_any_interface_is_counted_not_delivered() -> None:
    packets, stats = read_bytes(shb() + spb("<", b"orphan") + idb() + spb("<", b"ok"))
    assert [p[3] for p in packets] == [b"ok"]
    assert stats.anomalies == {BAD_INTERFACE: 1}


def test_obsolete_packet_block() -> None:
    packets, _ = read_bytes(shb(">") + idb(">", RAW_IP) + pb(">", 0, 2_500_000, b"old"))
    assert packets == [(2.5, RAW_IP, 3, b"old")]


def test_known_blocks_are_skipped_silently_unknown_ones_counted() -> None:
    content = (
        shb()
        + block("<", 4, b"\0" * 4)  # Name Resolution Block
        + idb()
        + block("<", 5, b"\0" * 12)  # Interface Statistics Block
        + block("<", 0x0BAD, b"\0" * 8)  # Custom Block
        + block("<", 0x1234, b"who knows")
        + block("<", 0x1235, b"")
        + epb("<", 0, 1, b"still read")
    )
    packets, stats = read_bytes(content)
    assert [p[3] for p in packets] == [b"still read"]
    assert stats.anomalies == {UNKNOWN_BLOCK: 2}


def test_captured_longer_than_original_is_kept_and_counted() -> None:
    packets, stats = read_bytes(shb() + idb() + epb("<", 0, 1, b"12345", orig=3))
    assert packets == [(1e-6, ETHERNET, 5, b"12345")]
    assert stats.anomalies == {BAD_RECORD: 1}


def test_epb_whose_captured_length_overruns_its_block_is_skipped() -> None:
    bad = bytearray(epb("<", 0, 1, b"abcd"))
    struct.pack_into("<I", bad, 20, 400)  # captured length beyond the block
    packets, stats = read_bytes(shb() + idb() + bytes(bad) + epb("<", 0, 2, b"next"))
    assert [p[3] for p in packets] == [b"next"]
    assert stats.anomalies == {BAD_BLOCK: 1}


def test_interface_option_overrunning_its_block_keeps_the_defaults() -> None:
    body = struct.pack("<HHI", ETHERNET, 0, 0) + struct.pack("<HH", 9, 200) + b"\x09\0\0\0"
    packets, stats = read_bytes(shb() + block("<", 1, body) + epb("<", 0, 2_000_000, b"x"))
    assert packets[0][0] == 2.0  # microseconds: the default resolution
    assert stats.anomalies == {BAD_OPTION: 1}


@pytest.mark.parametrize(
    ("length", "anomaly"),
    [
        (0xFFFF_FFF0, BAD_BLOCK),  # 4 GiB claimed: refused before anything is allocated
        (8, BAD_BLOCK),  # below the 12-byte minimum
        (30, BAD_BLOCK),  # not a multiple of 4
        (4096, TRUNCATED),  # plausible, but the file ends first
    ],
)
def test_bad_block_length_stops_the_file(length: int, anomaly: str) -> None:
    bad = struct.pack("<II", 6, length) + b"\0" * 40
    packets, stats = read_bytes(shb() + idb() + epb("<", 0, 1, b"ok") + bad)
    assert [p[3] for p in packets] == [b"ok"]
    assert stats.anomalies == {anomaly: 1}


def test_trailing_length_must_equal_the_leading_one() -> None:
    bad = bytearray(epb("<", 0, 1, b"abcd"))
    struct.pack_into("<I", bad, len(bad) - 4, len(bad) + 4)
    packets, stats = read_bytes(shb() + idb() + epb("<", 0, 1, b"ok") + bytes(bad))
    assert [p[3] for p in packets] == [b"ok"]
    assert stats.anomalies == {BAD_BLOCK: 1}


def test_pcapng_block_cut_by_end_of_file() -> None:
    content = shb() + idb() + epb("<", 0, 1, b"ok") + epb("<", 0, 2, b"cut short")[:-5]
    packets, stats = read_bytes(content)
    assert len(packets) == 1
    assert stats.anomalies == {TRUNCATED: 1}


def test_later_section_with_unknown_major_version_stops_the_file() -> None:
    content = shb() + idb() + epb("<", 0, 1, b"ok") + shb(major=2) + idb() + epb("<", 0, 1, b"?")
    packets, stats = read_bytes(content)
    assert [p[3] for p in packets] == [b"ok"]
    assert stats.anomalies == {UNSUPPORTED_VERSION: 1}


def test_later_section_with_bad_byte_order_magic_stops_the_file() -> None:
    bad = bytearray(shb())
    struct.pack_into("<I", bad, 8, 0xDEADBEEF)
    packets, stats = read_bytes(shb() + idb() + epb("<", 0, 1, b"ok") + bytes(bad))
    assert len(packets) == 1
    assert stats.anomalies == {BAD_BLOCK: 1}


# --- gzip and standard input ----------------------------------------------------------------


def test_gzip_file(tmp_path: Path) -> None:
    content = shb() + idb("<", RAW_IP) + epb("<", 0, 1_000_000, b"zipped")
    path = write(tmp_path, gzip.compress(content), "c.pcapng.gz")
    packets, stats = read([path])
    assert packets == [(1.0, RAW_IP, 6, b"zipped")]
    assert stats[0].anomalies == {}


def test_gzip_on_standard_input_which_cannot_seek() -> None:
    packets, stats = read_bytes(gzip.compress(pcap([(3, 0, b"piped")], order=">")))
    assert packets == [(3.0, ETHERNET, 5, b"piped")]
    assert stats.path == "-"


def test_gzip_cut_short_keeps_what_was_decompressed(tmp_path: Path) -> None:
    records = [(i, 0, bytes([i % 256]) * 200) for i in range(20_000)]
    zipped = gzip.compress(pcap(records))
    packets, stats = read([write(tmp_path, zipped[: len(zipped) // 2], "c.pcap.gz")])
    assert 0 < len(packets) < 20_000
    assert stats[0].anomalies == {TRUNCATED: 1}


def test_gzip_corrupt_after_a_good_start(tmp_path: Path) -> None:
    zipped = bytearray(gzip.compress(pcap([(i, 0, bytes([i % 7]) * 300) for i in range(20_000)])))
    zipped[len(zipped) // 2 : len(zipped) // 2 + 64] = b"\xff" * 64
    packets, stats = read([write(tmp_path, bytes(zipped), "c.pcap.gz")])
    assert len(packets) < 20_000
    assert list(stats[0].anomalies) in ([BAD_GZIP], [TRUNCATED])


def test_standard_input_plain() -> None:
    packets, stats = read_bytes(pcap([(1, 0, b"a")]))
    assert [p[3] for p in packets] == [b"a"]
    assert stats.path == "-"


def test_standard_input_named_twice() -> None:
    with pytest.raises(CaptureError, match="standard input named more than once"):
        CaptureSet(["-", "-"], stdin=io.BytesIO(pcap([])))


# --- several files as one -------------------------------------------------------------------


def test_files_are_merged_by_timestamp_ties_keep_file_order(tmp_path: Path) -> None:
    first = write(tmp_path, pcap([(1, 0, b"a1"), (3, 0, b"a3"), (5, 0, b"a5")]), "a.pcap")
    second = write(
        tmp_path, shb() + idb() + epb("<", 0, 2_000_000, b"b2") + epb("<", 0, 3_000_000, b"b3")
    )
    third = write(tmp_path, gzip.compress(pcap([(0, 0, b"c0"), (3, 0, b"c3")])), "c.gz")
    packets, stats = read([first, second, third])
    assert [p[3] for p in packets] == [b"c0", b"a1", b"b2", b"a3", b"b3", b"c3", b"a5"]
    assert [s.packets for s in stats] == [3, 2, 2]
    assert [s.path for s in stats] == [first, second, third]


def test_file_and_standard_input_together(tmp_path: Path) -> None:
    path = write(tmp_path, pcap([(2, 0, b"file")]))
    packets, _ = read([path, "-"], stdin=io.BytesIO(pcap([(1, 0, b"stdin")])))
    assert [p[3] for p in packets] == [b"stdin", b"file"]


def test_a_capture_set_is_read_once() -> None:
    captures = CaptureSet(["-"], stdin=io.BytesIO(pcap([(1, 0, b"a")])))
    assert len(list(captures)) == 1
    with pytest.raises(RuntimeError):
        iter(captures)


def test_stats_are_complete_when_reading_stops_early(tmp_path: Path) -> None:
    captures = CaptureSet([write(tmp_path, pcap([(i, 0, b"x") for i in range(10)]))])
    packets = iter(captures)
    next(packets)
    next(packets)
    packets.close()  # type: ignore[attr-defined]  # the reader is a generator
    assert (captures.stats[0].packets, captures.stats[0].last_ts) == (2, 1.0)


# --- files that cannot be read at all -------------------------------------------------------


def test_missing_file() -> None:
    with pytest.raises(CaptureError) as caught:
        CaptureSet(["/nonexistent/x.pcap"])
    assert (caught.value.path, caught.value.reason) == ("/nonexistent/x.pcap", "no such file")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="is a directory"):
        CaptureSet([str(tmp_path)])


def test_a_bad_second_file_fails_the_whole_set_up_front(tmp_path: Path) -> None:
    good = write(tmp_path, pcap([(1, 0, b"a")]), "good.pcap")
    bad = write(tmp_path, b"", "bad.pcap")
    with pytest.raises(CaptureError) as caught:
        CaptureSet([good, bad])
    assert (caught.value.path, caught.value.reason) == (bad, "empty file")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (gzip.compress(b""), "empty file"),
        (b"\x7fELF\x02\x01\x01" + b"\0" * 40, "not a pcap or pcapng file (magic 0x7f454c46)"),
        (b"GET / HTTP/1.1\r\n", "not a pcap or pcapng file (magic 0x47455420)"),
        (b"\xd4\xc3", "truncated file header"),
        (b"ab", "not a pcap or pcapng file (magic 0x6162)"),
        (pcap([])[:10], "truncated file header"),
        (shb()[:20], "truncated file header"),
        (gzip.compress(pcap([]))[:12], "truncated gzip data"),
    ],
    ids=["empty", "empty-gz", "elf", "text", "magic-cut", "two-bytes", "pcap-hdr", "shb", "gz-cut"],
)
def test_file_level_problems_are_one_line_reasons(content: bytes, reason: str) -> None:
    assert capture_error(content) == reason


def test_bad_section_headers_are_file_level_problems() -> None:
    bad_bom = bytearray(shb())
    struct.pack_into("<I", bad_bom, 8, 0x11223344)
    assert capture_error(bytes(bad_bom)) == "bad pcapng byte-order magic"
    huge = bytearray(shb())
    struct.pack_into("<I", huge, 4, 0xFFFF_FFFC)
    assert capture_error(bytes(huge)).startswith("bad pcapng section header length")
    assert capture_error(shb(major=2)) == "unsupported pcapng version 2.0"
    odd_trailer = bytearray(shb())
    struct.pack_into("<I", odd_trailer, len(odd_trailer) - 4, 32)
    assert "trailing length" in capture_error(bytes(odd_trailer))


@pytest.mark.parametrize(
    "content",
    [
        b"\x1f\x8b\x09\x00" + b"\0" * 6 + b"\xff" * 40,  # compression method 9 is not deflate
        b"\x1f\x8b\x08\x00" + b"\0" * 6 + b"\xff" * 40,  # deflate block type 3 is reserved
    ],
    ids=["method", "deflate"],
)
def test_corrupt_gzip_start_is_a_file_level_problem(content: bytes) -> None:
    assert capture_error(content).startswith("corrupt gzip data (")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=st.sampled_from([b"", shb(), shb(">"), pcap([]), pcap([], order=">", ns=True)]),
    noise=st.binary(max_size=400),
)
def test_random_bytes_never_crash(prefix: bytes, noise: bytes) -> None:
    """Garbage after any header: a CaptureError up front, or packets and anomalies."""
    try:
        captures = CaptureSet(["-"], stdin=io.BytesIO(prefix + noise))
    except CaptureError as err:
        assert err.reason and "\n" not in err.reason
        return
    packets = list(captures)
    stats = captures.stats[0]
    assert stats.packets == len(packets)
    assert stats.wire_bytes == sum(p[2] for p in packets)
    assert all(len(p[3]) <= p[2] for p in packets)


def test_memory_does_not_grow_with_file_length(tmp_path: Path) -> None:
    records = [(i, 0, b"\x55" * 300) for i in range(40_000)]  # about 12.6 MB
    path = write(tmp_path, pcap(records))
    tracemalloc.start()
    try:
        count = sum(1 for _ in CaptureSet([path]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 40_000
    assert peak < 4 * CHUNK_BYTES  # a read chunk and its splice, not the file


# --- the public captures ----------------------------------------------------------------------

FIGURES = json.loads((PUBLIC / "tshark-figures.json").read_text())["entries"]
PACKETS = {entry["file"]: entry["without_keys"]["packets"] for entry in FIGURES}


def test_every_public_capture_is_listed_with_a_figure() -> None:
    on_disk = {
        str(p.relative_to(PUBLIC))
        for pattern in ("*/*.pcap", "*/*.pcapng", "*/*.gz")
        for p in PUBLIC.glob(pattern)
    }
    assert on_disk == set(PACKETS)


@pytest.mark.parametrize("name", sorted(PACKETS))
def test_public_capture_packet_count_matches_tshark(name: str) -> None:
    packets, stats = read([str(PUBLIC / name)])
    assert len(packets) == stats[0].packets == PACKETS[name]
    assert stats[0].anomalies == {}
    assert all(len(p[3]) <= p[2] for p in packets)


def test_public_capture_details() -> None:
    """Figures checked by hand against tshark -e frame.len -e frame.time_epoch."""
    _, stats = read([str(PUBLIC / "wireshark/grpc_stream_reassembly_sample.pcapng.gz")])
    assert stats[0].link_types == [ETHERNET, LINUX_SLL]
    assert stats[0].wire_bytes == 341678
    _, stats = read([str(PUBLIC / "wireshark/tls12-dsb.pcapng")])
    assert (stats[0].link_types, stats[0].wire_bytes) == ([228], 9190)  # 228: raw IPv4
    _, stats = read([str(PUBLIC / "arkime/http2-nghttp2.pcap")])
    assert stats[0].link_types == [NULL]
    _, stats = read([str(PUBLIC / "wireshark/http2-brotli.pcapng")])
    assert stats[0].first_ts == pytest.approx(1554560882.056576697, abs=1e-6)
    assert stats[0].last_ts == pytest.approx(1554560882.079581575, abs=1e-6)


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("wireshark/tls12-dsb.pcapng", ["tls12-dsb-1.keys", "tls12-dsb-2.keys"]),
        ("wireshark/http2-brotli.pcapng", ["http2-brotli.dsb-extracted.keys"]),
        (
            "wireshark/http2_follow_multistream.pcapng",
            ["http2_follow_multistream.dsb-extracted.keys"],
        ),
        (
            "wireshark/challenge01_ooo_stream.pcapng.gz",
            ["challenge01_ooo_stream.dsb-extracted.keys"],
        ),
    ],
)
def test_public_decryption_secrets_equal_the_key_files(name: str, keys: list[str]) -> None:
    secrets: list[tuple[int, bytes]] = []
    captures = CaptureSet(
        [str(PUBLIC / name)], on_secrets=lambda kind, data: secrets.append((kind, data))
    )
    packets = iter(captures)
    next(packets)
    assert secrets, "the first secrets come before the first packet"
    assert sum(1 for _ in packets) == PACKETS[name] - 1
    assert {kind for kind, _ in secrets} == {SECRETS_TLS_KEY_LOG}
    expected = b"".join((PUBLIC / "wireshark" / key).read_bytes() for key in keys)
    assert b"".join(data for _, data in secrets) == expected


def test_real_standard_input_pipe() -> None:
    """``-`` with no stdin given reads the process's own standard input (here a pipe)."""
    script = (
        "from analyzer.capture.reader import CaptureSet\n"
        "c = CaptureSet(['-'])\n"
        "print(sum(1 for _ in c), c.stats[0].wire_bytes)\n"
    )
    content = (PUBLIC / "zeek/1000-requests-one-dropped-response.pcap.gz").read_bytes()
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=content,
        capture_output=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.stdout.split() == [b"4102", b"1349545"]
