#!/usr/bin/env python3
"""Time ``wireprobe analyze`` against tshark on the same capture, and compare peak memory.

    scripts/bench.py CAPTURE [--repeat N] [--runs N] [--format csv]

tshark runs ``tshark -r CAPTURE -q -z conv,tcp`` (its full dissection, summarised per TCP
conversation); wireprobe runs ``wireprobe analyze CAPTURE --format csv`` (the whole job: every
decoder, the ledger, the records) and again with ``--transport-only`` (link/IP/TCP accounting
without application decoding, the comparable job of issue 2's transport stage).  Each is a
separate process; CPU time, wall time and peak RSS come from ``os.wait4``.
With ``--repeat N`` the capture is first replayed N times back to back (timestamps shifted, so
every copy's connections are new ones) into a temporary pcap, which also shows whether peak memory
grows with the length of the file: run it with two values of N and compare.
Each command runs ``--runs`` times (default 3), the three commands taking turns, and the fastest
run of each is reported: other processes on the machine can only slow a run down, never speed it
up, so the minimum is the figure least disturbed by them.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analyzer.capture import CaptureSet  # noqa: E402

#: Seconds between the copies of a repeated capture: past the idle timeout, so each copy's
#: connections are finished before the next begins.
REPEAT_SPACING_S = 1000.0


def repeat_capture(source: str, copies: int, out: Path) -> int:
    """Write ``copies`` back-to-back replays of ``source`` as one nanosecond pcap.

    The source is read once for its time span and then once per copy, never held: this
    process's memory must stay small, because a child's peak RSS (``ru_maxrss``) on Linux
    counts the pages of the process it was forked from, so a large list of packets here
    would show up as every measured command's peak memory."""
    first = last = None
    link_types: set[int] = set()
    packets = 0
    for ts, link_type, _, _ in CaptureSet([source]):
        first = ts if first is None else first
        last = ts
        link_types.add(link_type)
        packets += 1
    if first is None or last is None:
        raise SystemExit(f"{source}: no packets")
    if len(link_types) != 1:
        raise SystemExit(f"{source}: several link types; --repeat needs one")
    span = last - first + REPEAT_SPACING_S
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, link_types.pop()))
        for i in range(copies):
            for ts, _, orig_len, data in CaptureSet([source]):
                t = ts + i * span
                sec = int(t)
                f.write(struct.pack("<IIII", sec, int((t - sec) * 1e9), len(data), orig_len))
                f.write(data)
    return packets * copies


def run(cmd: list[str]) -> tuple[float, float, float]:
    """(CPU seconds, wall seconds, peak RSS in MiB) of one command.

    CPU time (user + system, from ``wait4``) is the figure compared: it is what the work costs
    on one core, and unlike wall time it does not change when other processes share the machine.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{cmd[0]} failed ({status}): {err.strip()[:300]}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024


def count_packets(path: str) -> int:
    return sum(1 for _ in CaptureSet([path]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("capture")
    parser.add_argument("--repeat", type=int, default=1, help="replay the capture N times")
    parser.add_argument("--format", default="csv", help="wireprobe output format")
    parser.add_argument("--runs", type=int, default=3, help="runs of each command; best kept")
    args = parser.parse_args()
    tshark = shutil.which("tshark")
    if tshark is None:
        raise SystemExit("tshark is not installed (apt-get install tshark)")
    # The wireprobe of the interpreter running this script (its venv), so that the Python
    # build measured is the one asked for: `some-venv/bin/python scripts/bench.py ...`.
    wireprobe = str(Path(sys.executable).parent / "wireprobe")
    if not Path(wireprobe).exists():
        wireprobe = shutil.which("wireprobe") or "wireprobe"
    # An installed package has its bytecode compiled (pip does it at install time); an editable
    # checkout under PYTHONDONTWRITEBYTECODE would compile every module on every run instead,
    # about 0.05 s of start-up that is not the analysis.
    compileall.compile_dir(str(ROOT / "analyzer"), quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.capture
        if args.repeat > 1:
            path = str(Path(tmp) / "repeated.pcap")
            packets = repeat_capture(args.capture, args.repeat, Path(path))
        else:
            packets = count_packets(path)
        size_mb = os.path.getsize(path) / 2**20
        commands = (
            [wireprobe, "analyze", path, "--format", args.format],
            [wireprobe, "analyze", path, "--format", args.format, "--transport-only"],
            [tshark, "-r", path, "-q", "-z", "conv,tcp"],
        )
        runs: list[list[tuple[float, float, float]]] = [[], [], []]
        for _ in range(max(args.runs, 1)):
            for results, cmd in zip(runs, commands, strict=True):
                results.append(run(cmd))
        ours, transport, theirs = (min(results) for results in runs)
    print(f"capture: {args.capture} x{args.repeat}: {packets:,} packets, {size_mb:.1f} MiB")
    print(
        f"best of {max(args.runs, 1)} runs each; {platform.python_implementation()} "
        f"{platform.python_version()} ({sys.executable})"
    )
    print(f"{'tool':<36} {'CPU s':>7} {'wall s':>7} {'packets/CPU s':>14} {'peak MiB':>9}")
    for name, (cpu, wall, rss) in (
        (f"wireprobe analyze --format {args.format}", ours),
        ("wireprobe analyze --transport-only", transport),
        ("tshark -q -z conv,tcp", theirs),
    ):
        print(f"{name:<36} {cpu:>7.2f} {wall:>7.2f} {packets / cpu:>14,.0f} {rss:>9.1f}")
    print(f"speed ratio, full analysis / tshark:    {theirs[0] / ours[0]:.2f}x")
    print(f"speed ratio, transport only / tshark:   {theirs[0] / transport[0]:.2f}x")


if __name__ == "__main__":
    main()
