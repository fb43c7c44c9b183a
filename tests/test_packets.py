"""Header decoding (analyzer/packets.py) on literal frames, cuts, noise and real captures.

Frames are built here with ``struct`` from the RFC layouts, so each test shows the bytes it feeds;
scapy builds a few of the same frames independently as a second opinion, and tshark checks every
frame of the public captures.
"""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.packets import (
    ACK,
    FIN,
    IP_BAD_HEADER,
    IP_BAD_LENGTH,
    IP_FRAGMENT,
    LINK_UNSUPPORTED,
    NON_TCP,
    PSH,
    REASONS,
    SEG_ANOMALY,
    SEG_DPORT,
    SEG_FLAGS,
    SEG_IP_BYTES,
    SEG_LINK_BYTES,
    SEG_PAYLOAD,
    SEG_PAYLOAD_LEN,
    SEG_SPORT,
    SEG_TCP_BYTES,
    SUPPORTED_LINK_TYPES,
    SYN,
    TCP_BAD_HEADER,
    TRUNCATED,
    Segment,
    decode,
    format_addr,
    format_endpoint,
)

CAPTURES = Path(__file__).resolve().parents[1] / "captures" / "public"

V4_SRC = bytes([10, 0, 0, 1])
V4_DST = bytes([10, 0, 0, 2])
V6_SRC = bytes.fromhex("20010db8000000000000000000000001")
V6_DST = bytes.fromhex("20010db8000000000000000000000002")
MAC_DST = bytes.fromhex("020000000002")
MAC_SRC = bytes.fromhex("020000000001")

# --- frame builders (RFC 9293 3.1, RFC 791 3.1, RFC 8200 3 and 4, IEEE 802.3/802.1Q) ----------


def tcp(
    payload: bytes = b"",
    *,
    sport: int = 40000,
    dport: int = 80,
    seq: int = 1000,
    ack: int = 2000,
    flags: int = ACK,
    window: int = 502,
    options: bytes = b"",
    data_offset: int | None = None,
) -> bytes:
    doff = data_offset if data_offset is not None else (20 + len(options)) // 4
    head = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, window, 0, 0)
    return head + options + payload


def ipv4(
    body: bytes,
    *,
    proto: int = 6,
    options: bytes = b"",
    total: int | None = None,
    frag: int = 0x4000,
    version: int = 4,
    ihl: int | None = None,
) -> bytes:
    hlen = ihl if ihl is not None else (20 + len(options)) // 4
    length = total if total is not None else hlen * 4 + len(body)
    head = struct.pack(
        "!BBHHHBBH4s4s", version << 4 | hlen, 0, length, 7, frag, 64, proto, 0, V4_SRC, V4_DST
    )
    return head + options + body


def ipv6(
    body: bytes, *, next_header: int = 6, payload_len: int | None = None, version: int = 6
) -> bytes:
    plen = payload_len if payload_len is not None else len(body)
    head = struct.pack("!IHBB16s16s", version << 28, plen, next_header, 64, V6_SRC, V6_DST)
    return head + body


