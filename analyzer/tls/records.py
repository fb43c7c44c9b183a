"""The TLS record layer (RFC 8446 5.1, RFC 5246 6.2): what a record header says, and its spans.

Every TLS record starts with a 5-byte header: content type, legacy version, body length.  The
decoder cuts records with ``parse_record_header`` and charges their bytes with ``add_span``.
"""

from __future__ import annotations

from analyzer.decoding.events import Event, Span

#: RFC 8446 5.2 / RFC 5246 6.2.3: a protected record's body is at most 2^14 + 2048 bytes (TLS 1.3
#: allows only 2^14 + 256, but TLS 1.2 CBC/compression may use the full 2048 expansion).
MAX_RECORD_BYTES = 2**14 + 2048
RECORD_HEADER_BYTES = 5

CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT = 20, 21, 22, 23, 24
CONTENT_TYPES = frozenset({CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT})

#: Alert description and level (RFC 8446 6).
CLOSE_NOTIFY = 0
ALERT_FATAL = 2

SSL3, TLS1_0, TLS1_1, TLS1_2, TLS1_3 = 0x0300, 0x0301, 0x0302, 0x0303, 0x0304
VERSION_NAMES: dict[int, str] = {
    SSL3: "SSL 3.0",
    TLS1_0: "1.0",
    TLS1_1: "1.1",
    TLS1_2: "1.2",
    TLS1_3: "1.3",
}
#: TLS 1.3 drafts announce 0x7f00 + draft number.
DRAFT_MAJOR = 0x7F
#: Every record's legacy version has major 3 (SSL 3.0 to TLS 1.3).
RECORD_MAJOR = 3


def version_name(version: int) -> str:
    """ "1.2", "SSL 3.0", "draft-0x7f14", or the hex of anything else."""
    if version in VERSION_NAMES:
        return VERSION_NAMES[version]
    if version >> 8 == DRAFT_MAJOR:
        return f"draft-0x{version:04x}"
    return f"0x{version:04x}"


def is_tls13(version: int) -> bool:
    return version == TLS1_3 or version >> 8 == DRAFT_MAJOR


def parse_record_header(buf: bytes | bytearray, pos: int) -> tuple[int, int, int] | None:
    """(content type, version, body length) of the 5-byte header at ``pos``; None when those
    bytes cannot start a TLS record (unknown type, major version not 3, body too long)."""
    ctype = buf[pos]
    version = int.from_bytes(buf[pos + 1 : pos + 3], "big")
    length = int.from_bytes(buf[pos + 3 : pos + 5], "big")
    if ctype not in CONTENT_TYPES or buf[pos + 1] != RECORD_MAJOR or length > MAX_RECORD_BYTES:
        return None
    return ctype, version, length


def add_span(out: list[Event], d: int, start: int, end: int, owner: int, layer: int) -> None:
    """Append a span, merged with the previous one when they touch (fewer events)."""
    if end <= start:
        return
    last = out[-1] if out else None
    if (
        isinstance(last, Span)
        and last.direction == d
        and last.end == start
        and last.owner == owner
        and last.layer == layer
    ):
        out[-1] = Span(d, last.start, end, owner, layer)
        return
    out.append(Span(d, start, end, owner, layer))
