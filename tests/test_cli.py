"""The command line: formats, exit codes, one-line errors, never a traceback, nothing overwritten."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from builder import Conversation
from conftest import CAPTURES, check_conservation

GOLDEN = CAPTURES / "http1-curl-http-server.pcap"


def wireprobe(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "analyzer.cli", *args],
        input=stdin.decode("latin-1") if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(CAPTURES.parent)},
    )


def assert_usage_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]


def test_table_is_the_default(tmp_path: Path) -> None:
    result = wireprobe("analyze", str(GOLDEN))
    assert result.returncode == 0, result.stderr
    assert "HTTP/1.1" in result.stdout and "Cost per message" in result.stdout


def test_json_follows_the_contract() -> None:
    result = wireprobe("analyze", str(GOLDEN), "--format", "json")
    data = json.loads(result.stdout)
    assert data["schema"] == "wireprobe.analysis/1"
    assert {"captures", "connections", "messages", "summary"} <= set(data)
    check_conservation(data)


def test_csv_has_a_row_per_connection() -> None:
    rows = list(csv.DictReader(io.StringIO(wireprobe("analyze", str(GOLDEN), "-f", "csv").stdout)))
    assert len(rows) == 3
    assert all(int(r["wire_bytes"]) > 0 for r in rows)


def test_markdown() -> None:
    out = wireprobe("analyze", str(GOLDEN), "-f", "markdown").stdout
    assert out.startswith("# wireprobe analysis") and "| HTTP/1.1 |" in out


def test_stdin_and_gzip(tmp_path: Path) -> None:
    data = gzip.compress(GOLDEN.read_bytes())
    result = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "analyze", "-", "-f", "json"],
        input=data,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["connections"]) == 3


def test_output_is_never_overwritten_without_force(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    out.write_text("precious")
    assert_usage_error(wireprobe("analyze", str(GOLDEN), "-f", "json", "-o", str(out)), "--force")
    assert out.read_text() == "precious"
    assert (
        wireprobe("analyze", str(GOLDEN), "-f", "json", "-o", str(out), "--force").returncode == 0
    )
    assert json.loads(out.read_text())["schema"] == "wireprobe.analysis/1"


def test_output_may_not_be_an_input(tmp_path: Path) -> None:
    copy = tmp_path / "c.pcap"
    copy.write_bytes(GOLDEN.read_bytes())
    assert_usage_error(wireprobe("analyze", str(copy), "-o", str(copy), "--force"), "input")
    assert copy.read_bytes() == GOLDEN.read_bytes()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "empty"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "truncated"),
        (b"GET / HTTP/1.1\r\n\r\n" * 4, "not a pcap"),
        (bytes(random.Random(7).randrange(256) for _ in range(4096)), "not a pcap"),
    ],
    ids=["empty", "cut-header", "text", "random"],
)
def test_unusable_files_exit_2_with_one_line(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    assert_usage_error(wireprobe("analyze", str(path)), needle)


def test_missing_file_and_bad_arguments() -> None:
    assert_usage_error(wireprobe("analyze", "/nonexistent.pcap"), "no such file")
    assert_usage_error(wireprobe("analyze", str(GOLDEN), "-f", "xml"), "--format")
    assert_usage_error(wireprobe("analyze", str(GOLDEN), "--port", "smtp=25"), "--port")


def test_truncated_packet_record_is_an_anomaly_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.pcap"
    path.write_bytes(GOLDEN.read_bytes()[:-30])
    result = wireprobe("analyze", str(path), "-f", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"name": "capture.truncated", "count": 1} in data["captures"][0]["anomalies"]
    check_conservation(data)


def test_pcapng_with_an_unknown_block(tmp_path: Path) -> None:
    import struct

    shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
    idb = struct.pack("<IIHHI", 1, 20, 1, 0, 262144) + struct.pack("<I", 20)
    unknown = struct.pack("<II", 0x0777, 16) + b"\0\0\0\0" + struct.pack("<I", 16)
    conv = Conversation(resp_port=9999).handshake().orig(b"\x01" * 10).close()
    epbs = b""
    for ts, frame in conv.frames:
        pad = (-len(frame)) % 4
        body = (
            struct.pack(
                "<IIIII", 0, int(ts * 1e6) >> 32, int(ts * 1e6) & 0xFFFFFFFF, len(frame), len(frame)
            )
            + frame
            + b"\0" * pad
        )
        epbs += struct.pack("<II", 6, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))
    path = tmp_path / "u.pcapng"
    path.write_bytes(shb + idb + unknown + epbs)
    data = json.loads(wireprobe("analyze", str(path), "-f", "json").stdout)
    assert {"name": "pcapng.unknown_block", "count": 1} in data["captures"][0]["anomalies"]
    assert data["connections"][0]["wire_bytes"] == sum(len(f) for _, f in conv.frames)


def test_snaplen_60_capture(tmp_path: Path) -> None:
    conv = Conversation(resp_port=80).handshake()
    conv.orig(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").resp(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    )
    conv.close()
    path = conv.write(tmp_path / "s.pcap", snaplen=60)
    result = wireprobe("analyze", str(path), "-f", "json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    check_conservation(data)
    assert data["connections"][0]["wire_bytes"] == sum(len(f) for _, f in conv.frames)


def test_bit_flipped_captures_never_crash(tmp_path: Path) -> None:
    original = bytearray(GOLDEN.read_bytes())
    rnd = random.Random(3)
    for i in range(8):
        data = bytearray(original)
        for _ in range(40):
            data[rnd.randrange(24, len(data))] ^= 1 << rnd.randrange(8)
        path = tmp_path / f"flip{i}.pcap"
        path.write_bytes(bytes(data))
        result = wireprobe("analyze", str(path), "-f", "json")
        assert "Traceback" not in result.stderr
        assert result.returncode in (0, 2)
        if result.returncode == 0:
            check_conservation(json.loads(result.stdout))


def test_capture_records_real_peers_and_never_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "live.pcap"
    result = wireprobe("capture", "--protocol", "http1", "--messages", "2", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "HTTP/1.1" in result.stdout
    assert "recorded" in result.stderr and "2 messages" in result.stderr
    before = out.read_bytes()
    again = wireprobe("capture", "--protocol", "http1", "--messages", "2", "-o", str(out))
    assert_usage_error(again, "--force")
    assert out.read_bytes() == before


def test_output_paths_that_cannot_work_are_one_line_errors(tmp_path: Path) -> None:
    assert_usage_error(
        wireprobe("analyze", str(GOLDEN), "-o", str(tmp_path), "--force"), "directory"
    )
    assert_usage_error(wireprobe("analyze", str(GOLDEN), "-o", "/proc/no/x.json"), "exist")
    assert not list(tmp_path.iterdir()), "no .partial file left behind"


def test_dash_output_is_stdout_and_a_closed_pipe_is_no_error(tmp_path: Path) -> None:
    result = wireprobe("analyze", str(GOLDEN), "-f", "csv", "-o", "-")
    assert result.returncode == 0 and result.stdout.startswith("id,orig,resp")
    assert not (CAPTURES.parent / "-").exists()
    head = subprocess.run(
        f"{sys.executable} -m analyzer.cli analyze {GOLDEN} -f json | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        executable="/bin/bash",
        env={**os.environ, "PYTHONPATH": str(CAPTURES.parent)},
    )
    assert "Traceback" not in head.stderr and head.stderr == ""


def test_partial_keys_leave_per_message_figures_to_the_decrypted_connections(
    tmp_path: Path,
) -> None:
    capture = CAPTURES / "gen-http1-tls12.pcap"
    lines = (CAPTURES / "gen-http1-tls12.keys").read_text().splitlines()
    first_key = next(line for line in lines if line.startswith("CLIENT_RANDOM"))
    keys = tmp_path / "one.keys"
    keys.write_text(first_key + "\n")
    data = json.loads(wireprobe("analyze", str(capture), "-k", str(keys), "-f", "json").stdout)
    decrypted = [c for c in data["connections"] if c["messages"] is not None]
    assert len(decrypted) == 1 and len(data["connections"]) == 2
    summary = data["summary"]["http1"]
    conn = decrypted[0]
    assert summary["messages"] == conn["messages"]
    assert summary["handshakes_per_message"] == 2 / conn["messages"]  # its TCP + its TLS
    assert summary["payload_efficiency"] == conn["layers"]["payload"] / conn["wire_bytes"]
