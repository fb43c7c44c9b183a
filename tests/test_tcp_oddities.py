"""Any TCP flag set, in any order, with any sequence and acknowledgment numbers: an anomaly at most.

Issue 15: a first segment with RST and FIN both set tripped an ``AssertionError`` in reassembly.
The property below throws random conversations at the flow table — random flag bytes (all eight
bits, so SYN+FIN, RST+SYN+FIN, URG/ECE/CWR noise too), random directions, sequence numbers near
each side's initial one or anywhere in the 32-bit space, payloads or none — and checks that the
analysis finishes, conserves every byte (DESIGN.md section 3), and is the same through the fused
fast path and the general path (tests/test_fast_path.py's contract).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from builder import ACK, FIN, PSH, RST, SYN, ipv4_tcp, write_pcap
from conftest import analyze_json, check_conservation
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.options import AnalyzeOptions
from analyzer.pipeline import analyze
from analyzer.report.render import Collector

ORIG, RESP = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])
ISN = (1000, 5000)

#: one segment: direction, flag byte, seq (offset from the ISN, or absolute), ack, payload, dt
_segment = st.tuples(
    st.integers(0, 1),
    # Half the segments carry what stacks send (so connections get established and the fast
    # path runs), half any flag byte at all.
    st.one_of(st.sampled_from([SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK]), st.integers(0, 0xFF)),
    st.one_of(st.integers(-2, 120), st.integers(0, 2**32 - 1).map(lambda v: ("abs", v))),
    st.one_of(st.integers(-2, 120), st.integers(0, 2**32 - 1).map(lambda v: ("abs", v))),
    st.integers(0, 40),
    st.sampled_from([0.0, 0.001, 0.5, 400.0, -5.0]),
)
_conversation = st.lists(_segment, min_size=1, max_size=14)


def _number(value: Any, direction: int) -> int:
    if isinstance(value, tuple):
        return int(value[1])
    return int(ISN[direction] + value)


def _frames(conversation: list[Any]) -> list[tuple[float, bytes]]:
    frames = []
    ts = 1_700_000_000.0
    for direction, flags, seq, ack, size, dt in conversation:
        ts = max(ts + dt, 1.0)
        src, dst = (ORIG, RESP) if direction == 0 else (RESP, ORIG)
        ports = (40000, 8080) if direction == 0 else (8080, 40000)
        payload = bytes(range(size))
        frame = ipv4_tcp(
            src,
            dst,
            *ports,
            _number(seq, direction),
            _number(ack, 1 - direction),
            flags,
            payload,
        )
        frames.append((ts, frame))
    return frames


def _analysis(path: Path, *, fast: bool, transport_only: bool) -> Any:
    collector = Collector("json")
    options = AnalyzeOptions(fast_path=fast, transport_only=transport_only)
    result = analyze([str(path)], options, on_record=collector.add)
    out = io.StringIO()
    collector.render(result, out)
    return json.loads(out.getvalue())


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(conversation=_conversation)
def test_any_flags_any_order_is_at_most_an_anomaly(conversation: list[Any], tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "odd.pcap", _frames(conversation))
    for transport_only in (False, True):
        fast = _analysis(path, fast=True, transport_only=transport_only)
        general = _analysis(path, fast=False, transport_only=transport_only)
        check_conservation(fast)
        assert fast == general
        wire = sum(len(frame) for _, frame in _frames(conversation))
        assert sum(c["wire_bytes"] for c in fast["connections"]) == wire


def test_first_segment_with_rst_and_fin_is_teardown_and_an_anomaly(tmp_path: Path) -> None:
    frame = ipv4_tcp(ORIG, RESP, 40000, 8080, 100, 0, RST | FIN | ACK, b"bye")
    path = write_pcap(tmp_path / "rstfin.pcap", [(1.0, frame)])
    result = analyze_json([path])
    check_conservation(result)
    (conn,) = result["connections"]
    assert conn["teardown_bytes"] == len(frame)
    assert {"name": "tcp.bad_flags", "count": 1} in conn["anomalies"]


def test_syn_with_fin_counts_an_anomaly_and_still_conserves(tmp_path: Path) -> None:
    frames = [
        (1.0, ipv4_tcp(ORIG, RESP, 40000, 8080, ISN[0], 0, SYN | FIN)),
        (1.1, ipv4_tcp(RESP, ORIG, 8080, 40000, ISN[1], ISN[0] + 1, SYN | ACK | RST)),
        (1.2, ipv4_tcp(ORIG, RESP, 40000, 8080, ISN[0] + 1, ISN[1] + 1, ACK | PSH, b"x")),
    ]
    result = analyze_json([write_pcap(tmp_path / "synfin.pcap", frames)])
    check_conservation(result)
    names = {a["name"]: a["count"] for c in result["connections"] for a in c["anomalies"]}
    assert names.get("tcp.bad_flags") == 2
