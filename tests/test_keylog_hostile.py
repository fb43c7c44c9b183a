"""Side files are input too (issue 15): a key log of garbage, one that never ends, a bad DSB.

Control characters, over-long lines and non-ASCII are skipped and counted, never an exception;
a key log read from a device or a pipe that never ends stops at ``MAX_KEYLOG_BYTES`` with one
line, in bounded memory; a pcapng Decryption Secrets Block whose content is wrong is an anomaly
of the capture; the CLI warns once per file with the count and never quotes a line.
"""

from __future__ import annotations

import os
import struct
import threading
import tracemalloc
from pathlib import Path

import pytest
from builder import Conversation
from test_capture import block, epb, idb, shb
from test_cli import assert_usage_error, wireprobe

from analyzer.pipeline import analyze
from analyzer.tls import keylog as keylog_module
from analyzer.tls.keylog import MAX_KEYLOG_LINE_BYTES, READ_CHUNK_BYTES, KeyLog, KeyLogTooLarge

RANDOM = bytes(range(32))
MASTER = bytes(range(100, 148))
GOOD = f"CLIENT_RANDOM {RANDOM.hex()} {MASTER.hex()}"


@pytest.mark.parametrize(
    "garbage",
    [
        "\x0b\x0c\x1c\x1d\x1e\x1f",  # only characters str.split takes for spaces
        "\x01\x02\x03",
        "\x1b[2J\x1b[H",  # an ANSI clear-screen
        "CLIENT_RANDOM\x00" + RANDOM.hex() + " " + MASTER.hex(),
        "\x85\u2028",  # Unicode line separators (not line ends in a key log)
    ],
)
def test_a_line_of_control_characters_is_skipped_and_counted(garbage: str) -> None:
    keys = KeyLog()
    assert keys.add_text(garbage + "\n" + GOOD + "\n") == 1
    assert keys.skipped == 1
    assert keys.secret("CLIENT_RANDOM", RANDOM) == MASTER


def test_tab_separated_fields_are_still_an_entry() -> None:
    keys = KeyLog()
    assert keys.add_text(GOOD.replace(" ", "\t")) == 1


def test_an_over_long_line_across_reads_is_one_skipped_line(tmp_path: Path) -> None:
    path = tmp_path / "long.keys"
    long_line = b"#" + b"x" * (3 * READ_CHUNK_BYTES)
    path.write_bytes(GOOD.encode() + b"\n" + long_line + b"\nCLIENT_RANDOM zz\n")
    keys = KeyLog()
    assert keys.load(str(path)) == 1
    assert keys.skipped == 2  # the long line, and the one of bad hex
    assert len(long_line) > MAX_KEYLOG_LINE_BYTES


def test_a_key_log_that_never_ends_stops_at_the_bound_in_bounded_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bound = 4 << 20
    monkeypatch.setattr(keylog_module, "MAX_KEYLOG_BYTES", bound)
    for device in ("/dev/zero", "/dev/urandom"):
        tracemalloc.start()
        try:
            with pytest.raises(KeyLogTooLarge) as caught:
                KeyLog().load(device)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert str(caught.value).startswith(f"{device}: more than 4 MiB of key log")
        assert peak < bound // 2, (device, peak)


def test_a_fifo_fed_forever_stops_at_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keylog_module, "MAX_KEYLOG_BYTES", 1 << 20)
    fifo = tmp_path / "keys.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        try:
            with open(fifo, "wb") as out:
                while True:
                    out.write((GOOD + "\n").encode() * 100)
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    keys = KeyLog()
    with pytest.raises(KeyLogTooLarge):
        keys.load(str(fifo))
    writer.join(timeout=10)
    assert not writer.is_alive()
    assert len(keys) == 1  # the same entry, over and over


def test_garbage_is_one_warning_with_the_count_and_no_content(tmp_path: Path) -> None:
    conv = Conversation()
    conv.handshake()
    conv.orig(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conv.resp(b"HTTP/1.1 204 No Content\r\n\r\n")
    capture = conv.write(tmp_path / "x.pcap")
    secret_looking = "CLIENT_RANDOM " + "ab" * 32 + " " + "cd" * 47
    keys = tmp_path / "bad.keys"
    keys.write_text("\x0b\x0c\n\x1b[31mred\n" + secret_looking + "\n" + GOOD + "\n")
    result = wireprobe("analyze", str(capture), "-k", str(keys), "-f", "json")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"wireprobe: warning: {keys}: 3 malformed key log lines skipped"
    ]
    assert "cd" * 47 not in result.stdout + result.stderr


def test_a_device_as_key_log_is_one_line_exit_2(tmp_path: Path) -> None:
    conv = Conversation()
    conv.handshake()
    capture = conv.write(tmp_path / "x.pcap")
    assert_usage_error(wireprobe("analyze", str(capture), "-k", "/dev/zero"), "/dev/zero")


def _dsb(secrets_type: int, payload: bytes, *, claimed: int | None = None) -> bytes:
    length = len(payload) if claimed is None else claimed
    return block("<", 0x0000000A, struct.pack("<II", secrets_type, length) + payload)


def _anomalies(tmp_path: Path, *blocks: bytes) -> dict[str, int]:
    conv = Conversation()
    conv.handshake()
    conv.orig(b"x")
    frames = [epb("<", 0, round(ts * 1e6), frame) for ts, frame in conv.frames]
    path = tmp_path / "secrets.pcapng"
    path.write_bytes(shb() + idb() + b"".join(blocks) + b"".join(frames))
    result = analyze([str(path)])
    assert result.connections == 1
    return {a["name"]: a["count"] for a in result.captures[0]["anomalies"]}


@pytest.mark.parametrize(
    ("payload", "anomaly"),
    [
        (b"\x0b\x0c\x1c\n\x00\x01", "pcapng.bad_secrets"),
        (b"CLIENT_RANDOM zz\n" + GOOD.encode(), "pcapng.bad_secrets"),
        (b"\xff" * 5000, "pcapng.bad_secrets"),
    ],
)
def test_a_secrets_block_of_garbage_is_an_anomaly(
    tmp_path: Path, payload: bytes, anomaly: str
) -> None:
    assert _anomalies(tmp_path, _dsb(0x544C534B, payload)) == {anomaly: 1}


def test_a_secrets_block_of_another_type_or_lying_length_is_an_anomaly(tmp_path: Path) -> None:
    assert _anomalies(tmp_path, _dsb(0x57474B4C, b"wireguard")) == {"pcapng.unknown_secrets": 1}
    found = _anomalies(tmp_path, _dsb(0x544C534B, GOOD.encode(), claimed=1 << 31))
    assert found == {"pcapng.bad_block": 1}


def test_secrets_blocks_past_the_budget_are_counted_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keylog_module, "MAX_KEYLOG_BYTES", 1000)
    payload = (GOOD + "\n").encode() * 4  # 4 x 178 bytes: the second block passes 1000
    found = _anomalies(tmp_path, _dsb(0x544C534B, payload), _dsb(0x544C534B, payload))
    assert found == {"pcapng.secrets_over_budget": 1}