def ext(next_header: int, size: int) -> bytes:
    """An IPv6 extension header in the uniform format: ``size`` bytes, a multiple of 8."""
    return bytes([next_header, size // 8 - 1]) + bytes(size - 2)


def ah(next_header: int, size: int) -> bytes:
    """An IPv6 Authentication Header of ``size`` bytes (length in 4-byte words minus 2)."""
    return bytes([next_header, size // 4 - 2]) + bytes(size - 2)


def frag6(next_header: int, offset: int, more: bool) -> bytes:
    return struct.pack("!BBHI", next_header, 0, offset << 3 | int(more), 0x1234)


def ether(ethertype: int, body: bytes, *, vlans: tuple[int, ...] = ()) -> bytes:
    tags = b"".join(struct.pack("!HH", tpid, 100) for tpid in vlans)
    return MAC_DST + MAC_SRC + tags + struct.pack("!H", ethertype) + body


def sll(protocol: int, body: bytes) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, MAC_SRC + b"\0\0", protocol) + body


def sll2(protocol: int, body: bytes) -> bytes:
    return struct.pack("!HHIHBB8s", protocol, 0, 2, 1, 0, 6, MAC_SRC + b"\0\0") + body


def assert_conserved(seg: Segment, orig_len: int) -> None:
    total = seg[SEG_LINK_BYTES] + seg[SEG_IP_BYTES] + seg[SEG_TCP_BYTES] + seg[SEG_PAYLOAD_LEN]
    assert total == orig_len
    assert min(seg[SEG_LINK_BYTES], seg[SEG_PAYLOAD_LEN]) >= 0
    assert len(seg[SEG_PAYLOAD]) <= seg[SEG_PAYLOAD_LEN]


def segment(link_type: int, data: bytes, orig_len: int | None = None) -> Segment:
    wire = len(data) if orig_len is None else orig_len
    seg = decode(link_type, data, wire)
    assert not isinstance(seg, str), seg
    assert_conserved(seg, wire)
    return seg


# --- Ethernet + IPv4: the fast path ------------------------------------------------------------


def test_pure_ack_in_a_padded_minimum_frame_charges_the_padding_to_the_link() -> None:
    # 14 + 20 + 20 = 54 bytes; Ethernet pads to 60 (IEEE 802.3 minimum without FCS).
    frame = ether(0x0800, ipv4(tcp(seq=0xFFFFFFFF, ack=7, window=65535))) + bytes(6)
    seg = segment(1, frame)
    assert seg == (
        V4_SRC,
        V4_DST,
        40000,
        80,
        0xFFFFFFFF,
        7,
        ACK,
        65535,
        b"",
        0,
        20,
        20,
        20,
        None,
    )


def test_data_segment_with_timestamp_options() -> None:
    options = b"\x01\x01\x08\x0a" + struct.pack("!II", 1, 2)
    frame = ether(0x0800, ipv4(tcp(b"GET / HTTP/1.1\r\n\r\n", flags=PSH | ACK, options=options)))
    seg = segment(1, frame)
    assert seg[SEG_PAYLOAD] == b"GET / HTTP/1.1\r\n\r\n"
    assert (seg[SEG_LINK_BYTES], seg[SEG_IP_BYTES], seg[SEG_TCP_BYTES]) == (14, 20, 32)
    assert seg[SEG_PAYLOAD_LEN] == 18
    assert seg[SEG_FLAGS] == PSH | ACK


def test_scapy_built_frame_decodes_the_same() -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    pkt = (
        Ether()
        / IP(src="192.0.2.7", dst="198.51.100.9")
        / TCP(sport=5672, dport=33000, seq=42, ack=43, flags="FA", window=1024)
        / b"AMQP"
    )
    seg = segment(1, bytes(pkt))
    assert format_addr(seg[0]) == "192.0.2.7"
    assert format_addr(seg[1]) == "198.51.100.9"
    assert seg[2:10] == (5672, 33000, 42, 43, FIN | ACK, 1024, b"AMQP", 4)


def test_fast_and_table_paths_agree() -> None:
    # The same datagram behind Ethernet (fast path) and as raw IPv4 (general path).
    datagram = ipv4(tcp(b"x" * 100, options=bytes([1, 1, 1, 1])))
    via_ethernet = segment(1, ether(0x0800, datagram))
    via_raw = segment(228, datagram)
    assert via_ethernet[:SEG_LINK_BYTES] == via_raw[:SEG_LINK_BYTES]
    assert via_ethernet[SEG_IP_BYTES:] == via_raw[SEG_IP_BYTES:]
    assert (via_ethernet[SEG_LINK_BYTES], via_raw[SEG_LINK_BYTES]) == (14, 0)


# --- VLAN tags -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vlans", "link_bytes"),
    [
        ((0x8100,), 18),
        ((0x88A8, 0x8100), 22),  # 802.1ad QinQ
        ((0x9100, 0x8100), 22),  # pre-standard QinQ
        ((0x88A8, 0x8100, 0x8100), 26),
    ],
)
def test_vlan_tags_are_link_bytes(vlans: tuple[int, ...], link_bytes: int) -> None:
    seg = segment(1, ether(0x0800, ipv4(tcp(b"hello")), vlans=vlans))
    assert (seg[SEG_LINK_BYTES], seg[SEG_IP_BYTES], seg[SEG_PAYLOAD]) == (link_bytes, 20, b"hello")


def test_vlan_tagged_ipv6() -> None:
    seg = segment(1, ether(0x86DD, ipv6(tcp(b"hi")), vlans=(0x8100,)))
    assert (seg[SEG_LINK_BYTES], seg[SEG_IP_BYTES], seg[SEG_PAYLOAD]) == (18, 40, b"hi")


def test_vlan_carrying_arp_is_not_tcp() -> None:
    assert decode(1, ether(0x0806, bytes(28), vlans=(0x8100,)) + bytes(14), 60) == NON_TCP


# --- IPv4 ------------------------------------------------------------------------------------


def test_ipv4_options_are_ip_bytes() -> None:
    # Record Route (RFC 791 3.1) with room for two addresses, padded with End of Options.
    options = bytes([7, 11, 4]) + bytes(8) + b"\x00"
    seg = segment(1, ether(0x0800, ipv4(tcp(b"abc"), options=options)))
    assert (seg[SEG_IP_BYTES], seg[SEG_TCP_BYTES], seg[SEG_PAYLOAD]) == (32, 20, b"abc")


@pytest.mark.parametrize("frag", [0x2000, 0x0001, 0x2005, 0x1FFF])
def test_ipv4_fragments_are_not_reassembled(frag: int) -> None:
    frame = ether(0x0800, ipv4(tcp(b"part"), frag=frag))
    assert decode(1, frame, len(frame)) == IP_FRAGMENT


def test_ipv4_dont_fragment_is_not_a_fragment() -> None:
    assert isinstance(decode(1, ether(0x0800, ipv4(tcp(), frag=0x4000)), 54), tuple)


def test_ipv4_udp_fragment_is_just_not_tcp() -> None:
    assert decode(228, ipv4(bytes(16), proto=17, frag=0x2000), 36) == NON_TCP


@pytest.mark.parametrize(
    "datagram",
    [
        ipv4(tcp(), version=5),
        ipv4(tcp(), ihl=4),
        ipv4(tcp(), total=19),  # shorter than its own header
    ],
    ids=["version", "ihl", "total_below_header"],
)
def test_bad_ipv4_header(datagram: bytes) -> None:
    assert decode(1, ether(0x0800, datagram), 14 + len(datagram)) == IP_BAD_HEADER


def test_ipv4_total_length_zero_is_tso_and_uses_the_frame() -> None:
    frame = ether(0x0800, ipv4(tcp(b"z" * 3000), total=0))
    seg = segment(1, frame)
    assert (seg[SEG_PAYLOAD_LEN], seg[SEG_LINK_BYTES], seg[SEG_ANOMALY]) == (3000, 14, None)


def test_ipv4_total_length_beyond_the_frame_is_an_anomaly() -> None:
    frame = ether(0x0800, ipv4(tcp(b"q" * 10), total=1500))
    seg = segment(1, frame)
    assert (seg[SEG_PAYLOAD_LEN], seg[SEG_LINK_BYTES], seg[SEG_ANOMALY]) == (10, 14, IP_BAD_LENGTH)


# --- TCP header ------------------------------------------------------------------------------


def test_data_offset_below_five_is_a_bad_tcp_header() -> None:
    assert decode(1, ether(0x0800, ipv4(tcp(data_offset=4))), 54) == TCP_BAD_HEADER


def test_tcp_header_longer_than_the_datagram_is_bad() -> None:
    # Data offset 15 claims 60 bytes; the datagram holds a 20-byte header and 4 bytes.
    frame = ether(0x0800, ipv4(tcp(b"abcd", data_offset=15)))
    assert decode(1, frame, len(frame)) == TCP_BAD_HEADER
    assert decode(228, frame[14:], len(frame) - 14) == TCP_BAD_HEADER


def test_tcp_header_filling_the_datagram_exactly_is_fine() -> None:
    seg = segment(1, ether(0x0800, ipv4(tcp(options=bytes(40)))))
    assert (seg[SEG_TCP_BYTES], seg[SEG_PAYLOAD_LEN]) == (60, 0)


# --- IPv6 ------------------------------------------------------------------------------------


def test_ipv6_with_hop_by_hop_routing_and_destination_options() -> None:
    chain = ext(43, 8) + ext(60, 24) + ext(6, 16)  # hop-by-hop -> routing -> dest opts -> TCP
    frame = ether(0x86DD, ipv6(chain + tcp(b"hello", flags=SYN), next_header=0))
    seg = segment(1, frame)
    assert (seg[SEG_IP_BYTES], seg[SEG_TCP_BYTES], seg[SEG_PAYLOAD]) == (88, 20, b"hello")
    assert (seg[0], seg[1], seg[SEG_FLAGS]) == (V6_SRC, V6_DST, SYN)


def test_ipv6_extension_chain_matches_scapy() -> None:
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting
    from scapy.layers.l2 import Ether

    pkt = (
        Ether()
        / IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting(addresses=["2001:db8::3"])
        / IPv6ExtHdrDestOpt()
        / TCP(sport=443, dport=50000)
        / b"data"
    )
    seg = segment(1, bytes(pkt))
    assert seg[SEG_IP_BYTES] == len(pkt[IPv6]) - len(pkt[TCP])
    assert (seg[SEG_SPORT], seg[SEG_DPORT], seg[SEG_PAYLOAD]) == (443, 50000, b"data")


def test_ipv6_authentication_header_counts_four_byte_words() -> None:
    seg = segment(229, ipv6(ah(6, 24) + tcp(b"x"), next_header=51))
    assert seg[SEG_IP_BYTES] == 64


def test_ipv6_fragment_is_not_reassembled() -> None:
    first = ipv6(frag6(6, 0, True) + tcp(b"first"), next_header=44)
    later = ipv6(frag6(6, 185, False) + b"tail", next_header=44)
    assert decode(229, first, len(first)) == IP_FRAGMENT
    assert decode(229, later, len(later)) == IP_FRAGMENT


def test_ipv6_atomic_fragment_carries_a_whole_segment() -> None:
    # RFC 6946: offset 0 and M=0 is a whole datagram with a fragment header.
    seg = segment(229, ipv6(frag6(6, 0, False) + tcp(b"whole"), next_header=44))
    assert (seg[SEG_IP_BYTES], seg[SEG_PAYLOAD]) == (48, b"whole")


def test_ipv6_udp_fragment_is_just_not_tcp() -> None:
    datagram = ipv6(frag6(17, 0, True) + bytes(16), next_header=44)
    assert decode(229, datagram, len(datagram)) == NON_TCP


@pytest.mark.parametrize("next_header", [59, 50, 17, 58])
def test_ipv6_without_tcp(next_header: int) -> None:
    datagram = ipv6(bytes(24), next_header=next_header)
    assert decode(229, datagram, len(datagram)) == NON_TCP


def test_ipv6_extension_past_the_datagram_is_a_bad_header() -> None:
    # Payload length 8 covers the hop-by-hop header only, yet it says TCP follows.
    datagram = ipv6(ext(6, 8) + tcp(), next_header=0, payload_len=8)
    assert decode(229, datagram, len(datagram)) == TCP_BAD_HEADER
    datagram = ipv6(ext(6, 16) + tcp(), next_header=0, payload_len=8)
    assert decode(229, datagram, len(datagram)) == IP_BAD_HEADER


def test_ipv6_payload_length_zero_uses_the_frame() -> None:
    seg = segment(229, ipv6(tcp(b"jumbo"), payload_len=0))
    assert (seg[SEG_PAYLOAD_LEN], seg[SEG_ANOMALY]) == (5, None)


def test_ipv6_payload_length_beyond_the_frame_is_an_anomaly() -> None:
    seg = segment(229, ipv6(tcp(b"short"), payload_len=900))
    assert (seg[SEG_PAYLOAD_LEN], seg[SEG_ANOMALY]) == (5, IP_BAD_LENGTH)


def test_ethernet_padding_after_ipv6_is_link_bytes() -> None:
    frame = ether(0x86DD, ipv6(tcp())) + bytes(4)  # 74 + 4 trailer bytes
    seg = segment(1, frame)
    assert (seg[SEG_LINK_BYTES], seg[SEG_IP_BYTES], seg[SEG_PAYLOAD]) == (18, 40, b"")


# --- other link types ------------------------------------------------------------------------

V4_SEGMENT = ipv4(tcp(b"payload"))
V6_SEGMENT = ipv6(tcp(b"payload"))


@pytest.mark.parametrize(
    ("link_type", "frame", "link_bytes", "ip_bytes"),
    [
        (1, ether(0x0800, V4_SEGMENT), 14, 20),
        (1, ether(0x86DD, V6_SEGMENT), 14, 40),
        (113, sll(0x0800, V4_SEGMENT), 16, 20),
        (113, sll(0x86DD, V6_SEGMENT), 16, 40),
        (113, sll(0x8100, struct.pack("!HH", 5, 0x0800) + V4_SEGMENT), 20, 20),
        (276, sll2(0x0800, V4_SEGMENT), 20, 20),
        (276, sll2(0x86DD, V6_SEGMENT), 20, 40),
        (0, struct.pack("<I", 2) + V4_SEGMENT, 4, 20),  # little-endian host
        (0, struct.pack(">I", 2) + V4_SEGMENT, 4, 20),  # big-endian host
        (0, struct.pack("<I", 24) + V6_SEGMENT, 4, 40),  # NetBSD/OpenBSD AF_INET6
        (0, struct.pack("<I", 28) + V6_SEGMENT, 4, 40),  # FreeBSD
        (0, struct.pack(">I", 30) + V6_SEGMENT, 4, 40),  # macOS on big-endian
        (108, struct.pack(">I", 2) + V4_SEGMENT, 4, 20),
        (108, struct.pack(">I", 24) + V6_SEGMENT, 4, 40),
        (101, V4_SEGMENT, 0, 20),
        (101, V6_SEGMENT, 0, 40),
        (12, V4_SEGMENT, 0, 20),
        (14, V6_SEGMENT, 0, 40),
        (228, V4_SEGMENT, 0, 20),
        (229, V6_SEGMENT, 0, 40),
    ],
)
def test_link_types(link_type: int, frame: bytes, link_bytes: int, ip_bytes: int) -> None:
    seg = segment(link_type, frame)
    assert (seg[SEG_LINK_BYTES], seg[SEG_IP_BYTES], seg[SEG_PAYLOAD]) == (
        link_bytes,
        ip_bytes,
        b"payload",
    )


@pytest.mark.parametrize(
    ("link_type", "frame", "reason"),
    [
        (1, ether(0x0806, bytes(46)), NON_TCP),  # ARP
        (1, ether(0x0800, ipv4(bytes(8), proto=17)), NON_TCP),  # UDP
        (1, ether(0x0800, ipv4(bytes(8), proto=1)), NON_TCP),  # ICMP
        (1, ether(0x0800, ipv4(bytes(8), proto=50)), NON_TCP),  # ESP
        (1, ether(0x0040, bytes(64)), NON_TCP),  # 802.3 length field, LLC follows
        (1, ether(0x88CC, bytes(46)), NON_TCP),  # LLDP
        (1, ether(0x0800, ipv6(tcp())), IP_BAD_HEADER),  # the ethertype says v4
        (113, sll(0x0806, bytes(28)), NON_TCP),
        (276, sll2(0x0003, bytes(28)), NON_TCP),
        (0, struct.pack("<I", 7) + V4_SEGMENT, NON_TCP),
        (108, struct.pack("<I", 2) + V4_SEGMENT, NON_TCP),  # LOOP is always big-endian
        (101, b"\x50" + V4_SEGMENT[1:], IP_BAD_HEADER),
        (228, V6_SEGMENT, IP_BAD_HEADER),
        (229, V4_SEGMENT, IP_BAD_HEADER),
        (105, V4_SEGMENT, LINK_UNSUPPORTED),  # 802.11
        (147, V4_SEGMENT, LINK_UNSUPPORTED),
    ],
)
def test_reasons(link_type: int, frame: bytes, reason: str) -> None:
    assert decode(link_type, frame, len(frame)) == reason


# --- snaplen cuts ----------------------------------------------------------------------------

CUT_FRAMES: list[tuple[int, bytes, int]] = [
    # (link type, frame, bytes before the TCP payload)
    (1, ether(0x0800, ipv4(tcp(b"A" * 40))), 54),
    (1, ether(0x0800, ipv4(tcp(b"B" * 9, options=bytes(12)), options=bytes(8))), 74),
    (1, ether(0x86DD, ipv6(ext(60, 8) + ext(6, 16) + tcp(b"C" * 9), next_header=0)), 98),
    (1, ether(0x0800, ipv4(tcp(b"D" * 5)), vlans=(0x88A8, 0x8100)), 62),
    (113, sll(0x0800, ipv4(tcp(b"E" * 5))), 56),
    (276, sll2(0x86DD, ipv6(tcp(b"F" * 5))), 80),
    (0, struct.pack("<I", 30) + ipv6(tcp(b"G" * 5)), 64),
    (108, struct.pack(">I", 2) + ipv4(tcp(b"H" * 5)), 44),
    (101, ipv4(tcp(b"I" * 5)), 40),
    (229, ipv6(ah(6, 12) + tcp(b"J" * 5), next_header=51), 72),
]


@pytest.mark.parametrize(("link_type", "frame", "headers"), CUT_FRAMES)
def test_snaplen_cut_at_every_offset(link_type: int, frame: bytes, headers: int) -> None:
    whole = segment(link_type, frame)
    assert whole[SEG_PAYLOAD_LEN] == len(frame) - headers == len(whole[SEG_PAYLOAD])
    tcp_start = headers - whole[SEG_TCP_BYTES]
    for cut in range(len(frame) + 1):
        got = decode(link_type, frame[:cut], len(frame))
        if cut < tcp_start + 16:
            # The ports, sequence numbers, flags and window are not all there.
            assert got == TRUNCATED, cut
            continue
        assert not isinstance(got, str), cut
        assert_conserved(got, len(frame))
        # The wire figures stay those of the whole frame; only the captured payload shrinks.
        assert got[:SEG_PAYLOAD] == whole[:SEG_PAYLOAD]
        assert got[SEG_PAYLOAD_LEN:] == whole[SEG_PAYLOAD_LEN:]
        assert got[SEG_PAYLOAD] == whole[SEG_PAYLOAD][: max(cut - headers, 0)]


def test_orig_len_shorter_than_the_capture_never_breaks_the_ledger() -> None:
    # A damaged record header: bytes beyond the wire length were never on the wire.
    frame = ether(0x0800, ipv4(tcp(b"x" * 100)))
    for orig_len in (0, 10, 53, 54, 100):
        got = decode(1, frame, orig_len)
        if isinstance(got, str):
            assert got in REASONS
        else:
            assert_conserved(got, orig_len)
    assert decode(1, frame, 20) == TRUNCATED


# --- noise -----------------------------------------------------------------------------------

ALL_LINK_TYPES = sorted(SUPPORTED_LINK_TYPES | {2, 105, 276 + 1})


def check_anything(link_type: int, data: bytes, orig_len: int) -> None:
    got = decode(link_type, data, orig_len)
    if isinstance(got, str):
        assert got in REASONS
        return
    assert_conserved(got, orig_len)
    assert len(got[0]) in (4, 16) and len(got[0]) == len(got[1])
    assert got[SEG_TCP_BYTES] >= 20
    assert got[SEG_IP_BYTES] >= 20


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(ALL_LINK_TYPES),
    st.binary(max_size=200),
    st.integers(min_value=-4, max_value=3000),
)
def test_random_bytes_never_raise(link_type: int, data: bytes, extra: int) -> None:
    check_anything(link_type, data, max(len(data) + extra, 0))


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(CUT_FRAMES),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
    st.integers(min_value=0, max_value=220),
    st.integers(min_value=-4, max_value=200),
)
def test_damaged_frames_never_raise(
    case: tuple[int, bytes, int], flips: list[tuple[int, int]], cut: int, extra: int
) -> None:
    # Random bytes rarely reach the TCP header; damaging valid frames does.
    link_type, frame, _ = case
    damaged = bytearray(frame)
    for position, value in flips:
        if position < len(damaged):
            damaged[position] = value
    data = bytes(damaged[:cut])
    check_anything(link_type, data, max(len(frame) + extra, 0))


