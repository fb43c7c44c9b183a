"""The command line as a user meets it (issue 12): warnings instead of silently wrong summaries,
one list of findings in every format, health in plain sight, help that says units and defaults,
progress only on a terminal.  Every test runs the CLI in a subprocess, as a user would."""

from __future__ import annotations

import csv
import html
import io
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from builder import Conversation, write_pcap
from conftest import CAPTURES

GOLDEN = CAPTURES / "http1-curl-http-server.pcap"
UNDECRYPTED = CAPTURES / "gen-http1-tls12.pcap"
LOSSY = CAPTURES / "gen-http1-loss-reorder.pcap"
ENV = {**os.environ, "PYTHONPATH": str(CAPTURES.parent)}


def wireprobe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "analyzer.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()


def analysis_json(*args: str) -> dict[str, Any]:
    result = wireprobe("analyze", *args, "-f", "json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def flat(text: str) -> str:
    """Text with table borders and line wrapping removed, for finding a sentence in a report."""
    return " ".join(re.sub(r"[│┃•]", " ", text).split())


def cut(tmp_path: Path) -> Path:
    path = tmp_path / "cut.pcap"
    path.write_bytes(GOLDEN.read_bytes()[:-30])
    return path


# -- 1. silent wrong summaries --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "markdown", "html"])
def test_a_truncated_capture_says_it_was_cut(tmp_path: Path, fmt: str) -> None:
    path = cut(tmp_path)
    before = path.read_bytes()
    result = wireprobe("analyze", str(path), "-f", fmt)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in stderr_lines(result) if "warning" in line]
    assert len(warnings) == 1 and "cut short" in warnings[0] and str(path) in warnings[0]
    if fmt == "json":
        names = [f["name"] for f in json.loads(result.stdout)["findings"]]
        assert "capture.truncated" in names
    elif fmt != "csv":  # CSV is a row per connection: its findings are the stderr lines
        assert "cut short" in flat(result.stdout)
    assert path.read_bytes() == before


def test_an_intact_capture_has_no_warning() -> None:
    result = wireprobe("analyze", str(GOLDEN))
    assert result.returncode == 0 and result.stderr == ""


def test_a_port_override_that_decodes_nothing_warns() -> None:
    data = analysis_json(str(GOLDEN))
    server_port = data["connections"][0]["resp"].rsplit(":", 1)[1]
    result = wireprobe("analyze", str(GOLDEN), "--port", f"amqp={server_port}")
    assert result.returncode == 0
    (line,) = stderr_lines(result)
    assert line.startswith("wireprobe: warning: ")
    assert f"--port amqp={server_port} matched {len(data['connections'])} connections" in line
    assert "decoded 0 messages" in line


def test_a_port_override_that_matches_nothing_warns() -> None:
    ports = {
        int(c[e].rsplit(":", 1)[1])
        for c in analysis_json(str(GOLDEN))["connections"]
        for e in ("orig", "resp")
    }
    unused = next(p for p in range(1, 65536) if p not in ports)
    result = wireprobe("analyze", str(GOLDEN), "--port", f"http2={unused}", "-f", "json")
    assert result.returncode == 0
    (line,) = stderr_lines(result)
    assert f"--port http2={unused} matched no connection" in line
    findings = json.loads(result.stdout)["findings"]
    assert [f["name"] for f in findings if f["severity"] == "warning"] == ["port.override_unused"]


def test_a_port_override_that_decodes_gives_no_warning() -> None:
    port = analysis_json(str(GOLDEN))["connections"][0]["resp"].rsplit(":", 1)[1]
    result = wireprobe("analyze", str(GOLDEN), "--port", f"http1={port}")
    assert result.returncode == 0 and result.stderr == ""


