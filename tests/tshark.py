"""tshark as a second opinion: field extraction without pyshark's per-packet overhead.

The test command installs tshark (Debian package) when it is missing; a test that needs it and
cannot find it fails rather than skips, since the cross-check is part of the proof.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

#: tshark options some public captures need (from their README in captures-public).
DECODE_AS: dict[str, list[str]] = {
    "tls-renegotiation.pcap": ["-d", "tcp.port==4433,tls"],
    "http2-data-reassembly.pcap": ["-d", "tcp.port==8443,tls"],
    "packet-h2-14_headers.pcapng": ["-d", "tcp.port==3000,http2"],
    "grpc_stream_reassembly_sample.pcapng.gz": [
        "-d",
        "tcp.port==50051,http2",
        "-d",
        "tcp.port==44363,http2",
    ],
    "challenge01_ooo_stream.pcapng.gz": ["-o", "tcp.reassemble_out_of_order:TRUE"],
}


def tshark() -> str:
    path = shutil.which("tshark")
    assert path, "tshark is not installed: run the README's test command, which installs it"
    return path


def fields(path: Path, names: list[str], *extra: str) -> list[list[str]]:
    """Rows of ``-T fields`` output, one per packet (display filter via ``extra``)."""
    cmd = [tshark(), "-r", str(path), *DECODE_AS.get(path.name, []), *extra, "-T", "fields"]
    for name in names:
        cmd += ["-e", name]
    cmd += ["-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout
    return [line.split("\t") for line in out.splitlines()]


def endpoint(addr: str, port: str) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def tcp_conversations(path: Path) -> dict[int, dict[str, Any]]:
    """tcp.stream -> {endpoint -> [packets, bytes]} and retransmitted payload bytes."""
    rows = fields(
        path,
        [
            "tcp.stream",
            "ip.src",
            "ipv6.src",
            "tcp.srcport",
            "frame.len",
            "tcp.len",
            "tcp.analysis.retransmission",
        ],
        "-Y",
        "tcp",
    )
    streams: dict[int, dict[str, Any]] = defaultdict(
        lambda: {"dirs": defaultdict(lambda: [0, 0]), "retransmitted": 0}
    )
    for stream, ip4, ip6, port, frame_len, tcp_len, retrans in rows:
        # ICMP errors quote TCP headers; only the outer (first) values are the packet's own.
        stream = stream.split(",")[0]
        src = endpoint((ip4 or ip6).split(",")[0], port.split(",")[0])
        entry = streams[int(stream)]
        entry["dirs"][src][0] += 1
        entry["dirs"][src][1] += int(frame_len)
        if retrans:
            entry["retransmitted"] += int(tcp_len.split(",")[0] or 0)
    return dict(streams)