# --- addresses -------------------------------------------------------------------------------


def test_format_addresses() -> None:
    assert format_addr(V4_SRC) == "10.0.0.1"
    assert format_addr(V6_SRC) == "2001:db8::1"
    assert format_endpoint(V4_DST, 80) == "10.0.0.2:80"
    assert format_endpoint(V6_DST, 443) == "[2001:db8::2]:443"
    assert format_endpoint(bytes(16), 0) == "[::]:0"
    with pytest.raises(ValueError):
        format_addr(b"\x01\x02")


# --- real captures against tshark --------------------------------------------------------------

TSHARK_FIELDS = (
    "tcp.srcport",
    "tcp.dstport",
    "tcp.seq_raw",
    "tcp.ack_raw",
    "tcp.flags",
    "tcp.window_size_value",
    "tcp.len",
    "tcp.hdr_len",
    "frame.len",
    "ip.len",
    "ipv6.plen",
)


def capture_frames(path: Path) -> Iterator[tuple[int, bytes, int]]:
    """(link type, captured bytes, wire length) of every frame, read with scapy's raw reader.

    scapy opens gzip itself and hands pcapng files to its pcapng reader, whose metadata carries
    each interface's link type; a pcap file has one link type for the whole file.
    """
    from scapy.utils import RawPcapReader

    reader = RawPcapReader(str(path))
    for data, meta in reader:
        link_type = getattr(meta, "linktype", None)
        yield reader.linktype if link_type is None else link_type, data, meta.wirelen