@pytest.mark.parametrize("how", ["same path", "copy", "symlink"])
def test_the_same_capture_twice_is_read_once(tmp_path: Path, how: str) -> None:
    first = tmp_path / "a.pcap"
    shutil.copy(GOLDEN, first)
    second = first
    if how == "copy":
        second = tmp_path / "b.pcap"
        shutil.copy(GOLDEN, second)
    elif how == "symlink":
        second = tmp_path / "link.pcap"
        second.symlink_to(first)
    once = analysis_json(str(first))
    result = wireprobe("analyze", str(first), str(second), "-f", "json")
    assert result.returncode == 0
    (line,) = stderr_lines(result)
    assert line.startswith("wireprobe: warning: ") and "read once" in line
    twice = json.loads(result.stdout)
    assert twice["connections"] == once["connections"]
    assert twice["summary"] == once["summary"]
    assert sum(c["retransmitted_bytes"] for c in twice["connections"]) == sum(
        c["retransmitted_bytes"] for c in once["connections"]
    )
    assert "input.duplicate" in [f["name"] for f in twice["findings"]]
    assert first.read_bytes() == GOLDEN.read_bytes()


def test_a_capture_and_a_part_of_it_invent_no_retransmissions(tmp_path: Path) -> None:
    part = cut(tmp_path)
    result = wireprobe("analyze", str(part), str(GOLDEN), "-f", "json")
    assert result.returncode == 0
    overlap = [line for line in stderr_lines(result) if "overlaps in time" in line]
    assert len(overlap) == 1 and str(part) in overlap[0] and str(GOLDEN) in overlap[0]
    assert json.loads(result.stdout)["health"]["retransmitted_bytes"] == 0


def test_two_different_captures_are_both_read() -> None:
    result = wireprobe("analyze", str(GOLDEN), str(LOSSY), "-f", "json")
    assert result.returncode == 0 and result.stderr == ""
    assert len(json.loads(result.stdout)["captures"]) == 2


# -- 2. one list of findings, every format --------------------------------------------------------


def test_every_format_shows_the_same_findings(tmp_path: Path) -> None:
    findings = analysis_json(str(UNDECRYPTED))["findings"]
    assert "tls.undecrypted" in [f["name"] for f in findings]
    messages = [f["message"] for f in findings]
    for fmt in ("table", "markdown", "html"):
        result = wireprobe("analyze", str(UNDECRYPTED), "-f", fmt)
        assert result.returncode == 0
        shown = flat(html.unescape(result.stdout) if fmt == "html" else result.stdout)
        assert "Nothing to act on" not in shown
        for message in messages:
            assert flat(message) in shown, (fmt, message)
    notes = stderr_lines(wireprobe("analyze", str(UNDECRYPTED), "-f", "csv"))
    assert [line.split(": ", 2)[2] for line in notes] == messages


# -- 3. capture without the live extra ------------------------------------------------------------


