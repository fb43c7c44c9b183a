"""Round trips describe the protocol, not the scheduler: unsolicited data ends no wait.

A real conversation (httpx and hypercorn over TLS 1.3, HTTP/2) is replayed with each of its
unsolicited packets (NewSessionTicket, SETTINGS, SETTINGS ACK, WINDOW_UPDATE, PING) moved a
microsecond past its neighbour, either way: the round trips must not move.  Which packets are
unsolicited comes from tshark's dissection, not from ours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import CAPTURES, analyze_json
from pcaptools import Pcap, Record, read
from tshark import fields

from analyzer.accounting.roundtrips import setup_round_trips, solicited_turns
from analyzer.tls.keylog import KeyLog

CAPTURE = CAPTURES / "live-http2-tls13-httpx-hypercorn.pcap"
KEYS = CAPTURES / "live-http2-tls13-httpx-hypercorn.keys"
#: TLS handshake type NewSessionTicket; HTTP/2 SETTINGS, PING, WINDOW_UPDATE (RFC 9113 6)
UNSOLICITED_TLS = {"4"}
UNSOLICITED_H2 = {"4", "6", "8"}
NUDGE_NS = 1_000  # one microsecond past the neighbour


def _unsolicited_frames() -> list[int]:
    """0-based indexes of data packets that carry nothing but unsolicited TLS/HTTP/2 units."""
    rows = fields(
        CAPTURE,
        ["frame.number", "tcp.len", "tls.handshake.type", "http2.type", "tls.record.content_type"],
        "-o",
        f"tls.keylog_file:{KEYS}",
    )
    out = []
    for number, length, hs_types, h2_types, content in rows:
        if not length or length == "0":
            continue
        hs = set(filter(None, hs_types.split(",")))
        h2 = set(filter(None, h2_types.split(",")))
        if (hs or h2) and hs <= UNSOLICITED_TLS and h2 <= UNSOLICITED_H2 and content:
            out.append(int(number) - 1)
    return out


def _figures(path: Path) -> list[tuple[Any, ...]]:
    keylog = KeyLog()
    keylog.load(str(KEYS))
    result = analyze_json([path], keylog=keylog)
    return [(c["setup_round_trips"], c["round_trips"]) for c in result["connections"]]


def _moved(pcap: Pcap, index: int, later: bool) -> Pcap | None:
    """The capture with packet ``index`` moved just past its next (or previous) neighbour."""
    records = list(pcap.records)
    neighbour = index + 1 if later else index - 1
    if not 0 <= neighbour < len(records):
        return None
    shift = NUDGE_NS if later else -NUDGE_NS
    moving = records[index]
    records[index] = Record(records[neighbour].ts_ns + shift, moving.data, moving.orig_len)
    records.sort(key=lambda r: r.ts_ns)
    return pcap.with_records(records)


def test_the_conversation_has_unsolicited_packets_and_protocol_counts() -> None:
    assert len(_unsolicited_frames()) >= 3
    # TCP handshake + one TLS 1.3 full handshake: session tickets and SETTINGS add nothing.
    assert _figures(CAPTURE)[0][0] == 2


@pytest.mark.parametrize("later", [False, True], ids=["earlier", "later"])
def test_shifting_unsolicited_packets_keeps_the_round_trips(later: bool, tmp_path: Path) -> None:
    original = read(CAPTURE)
    want = _figures(CAPTURE)
    tried = 0
    for index in _unsolicited_frames():
        variant = _moved(original, index, later)
        if variant is None:
            continue
        path = variant.write(tmp_path / f"moved-{index}.pcap")
        assert _figures(path) == want, f"packet {index + 1} moved {'later' if later else 'earlier'}"
        tried += 1
    assert tried >= 3


def test_a_run_of_only_unsolicited_packets_is_no_turn() -> None:
    # orig Finished (10), resp ticket (11), orig request (12): one turn less than without marks.
    turns = [(1, 0), (2, 1), (10, 0), (11, 1), (12, 0)]
    packets = [1, 1, 1, 1, 1]
    assert setup_round_trips(True, turns, 12) == 3
    kept = solicited_turns(turns, packets, {(1, 11)})
    assert kept == [(1, 0), (2, 1), (10, 0)]
    assert setup_round_trips(True, kept, 12) == 2
    # A run with one solicited packet besides the ticket still ends the wait.
    assert solicited_turns(turns, [1, 1, 1, 2, 1], {(1, 11)}) == turns
