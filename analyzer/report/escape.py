"""One escaping layer per output format: every string from outside is data (issue 15).

Strings that come from a capture (ALPN, SNI, HTTP methods, paths and header values, AMQP
names) or from the user (capture and key log file names) go through exactly one of these
functions on their way into a report, chosen by the format they land in:

- ``visible``: control characters, ANSI escape sequences, C1 controls and bidi overrides become
  visible escapes (``\\x1b``, ``\\u202e``).  Every other function starts with it, so no format
  can carry an invisible character that reorders or recolours what the reader sees.
- ``terminal`` / ``terminal_text``: ``visible``, and a rich ``Text`` so square brackets are never
  taken as rich markup (``x[old].pcap`` prints as itself; ``[/]`` cannot raise ``MarkupError``).
- ``markdown``: ``visible``, then the characters CommonMark and GFM give meaning to (pipes,
  backticks, brackets, emphasis, raw HTML, entity references) backslash-escaped.
- ``html`` / ``html_attr``: ``visible``, then ``html.escape`` with quotes, safe in text and in a
  quoted attribute; ``json_for_script`` for data inlined in a ``<script>`` element.
- ``csv_cell``: ``visible``, and a cell a spreadsheet would run as a formula (leading ``=``,
  ``+``, ``-``, ``@``, tab or CR) prefixed with ``'`` as OWASP recommends; numbers stay numbers.

Pure functions of one value; no state, no I/O.
"""

from __future__ import annotations

import html as _html
import json
import re
import unicodedata

from rich.text import Text

#: Format characters that change how the text around them is laid out or read (bidi embeddings,
#: overrides and isolates, the Arabic letter mark, the line and paragraph separators): the
#: "Trojan Source" set (CVE-2021-42574) plus the two separators a terminal breaks lines on.
_INVISIBLE_FORMAT = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029"
)
#: Names for the controls a reader knows by their C escape; the rest are shown as \xNN / \uNNNN.
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}

#: Characters CommonMark lets a backslash escape and that carry meaning anywhere in a line or a
#: GFM table cell: backslash, code spans, emphasis, link and image brackets (so "(" and "!" mean
#: nothing after them), raw HTML and autolinks, entity references, table pipes, strikethrough,
#: headings, GitHub's $math$.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~#&$])")
#: What starts a block when it starts a line: a bullet ("-" or "+" before a blank or the end), a
#: thematic break or setext heading underline (a line of only "-" or "=" and blanks), an
#: ordered-list number ("1." / "1)" before a blank or the end).  CommonMark needs the blank after
#: a list marker, so a number such as "1.800" or "-5" stays as it is.
_MARKDOWN_BULLET = re.compile(r"^([-+])(?=\s|$)|^([-=])(?=[-=\s]*$)")
_MARKDOWN_ORDERED = re.compile(r"^(\d+)([.)])(?=\s|$)")

#: A spreadsheet treats a cell starting with one of these as a formula (OWASP "CSV Injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
#: A plain decimal number, which keeps its sign and stays a number in the spreadsheet.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _escape_char(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _hidden(char: str) -> bool:
    # Cc: C0 controls, DEL and C1 controls (ESC starts ANSI sequences, 0x9b is the one-byte CSI).
    return unicodedata.category(char) == "Cc" or char in _INVISIBLE_FORMAT


def visible(text: object) -> str:
    """``text`` with every control and layout-changing character shown as an escape."""
    value = str(text)
    if value.isprintable() and not any(c in _INVISIBLE_FORMAT for c in value):
        return value  # the common case, without a per-character walk
    return "".join(_escape_char(c) if _hidden(c) else c for c in value)


def terminal(text: object) -> str:
    """For a terminal or a log line: one line, nothing the terminal would act on."""
    return visible(text)


def terminal_text(text: object, style: str = "") -> Text:
    """A rich ``Text`` of ``text``: rich never parses its brackets or ``:emoji:`` codes."""
    return Text(visible(text), style=style)


def markdown(text: object) -> str:
    """For Markdown text or a GFM table cell: rendered as the literal characters."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", visible(text))
    escaped = _MARKDOWN_BULLET.sub(lambda m: "\\" + m.group(0), escaped, count=1)
    return _MARKDOWN_ORDERED.sub(r"\1\\\2", escaped, count=1)


def html(text: object) -> str:
    """For HTML text content (and double- or single-quoted attributes)."""
    return _html.escape(visible(text), quote=True)


def html_attr(text: object) -> str:
    """For the value of a quoted HTML attribute; the caller writes the quotes."""
    return html(text)


def json_for_script(value: object) -> str:
    """JSON to inline in a ``<script>`` element: ``</script>``, ``<!--`` and U+2028 cannot end it
    or change how it parses, because every ``<``, ``>``, ``&`` and separator is a JSON escape."""
    text = json.dumps(value, ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def csv_cell(value: object) -> object:
    """A CSV cell: numbers as they are, a string that could start a formula defused with ``'``."""
    if value is None or isinstance(value, int | float):
        return value  # bool is an int: written as True/False, no formula either
    text = str(value)
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        text = "'" + text
    return visible(text)


def csv_row(values: list[object]) -> list[object]:
    """Every cell of a row through ``csv_cell``."""
    return [csv_cell(v) for v in values]
