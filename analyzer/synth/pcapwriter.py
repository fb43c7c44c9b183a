"""Classic pcap (Ethernet link type) with correct IPv4 and TCP checksums."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from analyzer.synth.tcp import SYN, WINDOW_FIELD, WINDOW_SHIFT, Segment

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
#: Large enough for a jumbo frame; frames are never cut.
SNAPLEN = 65535
ETHERTYPE_IPV4 = 0x0800
ETHERNET_HEADER_BYTES = 14
IPV4_HEADER_BYTES = 20
TCP_HEADER_BYTES = 20
IP_PROTO_TCP = 6
TTL = 64
IP_DONT_FRAGMENT = 0x4000
#: Locally administered unicast MAC addresses (bit 1 of the first octet set).
ORIG_MAC = bytes.fromhex("020000000001")
RESP_MAC = bytes.fromhex("020000000002")
#: The capture's epoch: a fixed instant, so output never depends on the clock.
EPOCH_S = 1_767_225_600  # 2026-01-01T00:00:00Z

_GLOBAL_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoints:
    """Addresses of one connection (orig first)."""

    orig_ip: bytes
    resp_ip: bytes
    orig_port: int
    resp_port: int
    #: initial sequence numbers of orig and resp
    isn: tuple[int, int]


def syn_options(mss: int) -> bytes:
    """MSS (RFC 9293 section 3.2), NOP, window scale (RFC 7323 section 2)."""
    return struct.pack("!BBH", 2, 4, mss) + b"\x01" + struct.pack("!BBB", 3, 3, WINDOW_SHIFT)


def tcp_header_bytes(segment: Segment) -> int:
    """TCP header length of a segment as this writer builds it."""
    return TCP_HEADER_BYTES + (8 if segment.flags & SYN else 0)


def frame(segment: Segment, ends: Endpoints, ip_id: int, mss: int) -> bytes:
    """One Ethernet frame carrying ``segment``."""
    forward = segment.direction == 0
    src_ip, dst_ip = (ends.orig_ip, ends.resp_ip) if forward else (ends.resp_ip, ends.orig_ip)
    src_port, dst_port = (
        (ends.orig_port, ends.resp_port) if forward else (ends.resp_port, ends.orig_port)
    )
    options = syn_options(mss) if segment.flags & SYN else b""
    seq = (ends.isn[segment.direction] + segment.seq) & 0xFFFFFFFF
    ack = (
        (ends.isn[1 - segment.direction] + segment.ack) & 0xFFFFFFFF if segment.flags & 0x10 else 0
    )
    offset = (TCP_HEADER_BYTES + len(options)) // 4 << 4
    tcp = _TCP.pack(src_port, dst_port, seq, ack, offset, segment.flags, WINDOW_FIELD, 0, 0)
    tcp += options + segment.payload
    pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, IP_PROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    total = IPV4_HEADER_BYTES + len(tcp)
    ip = _IPV4.pack(
        0x45, 0, total, ip_id & 0xFFFF, IP_DONT_FRAGMENT, TTL, IP_PROTO_TCP, 0, src_ip, dst_ip
    )
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    macs = RESP_MAC + ORIG_MAC if forward else ORIG_MAC + RESP_MAC
    return macs + struct.pack("!H", ETHERTYPE_IPV4) + ip + tcp


def _checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def unix_ts(ts_us: int) -> float:
    """A packet's time as a pcap reader computes it (seconds + fraction / units)."""
    seconds, micros = divmod(ts_us, 1_000_000)
    return (EPOCH_S + seconds) + micros / 1_000_000


def pcap_bytes(packets: list[tuple[int, bytes]]) -> bytes:
    """A pcap file of (microseconds since ``EPOCH_S``, frame) records."""
    out = [_GLOBAL_HEADER.pack(PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)]
    for ts_us, data in packets:
        seconds, micros = divmod(ts_us, 1_000_000)
        out.append(_RECORD_HEADER.pack(EPOCH_S + seconds, micros, len(data), len(data)))
        out.append(data)
    return b"".join(out)