def tshark_rows(path: Path) -> list[list[str]]:
    args = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=|"]
    for name in TSHARK_FIELDS:
        args += ["-e", name]
    done = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60)
    return [line.split("|") for line in done.stdout.splitlines()]


PUBLIC_CAPTURES = sorted(CAPTURES.glob("*/*.pcap*"))


def test_public_captures_are_there() -> None:
    assert len(PUBLIC_CAPTURES) >= 20


@pytest.mark.parametrize("path", PUBLIC_CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_public_capture_agrees_with_tshark(path: Path) -> None:
    rows = tshark_rows(path)
    frames = list(capture_frames(path))
    assert len(frames) == len(rows)
    for number, ((link_type, data, wire_len), row) in enumerate(
        zip(frames, rows, strict=True), start=1
    ):
        sport, dport, seq, ack, flags, window, tcp_len, tcp_hdr, wire, ip_len, ip6_len = row
        got = decode(link_type, data, wire_len)
        if isinstance(got, str):
            # No TCP where tshark finds none (ARP, UDP in the gRPC capture).
            assert got == NON_TCP and not sport, (number, got)
            continue
        assert_conserved(got, wire_len)
        expected = (int(sport), int(dport), int(seq), int(ack), int(flags, 16), int(window))
        assert got[SEG_SPORT:SEG_PAYLOAD] == expected, number
        assert (got[SEG_PAYLOAD_LEN], got[SEG_TCP_BYTES]) == (int(tcp_len), int(tcp_hdr)), number
        datagram = int(ip_len) if ip_len else 40 + int(ip6_len)
        assert got[SEG_LINK_BYTES] == int(wire) - datagram, number
