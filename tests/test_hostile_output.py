"""Hostile strings on the output side (issue 15).

Strings that strangers put in a capture (SNI, ALPN, HTTP methods and paths, AMQP names) and the
user's own file names reach every format as data: nothing a terminal, a Markdown renderer, a
browser (headless Chromium) or a spreadsheet would act on; usage errors are one line.  The
hostile conditions (full disks, pipes, signals, devices) are in test_hostile_output_writer.py.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from builder import Conversation
from conftest import CAPTURES
from markdown_it import MarkdownIt
from test_tls import CCS, client_hello, handshake, record, server_hello

from analyzer.report import escape

REPO = CAPTURES.parent
GOLDEN = CAPTURES / "http1-curl-http-server.pcap"

#: Strings that would act if they reached an output raw: clear the screen and recolour it, close
#: or open rich markup, run script in a browser, run a formula in a spreadsheet, break a table.
HOSTILE = (
    "\x1b[2J\x1b[31mred",
    "[/]",
    "[bold red]x[old][/bold red]",
    "<script>console.log('PWNED-script')</script>",
    "<img src=x onerror=\"console.log('PWNED-img')\">",
    '=HYPERLINK("http://evil.test","click")',
    "+1+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd",
    "-2+3",
    "a|b`c`*d*_e_ :smiley: &amp;",
)
#: A file name carrying what a file name can (no "/"): ANSI, a C1 CSI, a bidi override, markup,
#: an HTML element with a handler, a formula.  Its directory ends in "[", so the path holds "[/]".
HOSTILE_NAME = (
    "]=1+2 x[old] \x1b[2J\x9b31m\u202egpj.pcap <img src=x onerror=console.log('PWNED-name')>.pcap"
)
HOSTILE_DIRECTORY = "dir["
#: What a terminal or a renderer must never receive raw.
CONTROL_CHARS = ("\x1b", "\x9b", "\u202e", "\x07")


def wireprobe(
    *args: str,
    cwd: Path | None = None,
    preexec: Callable[[], None] | None = None,
    timeout_s: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "analyzer.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=cwd,
        preexec_fn=preexec,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "╭" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("wireprobe: ") and needle in lines[0], lines[0]


# -- hostile captures -------------------------------------------------------------------------


def _tls_conversation(port: int, sni: str, alpn: str) -> Conversation:
    """A TLS 1.2 handshake whose SNI and offered and selected ALPN are ``sni`` / ``alpn``."""
    conv = Conversation(orig_port=port, resp_port=443)
    conv.handshake()
    conv.orig(record(22, client_hello(sni=sni, alpn=[alpn]), 0x0301))
    conv.resp(
        record(22, server_hello(alpn=alpn) + handshake(11, b"\x00" * 40) + handshake(14, b""))
    )
    conv.orig(record(22, handshake(16, b"\x00" * 33)) + CCS + record(22, b"\x99" * 40))
    conv.resp(CCS + record(22, b"\x98" * 40))
    conv.orig(record(23, b"\x97" * 30))
    conv.close()
    return conv


def _http_conversation(port: int, text: str) -> Conversation:
    target = "/" + text.replace(" ", "%20")
    conv = Conversation(orig_port=port)
    conv.handshake()
    conv.orig(
        f"GET {target} HTTP/1.1\r\nHost: {text}\r\nUser-Agent: {text}\r\n\r\n".encode(
            "latin-1", "replace"
        )
    )
    conv.resp(f"HTTP/1.1 200 OK\r\nServer: {text}\r\nContent-Length: 2\r\n\r\nhi".encode())
    conv.close()
    return conv


def _amqp_frame(kind: int, channel: int, payload: bytes) -> bytes:
    return bytes([kind]) + channel.to_bytes(2, "big") + len(payload).to_bytes(4, "big") + payload


def _shortstr(text: str) -> bytes:
    data = text.encode()[:255]
    return bytes([len(data)]) + data


def _amqp_conversation(port: int, text: str) -> Conversation:
    """A protocol header and one Basic.Publish whose exchange and routing key are ``text``."""
    conv = Conversation(orig_port=port, resp_port=5672)
    conv.handshake()
    publish = (60).to_bytes(2, "big") + (40).to_bytes(2, "big") + b"\x00\x00"
    publish += _shortstr(text) + _shortstr(text) + b"\x00"
    header = (60).to_bytes(2, "big") + b"\x00\x00" + (2).to_bytes(8, "big") + b"\x00\x00"
    conv.orig(b"AMQP\x00\x00\x09\x01")
    conv.orig(
        _amqp_frame(1, 1, publish)
        + b"\xce"
        + _amqp_frame(2, 1, header)
        + b"\xce"
        + _amqp_frame(3, 1, b"hi")
        + b"\xce"
    )
    conv.close()
    return conv


def hostile_capture(directory: Path, name: str = "hostile.pcap") -> Path:
    """One capture with every hostile string in SNI, ALPN, HTTP and AMQP fields."""
    frames: list[tuple[float, bytes]] = []
    for i, text in enumerate(HOSTILE):
        for j, conv in enumerate(
            (
                _tls_conversation(41000 + i, text, text),
                _http_conversation(42000 + i, text),
                _amqp_conversation(43000 + i, text),
            )
        ):
            frames += [(ts + 10 * i + j, frame) for ts, frame in conv.frames]
    frames.sort(key=lambda item: item[0])
    conv = Conversation()
    conv.frames = frames
    return conv.write(directory / name)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hostile_capture(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def hostile_named(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("named") / HOSTILE_DIRECTORY
    directory.mkdir()
    return hostile_capture(directory, HOSTILE_NAME)


def test_the_hostile_strings_reach_the_analysis(hostile: Path) -> None:
    # Without this the other tests would pass on a capture whose strings never got decoded.
    result = wireprobe("analyze", str(hostile), "-f", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    tls = [c["tls"] for c in data["connections"] if c["tls"]]
    assert sorted(t["sni"] for t in tls) == sorted(HOSTILE)
    assert sorted(t["alpn"] for t in tls) == sorted(HOSTILE)
    assert {c["protocol"] for c in data["connections"]} >= {"http1", "amqp", "tls"}
    assert not any(c in result.stdout for c in CONTROL_CHARS)  # JSON escapes them


# -- the terminal -----------------------------------------------------------------------------


def test_table_shows_names_and_strings_as_themselves(hostile_named: Path) -> None:
    result = wireprobe("analyze", str(hostile_named))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert not any(c in out for c in CONTROL_CHARS)
    assert "Cost per message" in out
    # The file name as itself, brackets and all, its controls as visible escapes.
    assert escape.visible(str(hostile_named)) in out.replace("\n", "")
    assert "x[old]" in out and "[/]" in out and "\\x1b[2J" in out and "\\u202e" in out
    # The undecrypted-TLS finding names every ALPN, none of them interpreted.
    assert "[bold red]x[old][/bold red]" in out and "\\x1b[2J\\x1b[31mred" in out


def test_errors_naming_a_hostile_file_are_one_visible_line(tmp_path: Path) -> None:
    (tmp_path / "\x1b[2Jbad[").mkdir()
    bad = tmp_path / "\x1b[2Jbad[" / "]\nname.pcap"
    bad.write_bytes(b"not a capture at all, and long enough to be read" * 4)
    result = wireprobe("analyze", str(bad))
    one_line_error(result, "bad[/]\\nname.pcap")
    assert "\x1b" not in result.stderr


def test_rich_markup_in_a_finding_cannot_crash_or_style_the_table() -> None:
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, markup=True, emoji=True, color_system="truecolor", width=200)
    for text in HOSTILE:
        console.print(escape.terminal_text(text))
    printed = buffer.getvalue()
    assert "\x1b[31m" not in printed.replace("\\x1b[31m", "")
    for text in HOSTILE:
        assert escape.visible(text) in printed  # ":smiley:" not an emoji, "[/]" not a tag


# -- markdown ---------------------------------------------------------------------------------


class _Elements(HTMLParser):
    """Tags and text of rendered HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [name for name, _ in attrs]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