def test_capture_without_the_live_extra_says_what_to_install(tmp_path: Path) -> None:
    out = tmp_path / "live.pcap"
    hide = "import sys; sys.modules['pika'] = sys.modules['hypercorn'] = None; "
    run = "from analyzer.cli import main; sys.argv[0] = 'wireprobe'; main()"
    result = subprocess.run(
        [sys.executable, "-c", hide + run, "capture", "--protocol", "amqp", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )
    assert result.returncode == 2
    (line,) = stderr_lines(result)
    assert "pip install 'wireprobe[live]'" in line
    assert not out.exists()


# -- 4. version, presets, units and defaults ------------------------------------------------------


def test_version() -> None:
    from importlib.metadata import version

    result = wireprobe("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"wireprobe {version('wireprobe')}"


def test_generate_help_lists_every_preset_and_the_real_defaults() -> None:
    from analyzer.synth import PRESETS, Scenario

    result = wireprobe("generate", "--help")
    assert result.returncode == 0
    text = flat(result.stdout)
    for name in PRESETS:
        assert f"{name}:" in text
    defaults = Scenario()
    for field in ("protocol", "tls", "messages", "payload", "concurrency", "mtu", "rtt_ms"):
        value = getattr(defaults, field)
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        assert f"(default: {shown})" in text, field
    assert f"(default: {defaults.mode})" in text


def test_compare_help_gives_the_real_default_payloads() -> None:
    from analyzer.compare.matrix import DEFAULT_PAYLOADS

    text = flat(wireprobe("compare", "--help").stdout)
    *rest, last = (str(p) for p in DEFAULT_PAYLOADS)
    assert f"(default: {', '.join(rest)} and {last})" in text


def test_every_option_says_its_default() -> None:
    import typer.main

    from analyzer.cli import app

    group = typer.main.get_command(app)
    missing = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        for param in command.params:
            if param.param_type_name != "option" or param.is_flag or param.required:
                continue
            if param.name == "help":
                continue
            shown = param.default is not None and param.show_default is not False
            if not shown and "default" not in (param.help or ""):
                missing.append(f"{name} --{param.name}")
    assert not missing, missing


# -- 5. health in plain sight ---------------------------------------------------------------------


def test_the_table_shows_health_from_the_same_figures_as_the_json() -> None:
    data = analysis_json(str(LOSSY))
    retransmitted = sum(c["retransmitted_bytes"] for c in data["connections"])
    assert retransmitted > 0, "the lossy golden must retransmit"
    assert data["health"]["retransmitted_bytes"] == retransmitted
    table = flat(wireprobe("analyze", str(LOSSY)).stdout)
    assert f"retransmitted {retransmitted:,} bytes" in table
    for quantity in ("missing", "connections", "undecrypted TLS", "packets skipped", "not counted"):
        assert quantity in table


def test_health_counts_cut_connections_and_unanswered_requests(tmp_path: Path) -> None:
    answered = Conversation(orig_port=40001, resp_port=80).handshake()
    answered.orig(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    answered.resp(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").close()
    waiting = Conversation(orig_port=40002, resp_port=80).handshake()
    waiting.orig(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")  # no answer, never closed
    reset = Conversation(orig_port=40003, resp_port=80).handshake().reset()
    frames = sorted(answered.frames + waiting.frames + reset.frames, key=lambda f: f[0])

    path = tmp_path / "health.pcap"
    write_pcap(path, frames)
    health = analysis_json(str(path))["health"]
    assert health["connections"] == 3
    assert health["connections_reset"] == 1
    assert health["connections_open_at_end"] == 1
    assert health["unanswered"] == 1
    markdown = wireprobe("analyze", str(path), "-f", "markdown").stdout
    assert "| connections | 3: 1 reset, 1 still open when the capture ended |" in markdown
    assert "1 request without a response" in markdown


def test_connection_columns_add_up_and_name_round_trips_one_way() -> None:
    markdown = wireprobe("analyze", str(UNDECRYPTED), "-f", "markdown").stdout
    table = wireprobe("analyze", str(UNDECRYPTED)).stdout
    assert "RTT" not in markdown and "RTT" not in table
    lines = [line for line in markdown.splitlines() if line.startswith("| C")]
    header = next(line for line in markdown.splitlines() if line.startswith("| id |"))
    names = [c.strip() for c in header.strip("|").split("|")]
    assert lines
    for line in lines:
        cells = dict(zip(names, (c.strip() for c in line.strip("|").split("|")), strict=True))

        def number(name: str, cells: dict[str, str] = cells) -> int:
            return int(cells[name].replace(",", ""))

        parts = ("L2-4 B", "TLS B", "framing B", "payload B", "opaque B")
        assert number("wire B") == sum(number(p) for p in parts)


def test_a_capped_connection_list_says_how_many_of_how_many(tmp_path: Path) -> None:
    from analyzer.report.render import TOP_CONNECTIONS

    pcap = tmp_path / "many.pcap"
    count = TOP_CONNECTIONS + 2
    made = wireprobe("generate", "--messages", str(count), "--per-connection", "1", "-o", str(pcap))
    assert made.returncode == 0, made.stderr
    table = wireprobe("analyze", str(pcap)).stdout
    assert f"Costliest connections ({TOP_CONNECTIONS} of {count})" in table


def test_transport_only_shows_what_it_measured() -> None:
    data = analysis_json(str(GOLDEN), "--transport-only")
    table = wireprobe("analyze", str(GOLDEN), "--transport-only").stdout
    transport = table.split("Transport (link/IP/TCP)")[1].split("--transport-only")[0]
    row = next(line for line in transport.splitlines() if line.startswith("│"))
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert "–" not in cells
    wire = sum(c["wire_bytes"] for c in data["connections"])
    assert cells[:2] == [f"{len(data['connections']):,}", f"{data['packets']:,}"]
    assert f"{wire:,}" in cells
    assert "not examined" in flat(table)


# -- 6. the CSV carries what the JSON has ---------------------------------------------------------

#: The columns of the first release, in their order: scripts read them by name and position.
FIRST_CSV_COLUMNS = [
    *("id", "orig", "resp", "protocol", "messages", "tcp_handshake", "tls_version"),
    *("tls_resumed", "setup_round_trips", "round_trips", "packets", "wire_bytes"),
    *("link", "ip", "tcp", "tls", "framing", "payload", "opaque"),
    *("setup_bytes", "teardown_bytes", "control_bytes", "undecoded_bytes"),
    *("retransmitted_bytes", "anomalies"),
]


def test_csv_keeps_its_columns_and_adds_the_json_figures() -> None:
    out = wireprobe("analyze", str(LOSSY), "-f", "csv").stdout
    reader = csv.DictReader(io.StringIO(out))
    assert reader.fieldnames is not None
    assert reader.fieldnames[: len(FIRST_CSV_COLUMNS)] == FIRST_CSV_COLUMNS
    rows = {r["id"]: r for r in reader}
    data = analysis_json(str(LOSSY))
    for conn in data["connections"]:
        row = rows[conn["id"]]
        for direction in ("orig", "resp"):
            figures = conn["directions"][direction]
            assert int(row[f"{direction}_packets"]) == figures["packets"]
            assert int(row[f"{direction}_wire_bytes"]) == figures["wire_bytes"]
        assert int(row["missing_bytes"]) == conn["missing_bytes"]
        assert int(row["retransmitted_bytes"]) == conn["retransmitted_bytes"]
        assert float(row["first_ts"]) == pytest.approx(conn["first_ts"], abs=1e-6)
        assert float(row["last_ts"]) == pytest.approx(conn["last_ts"], abs=1e-6)
        assert row["closed"] == conn["closed"]
        assert row["source"] == str(LOSSY)


def test_csv_source_names_the_file_of_each_connection() -> None:
    out = wireprobe("analyze", str(GOLDEN), str(UNDECRYPTED), "-f", "csv").stdout
    sources = {r["orig"]: r["source"] for r in csv.DictReader(io.StringIO(out))}
    for path in (GOLDEN, UNDECRYPTED):
        origs = {c["orig"] for c in analysis_json(str(path))["connections"]}
        assert {sources[o] for o in origs} == {str(path)}


# -- 7. progress only on a terminal ---------------------------------------------------------------


def run_on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal; (status, stdout, what the terminal got).

    stdout goes to a file, not a pipe: a pipe nobody reads while the terminal is drained would
    block the child once it fills."""
    master, slave = pty.openpty()
    with tempfile.TemporaryFile() as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", "analyzer.cli", *args],
            stdout=stdout,
            stderr=slave,
            env={**ENV, "TERM": "xterm", "COLUMNS": "100"},
        )
        os.close(slave)
        seen = b""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        status = proc.wait(timeout=120)
        os.close(master)
        stdout.seek(0)
        out = stdout.read().decode()  # bytes as written: CSV rows end in \r\n
    return status, out, seen.decode(errors="replace")


def test_progress_is_drawn_on_a_terminal_and_changes_nothing_else(tmp_path: Path) -> None:
    pcap = tmp_path / "p.pcap"
    status, _, terminal = run_on_a_terminal(
        "generate", "--protocol", "http1", "--messages", "400", "-o", str(pcap)
    )
    assert status == 0 and "generating 400 messages" in terminal
    status, out, terminal = run_on_a_terminal("analyze", str(pcap), "-f", "csv")
    assert status == 0 and "reading" in terminal and "Traceback" not in terminal
    piped = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "analyze", str(pcap), "-f", "csv"],
        capture_output=True,
        timeout=120,
        env=ENV,
    )
    assert piped.stderr == b"" and piped.stdout.decode() == out


def test_no_progress_in_a_pipe(tmp_path: Path) -> None:
    pcap = tmp_path / "p.pcap"
    made = wireprobe("generate", "--messages", "50", "-o", str(pcap))
    assert made.returncode == 0 and made.stderr == ""
    assert made.stdout.startswith("wrote ")
