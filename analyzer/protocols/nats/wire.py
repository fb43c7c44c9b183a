"""The NATS client protocol's control lines: pure functions over bytes (no state, no events).

From the NATS documentation, "Client Protocol" (docs.nats.io/reference/reference-protocols/
nats-protocol): every operation is a line of ASCII words separated by spaces or tabs and ended by
CRLF; the verb is case-insensitive.  PUB, HPUB, MSG and HMSG announce a message of a given size
that follows the line and is itself followed by CRLF:

    PUB <subject> [reply-to] <#bytes>
    HPUB <subject> [reply-to] <#header bytes> <#total bytes>
    MSG <subject> <sid> [reply-to] <#bytes>
    HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>

The others carry no body: INFO {json}, CONNECT {json}, SUB, UNSUB, PING, PONG, +OK, -ERR.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.errors import DecodeError

#: Verbs that announce a message, and its kind (issue 16: publish and deliver).
MESSAGE_KINDS: dict[bytes, str] = {
    b"PUB": "publish",
    b"HPUB": "publish",
    b"MSG": "deliver",
    b"HMSG": "deliver",
}
#: Verbs without a body.
SETUP_VERBS = frozenset({b"INFO", b"CONNECT"})
CONTROL_VERBS = frozenset({b"SUB", b"UNSUB", b"PING", b"PONG", b"+OK", b"-ERR"})
VERBS = frozenset(MESSAGE_KINDS) | SETUP_VERBS | CONTROL_VERBS
#: Words after the verb: (fewest, most) for the message verbs; the sizes are the last ones.
_ARITY: dict[bytes, tuple[int, int]] = {
    b"PUB": (2, 3),
    b"HPUB": (3, 4),
    b"MSG": (3, 4),
    b"HMSG": (4, 5),
}
#: nats-server refuses max_payload above 64 MiB ("max_payload cannot exceed 64MB"), so a bigger
#: size is a lie, not a message to wait for.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: Characters of a subject kept in a message's ``subject`` note.
MAX_NOTED_SUBJECT_CHARS = 256


class BadLine(DecodeError):
    """A control line that is not NATS; ``anomaly`` names how (``nats.condition``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    """One decoded control line."""

    #: the verb, upper-cased (b"PUB", b"PING", ...)
    verb: bytes
    #: PUB/HPUB/MSG/HMSG: the subject, else ""
    subject: str = ""
    #: bytes of the header block that follows the line (HPUB and HMSG), else 0
    header_bytes: int = 0
    #: bytes of the message that follows the line (headers included), else 0
    total_bytes: int = 0

    @property
    def kind(self) -> str | None:
        """ "publish" or "deliver" for a message, None for the rest."""
        return MESSAGE_KINDS.get(self.verb)


def _size(word: bytes) -> int:
    if not word.isdigit():
        raise BadLine("nats.bad_args", f"size {word[:20]!r} is not a number")
    value = int(word)
    if value > MAX_MESSAGE_BYTES:
        raise BadLine("nats.bad_args", f"size {value} is past nats-server's 64 MiB limit")
    return value


def parse_line(line: bytes) -> Line:
    """The control line ``line`` (with or without its CRLF)."""
    words = line.split()
    if not words:
        raise BadLine("nats.unknown_op", "empty line")
    verb = words[0].upper()
    if verb not in VERBS:
        raise BadLine("nats.unknown_op", f"verb {verb[:20]!r}")
    if verb not in MESSAGE_KINDS:
        return Line(verb=verb)
    args = words[1:]
    fewest, most = _ARITY[verb]
    if not fewest <= len(args) <= most:
        raise BadLine("nats.bad_args", f"{verb.decode()} with {len(args)} arguments")
    subject = args[0].decode("utf-8", "replace")[:MAX_NOTED_SUBJECT_CHARS]
    if verb in (b"HPUB", b"HMSG"):
        header, total = _size(args[-2]), _size(args[-1])
        if header > total:
            raise BadLine("nats.bad_args", f"header {header} bytes of a {total}-byte message")
        return Line(verb=verb, subject=subject, header_bytes=header, total_bytes=total)
    return Line(verb=verb, subject=subject, total_bytes=_size(args[-1]))


def detect_opening(head: bytes) -> bool | None:
    """Does a direction open as NATS does: the server's ``INFO {`` or the client's ``CONNECT {``
    (True, False, or None while too few bytes are seen)?"""
    for opening in (b"INFO {", b"CONNECT {"):
        if head[: len(opening)].upper() == opening:
            return True
        if opening.startswith(head.upper()):
            return None
    return False