#: The elements a GFM table renders to.
TABLE_TAGS = ("table", "thead", "tbody", "tr", "th", "td")


def _rendered(markdown: str) -> _Elements:
    # CommonMark with raw HTML allowed (as GitHub and most renderers do) and GFM tables.
    page = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    parser = _Elements()
    parser.feed(page.render(markdown))
    return parser


def test_markdown_renders_every_hostile_string_as_text(hostile_named: Path) -> None:
    result = wireprobe("analyze", str(hostile_named), "-f", "markdown")
    assert result.returncode == 0, result.stderr
    assert not any(c in result.stdout for c in CONTROL_CHARS)
    rendered = _rendered(result.stdout)
    assert set(rendered.tags) <= {"h1", "h2", "p", "ul", "li", *TABLE_TAGS}
    assert not {"onerror", "src", "href"} & set(rendered.attrs)
    text = "".join(rendered.text)
    assert escape.visible(str(hostile_named)) in text
    for alpn in HOSTILE:
        assert escape.visible(alpn) in text  # the finding lists every ALPN, literally


@pytest.mark.parametrize("text", [*HOSTILE, HOSTILE_NAME, "# heading", "1. item", "---", "- x"])
def test_one_markdown_cell_or_line_is_its_literal_text(text: str) -> None:
    cell = f"| head |\n|---|\n| {escape.markdown(text)} |\n"
    for source, before in ((cell, "head"), (escape.markdown(text) + "\n", "")):
        rendered = _rendered(source)
        shown = "".join(rendered.text).strip().removeprefix(before).strip()
        assert shown == escape.visible(text).strip()
        assert set(rendered.tags) <= {"p", *TABLE_TAGS}


