"""Link, IP and TCP header decoding: one captured frame in, one ``Segment`` tuple (or a reason) out.

This is the per-packet hot path (DESIGN.md section 7: about 6 µs per packet, 1 to 2 µs for a pure
ACK), so it breaks two house habits on purpose (STYLE.md habit 7): the result is a plain tuple, not
a dataclass, and Ethernet + IPv4 + TCP without VLAN tags or IP options, by far the most common
frame, is decoded straight-line in ``decode`` with two ``unpack_from`` calls.  Everything else goes
through the table-driven path: a link decoder per link type finds the IP header, then the IPv4 or
IPv6 decoder finds the TCP header.

The one invariant the byte ledger (DESIGN.md section 3) builds on holds for every ``Segment``::

    link_bytes + ip_bytes + tcp_bytes + payload_len == orig_len

It is kept by deriving every length from the IP datagram length, itself never larger than what
``orig_len`` leaves after the link header: what is left over (Ethernet minimum-frame padding, a
trailer) is charged to the link layer.

Anything that is not a decodable TCP segment comes back as a short reason string (``REASONS``),
which the caller counts per capture; nothing here raises on bad input.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Mapping
from typing import Final

# A decoded TCP segment; field indexes are the constants below (``SEG_*``).
Segment = tuple[
    bytes,  # src_addr: 4 bytes (IPv4) or 16 bytes (IPv6), raw
    bytes,  # dst_addr
    int,  # sport
    int,  # dport
    int,  # seq (raw 32-bit)
    int,  # ack (raw 32-bit)
    int,  # flags: the TCP flags byte (FIN ... CWR below)
    int,  # window (raw 16-bit, unscaled)
    bytes,  # payload: captured TCP payload (shorter than payload_len after a snaplen cut)
    int,  # payload_len: TCP payload length on the wire
    int,  # link_bytes: orig_len minus the IP datagram length (link header + trailer/padding)
    int,  # ip_bytes: IP header with IPv4 options or IPv6 extension headers
    int,  # tcp_bytes: TCP header with options (data offset * 4)
    str | None,  # anomaly name ("ip.bad_length") or None
]

# ``Final`` literals, so that mypy knows the type of ``segment[SEG_PAYLOAD]``.
SEG_SRC: Final = 0
SEG_DST: Final = 1
SEG_SPORT: Final = 2
SEG_DPORT: Final = 3
SEG_SEQ: Final = 4
SEG_ACK: Final = 5
SEG_FLAGS: Final = 6
SEG_WINDOW: Final = 7
SEG_PAYLOAD: Final = 8
SEG_PAYLOAD_LEN: Final = 9
SEG_LINK_BYTES: Final = 10
SEG_IP_BYTES: Final = 11
SEG_TCP_BYTES: Final = 12
SEG_ANOMALY: Final = 13

# TCP flag bits of the flags byte (RFC 9293 section 3.1; ECE/CWR from RFC 3168 section 6.1).
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

# Reasons ``decode`` returns instead of a segment.
NON_TCP = "non_tcp"
IP_FRAGMENT = "ip.fragment"
LINK_UNSUPPORTED = "link.unsupported"
TRUNCATED = "truncated"
IP_BAD_HEADER = "ip.bad_header"
TCP_BAD_HEADER = "tcp.bad_header"
REASONS: frozenset[str] = frozenset(
    {NON_TCP, IP_FRAGMENT, LINK_UNSUPPORTED, TRUNCATED, IP_BAD_HEADER, TCP_BAD_HEADER}
)

# Anomaly carried by a segment whose IP length field claims more than the frame holds.
IP_BAD_LENGTH = "ip.bad_length"

# Link-layer types (https://www.tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
# DLT_RAW as written by OpenBSD (14) and most other systems (12) before LINKTYPE_RAW existed.
LINKTYPE_RAW_HISTORIC = (12, 14)

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
# IEEE 802.1Q tag, 802.1ad service tag, and the pre-standard QinQ tag: 4 bytes each, stackable.
VLAN_ETHERTYPES: frozenset[int] = frozenset({0x8100, 0x88A8, 0x9100})
ETHERTYPE_IP_VERSION: Mapping[int, int] = {ETHERTYPE_IPV4: 4, ETHERTYPE_IPV6: 6}

# BSD loopback address families: AF_INET is 2 everywhere; AF_INET6 is 24 (NetBSD, OpenBSD),
# 28 (FreeBSD) or 30 (macOS).  Linux writes no DLT_NULL captures, so its 10 is not listed.
NULL_FAMILY_IP_VERSION: Mapping[int, int] = {2: 4, 24: 6, 28: 6, 30: 6}

ETH_HEADER_BYTES = 14
ETH_TYPE_OFFSET = 12
VLAN_TAG_BYTES = 4
SLL_HEADER_BYTES = 16
SLL_PROTOCOL_OFFSET = 14
SLL2_HEADER_BYTES = 20
NULL_HEADER_BYTES = 4
IPV4_MIN_HEADER_BYTES = 20
IPV6_HEADER_BYTES = 40
TCP_MIN_HEADER_BYTES = 20
# Bytes of the TCP header a segment needs captured: ports, seq, ack, data offset, flags, window
# (RFC 9293 section 3.1).  Checksum, urgent pointer and options may be cut by the snaplen.
TCP_NEEDED_BYTES = 16

IPPROTO_TCP = 6
# IPv4 flags/fragment offset word: MF bit and 13-bit offset (RFC 791 section 3.1); DF is ignored.
IPV4_FRAGMENT_MASK = 0x3FFF

# IPv6 extension headers (RFC 8200 section 4) -> their length in bytes from the header's second
# byte.  AH counts 4-byte words minus 2 (RFC 4302 section 2.2); the others, and the mobility, HIP
# and shim6 headers that follow the same uniform format (RFC 6564), count 8-byte words minus 1.
IPV6_FRAGMENT = 44
IPV6_FRAGMENT_HEADER_BYTES = 8
IPV6_EXTENSION_LENGTH: Mapping[int, Callable[[int], int]] = {
    0: lambda n: (n + 1) * 8,  # hop-by-hop options
    43: lambda n: (n + 1) * 8,  # routing
    60: lambda n: (n + 1) * 8,  # destination options
    135: lambda n: (n + 1) * 8,  # mobility (RFC 6275)
    139: lambda n: (n + 1) * 8,  # host identity protocol (RFC 7401)
    140: lambda n: (n + 1) * 8,  # shim6 (RFC 5533)
    51: lambda n: (n + 2) * 4,  # authentication header
    IPV6_FRAGMENT: lambda n: IPV6_FRAGMENT_HEADER_BYTES,
}
# Headers after which a non-first fragment could still hold TCP: decides fragment vs non_tcp.
_IPV6_TCP_OR_EXTENSION: frozenset[int] = frozenset({IPPROTO_TCP, *IPV6_EXTENSION_LENGTH})

# Ethernet type + a 20-byte IPv4 header read in one call: the fast path's first unpack.
_ETH_IPV4 = struct.Struct("!12xHBxHxxHxBxx4s4s")
# Ethernet type + the fixed IPv6 header (version nibble, payload length, next header,
# addresses) in one call: the IPv6 fast path's first unpack.
_ETH_IPV6 = struct.Struct("!12xHBxxxHBx16s16s")
# version/IHL, total length, flags/fragment offset, protocol, source, destination (RFC 791 3.1).
_IPV4 = struct.Struct("!BxHxxHxBxx4s4s")
# payload length, next header, source, destination (RFC 8200 section 3).
_IPV6 = struct.Struct("!BxxxHBx16s16s")
# ports, sequence, acknowledgment, data offset, flags, window (RFC 9293 section 3.1).
_TCP = struct.Struct("!HHIIBBH")
_U16 = struct.Struct("!H")
_U32_BE = struct.Struct("!I")
_U32_LE = struct.Struct("<I")

# A link decoder returns (offset of the IP header, IP version 4/6/0=from the first nibble) or a
# reason string.
LinkResult = tuple[int, int] | str


def decode(link_type: int, data: bytes, orig_len: int) -> Segment | str:
    """Decode one captured frame of ``link_type``; a ``Segment`` for TCP, else a reason string.

    ``data`` is the captured bytes, ``orig_len`` the frame's length on the wire (pcap orig_len).
    """
    # Fast path: Ethernet, IPv4 without options, unfragmented TCP with a sane total length.
    if link_type == LINKTYPE_ETHERNET and len(data) >= 54:
        et, vihl, total, frag, proto, src, dst = _ETH_IPV4.unpack_from(data)
        if (
            et == ETHERTYPE_IPV4
            and vihl == 0x45
            and proto == IPPROTO_TCP
            and not frag & IPV4_FRAGMENT_MASK
            and 40 <= total <= orig_len - 14
        ):
            sport, dport, seq, ack, doff, flags, win = _TCP.unpack_from(data, 34)
            tcp_bytes = (doff >> 4) << 2
            if 20 <= tcp_bytes <= total - 20:
                return (
                    src,
                    dst,
                    sport,
                    dport,
                    seq,
                    ack,
                    flags,
                    win,
                    data[34 + tcp_bytes : 14 + total],
                    total - 20 - tcp_bytes,
                    orig_len - total,
                    20,
                    tcp_bytes,
                    None,
                )
        elif et == ETHERTYPE_IPV6 and len(data) >= 74:
            return _decode_ethernet_ipv6(data, orig_len)
    return _decode_general(link_type, data, orig_len)


def _decode_ethernet_ipv6(data: bytes, orig_len: int) -> Segment | str:
    """Ethernet + IPv6 with TCP as the first next header: the common IPv6 case, in two unpacks."""
    _, vtc, payload_len, next_header, src, dst = _ETH_IPV6.unpack_from(data)
    if vtc >> 4 == 6 and next_header == IPPROTO_TCP and 20 <= payload_len <= orig_len - 54:
        sport, dport, seq, ack, doff, flags, win = _TCP.unpack_from(data, 54)
        tcp_bytes = (doff >> 4) << 2
        if 20 <= tcp_bytes <= payload_len:
            return (
                src,
                dst,
                sport,
                dport,
                seq,
                ack,
                flags,
                win,
                data[54 + tcp_bytes : 54 + payload_len],
                payload_len - tcp_bytes,
                orig_len - 40 - payload_len,
                40,
                tcp_bytes,
                None,
            )
    return _decode_general(LINKTYPE_ETHERNET, data, orig_len)


def _decode_general(link_type: int, data: bytes, orig_len: int) -> Segment | str:
    """The table-driven path: link decoder, then the IP decoder, then TCP."""
    link = _LINK_DECODERS.get(link_type)
    if link is None:
        return LINK_UNSUPPORTED
    if len(data) > orig_len:
        # A broken record header: bytes past the wire length were never on the wire.
        data = data[: max(orig_len, 0)]
    found = link(data)
    if isinstance(found, str):
        return found
    offset, version = found
    if offset >= len(data):
        return TRUNCATED
    if version == 0:
        version = data[offset] >> 4
    if version == 4:
        return _decode_ipv4(data, offset, orig_len)
    if version == 6:
        return _decode_ipv6(data, offset, orig_len)
    return IP_BAD_HEADER


# --- link layers -------------------------------------------------------------------------------


def _ethertype_chain(data: bytes, type_offset: int) -> LinkResult:
    """Follow the ethertype at ``type_offset`` through stacked VLAN tags (IEEE 802.1Q/802.1ad)."""
    while type_offset + 2 <= len(data):
        (ethertype,) = _U16.unpack_from(data, type_offset)
        if ethertype in VLAN_ETHERTYPES:
            # The tag is TPID (already read) + TCI; the next ethertype follows the TCI.
            type_offset += VLAN_TAG_BYTES
            continue
        version = ETHERTYPE_IP_VERSION.get(ethertype)
        return NON_TCP if version is None else (type_offset + 2, version)
    return TRUNCATED


def _link_ethernet(data: bytes) -> LinkResult:
    return _ethertype_chain(data, ETH_TYPE_OFFSET)


def _link_sll(data: bytes) -> LinkResult:
    # Linux cooked v1: the protocol field holds the ethertype; a VLAN tag may follow it when
    # the capturing kernel did not strip it.
    return _ethertype_chain(data, SLL_PROTOCOL_OFFSET)


def _link_sll2(data: bytes) -> LinkResult:
    # Linux cooked v2: protocol first, then interface index and the rest of a 20-byte header.
    if len(data) < SLL2_HEADER_BYTES:
        return TRUNCATED
    version = ETHERTYPE_IP_VERSION.get(_U16.unpack_from(data)[0])
    return NON_TCP if version is None else (SLL2_HEADER_BYTES, version)


def _link_null(data: bytes) -> LinkResult:
    # The family is in the capturing host's byte order, which the file does not record: try both.
    if len(data) < NULL_HEADER_BYTES:
        return TRUNCATED
    version = NULL_FAMILY_IP_VERSION.get(_U32_LE.unpack_from(data)[0])
    if version is None:
        version = NULL_FAMILY_IP_VERSION.get(_U32_BE.unpack_from(data)[0])
    return NON_TCP if version is None else (NULL_HEADER_BYTES, version)


def _link_loop(data: bytes) -> LinkResult:
    # OpenBSD's loopback: like DLT_NULL but the family is always in network byte order.
    if len(data) < NULL_HEADER_BYTES:
        return TRUNCATED
    version = NULL_FAMILY_IP_VERSION.get(_U32_BE.unpack_from(data)[0])
    return NON_TCP if version is None else (NULL_HEADER_BYTES, version)


def _link_raw(data: bytes) -> LinkResult:
    return (0, 0)


def _link_raw_ipv4(data: bytes) -> LinkResult:
    return (0, 4)


def _link_raw_ipv6(data: bytes) -> LinkResult:
    return (0, 6)


_LINK_DECODERS: Mapping[int, Callable[[bytes], LinkResult]] = {
    LINKTYPE_ETHERNET: _link_ethernet,
    LINKTYPE_LINUX_SLL: _link_sll,
    LINKTYPE_LINUX_SLL2: _link_sll2,
    LINKTYPE_NULL: _link_null,
    LINKTYPE_LOOP: _link_loop,
    LINKTYPE_RAW: _link_raw,
    LINKTYPE_RAW_HISTORIC[0]: _link_raw,
    LINKTYPE_RAW_HISTORIC[1]: _link_raw,
    LINKTYPE_IPV4: _link_raw_ipv4,
    LINKTYPE_IPV6: _link_raw_ipv6,
}

#: Link types ``decode`` understands.
SUPPORTED_LINK_TYPES: frozenset[int] = frozenset(_LINK_DECODERS)


# --- IP ----------------------------------------------------------------------------------------


def _datagram_bytes(claimed: int, available: int) -> tuple[int, str | None]:
    """The IP datagram length to use, and the anomaly if the length field cannot be believed.

    0 is what Linux writes for TSO/GSO super-segments (the NIC fills it in later): normal, so the
    frame's own length is used silently.  More than the frame holds is a damaged field.
    """
    if claimed == 0:
        return available, None
    if claimed > available:
        return available, IP_BAD_LENGTH
    return claimed, None


def _decode_ipv4(data: bytes, offset: int, orig_len: int) -> Segment | str:
    if offset + IPV4_MIN_HEADER_BYTES > len(data):
        return TRUNCATED
    vihl, total, frag, proto, src, dst = _IPV4.unpack_from(data, offset)
    ip_bytes = (vihl & 0x0F) << 2
    if vihl >> 4 != 4 or ip_bytes < IPV4_MIN_HEADER_BYTES:
        return IP_BAD_HEADER
    if proto != IPPROTO_TCP:
        # Checked before fragments: a fragmented UDP datagram is no TCP anomaly.
        return NON_TCP
    if frag & IPV4_FRAGMENT_MASK:
        return IP_FRAGMENT
    datagram, anomaly = _datagram_bytes(total, orig_len - offset)
    if datagram < ip_bytes:
        return IP_BAD_HEADER
    return _decode_tcp(data, offset, offset + ip_bytes, datagram, orig_len, src, dst, anomaly)


def _decode_ipv6(data: bytes, offset: int, orig_len: int) -> Segment | str:
    if offset + IPV6_HEADER_BYTES > len(data):
        return TRUNCATED
    vtc, payload_len, next_header, src, dst = _IPV6.unpack_from(data, offset)
    if vtc >> 4 != 6:
        return IP_BAD_HEADER
    # A payload length of 0 is a jumbogram (RFC 2675) or a TSO/GSO capture: both use the frame.
    datagram, anomaly = _datagram_bytes(
        IPV6_HEADER_BYTES + payload_len if payload_len else 0, orig_len - offset
    )
    found = _skip_ipv6_extensions(data, offset + IPV6_HEADER_BYTES, next_header)
    if isinstance(found, str):
        return found
    if found - offset > datagram:
        return IP_BAD_HEADER
    return _decode_tcp(data, offset, found, datagram, orig_len, src, dst, anomaly)


def _skip_ipv6_extensions(data: bytes, position: int, next_header: int) -> int | str:
    """The offset of the TCP header after the extension headers at ``position``, or a reason.

    Each extension header is at least 8 bytes, so the loop ends within the captured bytes.
    """
    while next_header != IPPROTO_TCP:
        length_of = IPV6_EXTENSION_LENGTH.get(next_header)
        if length_of is None:
            # No next header (59), ESP (50), UDP, ICMPv6 ...: no TCP header can be found.
            return NON_TCP
        if position + 8 > len(data):
            return TRUNCATED
        if next_header == IPV6_FRAGMENT:
            (word,) = _U16.unpack_from(data, position + 2)
            # Offset 0 with M=0 is an atomic fragment (RFC 6946): the whole datagram is here.
            if word & 0xFFF9:
                return IP_FRAGMENT if data[position] in _IPV6_TCP_OR_EXTENSION else NON_TCP
        next_header = data[position]
        position += length_of(data[position + 1])
    return position


# --- TCP ---------------------------------------------------------------------------------------


def _decode_tcp(
    data: bytes,
    ip_offset: int,
    tcp_offset: int,
    datagram: int,
    orig_len: int,
    src: bytes,
    dst: bytes,
    anomaly: str | None,
) -> Segment | str:
    """Read the TCP header at ``tcp_offset`` of a ``datagram``-byte IP datagram at ``ip_offset``."""
    if tcp_offset + TCP_NEEDED_BYTES > len(data):
        return TRUNCATED
    sport, dport, seq, ack, doff, flags, win = _TCP.unpack_from(data, tcp_offset)
    tcp_bytes = (doff >> 4) << 2
    ip_bytes = tcp_offset - ip_offset
    if tcp_bytes < TCP_MIN_HEADER_BYTES or ip_bytes + tcp_bytes > datagram:
        return TCP_BAD_HEADER
    end = ip_offset + datagram
    return (
        src,
        dst,
        sport,
        dport,
        seq,
        ack,
        flags,
        win,
        data[tcp_offset + tcp_bytes : end],
        datagram - ip_bytes - tcp_bytes,
        orig_len - datagram,
        ip_bytes,
        tcp_bytes,
        anomaly,
    )


# --- addresses ---------------------------------------------------------------------------------

_ADDRESS_FAMILY: Mapping[int, socket.AddressFamily] = {4: socket.AF_INET, 16: socket.AF_INET6}


def format_addr(addr: bytes) -> str:
    """A 4-byte address as "10.0.0.1", a 16-byte one as compressed IPv6 (RFC 5952)."""
    family = _ADDRESS_FAMILY.get(len(addr))
    if family is None:
        raise ValueError(f"not an IPv4 or IPv6 address: {addr.hex()}")
    return socket.inet_ntop(family, addr)


def format_endpoint(addr: bytes, port: int) -> str:
    """An address and port as "10.0.0.1:80", or "[2001:db8::1]:443" (RFC 5952 section 6)."""
    if len(addr) == 16:
        return f"[{format_addr(addr)}]:{port}"
    return f"{format_addr(addr)}:{port}"
