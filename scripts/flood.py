#!/usr/bin/env python3
"""Peak memory of ``wireprobe analyze`` on a SYN flood, and on one ten times larger.

    scripts/flood.py [--syns 50000 500000] [--rate 10000] [--synack] [--keep DIR]

Writes a pcap of N SYNs from distinct source addresses and ports (198.18.0.0/15, the benchmark
range of RFC 2544) to one server, ``--rate`` per second of capture time (with ``--synack`` each
SYN is answered and never acknowledged: the half-open state a real flood leaves on a server),
then runs ``wireprobe analyze --format json`` on it in a child process and reports CPU time and
peak RSS from ``os.wait4``.  The connection table's state budget (``analyzer/tcp/budget.py``) must
keep the peak flat: the two sizes should report about the same figure.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
_ETHERNET = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
SERVER = bytes([198, 19, 255, 1])
SERVER_PORT = 80
SYN, ACK = 0x02, 0x10


def _frame(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, src, dst)
    return _ETHERNET + ip + tcp


def _record(ts: float, frame: bytes) -> bytes:
    sec = int(ts)
    return struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)) + frame


def write_flood(path: Path, syns: int, rate: float, *, synack: bool) -> int:
    """Write the flood; return the number of packets."""
    packets = 0
    with open(path, "wb") as out:
        out.write(_PCAP_HEADER)
        for i in range(syns):
            # Addresses 198.18.0.0 to 198.18.255.255 and ports 1024-65023: every SYN is another
            # 4-tuple (up to 2**16 * 64000 of them), as a spoofing flood's are.
            src = bytes([198, 18, (i >> 8) & 0xFF, i & 0xFF])
            sport = 1024 + (i >> 16) % 64000
            ts = 1_700_000_000.0 + i / rate
            isn = (i * 2654435761) & 0xFFFFFFFF
            out.write(_record(ts, _frame(src, SERVER, sport, SERVER_PORT, isn, 0, SYN)))
            packets += 1
            if synack:
                reply = _frame(
                    SERVER, src, SERVER_PORT, sport, ~isn & 0xFFFFFFFF, isn + 1, SYN | ACK
                )
                out.write(_record(ts + 0.0001, reply))
                packets += 1
    return packets


def measure(capture: Path) -> tuple[float, int]:
    """CPU seconds and peak RSS in MiB of ``wireprobe analyze CAPTURE --format json``."""
    cmd = [sys.executable, "-m", "analyzer.cli", "analyze", str(capture), "--format", "json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(os.devnull, "wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"wireprobe failed on {capture} (status {status})")
    # ru_maxrss is in KiB on Linux.
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--syns", type=int, nargs="+", default=[50_000, 500_000])
    parser.add_argument("--rate", type=float, default=10_000.0, help="SYNs per capture second")
    parser.add_argument("--synack", action="store_true", help="answer each SYN, never ACK")
    parser.add_argument("--keep", type=Path, help="write the floods here and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        print(f"{'SYNs':>9} {'packets':>9} {'CPU s':>7} {'peak RSS MiB':>13}")
        for syns in args.syns:
            path = folder / f"flood-{syns}.pcap"
            packets = write_flood(path, syns, args.rate, synack=args.synack)
            cpu_s, rss_mib = measure(path)
            print(f"{syns:>9} {packets:>9} {cpu_s:>7.1f} {rss_mib:>13}", flush=True)


if __name__ == "__main__":
    main()
