"""Which shard a captured frame belongs to: a direction-symmetric hash of its TCP 4-tuple.

A shard (DESIGN.md section 7) keeps the frames of one bucket and drops the rest before the flow
table sees them, so every connection is analysed whole by exactly one shard.  Three rules make
the shards' results add up to one process's:

1. Both directions of a connection land in one bucket: the key is the ordered endpoint pair, the
   idea of the Community ID (github.com/corelight/community-id-spec): the smaller
   (address, port) first, so ``a:1 > b:2`` and ``b:2 > a:1`` give the same bytes.
2. The hash is the same in every process and on every machine: CRC-32 of those bytes (cheap,
   unsalted; Python's ``hash()`` of bytes is salted per process and would scatter a connection).
3. Every frame goes to exactly one shard.  A frame that is not a TCP segment the analyzer would
   use (ARP, UDP, ICMP, undecodable, IP fragments, which the analyzer skips and does not
   reassemble) goes to bucket 0 only, so ``packets`` and ``skipped_packets`` are counted once.
   Should fragment reassembly be added, a fragment carries no ports: it would have to go to the
   bucket of its datagram, which this module would then have to learn from the first fragment.

The common frame (Ethernet, IPv4 or IPv6 with TCP as the first header) is read with one
``unpack_from``; anything else asks ``packets.decode``, the flow table's own decoder, so the
4-tuple used here is the one the table keys on.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator

from analyzer.capture import RawPacket
from analyzer.packets import (
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    IPPROTO_TCP,
    IPV4_FRAGMENT_MASK,
    LINKTYPE_ETHERNET,
    decode,
)

#: Ethernet type, IPv4 version/IHL, flags/fragment offset, protocol, then the 8 address bytes
#: (RFC 791 section 3.1).
_ETH_IPV4 = struct.Struct("!12xHB5xHxB2x8s")
#: Ethernet type, IPv6 version byte, next header, then the 32 address bytes (RFC 8200 section 3).
_ETH_IPV6 = struct.Struct("!12xHB5xBx32s")
_PORTS = struct.Struct("!HH")
_PORT = struct.Struct("!H")
_ETH_IPV4_MIN = 14 + 20 + 4
_ETH_IPV6_MIN = 14 + 40 + 4
#: Bucket of every frame that is not a TCP segment (rule 3 above).
NON_TCP_BUCKET = 0


def endpoint_pair(src: bytes, sport: int, dst: bytes, dport: int) -> bytes:
    """The ordered endpoint pair: the same bytes for both directions of a connection."""
    a = src + _PORT.pack(sport)
    b = dst + _PORT.pack(dport)
    return a + b if a <= b else b + a


def bucket_of(src: bytes, sport: int, dst: bytes, dport: int, buckets: int) -> int:
    """The bucket of a 4-tuple among ``buckets``, whichever direction it is seen in."""
    return zlib.crc32(endpoint_pair(src, sport, dst, dport)) % buckets


def frame_bucket(link_type: int, data: bytes, orig_len: int, buckets: int) -> int:
    """The bucket of one captured frame (``NON_TCP_BUCKET`` for anything but a TCP segment)."""
    if link_type == LINKTYPE_ETHERNET and len(data) >= _ETH_IPV4_MIN:
        et, vihl, frag, proto, addrs = _ETH_IPV4.unpack_from(data)
        if et == ETHERTYPE_IPV4 and vihl >> 4 == 4 and proto == IPPROTO_TCP:
            if frag & IPV4_FRAGMENT_MASK:
                return NON_TCP_BUCKET
            ihl = (vihl & 0x0F) << 2
            if ihl >= 20 and len(data) >= 14 + ihl + 4:
                sport, dport = _PORTS.unpack_from(data, 14 + ihl)
                return bucket_of(addrs[:4], sport, addrs[4:], dport, buckets)
        elif et == ETHERTYPE_IPV6 and len(data) >= _ETH_IPV6_MIN:
            et, vtc, nxt, addrs = _ETH_IPV6.unpack_from(data)
            if vtc >> 4 == 6 and nxt == IPPROTO_TCP:
                sport, dport = _PORTS.unpack_from(data, 54)
                return bucket_of(addrs[:16], sport, addrs[16:], dport, buckets)
    seg = decode(link_type, data, orig_len)
    if isinstance(seg, str):
        return NON_TCP_BUCKET
    return bucket_of(seg[0], seg[2], seg[1], seg[3], buckets)


def keep_bucket(packets: Iterable[RawPacket], bucket: int, buckets: int) -> Iterator[RawPacket]:
    """The frames of ``bucket`` among ``buckets``, in capture order (a ``PacketFilter``)."""
    if buckets == 1:
        yield from packets
        return
    which = frame_bucket
    for packet in packets:
        if which(packet[1], packet[3], packet[2], buckets) == bucket:
            yield packet
