"""HTTP/1.x syntax: start lines, framing fields and the RFC facts that decide framing.

Pure functions and tables over bytes (no state, no events); the decoder's modules read heads
and bodies with them.  Section numbers are RFC 9112's (HTTP/1.1) and RFC 9110's (semantics).
"""

from __future__ import annotations

import re

#: Longest header block (start line + fields) accepted.  Servers cap it between 8 KiB (Apache
#: LimitRequestFieldSize) and 64 KiB (nginx large_client_header_buffers can reach it); past this
#: the bytes are not HTTP we can frame.
MAX_HEADER_BYTES = 64 * 1024
#: Longest chunk-size line (RFC 9112 section 7.1.1: size plus chunk extensions).
MAX_CHUNK_LINE_BYTES = 4 * 1024

_TOKEN = rb"[A-Za-z0-9!#$%&'*+.^_`|~-]"
#: RFC 9112 section 3: method SP request-target SP HTTP-version, read leniently (tabs, spaces
#: inside the target, bare LF) as servers do.
#: That reading as one pattern would be ``TOKEN{1,32} [ \t]+ (.+?) [ \t]+ HTTP/1.D [ \t]* \r?``;
#: ``request_line`` gives its result without its backtracking, which on a line of a few
#: thousand spaces takes seconds (and 64 KiB lines are allowed).  Only the method is a pattern.
_METHOD = re.compile(rb"(" + _TOKEN + rb"{1,32})[ \t]+")
_VERSION_PREFIX = b"HTTP/1."
#: RFC 9112 section 4: HTTP-version SP status-code SP [reason-phrase].
STATUS_LINE = re.compile(rb"HTTP/1\.([0-9])[ \t]+([0-9]{3})(?:[ \t][^\r\n]*)?\r?")
#: What to resynchronise on (see ``_resync`` for where): a whole status line, and the end of a
#: request line (its start is then found backwards, keeping the search linear).
RESYNC_STATUS = re.compile(rb"HTTP/1\.[01][ \t]+[0-9]{3}(?:[ \t][^\r\n]*)?\r?\n")
RESYNC_VERSION = re.compile(rb"[ \t]HTTP/1\.[01][ \t]*\r?\n")
#: End of a header block: an empty line; bare LF tolerated (RFC 9112 section 2.2).
HEAD_END = re.compile(rb"\n\r?\n")


def request_line(buf: bytes | bytearray, start: int, end: int) -> tuple[bytes, bytes] | None:
    """(method, target) of the request line ``buf[start:end]`` (without its LF), or None.

    The result is the lenient pattern's above: the method, then the target from the end of
    the whitespace after the method to the start of the whitespace before the last token,
    which must be HTTP/1.D followed only by spaces, tabs and one CR.  Linear in the line.
    """
    line = bytes(buf[start:end])
    method = _METHOD.match(line)
    if method is None or b"\n" in line:
        return None
    rest = (line[:-1] if line.endswith(b"\r") else line).rstrip(b" \t")
    if (
        len(rest) < len(_VERSION_PREFIX) + 1
        or not rest.endswith(_VERSION_PREFIX, 0, len(rest) - 1)
        or not 0x30 <= rest[-1] <= 0x39
    ):
        return None
    before = rest[: -len(_VERSION_PREFIX) - 1]
    head = before.rstrip(b" \t")
    if len(head) == len(before):
        return None  # no whitespace before the version
    if len(head) > method.end():
        return method.group(1), head[method.end() :]
    # Only whitespace between method and version: the pattern needs one blank each side of
    # the target and backtracks to make the target the last-but-one blank.
    blanks = before[method.end(1) :]
    if len(blanks) < 3:
        return None
    return method.group(1), blanks[-2:-1]


BLANK_LINES = re.compile(rb"[\r\n]+")
HEX_DIGITS = re.compile(rb"[0-9A-Fa-f]{1,16}")

#: Header fields that decide framing, a protocol switch or a wait (Expect); the others are not
#: looked at.  A field line is found by the LF before it (the start line's ends the first),
#: which lets the regex engine skip from LF to LF instead of trying a match at every byte.
_FRAMING_FIELD = re.compile(
    rb"(?i)\n(content-length|transfer-encoding|upgrade|expect)[ \t]*:([^\n]*)"
)
#: Bytes that start an empty line (see ``BLANK_LINES``).
CRLF = b"\r\n"
#: RFC 9110 sections 15.3.5 and 15.4.5: these statuses never carry content.
NO_CONTENT_STATUSES = frozenset({204, 304})
#: RFC 9110 section 9.3.2: the response to HEAD carries no content.
NO_CONTENT_METHODS = frozenset({b"HEAD"})
#: RFC 9110 section 9.3.6: a 2xx to CONNECT turns the connection into a tunnel.
TUNNEL_METHOD = b"CONNECT"
SWITCHING_PROTOCOLS = 101
#: RFC 9110 section 10.1.1: the one expectation defined; the client may wait for this interim
#: status before it sends the body.
CONTINUE = 100
CONTINUE_EXPECTATION = b"100-continue"
#: RFC 7540 section 3.2: the token a client uses to ask for HTTP/2 over cleartext.
H2C_TOKEN = b"h2c"
#: RFC 6455 section 4.2.2: the server's 101 carries "Upgrade: websocket" (case-insensitive).
WEBSOCKET_TOKEN = b"websocket"


def upgraded_protocol(upgrade: bytes) -> str:
    """The decoder a 101 hands over to: "http2" (h2c), "websocket", or "" (a tunnel)."""
    if H2C_TOKEN in upgrade:
        return "http2"
    return "websocket" if WEBSOCKET_TOKEN in upgrade else ""


def parse_fields(buf: bytes | bytearray, newline: int, end: int) -> dict[bytes, bytes]:
    """The framing fields of the header lines in buf[newline + 1:end] (RFC 9112 section 5),
    leniently.  Repeated fields are joined with commas (RFC 9110 section 5.3); other fields are
    not looked at.  ``buf[newline]`` must be the LF that ends the start line."""
    fields: dict[bytes, bytes] = {}
    # (A loop of searches costs less than finditer for the one or two fields usually found.)
    search = _FRAMING_FIELD.search
    match = search(buf, newline, end)
    while match is not None:
        name, raw_value = match.group(1, 2)
        key = bytes(name.lower())
        value = bytes(raw_value.strip(b" \t\r"))
        fields[key] = fields[key] + b"," + value if key in fields else value
        match = search(buf, match.end(), end)
    return fields


def last_coding(value: bytes) -> bytes:
    return value.rsplit(b",", 1)[-1].strip(b" \t").lower()


def content_length(value: bytes | None) -> int | None:
    """RFC 9110 section 8.6: identical repeated values are one; anything else is invalid."""
    if value is None:
        return 0
    if value.isdigit() and len(value) <= 18:
        return int(value)  # the usual single value, read as the general case below reads it
    values = {part.strip(b" \t") for part in value.split(b",")}
    if len(values) != 1:
        return None
    (text,) = values
    return int(text) if text.isdigit() and len(text) <= 18 else None
