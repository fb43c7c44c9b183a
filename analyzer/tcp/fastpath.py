"""The fused fast path of the connection table (DESIGN.md section 7: 1 to 2 us per pure ACK).

Most frames are an established connection's in-order data segment or pure ACK over Ethernet
and IPv4 without options or IPv6.  Those take the loop below: one ``unpack_from`` reads all of
their headers, and the connection is updated inline (in transport-only mode, per-direction sums
that ``Connection.fold_fast`` charges at the end).  Every other frame takes the general path the
table passes in (``decode`` then ``FlowTable.packet``).  The fast path mutates nothing until it
knows the frame is its case, so falling back at any test is always safe;
tests/test_fast_path.py compares the two paths' results.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable, Iterable

from analyzer.packets import (
    ACK,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    FIN,
    IPPROTO_TCP,
    IPV4_FRAGMENT_MASK,
    LINKTYPE_ETHERNET,
    RST,
    SYN,
)
from analyzer.tcp.connection import (
    FAST_ACK_TOTAL,
    FAST_ACK_WIRE,
    FAST_ACKS,
    FAST_DATA,
    FAST_DATA_TCP,
    FAST_DATA_TOTAL,
    FAST_DATA_WIRE,
    Entry,
)
from analyzer.tcp.reassembly import SEQ_MOD

#: The fast path's one read of a frame: Ethernet type, then the 20-byte IPv4 header (version/IHL,
#: total length, flags/fragment offset, protocol), then source and destination addresses and the
#: TCP ports as one 12-byte string (they are contiguous: that is the flow key), then the TCP
#: sequence and acknowledgment numbers, data offset and flags (RFC 791 section 3.1, RFC 9293
#: section 3.1).  Valid only when IHL is 5, which the fast path checks before believing it.
_ETH_IPV4_TCP = struct.Struct("!12xHBxHxxHxBxx12sIIBB")
#: The same for IPv6 when TCP is the first next header: Ethernet type, the version byte,
#: payload length, next header, then addresses and ports (36 bytes: the IPv6 flow key), then
#: the TCP fields as above (RFC 8200 section 3).
_ETH_IPV6_TCP = struct.Struct("!12xHBxxxHBx36sIIBB")
#: Frames shorter than Ethernet + IPv4 + TCP headers cannot take the fast path.
_FAST_MIN_FRAME = 14 + 20 + 20
#: ... and shorter than Ethernet + IPv6 + TCP headers, the IPv6 one.
_FAST_MIN_FRAME_V6 = 14 + 40 + 20
_IPV4_NO_OPTIONS = 0x45
_SEQ_MASK = SEQ_MOD - 1
_HALF_SEQ = SEQ_MOD >> 1

#: The general path: (ts, link type, wire length, frame, ordinal, skipped reasons) -> the time
#: of the next sweep, which the packet may have moved.
General = Callable[[float, int, int, bytes, int, Counter[str]], float]


def run_fused(
    packets: Iterable[tuple[float, int, int, bytes]],
    skipped: Counter[str],
    *,
    table: dict[bytes, Entry],
    general: General,
    sweep: Callable[[float], float],
    next_sweep: float,
    idle_s: float,
    transport_only: bool,
    fast_path: bool,
) -> tuple[int, int]:
    """Feed every captured frame to the table; (frames, TCP segments among them).

    ``sweep(ts)`` retires idle connections and returns the time of the next sweep; with
    ``fast_path`` false every frame takes ``general`` (the comparison of tests/test_fast_path.py).
    """
    unpack = _ETH_IPV4_TCP.unpack_from
    unpack_v6 = _ETH_IPV6_TCP.unpack_from
    get = table.get
    idle = idle_s
    # Locals, not module constants, in the loop: LOAD_FAST is the cheapest load.
    ethernet, eth_ipv4, eth_ipv6, ipv4_plain, tcp_proto = (
        # (No link type is -1: with the fast path off, every frame takes the general path.)
        LINKTYPE_ETHERNET if fast_path else -1,
        ETHERTYPE_IPV4,
        ETHERTYPE_IPV6,
        _IPV4_NO_OPTIONS,
        IPPROTO_TCP,
    )
    fragment, flag_mask, ack_only = IPV4_FRAGMENT_MASK, SYN | FIN | RST | ACK, ACK
    seq_mask, min_frame, min_frame_v6 = _SEQ_MASK, _FAST_MIN_FRAME, _FAST_MIN_FRAME_V6
    seq_mod, half_seq = SEQ_MOD, _HALF_SEQ
    fast_data, fast_data_wire, fast_data_total, fast_data_tcp = (
        FAST_DATA,
        FAST_DATA_WIRE,
        FAST_DATA_TOTAL,
        FAST_DATA_TCP,
    )
    fast_acks, fast_ack_wire, fast_ack_total = FAST_ACKS, FAST_ACK_WIRE, FAST_ACK_TOTAL
    not_tcp = sum(skipped.values())
    ordinal = 0
    for ts, link_type, orig_len, data in packets:
        ordinal += 1
        captured = len(data)
        if link_type != ethernet or captured < min_frame:
            next_sweep = general(ts, link_type, orig_len, data, ordinal, skipped)
            continue
        # 1. Its case: IPv4 without options or fragments, or IPv6 with TCP as the first
        #    next header; lengths that hold (pcapng may claim more captured bytes than were
        #    on the wire) and the whole datagram captured; ACK set and no SYN, FIN or RST;
        #    a known connection, not idle, with nothing held out of order in the other
        #    direction (an ACK may close a hole).  The Ethernet type's first byte picks
        #    the unpack (0x08 IPv4, 0x86 IPv6), so neither family pays for the other's.
        if data[12] != 0x86:
            et, vihl, total, frag, proto, key, seq, ack, doff, flags = unpack(data)
            if et != eth_ipv4 or vihl != ipv4_plain or proto != tcp_proto or frag & fragment:
                next_sweep = general(ts, link_type, orig_len, data, ordinal, skipped)
                continue
            ip = 20
        elif captured < min_frame_v6:
            next_sweep = general(ts, link_type, orig_len, data, ordinal, skipped)
            continue
        else:
            et, vtc, total, proto, key, seq, ack, doff, flags = unpack_v6(data)
            # (A zero payload length is a jumbogram or a TSO capture: the general path.)
            if et != eth_ipv6 or vtc & 0xF0 != 0x60 or proto != tcp_proto or not total:
                next_sweep = general(ts, link_type, orig_len, data, ordinal, skipped)
                continue
            ip = 40
            total += 40
        tcp = (doff & 0xF0) >> 2
        entry = get(key)
        if (
            entry is None
            or flags & flag_mask != ack_only
            or not 20 <= tcp <= total - ip
            or total + 14 > captured
            or total + 14 > orig_len
        ):
            next_sweep = general(ts, link_type, orig_len, data, ordinal, skipped)
            continue
        conn, direction, asm, other, sums = entry
        if ts - conn.last_ts > idle or other.held_bytes:
            next_sweep = general(ts, link_type, orig_len, data, ordinal, skipped)
            continue
        plen = total - ip - tcp
        if plen:
            # 2. A data segment: exactly the next byte expected, nothing held before it.
            base = asm.base
            start = asm.next
            if base is None or asm.held_bytes or seq != (base + start) & seq_mask:
                next_sweep = general(ts, link_type, orig_len, data, ordinal, skipped)
                continue
            conn.last_ts = ts
            conn.last_ordinal = ordinal
            asm.next = start + plen
            if transport_only:
                # No decoder, no spans: every payload byte is undecoded, so sums suffice
                # (``Connection.fold_fast``); no message waits to be retired, so the
                # acknowledged offset is not kept either.
                sums[fast_data] += 1
                sums[fast_data_wire] += orig_len
                sums[fast_data_total] += total
                sums[fast_data_tcp] += tcp
            else:
                conn.packets[direction] += 1
                conn.wire[direction] += orig_len
                ledger = conn.ledger
                ledger.note_data(ordinal, direction)
                conn.feed(direction, [data[14 + ip + tcp : 14 + total]], ordinal, ts)
                ledger.data_packet(direction, start, plen, plen, orig_len - total, ip, tcp)
                if other.base is not None:
                    ledger.note_acked(1 - direction, other.offset(ack))
        else:
            # 3. A pure ACK of bytes already seen, past the handshake, before any FIN.
            other_base = other.base
            if other_base is None:
                next_sweep = general(ts, link_type, orig_len, data, ordinal, skipped)
                continue
            rel = (ack - other_base) & seq_mask
            if not rel or other.fin_offset is not None:
                next_sweep = general(ts, link_type, orig_len, data, ordinal, skipped)
                continue
            if transport_only:
                # Every stream byte is undecoded, and ACKs of undecoded bytes are control.
                conn.last_ts = ts
                conn.last_ordinal = ordinal
                sums[fast_acks] += 1
                sums[fast_ack_wire] += orig_len
                sums[fast_ack_total] += total
            else:
                # ``StreamAssembler.offset`` inline: the offset nearest the next byte.
                ahead = other.next
                newest = ahead - (ahead & seq_mask) + rel
                if newest - ahead > half_seq:
                    newest -= seq_mod
                elif ahead - newest > half_seq:
                    newest += seq_mod
                newest -= 1
                if not 0 <= newest < ahead:
                    next_sweep = general(ts, link_type, orig_len, data, ordinal, skipped)
                    continue
                conn.ledger.pure_ack(direction, newest, orig_len - total, ip, tcp)
                conn.last_ts = ts
                conn.last_ordinal = ordinal
                conn.packets[direction] += 1
                conn.wire[direction] += orig_len
        if ts >= next_sweep:
            next_sweep = sweep(ts)
    # Every frame that was not a TCP segment was counted in ``skipped`` with its reason.
    return ordinal, ordinal - (sum(skipped.values()) - not_tcp)
