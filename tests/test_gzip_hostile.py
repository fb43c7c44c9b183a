"""Compressed input is bounded (issue 15): bombs, gzip of gzip, trailing garbage, truncation.

Each ends in a one-line error (exit 2) or a result with a named anomaly that keeps the packets
before the damage, in time and memory proportional to the compressed file.
"""

from __future__ import annotations

import gzip
import struct
import tracemalloc
import zlib
from pathlib import Path

import pytest
from builder import Conversation
from test_cli import assert_usage_error, wireprobe

from analyzer.capture.reader import CaptureSet
from analyzer.capture.sources import GZIP_SLACK_BYTES, MAX_GZIP_RATIO

PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


def capture_bytes(tmp_path: Path, exchanges: int = 40) -> bytes:
    conv = Conversation()
    conv.handshake()
    for _ in range(exchanges):
        conv.orig(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        conv.resp(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    conv.close()
    return conv.write(tmp_path / "plain.pcap").read_bytes()


def read(path: Path) -> tuple[int, dict[str, int]]:
    captures = CaptureSet([str(path)])
    packets = sum(1 for _ in captures)
    return packets, captures.stats[0].anomalies


def test_a_bomb_stops_at_the_ratio_in_bounded_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.pcap.gz"
    record = struct.pack("<IIII", 1, 0, 65535, 65535) + b"\0" * 65535
    with gzip.open(bomb, "wb", compresslevel=9) as out:
        out.write(PCAP_HEADER)
        for _ in range(4096):  # 256 MiB of zero-filled frames, 260 KiB compressed
            out.write(record)
    tracemalloc.start()
    try:
        captures = CaptureSet([str(bomb)])
        inflated = sum(16 + len(packet[3]) for packet in captures)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert captures.stats[0].anomalies == {"capture.gzip_bomb": 1}
    limit = MAX_GZIP_RATIO * bomb.stat().st_size + GZIP_SLACK_BYTES
    assert inflated <= limit < 256 << 20
    assert peak < 8 << 20


def test_an_ordinary_compressed_capture_is_read_whole(tmp_path: Path) -> None:
    plain = capture_bytes(tmp_path)
    path = tmp_path / "ok.pcap.gz"
    path.write_bytes(gzip.compress(plain, 9))
    assert read(path) == (read(tmp_path / "plain.pcap")[0], {})


def test_gzip_of_gzip_is_one_line_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "twice.pcap.gz"
    path.write_bytes(gzip.compress(gzip.compress(capture_bytes(tmp_path))))
    assert_usage_error(wireprobe("analyze", str(path)), "gzip inside gzip")


@pytest.mark.parametrize(
    ("tail", "anomaly"),
    [
        (b"garbage after the member", "capture.gzip_trailing_garbage"),
        (b"\x1f\x8b\x08\x00" + b"\xff" * 40, "capture.bad_gzip"),  # a second member, corrupt
    ],
)
def test_bytes_after_the_member_keep_every_packet(
    tmp_path: Path, tail: bytes, anomaly: str
) -> None:
    plain = capture_bytes(tmp_path)
    path = tmp_path / "tail.pcap.gz"
    path.write_bytes(gzip.compress(plain) + tail)
    packets, anomalies = read(path)
    assert packets == read(tmp_path / "plain.pcap")[0]
    assert anomalies == {anomaly: 1}


def test_zero_padding_after_the_member_is_no_anomaly(tmp_path: Path) -> None:
    path = tmp_path / "padded.pcap.gz"
    path.write_bytes(gzip.compress(capture_bytes(tmp_path)) + b"\0" * 512)  # tape-style padding
    assert read(path)[1] == {}


def test_a_truncated_gzip_keeps_the_packets_before_the_cut(tmp_path: Path) -> None:
    plain = capture_bytes(tmp_path, exchanges=400)
    whole = read(tmp_path / "plain.pcap")[0]
    packed = gzip.compress(plain)
    for cut in (len(packed) - 8, len(packed) * 3 // 4, len(packed) // 2):
        path = tmp_path / f"cut{cut}.pcap.gz"
        path.write_bytes(packed[:cut])
        packets, anomalies = read(path)
        assert anomalies == {"capture.truncated": 1}
        # read1 loses at most one decompression step's worth of packets.
        assert whole * cut // len(packed) - 200 <= packets <= whole


def test_corrupt_deflate_data_after_a_good_start_is_an_anomaly(tmp_path: Path) -> None:
    plain = capture_bytes(tmp_path, exchanges=400)
    packed = bytearray(gzip.compress(plain))
    packed[len(packed) // 2 : len(packed) // 2 + 64] = b"\xff" * 64
    path = tmp_path / "flipped.pcap.gz"
    path.write_bytes(bytes(packed))
    packets, anomalies = read(path)
    assert set(anomalies) <= {"capture.bad_gzip", "capture.bad_record", "capture.truncated"}
    assert anomalies
    assert packets > 0


def test_a_raw_deflate_stream_is_not_a_capture(tmp_path: Path) -> None:
    path = tmp_path / "raw.deflate"
    path.write_bytes(zlib.compress(capture_bytes(tmp_path)))
    assert_usage_error(wireprobe("analyze", str(path)), "not a pcap or pcapng file")
