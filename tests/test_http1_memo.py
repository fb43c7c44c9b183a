"""The HTTP/1.1 fast path's memo of whole heads: a repeated head is read once, and reading it
from the memo gives what parsing it again gives, whole, byte at a time and cut anywhere."""

from __future__ import annotations

import pytest

from analyzer.decoding.events import ORIG, RESP, MessageIds
from analyzer.options import DecodeOptions
from analyzer.protocols.http1 import decoder as http1
from analyzer.protocols.http1.decoder import MAX_REMEMBERED_HEADS, Http1Decoder

try:
    from tests.decoder_harness import Step, all_ways, run
except ModuleNotFoundError:  # pytest's default "prepend" import mode puts tests/ on sys.path
    from decoder_harness import Step, all_ways, run  # type: ignore[no-redef,import-not-found,unused-ignore]


def make() -> Http1Decoder:
    return Http1Decoder(MessageIds(), DecodeOptions())


def _request(method: bytes, target: bytes) -> bytes:
    return method + b" " + target + b" HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"


def _response(status: bytes, body: bytes) -> bytes:
    head = b"HTTP/1.1 " + status + b"\r\nServer: nginx\r\nContent-Length: %d\r\n\r\n" % len(body)
    return head + body


def _conversation() -> tuple[list[Step], list[dict[str, object]]]:
    """Exchanges whose heads repeat, alternate and come back after the memo forgot them; a
    HEAD request answered by a head a GET's response also used (its length says no body)."""
    plan = [
        (b"GET", b"/a", b"200 OK", b"hello"),
        (b"GET", b"/a", b"200 OK", b"hello"),
        (b"GET", b"/b", b"404 Not Found", b"nope!!"),
        (b"GET", b"/a", b"200 OK", b"hello"),
        (b"POST", b"/c", b"200 OK", b"hello"),
        (b"GET", b"/b", b"404 Not Found", b"nope!!"),
        (b"HEAD", b"/a", b"200 OK", b""),
        (b"GET", b"/a", b"200 OK", b"hello"),
        (b"GET", b"/a", b"200 OK", b"hello"),
    ]
    steps: list[Step] = []
    notes: list[dict[str, object]] = []
    for method, target, status, body in plan:
        steps.append((ORIG, _request(method, target)))
        if method == b"HEAD":  # the head of a GET's response, with no body after it
            steps.append((RESP, _response(status, b"hello")[: -len(b"hello")]))
        else:
            steps.append((RESP, _response(status, body)))
        notes.append(
            {
                "method": method.decode(),
                "target": target.decode(),
                "status": int(status[:3]),
                "request_body_bytes": 0,
                "response_body_bytes": len(body),
            }
        )
    return steps, notes


def test_remembered_heads_read_as_parsed_ones_every_way() -> None:
    steps, notes = _conversation()
    whole, _ = all_ways(make, steps)
    assert [whole.notes[m] for m in range(len(notes))] == notes
    assert not whole.anomalies
    # Byte at a time every head takes the general path, which the memo never serves.
    assert run(make, steps, chunk=1).notes == whole.notes


def test_a_repeated_head_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[int] = []
    parse = http1._parse_fields

    def counting(buf: bytes | bytearray, newline: int, end: int) -> dict[bytes, bytes]:
        parsed.append(end)
        return parse(buf, newline, end)

    monkeypatch.setattr(http1, "_parse_fields", counting)
    decoder = make()
    exchanges = 10
    for _ in range(exchanges):
        decoder.feed(ORIG, _request(b"GET", b"/a"), 1, 0.0)
        decoder.feed(RESP, _response(b"200 OK", b"hello"), 2, 0.0)
    # The stream's first exchange takes the general path, the second the fast path, which
    # remembers both heads: the other eight exchanges parse nothing.
    assert len(parsed) == 2 * 2
    assert all(len(heads) <= MAX_REMEMBERED_HEADS for heads in decoder._heads)
