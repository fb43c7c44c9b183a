"""Golden captures: every figure of every capture in captures/ equals its baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CAPTURES, check_conservation

from analyzer.golden import baseline_path, golden_captures, render_baseline

GOLDEN = golden_captures(CAPTURES)


def test_there_are_golden_captures() -> None:
    assert len(GOLDEN) >= 1


@pytest.mark.parametrize("capture", GOLDEN, ids=[p.name for p in GOLDEN])
def test_capture_equals_its_baseline(capture: Path) -> None:
    baseline = baseline_path(capture)
    assert baseline.exists(), f"{baseline.name} missing: run scripts/update_baselines.py"
    got = render_baseline(capture)
    want = baseline.read_text(encoding="utf-8")
    if got != want:
        diff = [
            f"{k}: {a} != {b}"
            for k, (a, b) in _differences(json.loads(want), json.loads(got)).items()
        ][:20]
        pytest.fail(f"{capture.name} differs from its baseline:\n" + "\n".join(diff))


@pytest.mark.parametrize("capture", GOLDEN, ids=[p.name for p in GOLDEN])
def test_conservation_on_golden(capture: Path) -> None:
    check_conservation(json.loads(render_baseline(capture)))


def _differences(a: object, b: object, prefix: str = "") -> dict[str, tuple[object, object]]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: dict[str, tuple[object, object]] = {}
        for key in sorted(set(a) | set(b)):
            out.update(_differences(a.get(key), b.get(key), f"{prefix}.{key}"))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = {}
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out.update(_differences(x, y, f"{prefix}[{i}]"))
        return out
    return {} if a == b else {prefix or ".": (a, b)}


def test_a_changed_figure_fails_the_golden_test(tmp_path: Path) -> None:
    """The test of the test: change one figure in a copy of a baseline and see it caught."""
    capture = GOLDEN[0]
    copy = tmp_path / capture.name
    copy.write_bytes(capture.read_bytes())
    data = json.loads(render_baseline(copy))
    data["connections"][0]["wire_bytes"] += 1
    baseline_path(copy).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    with pytest.raises(pytest.fail.Exception, match="wire_bytes"):
        test_capture_equals_its_baseline(copy)


@pytest.mark.parametrize("capture", GOLDEN, ids=[p.name for p in GOLDEN])
def test_pyshark_agrees_on_connections_packets_and_bytes(capture: Path) -> None:
    """tshark's second opinion through pyshark on the captures the project made."""
    import pyshark

    theirs: dict[frozenset[str], dict[str, list[int]]] = {}
    cap = pyshark.FileCapture(str(capture), display_filter="tcp", keep_packets=False)
    try:
        for packet in cap:
            ip = packet.ipv6 if hasattr(packet, "ipv6") else packet.ip
            src = f"{ip.src}:{packet.tcp.srcport}"
            dst = f"{ip.dst}:{packet.tcp.dstport}"
            if ":" in ip.src:
                src = f"[{ip.src}]:{packet.tcp.srcport}"
                dst = f"[{ip.dst}]:{packet.tcp.dstport}"
            stream = theirs.setdefault(frozenset((src, dst, packet.tcp.stream)), {})
            entry = stream.setdefault(src, [0, 0])
            entry[0] += 1
            entry[1] += int(packet.length)
    finally:
        cap.close()
    ours = json.loads(render_baseline(capture))["connections"]
    assert len(ours) == len(theirs)
    got = sorted(
        sorted(
            (ep, c["directions"][side]["packets"], c["directions"][side]["wire_bytes"])
            for side, ep in (("orig", c["orig"]), ("resp", c["resp"]))
            if c["directions"][side]["packets"]
        )
        for c in ours
    )
    want = sorted(sorted((ep, v[0], v[1]) for ep, v in s.items()) for s in theirs.values())
    assert got == want
