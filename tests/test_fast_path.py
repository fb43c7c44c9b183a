"""The fused fast path of ``FlowTable.run`` gives exactly the general path's results.

The fast path handles an established connection's in-order data segments and pure ACKs inline;
everything else takes ``decode`` then ``FlowTable.packet``.  Whatever a capture holds, turning
the fast path off (``AnalyzeOptions(fast_path=False)``) must not change one figure: these tests
compare the whole JSON analysis both ways, with and without decoding, on every golden and public
capture and on generated captures damaged in the ways real ones are (lost, duplicated,
reordered, cut and mid-connection packets, one direction only, and the same traffic over IPv6).
"""

from __future__ import annotations

import io
import json
import random
import struct
from pathlib import Path
from typing import Any

import pytest
from conftest import CAPTURES, PUBLIC, public_captures

from analyzer.golden import golden_captures, keylog_path
from analyzer.options import AnalyzeOptions, DecodeOptions
from analyzer.pipeline import analyze
from analyzer.report.render import Collector
from analyzer.synth import Scenario, generate
from analyzer.tcp.flows import FlowTable
from analyzer.tls.keylog import KeyLog

GOLDEN = golden_captures(CAPTURES)
PUBLIC_FILES = public_captures()


def _json(path: Path, *, fast: bool, transport_only: bool, keys: Path | None = None) -> Any:
    keylog = KeyLog()
    if keys is not None and keys.exists():
        keylog.load(str(keys))
    options = AnalyzeOptions(
        decode=DecodeOptions(keylog=keylog), fast_path=fast, transport_only=transport_only
    )
    collector = Collector("json")
    analysis = analyze([str(path)], options, on_record=collector.add)
    out = io.StringIO()
    collector.render(analysis, out)
    return json.loads(out.getvalue())


def _assert_same(path: Path, keys: Path | None = None) -> None:
    for transport_only in (False, True):
        fast = _json(path, fast=True, transport_only=transport_only, keys=keys)
        general = _json(path, fast=False, transport_only=transport_only, keys=keys)
        assert fast == general, f"{path.name} transport_only={transport_only}"


@pytest.mark.parametrize("capture", GOLDEN, ids=[p.name for p in GOLDEN])
def test_golden_capture_same_both_ways(capture: Path) -> None:
    _assert_same(capture, keylog_path(capture))


@pytest.mark.parametrize(
    "capture", PUBLIC_FILES, ids=[str(p.relative_to(PUBLIC)) for p in PUBLIC_FILES]
)
def test_public_capture_same_both_ways(capture: Path) -> None:
    _assert_same(capture)


def _write_pcap(path: Path, records: list[tuple[float, bytes, int]]) -> None:
    """A microsecond pcap of (ts, captured bytes, wire length) records, Ethernet."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for ts, data, wire in records:
        sec = int(ts)
        out.append(struct.pack("<IIII", sec, round((ts - sec) * 1e6), len(data), wire))
        out.append(data)
    path.write_bytes(b"".join(out))


def _as_ipv6(frame: bytes) -> bytes:
    """An Ethernet/IPv4/TCP frame (no IP options) as the same segment over IPv6."""
    total = struct.unpack_from("!H", frame, 16)[0]
    src, dst = frame[26:30], frame[30:34]
    header = struct.pack("!IHBB", 6 << 28, total - 20, 6, 64)
    prefix = bytes.fromhex("20010db8000000000000000000000000")[:12]
    ipv6 = header + prefix + src + prefix + dst
    return frame[:12] + b"\x86\xdd" + ipv6 + frame[34 : 14 + total]


def _damaged(kind: str, frames: list[tuple[float, bytes]], seed: int) -> list[Any]:
    rng = random.Random(seed)
    records = [(ts, data, len(data)) for ts, data in frames]
    if kind == "ipv6":
        return [(ts, _as_ipv6(data), len(_as_ipv6(data))) for ts, data, _ in records]
    if kind == "mid_connection":
        return records[len(records) // 3 :]
    if kind == "duplicated":
        out = []
        for record in records:
            out.append(record)
            if rng.random() < 0.1:
                out.append(record)
        return out
    if kind == "swapped":
        for i in range(1, len(records) - 1):
            if rng.random() < 0.1:
                records[i], records[i + 1] = records[i + 1], records[i]
        return records
    if kind == "dropped":
        return [r for r in records if rng.random() >= 0.05]
    if kind == "one_way":
        # Only the first sender's frames (a capture of one direction of a link): the other
        # direction's stream never starts, so data segments carry ACKs of nothing known.
        first_src = records[0][1][26:30]
        return [r for r in records if r[1][26:30] == first_src]
    if kind == "snaplen":
        return [(ts, data[:96], wire) for ts, data, wire in records]
    raise ValueError(kind)


DAMAGE = ("mid_connection", "duplicated", "swapped", "dropped", "snaplen", "ipv6", "one_way")
SCENARIOS = {
    "http1-keepalive": Scenario(protocol="http1", messages=30, per_connection=10, payload=3000),
    "http2-concurrent": Scenario(protocol="http2", messages=30, concurrency=4, payload=2000),
    "amqp-confirm-async": Scenario(
        protocol="amqp", amqp_mode="confirm-async", messages=40, payload=1500
    ),
    "http1-loss-reorder": Scenario(
        protocol="http1", messages=20, per_connection=5, payload=4000, loss=0.1, reorder=0.1
    ),
}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_damaged_capture_same_both_ways(name: str, damage: str, tmp_path: Path) -> None:
    generated = generate(SCENARIOS[name])
    path = tmp_path / f"{name}-{damage}.pcap"
    _write_pcap(path, _damaged(damage, generated.packets, seed=len(name)))
    _assert_same(path)


def test_fast_path_takes_most_packets_of_a_keepalive_capture(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without this the comparisons above could pass with a fast path that never runs."""
    general_calls = 0
    original = FlowTable._general

    def counting(self: FlowTable, *args: Any) -> float:
        nonlocal general_calls
        general_calls += 1
        return original(self, *args)

    monkeypatch.setattr(FlowTable, "_general", counting)
    capture = CAPTURES / "gen-http1-keepalive.pcap"
    ipv6 = tmp_path / "keepalive-ipv6.pcap"
    frames = generate(SCENARIOS["http1-keepalive"]).packets
    _write_pcap(ipv6, _damaged("ipv6", frames, seed=0))
    for path in (capture, ipv6):
        for transport_only in (False, True):
            general_calls = 0
            result = _json(path, fast=True, transport_only=transport_only)
            packets = result["packets"]
            # Handshakes and FINs take the general path; the data and ACKs between them do not.
            assert general_calls < packets / 3, (path.name, transport_only, general_calls)


def test_short_and_odd_frames_same_both_ways(tmp_path: Path) -> None:
    """Frames too short for either family's fast unpack, or with other Ethernet types, of
    every length around the fast path's thresholds: no error, and the same result."""
    frames = generate(SCENARIOS["http1-keepalive"]).packets
    records: list[tuple[float, bytes, int]] = []
    for ts, data in frames[:12]:
        for ethertype in (b"\x86\xdd", b"\x08\x00", b"\x86\x00", b"\x81\x00"):
            for cut in (54, 60, 67, 68, 73, 74, 80):
                odd = (data[:12] + ethertype + data[14:] + bytes(80))[:cut]
                records.append((ts, odd, cut))
        records.append((ts, _as_ipv6(data), len(_as_ipv6(data))))
    path = tmp_path / "odd.pcap"
    _write_pcap(path, records)
    _assert_same(path)