# -- CSV --------------------------------------------------------------------------------------

#: What a spreadsheet starts a formula with (OWASP, CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def test_csv_cells_never_start_a_formula(hostile: Path) -> None:
    result = wireprobe("analyze", str(hostile), "-f", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert len(rows) == 1 + 3 * len(HOSTILE)
    for row in rows:
        for cell in row:
            assert _is_number(cell) or not cell.startswith(FORMULA_START), cell


@pytest.mark.parametrize("text", (*HOSTILE, "\tx", "\rx", "=1", "+x", "-x", "@x"))
def test_a_csv_cell_is_defused_the_owasp_way(text: str) -> None:
    cell = escape.csv_cell(text)
    assert isinstance(cell, str)
    if _is_number(text):
        assert cell == text  # a number stays a number
    elif text.startswith(FORMULA_START):
        assert cell.startswith("'") and escape.visible(text) == cell[1:]
    assert not any(c in cell for c in CONTROL_CHARS)
    out = io.StringIO()
    csv.writer(out).writerow(["id", cell, 7, -3.5])
    assert next(csv.reader(io.StringIO(out.getvalue()))) == ["id", cell, "7", "-3.5"]


def test_numbers_stay_numbers_in_csv() -> None:
    values: list[object] = [-1, 2.5, "-1.5", "+3", None, True]
    assert escape.csv_row(values) == values


# -- HTML in headless Chromium ----------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-logging=stderr",
    "--v=0",
    "--dump-dom",
)
#: Chromium's start-up and one small page take a few seconds; a minute is a hang.
CHROMIUM_TIMEOUT_S = 60


def _dump_dom(page: Path) -> subprocess.CompletedProcess[str]:
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is needed for the browser test: apt-get install -y chromium")
    with tempfile.TemporaryDirectory(prefix="wireprobe-chromium-") as profile:
        return subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=CHROMIUM_TIMEOUT_S,
            env={**os.environ, "HOME": profile},
            check=False,
        )


