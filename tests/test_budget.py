"""The connection table's state budget: timeouts in capture time, robust to clock jumps, a bound.

Issue 15: a SYN flood grew memory without bound, and one packet stamped a day in the future
stopped idle connections from ever being retired.  These tests drive ``FlowTable`` with
generated frames and look at the table itself (how many connections are still open before the
end of the capture), so they check the state, not a timing.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from builder import ACK, PSH, SYN, ipv4_tcp, write_pcap
from conftest import check_conservation

from analyzer.options import IDLE_TIMEOUT_S, AnalyzeOptions
from analyzer.pipeline import analyze
from analyzer.report.render import Collector
from analyzer.tcp.budget import CLOCK_CONFIRMATIONS, CLOCK_JUMP_S, HALF_OPEN_TIMEOUT_S, CaptureClock
from analyzer.tcp.flows import Connection, FlowTable

SERVER = bytes([198, 19, 0, 1])
DAY_S = 86_400.0
T0 = 1_700_000_000.0


def client(i: int) -> bytes:
    return bytes([198, 18, (i >> 8) & 0xFF, i & 0xFF])


def syn(i: int) -> bytes:
    return ipv4_tcp(client(i), SERVER, 40000, 80, 1000 * i, 0, SYN)


def exchange(i: int, ts: float) -> list[tuple[float, bytes]]:
    """A connection that says one thing each way and then goes quiet (no FIN)."""
    c, isn = client(i), 1000 * i
    return [
        (ts, ipv4_tcp(c, SERVER, 40000, 80, isn, 0, SYN)),
        (ts + 0.001, ipv4_tcp(SERVER, c, 80, 40000, 7, isn + 1, SYN | ACK)),
        (ts + 0.002, ipv4_tcp(c, SERVER, 40000, 80, isn + 1, 8, ACK)),
        (ts + 0.003, ipv4_tcp(c, SERVER, 40000, 80, isn + 1, 8, ACK | PSH, b"ping")),
        (ts + 0.004, ipv4_tcp(SERVER, c, 80, 40000, 8, isn + 5, ACK | PSH, b"pong")),
    ]


def run_table(
    frames: list[tuple[float, bytes]], **options: Any
) -> tuple[FlowTable, list[Connection]]:
    """Run ``frames`` through a table, without closing it: what is still open is still there."""
    finished: list[Connection] = []
    table = FlowTable(AnalyzeOptions(**options), finished.append)
    packets: Iterator[tuple[float, int, int, bytes]] = (
        (ts, 1, len(frame), frame) for ts, frame in frames
    )
    table.run(packets, Counter())
    return table, finished


def quiet_connections(n: int, spacing_s: float, first: int = 0) -> list[tuple[float, bytes]]:
    frames: list[tuple[float, bytes]] = []
    for i in range(n):
        frames += exchange(first + i, T0 + i * spacing_s)
    return frames


# -- the clock ----------------------------------------------------------------------------------


def test_one_stray_timestamp_either_way_does_not_move_the_clock() -> None:
    clock = CaptureClock()
    for ts, expected in [(100.0, 100.0), (100.0 + DAY_S, 100.0), (101.0, 101.0)]:
        assert clock.observe(ts) == expected
    assert clock.observe(101.0 - DAY_S) == 101.0
    assert clock.observe(102.0) == 102.0
    assert (clock.jumps, clock.rejected) == (0, 2)


@pytest.mark.parametrize("step_s", [DAY_S, -DAY_S, 2 * CLOCK_JUMP_S])
def test_a_clock_that_really_stepped_is_followed_after_confirmation(step_s: float) -> None:
    clock = CaptureClock()
    clock.observe(T0)
    seen = [clock.observe(T0 + step_s + k) for k in range(CLOCK_CONFIRMATIONS)]
    assert seen[:-1] == [T0] * (CLOCK_CONFIRMATIONS - 1)
    assert seen[-1] == T0 + step_s + CLOCK_CONFIRMATIONS - 1
    assert clock.jumps == 1


# -- idle connections are retired whatever the timestamps do ----------------------------------


def test_idle_connections_are_retired_during_the_capture() -> None:
    table, finished = run_table(quiet_connections(200, IDLE_TIMEOUT_S / 50))
    # 50 connections start per idle timeout: only the last ~50 may still be open.
    assert len(table) <= 60
    assert len(finished) >= 140


@pytest.mark.parametrize("offset_s", [DAY_S, -DAY_S, 365 * DAY_S])
def test_one_packet_stamped_far_away_does_not_stop_retirement(offset_s: float) -> None:
    frames = quiet_connections(200, IDLE_TIMEOUT_S / 50)
    stray_ts, stray = frames[500]
    frames[500] = (stray_ts + offset_s, stray)
    table, finished = run_table(frames)
    assert len(table) <= 60, (len(table), table.counters)
    assert len(finished) >= 140


def test_a_connection_stamped_ahead_of_the_clock_is_retired_once_quiet() -> None:
    frames = exchange(9999, T0 + DAY_S) + quiet_connections(200, IDLE_TIMEOUT_S / 50)
    frames.sort(key=lambda f: f[0] - DAY_S if f[0] > T0 + DAY_S / 2 else f[0])  # it comes first
    table, finished = run_table(frames)
    assert any(c.first_ts > T0 + DAY_S / 2 for c in finished)  # the one ahead is gone too
    assert len(table) <= 60


def test_a_clock_that_steps_back_for_good_still_retires_connections() -> None:
    before = quiet_connections(100, IDLE_TIMEOUT_S / 50)
    # Other clients after the step (no 4-tuple reused), stamped a day earlier.
    later = quiet_connections(300, IDLE_TIMEOUT_S / 50, first=1000)
    after = [(ts + 100 * IDLE_TIMEOUT_S / 50 - DAY_S, frame) for ts, frame in later]
    table, _ = run_table(before + after)
    # About 50 connections start per idle timeout: at the step the ~50 of the old clock wait
    # one more timeout in the new one beside the new ones, so the peak stays near 3 x 50; a
    # table that stopped sweeping would hold all 350.
    assert table.counters.peak_open <= 180
    assert len(table) <= 60


# -- half-open connections and the bound --------------------------------------------------------


def test_half_open_connections_are_retired_after_their_timeout() -> None:
    frames = [(T0 + i * 0.01, syn(i)) for i in range(100)]
    # Traffic of one live connection keeps the clock going past the half-open timeout.
    frames += exchange(5000, T0 + HALF_OPEN_TIMEOUT_S / 2)
    frames += exchange(5001, T0 + HALF_OPEN_TIMEOUT_S + 20)
    table, _ = run_table(frames)
    assert table.counters.half_open_timeouts == 100
    assert len(table) == 2  # the two live ones (idle for less than IDLE_TIMEOUT_S)


def test_half_open_connections_wait_their_timeout() -> None:
    frames = [(T0 + i * 0.01, syn(i)) for i in range(100)]
    frames += exchange(5000, T0 + HALF_OPEN_TIMEOUT_S - 20)
    table, _ = run_table(frames)
    assert table.counters.half_open_timeouts == 0
    assert len(table) == 101


def test_a_flood_never_holds_more_than_the_bound_and_keeps_live_connections() -> None:
    live = exchange(60000, T0)
    flood = [(T0 + 1 + i * 0.0001, syn(i)) for i in range(2000)]
    late = (
        T0 + 2,
        ipv4_tcp(client(60000), SERVER, 40000, 80, 60000 * 1000 + 5, 8, ACK | PSH, b"x"),
    )
    table, finished = run_table([*live, *flood, late], max_open_connections=100)
    assert table.counters.peak_open <= 100
    assert table.counters.evicted == sum(c.anomalies.get("tcp.evicted", 0) for c in finished)
    assert table.counters.evicted >= 2000 - 100
    # Half-open ones went first: the established connection was never evicted.
    assert not any(c.orig[0] == client(60000) for c in finished)


def test_evictions_are_reported_and_conserve_every_byte(tmp_path: Path) -> None:
    frames = [(T0 + i * 0.0001, syn(i)) for i in range(500)]
    path = write_pcap(tmp_path / "flood.pcap", frames)
    collector = Collector("json")
    options = AnalyzeOptions(max_open_connections=64)
    result = analyze([str(path)], options, on_record=collector.add)
    out = io.StringIO()
    collector.render(result, out)
    data = json.loads(out.getvalue())
    check_conservation(data)
    assert len(data["connections"]) == 500
    report = data["connection_table"]
    assert report["max_open_connections"] == 64
    evicted = [
        c for c in data["connections"] if {"name": "tcp.evicted", "count": 1} in c["anomalies"]
    ]
    assert report["evicted_connections"] == len(evicted) >= 500 - 64


def test_an_ordinary_capture_reports_no_budget_section(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "quiet.pcap", exchange(1, T0))
    result = analyze([str(path)])
    assert "connection_table" not in result.header()
