#!/usr/bin/env python3
"""Time ``wireprobe analyze`` against tshark on the same capture, and compare peak memory.

    scripts/bench.py CAPTURE [--repeat N] [--runs N] [--format csv] [--jobs 1,2]

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
With ``--jobs 1,2,...`` it also runs ``wireprobe analyze --jobs N`` for each N (the sharded path,
issue 13) and reports throughput against cores: packets per wall second (what more cores buy),
CPU seconds of all processes together (what the shards cost: every one reads the whole input),
and the peak RSS of the largest process (``wait4`` reports the maximum over the worker tree), so
per worker; the machine's load average is printed beside them, since wall time depends on it.
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

from analyzer.capture.reader import CaptureSet  # noqa: E402

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


def shard_report(jobs: int, path: str, fmt: str) -> None:
    """The ``--jobs N`` analysis as ``wireprobe analyze`` runs it, report to /dev/null, then one
    JSON line on stdout: each shard's CPU seconds and its worker's peak RSS (MiB)."""
    import json

    from analyzer.options import AnalyzeOptions
    from analyzer.report.render import Collector
    from analyzer.shards import ShardProgress, analyze_inputs

    shards: list[tuple[float, float]] = []

    def note(p: ShardProgress) -> None:
        if p.finished is not None:
            shards.append((p.finished.cpu_s, p.finished.peak_rss_kib / 1024))

    collector = Collector(fmt)
    analysis = analyze_inputs(
        [path], AnalyzeOptions(), jobs=jobs, on_record=collector.add, on_progress=note
    )
    with open(os.devnull, "w") as out:
        collector.render(analysis, out)
    print(json.dumps(shards))


def run_sharded(cmd: list[str]) -> tuple[float, float, float, list[tuple[float, float]]]:
    """``run`` for a ``shard_report`` command: also the shards' own figures."""
    import json

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{cmd[0]} failed ({status}): {err.strip()[:300]}")
    shards = [(float(c), float(m)) for c, m in json.loads(out)]
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024, shards


def count_packets(path: str) -> int:
    return sum(1 for _ in CaptureSet([path]))


def _shown(path: str) -> str:
    """A path inside the working directory as a relative one: figures pasted into the README
    name no folder of the machine that made them."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("capture")
    parser.add_argument("--repeat", type=int, default=1, help="replay the capture N times")
    parser.add_argument("--format", default="csv", help="wireprobe output format")
    parser.add_argument("--runs", type=int, default=3, help="runs of each command; best kept")
    parser.add_argument("--jobs", default="", help="also --jobs N for each N of a list: 1,2")
    parser.add_argument("--shard-report", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.shard_report is not None:
        shard_report(args.shard_report, args.capture, args.format)
        return
    jobs = [int(n) for n in args.jobs.split(",") if n.strip()]
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
        commands = [
            [wireprobe, "analyze", path, "--format", args.format],
            [wireprobe, "analyze", path, "--format", args.format, "--transport-only"],
            [tshark, "-r", path, "-q", "-z", "conv,tcp"],
        ]
        me = [sys.executable, str(Path(__file__).resolve())]
        sharded_cmds = [
            [*me, path, "--format", args.format, "--shard-report", str(n)] for n in jobs
        ]
        runs: list[list[tuple[float, float, float]]] = [[] for _ in commands]
        shard_runs: list[list[tuple[float, float, float, list[tuple[float, float]]]]] = [
            [] for _ in jobs
        ]
        load_before = os.getloadavg()
        for _ in range(max(args.runs, 1)):
            for results, cmd in zip(runs, commands, strict=True):
                results.append(run(cmd))
            for sharded_results, cmd in zip(shard_runs, sharded_cmds, strict=True):
                sharded_results.append(run_sharded(cmd))
        load_after = os.getloadavg()
        ours, transport, theirs = (min(results) for results in runs)
        sharded = [min(results) for results in shard_runs]
    print(f"capture: {args.capture} x{args.repeat}: {packets:,} packets, {size_mb:.1f} MiB")
    print(
        f"best of {max(args.runs, 1)} runs each; {platform.python_implementation()} "
        f"{platform.python_version()} ({_shown(sys.executable)})"
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
    if jobs:
        print_jobs(jobs, sharded, packets, theirs, (load_before, load_after))


def print_jobs(
    jobs: list[int],
    sharded: list[tuple[float, float, float, list[tuple[float, float]]]],
    packets: int,
    tshark: tuple[float, float, float],
    load: tuple[tuple[float, float, float], tuple[float, float, float]],
) -> None:
    """Throughput against cores.  On a machine whose cores other processes share, wall time says
    how busy the machine was, not what N cores buy; the critical path says that: the parent's
    own CPU (start, survey, merge, report: all CPU not spent in shards) plus the slowest
    worker's CPU (its shards run one after another), which is the wall time on N idle cores."""
    cores = len(os.sched_getaffinity(0))
    print(
        f"--jobs N: {cores} cores here; load average {load[0][0]:.1f} before, "
        f"{load[1][0]:.1f} after"
    )
    head = f"{'--jobs N':<9} {'CPU s':>6} {'wall s':>7} {'parent s':>8} {'shards s':>16}"
    print(f"{head} {'critical s':>10} {'packets/s':>10} {'vs 1':>6} {'peak MiB/worker':>15}")
    base = None
    for n, (cpu, wall, _, shards) in zip(jobs, sharded, strict=True):
        parent = cpu - sum(c for c, _ in shards)
        # Shards on one worker run one after the other: with N workers and N shards per group,
        # the slowest worker does at most ceil(shards / N) of them; take the slowest ones.
        per_worker = -(-len(shards) // max(n, 1))
        slowest = sum(sorted((c for c, _ in shards), reverse=True)[:per_worker])
        critical = parent + slowest
        base = base or (critical if n == 1 else None)
        ratio = f"{base / critical:.2f}x" if base else "-"
        split = "+".join(f"{c:.2f}" for c, _ in shards)
        peak = max(m for _, m in shards)
        print(
            f"{n:<9} {cpu:>6.2f} {wall:>7.2f} {parent:>8.2f} {split:>16} {critical:>10.2f} "
            f"{packets / critical:>10,.0f} {ratio:>6} {peak:>15.1f}"
        )
    print(
        f"{'tshark':<9} {tshark[0]:>6.2f} {tshark[1]:>7.2f} {'':>8} {'':>16} {tshark[0]:>10.2f} "
        f"{packets / tshark[0]:>10,.0f}"
    )


if __name__ == "__main__":
    main()