def _scripts_ran(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if "PWNED" in line or "Uncaught" in line]


def test_the_browser_check_sees_a_script_that_runs(tmp_path: Path) -> None:
    # The control: the same page with the name interpolated raw must trip the check below.
    page = tmp_path / "raw.html"
    page.write_text(f"<!DOCTYPE html><html><body><h1>{HOSTILE_NAME}</h1>{HOSTILE[3]}</body></html>")
    result = _dump_dom(page)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _scripts_ran(result), result.stderr[-2000:]


def test_html_report_runs_no_hostile_script_in_chromium(
    hostile_named: Path, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    result = wireprobe("analyze", str(hostile_named), "-f", "html", "-o", str(page))
    assert result.returncode == 0, result.stderr
    source = page.read_text()
    assert not any(c in source for c in CONTROL_CHARS)
    dom = _dump_dom(page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _scripts_ran(dom) == []
    parsed = _Elements()
    parsed.feed(dom.stdout)
    assert parsed.tags.count("script") == 1  # the page's own chart check, nothing injected
    assert "onerror" not in parsed.attrs
    heading = dom.stdout.split("<h1>", 1)[1].split("</h1>", 1)[0]
    assert html.unescape(heading) == f"wireprobe: {escape.visible(str(hostile_named))}"


def test_json_for_script_cannot_close_its_element() -> None:
    text = escape.json_for_script({"sni": "</script><script>alert(1)</script><!--\u2028"})
    assert "<" not in text and ">" not in text
    assert json.loads(text) == {"sni": "</script><script>alert(1)</script><!--\u2028"}


# -- usage errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("analyze", "--bogus", str(GOLDEN)), "--bogus"),
        (("analyze",), "Missing argument"),
        (("generate", "-o", "x.pcap", "--messages", "many"), "many"),
        (("no-such-command",), "no-such-command"),
        (("analyze", str(GOLDEN), "--port", "[/]=1"), "[/]"),
    ],
)
def test_usage_errors_are_one_line_not_a_panel(args: tuple[str, ...], needle: str) -> None:
    one_line_error(wireprobe(*args), needle)


# -- the compare report's renderers ------------------------------------------------------------


def _hostile_claim(text: str) -> Any:
    from analyzer.compare.claims import Claim, Figure

    return Claim(
        key="hostile",
        text=text,
        verdict="true",
        rule=text,
        explanation=text,
        figures=(Figure(label=text, value=1.0, unit=text),),
    )


@pytest.mark.parametrize("text", [*HOSTILE, HOSTILE_NAME])
def test_compare_markdown_and_html_carry_a_claim_as_text(text: str) -> None:
    from analyzer.compare.render import claims_html, claims_markdown

    claim = _hostile_claim(text)
    rendered = _rendered(claims_markdown([claim]))
    assert "script" not in rendered.tags and "img" not in rendered.tags
    assert escape.visible(text) in "".join(rendered.text)
    parsed = _Elements()
    parsed.feed(claims_html([claim]))
    assert set(parsed.tags) <= {"table", "thead", "tbody", "tr", "th", "td", "b", "br", "small"}
    assert "onerror" not in parsed.attrs
    assert escape.visible(text) in "".join(parsed.text)


def test_compare_terminal_table_shows_markup_as_itself() -> None:
    from rich.console import Console

    from analyzer.compare.render import _terminal_table

    buffer = io.StringIO()
    console = Console(file=buffer, width=400, color_system=None)
    console.print(_terminal_table("t", [[text, "1", "2", "3", "4", "5"] for text in HOSTILE]))
    printed = buffer.getvalue()
    assert not any(c in printed for c in CONTROL_CHARS)
    assert "[bold red]x[old][/bold red]" in printed and "[/]" in printed
