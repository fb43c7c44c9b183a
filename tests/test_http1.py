"""HTTP/1.x decoder: literal conversations, h11-made bytes, and public captures checked
against tshark's figures (captures-public/README.md)."""

from __future__ import annotations

import random
import re
import subprocess
import time
from pathlib import Path
from typing import Any, ClassVar

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.decoding.events import (
    FRAMING,
    OPAQUE,
    ORIG,
    PAYLOAD,
    RESP,
    UNDECODED,
    Event,
    MessageIds,
    Span,
    StreamDecoder,
)
from analyzer.options import DecodeOptions
from analyzer.protocols.http1 import decoder as http1
from analyzer.protocols.http1.decoder import MAX_HEADER_BYTES, Http1Decoder

try:
    from tests.decoder_harness import Result, Step, all_ways, check, run
except ModuleNotFoundError:  # pytest's default "prepend" import mode puts tests/ on sys.path
    from decoder_harness import (  # type: ignore[no-redef,import-not-found,unused-ignore]
        Result,
        Step,
        all_ways,
        check,
        run,
    )

CAPTURES = Path(__file__).resolve().parents[1] / "captures" / "public"


def make() -> Http1Decoder:
    return Http1Decoder(MessageIds(), DecodeOptions())


def orig(data: bytes) -> Step:
    return (ORIG, data)


def resp(data: bytes) -> Step:
    return (RESP, data)


def layers(result: Result, message: int) -> tuple[int, int, int]:
    """(framing, payload, opaque) bytes of ``message``."""
    c = result.layer_bytes(message)
    return c[FRAMING], c[PAYLOAD], c[OPAQUE]


GET = b"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n"
OK5 = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


# -- one exchange at a time --------------------------------------------------------------------


def test_keep_alive_two_exchanges_each_one_message_with_its_bytes() -> None:
    whole, _ = all_ways(make, [orig(GET), resp(OK5), orig(GET), resp(OK5)])
    assert [m.message for m in whole.started] == [0, 1]
    assert [(m.kind, m.sender, m.protocol) for m in whole.started] == [
        ("exchange", ORIG, "http1")
    ] * 2
    assert [m.ordinal for m in whole.started] == [1, 3]
    assert [(a.message, a.ordinal) for a in whole.answered] == [(0, 2), (1, 4)]
    assert [e.message for e in whole.ended] == [0, 1]
    for message in (0, 1):
        assert layers(whole, message) == (len(GET) + len(OK5) - 5, 5, 0)
    assert whole.notes[0] == {
        "method": "GET",
        "target": "/a",
        "status": 200,
        "request_body_bytes": 0,
        "response_body_bytes": 5,
    }
    assert whole.protocols == ["http1"]
    assert not whole.anomalies


def test_truncated_conversations_never_invent_messages_nor_raise() -> None:
    _, cuts = all_ways(make, [orig(GET), resp(OK5), orig(GET), resp(OK5)])
    # A message exists from its complete request line on: cut inside it, none.
    first_line = GET.index(b"\n") + 1
    assert len(cuts[first_line - 1].started) == 0
    assert len(cuts[first_line].started) == 1
    assert cuts[first_line].anomalies["http1.truncated"] == 1


def test_request_body_by_content_length_and_connection_close() -> None:
    request = b"POST /form HTTP/1.1\r\nContent-Length: 7\r\nConnection: close\r\n\r\na=1&b=2"
    response = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    whole, _ = all_ways(make, [orig(request), resp(response)])
    assert layers(whole, 0) == (len(request) - 7 + len(response) - 2, 9, 0)
    assert whole.notes[0]["request_body_bytes"] == 7
    assert whole.notes[0]["status"] == 201
    assert len(whole.ended) == 1


def test_body_delimited_by_close_ends_at_resp_eof_only() -> None:
    steps = [orig(b"GET / HTTP/1.0\r\n\r\n"), resp(b"HTTP/1.0 200 OK\r\n\r\n"), resp(b"x" * 300)]
    whole, _ = all_ways(make, steps)
    assert layers(whole, 0)[1] == 300
    assert len(whole.ended) == 1
    assert whole.notes[0]["response_body_bytes"] == 300
    # Without the close the body may go on: not ended, but its bytes are counted.
    open_ended = run(make, steps, eof=False)
    assert not open_ended.ended
    assert layers(open_ended, 0)[1] == 300


def test_chunked_body_sizes_lines_and_trailers_are_framing() -> None:
    body = b"5\r\nhello\r\n1a;ext=1\r\n" + b"z" * 26 + b"\r\n0\r\nChecksum: abc\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    whole, _ = all_ways(make, [orig(GET), resp(head + body)])
    assert layers(whole, 0) == (len(GET) + len(head) + len(body) - 31, 31, 0)
    assert whole.notes[0]["response_body_bytes"] == 31
    assert len(whole.ended) == 1


def test_chunk_lines_with_bare_lf_are_tolerated() -> None:
    response = b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n"
    whole, _ = all_ways(make, [orig(GET), resp(response), orig(GET), resp(OK5)])
    assert layers(whole, 0)[1] == 3
    assert len(whole.ended) == 2


@pytest.mark.parametrize(
    ("request_line", "status_block"),
    [
        (b"HEAD / HTTP/1.1", b"HTTP/1.1 200 OK\r\nContent-Length: 1234"),
        (b"GET / HTTP/1.1", b"HTTP/1.1 204 No Content\r\nContent-Length: 1234"),
        (b"GET / HTTP/1.1", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1234"),
    ],
)
def test_no_body_responses_do_not_swallow_the_next_one(
    request_line: bytes, status_block: bytes
) -> None:
    request = request_line + b"\r\nHost: h\r\n\r\n"
    response = status_block + b"\r\n\r\n"
    whole, _ = all_ways(make, [orig(request), resp(response), orig(GET), resp(OK5)])
    assert layers(whole, 0) == (len(request) + len(response), 0, 0)
    assert layers(whole, 1)[1] == 5
    assert len(whole.ended) == 2


def test_expect_100_continue_interim_response_answers_the_same_exchange() -> None:
    head = b"PUT /up HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    final = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    whole, _ = all_ways(make, [orig(head), resp(interim), orig(b"data"), resp(final)])
    assert len(whole.started) == 1
    # The client waited for the 100 (its body came after it): once the body is in, the same
    # answer is repeated ending two waits (issue #17), the 100's and the final response's.
    assert [(a.message, a.ordinal, a.waits) for a in whole.answered] == [(0, 2, 1), (0, 2, 2)]
    assert layers(whole, 0) == (len(head) + len(interim) + len(final), 4, 0)
    assert whole.notes[0]["status"] == 200
    assert [e.ts for e in whole.ended] == [4.0]


def test_pipelined_requests_are_answered_in_order() -> None:
    requests = b"".join(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(3))
    responses = [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % i + b"x" * i for i in (1, 2, 3)]
    steps = [orig(requests), *(resp(r) for r in responses)]
    whole, _ = all_ways(make, steps)
    assert [m.ordinal for m in whole.started] == [1, 1, 1]
    assert [(a.message, a.ordinal) for a in whole.answered] == [(0, 2), (1, 3), (2, 4)]
    assert [layers(whole, m)[1] for m in range(3)] == [1, 2, 3]
    assert [whole.notes[m]["target"] for m in range(3)] == ["/0", "/1", "/2"]


def test_pipelined_request_split_after_its_first_line_keeps_its_body_payload() -> None:
    # The synthetic generator's pipelined POSTs at MTU 576: one segment ends a request's body and
    # carries the next request's start line and part of its fields; the next segment has the
    # rest.  The decoder once lost its place in the header block (buffer indexes went stale when
    # the finished request was dropped from the buffer) and charged the body as framing.
    post = b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"
    split = post.index(b"Content-Length")
    ok = b"HTTP/1.1 204 No Content\r\n\r\n"
    steps = [orig(post + b"hello" + post[:split]), orig(post[split:] + b"world"), resp(ok + ok)]
    whole, _ = all_ways(make, steps)
    assert [layers(whole, m) for m in (0, 1)] == [(len(post) + len(ok), 5, 0)] * 2
    assert [m.ordinal for m in whole.started] == [1, 1]
    assert [whole.notes[m]["request_body_bytes"] for m in (0, 1)] == [5, 5]
    assert not whole.anomalies


def test_http10_with_bare_lf_lines() -> None:
    request = b"GET /old HTTP/1.0\nUser-Agent: x\n\n"
    response = b"HTTP/1.0 200 OK\nContent-Length: 2\n\nhi"
    whole, _ = all_ways(make, [orig(request), resp(response)])
    assert layers(whole, 0) == (len(request) + len(response) - 2, 2, 0)
    assert len(whole.ended) == 1


def test_dhe1_request_line_without_end_of_header_block_is_one_request() -> None:
    # wireshark/dhe1.pcapng.gz: the decrypted client data is exactly this, and no response.
    whole, _ = all_ways(make, [orig(b"GET /test HTTP/1.0\n")])
    assert len(whole.started) == 1
    assert whole.notes[0]["method"] == "GET"
    assert layers(whole, 0) == (19, 0, 0)
    assert not whole.answered
    assert whole.anomalies["http1.truncated"] == 1


def test_leading_empty_lines_before_a_request_are_charged_with_it() -> None:
    # RFC 9112 section 2.2: some clients send an extra CRLF after a POST body.
    whole, _ = all_ways(make, [orig(GET), resp(OK5), orig(b"\r\n" + GET), resp(OK5)])
    assert layers(whole, 1)[0] == 2 + len(GET) + len(OK5) - 5
    assert not whole.anomalies


def test_long_target_is_truncated_in_the_note() -> None:
    request = b"GET /" + b"a" * 500 + b" HTTP/1.1\r\n\r\n"
    result = run(make, [orig(request)])
    target = result.notes[0]["target"]
    assert isinstance(target, str)
    assert len(target) == 200


# -- leaving HTTP/1.1 ----------------------------------------------------------------------------


class StubH2:
    """Stands in for the HTTP/2 decoder: charges what it gets to the upgraded message."""

    made: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **kwargs: Any) -> None:
        StubH2.made.append(kwargs)
        self.calls: list[tuple[str, int, int, int]] = []
        self.base = list(kwargs["base"])
        self.message = kwargs["upgrade_message"]

    def feed(self, direction: int, data: bytes, ordinal: int, ts: float) -> list[Event]:
        start = self.base[direction]
        self.base[direction] += len(data)
        self.calls.append(("feed", direction, len(data), ordinal))
        return [Span(direction, start, start + len(data), self.message, FRAMING)]

    def gap(self, direction: int, length: int, ordinal: int, ts: float) -> list[Event]:
        self.base[direction] += length
        return []

    def eof(self, direction: int, ordinal: int, ts: float) -> list[Event]:
        return []

    def finish(self, ts: float) -> list[Event]:
        return []


UPGRADE = (
    b"GET /robots.txt HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
)
SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@pytest.fixture
def stub_h2(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    made: list[dict[str, Any]] = []
    StubH2.made = made

    def fake_make_decoder(
        protocol: str, ids: MessageIds, options: DecodeOptions, **kwargs: Any
    ) -> StreamDecoder:
        assert protocol == "http2"
        return StubH2(**kwargs)

    monkeypatch.setattr(http1, "make_decoder", fake_make_decoder)
    return made


def test_h2c_upgrade_hands_over_after_the_101_with_offsets_and_message(
    stub_h2: list[dict[str, Any]],
) -> None:
    settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    steps = [orig(UPGRADE), resp(SWITCH + settings), orig(PREFACE + settings), resp(settings)]
    whole, _ = all_ways(make, steps)
    assert len(whole.started) == 1
    assert [(a.message, a.ordinal) for a in whole.answered] == [(0, 2)]
    made = stub_h2[0]
    assert made["base"] == (len(UPGRADE), len(SWITCH))
    assert made["upgraded"] is True
    assert made["upgrade_message"] == 0
    # HTTP/1.1 framing is ours; everything after the switch was the HTTP/2 decoder's.
    assert layers(whole, 0) == (sum(len(d) for _, d in steps), 0, 0)
    assert whole.notes[0]["upgrade"] == "h2c"
    assert not whole.ended  # stream 1's response ends the message, in HTTP/2


def test_h2c_preface_sent_early_is_held_and_replayed_with_its_ordinal(
    stub_h2: list[dict[str, Any]],
) -> None:
    # Nothing may be decoded as HTTP/1.1 after an Upgrade request until the answer says so.
    decoder = make()
    decoder.feed(ORIG, UPGRADE + PREFACE, 1, 1.0)
    assert not stub_h2
    decoder.feed(RESP, SWITCH, 2, 2.0)
    inner = decoder._inner
    assert isinstance(inner, StubH2)
    assert inner.calls == [("feed", ORIG, len(PREFACE), 1)]


def test_upgrade_declined_keeps_http1_and_decodes_what_was_held(
    stub_h2: list[dict[str, Any]],
) -> None:
    steps = [orig(UPGRADE + GET), resp(OK5), resp(OK5)]
    whole, _ = all_ways(make, steps)
    assert not stub_h2
    assert len(whole.started) == 2
    assert [a.ordinal for a in whole.answered] == [2, 3]


def test_websocket_101_hands_over_and_connect_200_becomes_an_opaque_tunnel() -> None:
    ws = b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    whole, _ = all_ways(make, [orig(ws), resp(switch + b"\x81\x02hi"), orig(b"\x81\x80abcd")])
    assert layers(whole, 0) == (len(ws) + len(switch), 0, 0)
    # The frames are the WebSocket decoder's (tests/test_websocket.py): two data messages.
    assert whole.protocols[-1] == "websocket" and not whole.anomalies
    assert [m.protocol for m in whole.started] == ["http1", "websocket", "websocket"]
    assert len(whole.ended) == 3

    connect = b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n"
    established = b"HTTP/1.1 200 Connection established\r\n\r\n"
    hello = b"\x16\x03\x01\x00\x05hello"
    whole, _ = all_ways(make, [orig(connect + hello), resp(established), resp(hello)])
    assert layers(whole, 0) == (len(connect) + len(established), 0, 0)
    assert whole.owner_bytes()[(UNDECODED, OPAQUE)] == 2 * len(hello)


# -- damaged input --------------------------------------------------------------------------


def test_joined_mid_connection_resyncs_on_start_lines() -> None:
    steps = [
        resp(b"tail of an earlier body\r\n" + OK5),
        orig(b"er: yes\r\n\r\n" + GET),
        resp(OK5),
    ]
    whole, _ = all_ways(make, steps)
    assert whole.anomalies["http1.resync"] == 2
    assert whole.anomalies["http1.orphan_response"] == 1
    # The orphan response is a message of its own, started and answered by its first packet.
    assert [(m.message, m.ordinal) for m in whole.started] == [(0, 1), (1, 2)]
    assert [(a.message, a.ordinal) for a in whole.answered] == [(0, 1), (1, 3)]
    assert whole.owner_bytes()[(UNDECODED, OPAQUE)] == 25 + 11
    assert "method" not in whole.notes[0]


def test_garbage_after_a_message_is_opaque_for_the_rest_of_the_direction() -> None:
    steps = [orig(GET), resp(OK5), orig(b"\x00\x01garbage\r\n" + GET), resp(OK5)]
    whole, _ = all_ways(make, steps)
    assert whole.anomalies["http1.bad_message"] == 1
    assert whole.owner_bytes()[(UNDECODED, OPAQUE)] == 11 + len(GET)
    # The second response has no request left to answer: an orphan, not a crash.
    assert len(whole.started) == 2


def test_bad_content_length_and_oversized_header_block() -> None:
    bad = b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhello"
    result = run(make, [orig(bad)])
    assert result.anomalies["http1.bad_content_length"] == 1
    assert result.owner_bytes()[(UNDECODED, OPAQUE)] == 5
    huge = b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEADER_BYTES
    result = run(make, [orig(huge)], chunk=4096)
    assert result.anomalies["http1.header_too_large"] == 1
    assert result.owner_bytes()[(0, OPAQUE)] == len(huge)


def feed_with_gaps(steps: list[tuple[str, int, bytes | int]]) -> Result:
    """Steps ("feed", direction, bytes) or ("gap", direction, length), one ordinal each."""
    decoder = make()
    result = Result(events=[])
    for ordinal, (call, direction, value) in enumerate(steps, start=1):
        if call == "feed":
            assert isinstance(value, bytes)
            result.events += decoder.feed(direction, value, ordinal, float(ordinal))
            result.fed[direction] += len(value)
        else:
            assert isinstance(value, int)
            result.events += decoder.gap(direction, value, ordinal, float(ordinal))
    result.events += decoder.finish(99.0)
    return result


def check_with_gaps(result: Result, gaps: dict[int, list[tuple[int, int]]]) -> None:
    """Spans cover every fed byte once; gap ranges are covered by nobody."""
    for direction, holes in gaps.items():
        for start, end in holes:
            result.events.append(Span(direction, start, end, UNDECODED, OPAQUE))
            result.fed[direction] += end - start
    check(result)


def test_gap_inside_a_known_length_body_keeps_the_framing_in_step() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    result = feed_with_gaps(
        [
            ("feed", ORIG, GET),
            ("feed", RESP, head + b"abc"),
            ("gap", RESP, 4),
            ("feed", RESP, b"xyz"),
            ("feed", ORIG, GET),
            ("feed", RESP, OK5),
        ]
    )
    check_with_gaps(result, {RESP: [(len(head) + 3, len(head) + 7)]})
    assert [(a.message, a.ordinal) for a in result.answered] == [(0, 2), (1, 6)]
    assert len(result.ended) == 2
    assert "http1.gap" not in result.anomalies


def test_gap_past_the_end_of_a_known_length_body_ends_that_message() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    result = feed_with_gaps(
        [
            ("feed", ORIG, GET + GET),
            ("feed", RESP, head + b"abc"),
            ("gap", RESP, 7 + len(OK5)),  # the body's tail and the whole second response
            ("feed", ORIG, GET),
            ("feed", RESP, OK5),
        ]
    )
    check_with_gaps(result, {RESP: [(len(head) + 3, len(head) + 10 + len(OK5))]})
    assert [(e.message, e.ts) for e in result.ended] == [(0, 3.0), (2, 5.0)]
    assert [a.message for a in result.answered] == [0, 2]
    assert result.anomalies["http1.lost_response"] == 1


def test_lost_response_head_like_zeek_1000_requests() -> None:
    # zeek/1000-requests-one-dropped-response: the first response's head segment is missing,
    # its body arrives, then the client's next request and its response.
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    result = feed_with_gaps(
        [
            ("feed", ORIG, GET),
            ("gap", RESP, len(head)),
            ("feed", RESP, b"hello"),
            ("feed", ORIG, GET),
            ("feed", RESP, head + b"world"),
            ("feed", ORIG, GET),
            ("feed", RESP, head + b"again"),
        ]
    )
    check_with_gaps(result, {RESP: [(0, len(head))]})
    assert len(result.started) == 3
    assert [(a.message, a.ordinal) for a in result.answered] == [(1, 5), (2, 7)]
    assert result.anomalies["http1.lost_response"] == 1
    # The orphaned body tail, plus the gap filler check_with_gaps added.
    assert result.owner_bytes()[(UNDECODED, OPAQUE)] == 5 + len(head)


def test_pipelined_responses_after_a_gap_are_matched_by_mean_size() -> None:
    requests = b"".join(b"GET /%d HTTP/1.1\r\n\r\n" % i for i in range(4))
    result = feed_with_gaps(
        [
            ("feed", ORIG, requests),
            ("feed", RESP, OK5),
            ("gap", RESP, len(OK5)),  # the second response, exactly
            ("feed", RESP, OK5),
            ("feed", RESP, OK5),
        ]
    )
    check_with_gaps(result, {RESP: [(len(OK5), 2 * len(OK5))]})
    assert [a.message for a in result.answered] == [0, 2, 3]
    assert result.anomalies["http1.lost_response"] == 1


CHUNKED_20 = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n14\r\n" + b"c" * 20 + b"\r\n0\r\n\r\n"
)


@pytest.mark.parametrize(("lost_whole", "answered"), [(0, [0, 1, 2, 3]), (1, [0, 1, 3])])
def test_gap_cutting_a_response_in_progress_skips_only_whole_lost_ones(
    lost_whole: int, answered: list[int]
) -> None:
    # Chunked: the framing cannot step over the gap, so the decoder must estimate how many
    # responses it held from the mean size: the cut one's tail, plus ``lost_whole`` others.
    requests = b"".join(b"GET /%d HTTP/1.1\r\n\r\n" % i for i in range(4))
    half = len(CHUNKED_20) // 2
    lost = len(CHUNKED_20) - half + lost_whole * len(CHUNKED_20)
    steps: list[tuple[str, int, bytes | int]] = [
        ("feed", ORIG, requests),
        ("feed", RESP, CHUNKED_20),
        ("feed", RESP, CHUNKED_20[:half]),
        ("gap", RESP, lost),
    ]
    steps += [("feed", RESP, CHUNKED_20)] * (2 - lost_whole)
    result = feed_with_gaps(steps)
    check_with_gaps(result, {RESP: [(len(CHUNKED_20) + half, len(CHUNKED_20) + half + lost)]})
    assert [a.message for a in result.answered] == answered
    assert result.anomalies["http1.lost_response"] == lost_whole
    assert len(result.ended) == 1 + 2 - lost_whole


def test_request_lost_in_a_gap_keeps_its_place_in_the_queue() -> None:
    result = feed_with_gaps(
        [
            ("feed", ORIG, GET),
            ("gap", ORIG, len(GET)),
            ("feed", ORIG, GET),
            ("feed", RESP, OK5 + OK5 + OK5),
        ]
    )
    check_with_gaps(result, {ORIG: [(len(GET), 2 * len(GET))]})
    # Response 2 answers the lost request (a message without request bytes), 3 the third.
    assert [m.ordinal for m in result.started] == [1, 3, 4]
    assert [(a.message, a.ordinal) for a in result.answered] == [(0, 4), (2, 4), (1, 4)]
    assert result.notes[1]["target"] == "/a"
    assert len(result.ended) == 3


# -- bytes made by h11, the reference implementation -------------------------------------------


Headers = list[tuple[bytes, bytes]]

#: (method, request headers, request body pieces, interim statuses, response headers, body pieces)
H11_PLANS: list[tuple[str, Headers, list[bytes], list[int], Headers, list[bytes]]] = [
    ("GET", [], [], [], [(b"content-length", b"3")], [b"xyz"]),
    ("POST", [(b"content-length", b"4")], [b"body"], [], [], [b"12345", b"678"]),  # chunked
    ("PUT", [(b"transfer-encoding", b"chunked")], [b"ab", b"cde"], [], [], []),
    ("HEAD", [], [], [], [(b"content-length", b"100")], []),
    ("PUT", [(b"content-length", b"2"), (b"expect", b"100-continue")], [b"ok"], [100], [], []),
]


def h11_body_bytes(connection: h11.Connection, data: bytes) -> int:
    """Feed ``data`` to ``connection``; the body bytes h11 decoded up to EndOfMessage."""
    if data:  # b"" would mean the peer closed
        connection.receive_data(data)
    size = 0
    while not isinstance(event := connection.next_event(), h11.EndOfMessage):
        if isinstance(event, h11.Data):
            size += len(event.data)
    return size


def h11_conversation() -> tuple[list[Step], list[tuple[int, int]], int]:
    """A keep-alive conversation written by h11's client and server roles; also returns each
    exchange's (request body, response body) sizes as h11 framed them, and the ordinal of the
    last interim response."""
    interim_ordinal = 0
    client = h11.Connection(h11.CLIENT)
    server = h11.Connection(h11.SERVER)
    steps: list[Step] = []
    sizes: list[tuple[int, int]] = []
    for method, req_headers, req_body, interims, resp_headers, resp_body in H11_PLANS:
        request = h11.Request(method=method, target="/p", headers=[(b"host", b"h"), *req_headers])
        head = client.send(request) or b""
        steps.append(orig(head))
        server.receive_data(head)
        assert isinstance(server.next_event(), h11.Request)
        for status in interims:  # Expect: 100-continue (RFC 9110 section 10.1.1)
            interim = server.send(h11.InformationalResponse(status_code=status, headers=[]))
            steps.append(resp(interim or b""))
            interim_ordinal = len(steps)
            client.receive_data(interim or b"")
            assert isinstance(client.next_event(), h11.InformationalResponse)
        body = b"".join(client.send(h11.Data(data=piece)) or b"" for piece in req_body)
        body += client.send(h11.EndOfMessage()) or b""
        if body:
            steps.append(orig(body))
        request_bytes = h11_body_bytes(server, body)
        out = server.send(h11.Response(status_code=200, headers=resp_headers)) or b""
        out += b"".join(server.send(h11.Data(data=piece)) or b"" for piece in resp_body)
        out += server.send(h11.EndOfMessage()) or b""
        steps.append(resp(out))
        response_bytes = h11_body_bytes(client, out)
        sizes.append((request_bytes, response_bytes))
        client.start_next_cycle()
        server.start_next_cycle()
    return steps, sizes, interim_ordinal


def test_h11_written_conversation_body_sizes_match_h11() -> None:
    steps, sizes, interim_ordinal = h11_conversation()
    whole, _ = all_ways(make, steps)
    assert len(whole.started) == len(sizes) == len(H11_PLANS)
    assert len(whole.ended) == len(H11_PLANS)
    assert sizes == [(0, 3), (4, 8), (5, 0), (0, 0), (2, 0)]
    for message, (request_bytes, response_bytes) in enumerate(sizes):
        assert whole.notes[message]["request_body_bytes"] == request_bytes
        assert whole.notes[message]["response_body_bytes"] == response_bytes
        assert layers(whole, message)[1] == request_bytes + response_bytes
    # The 100 Continue answers the last exchange: its answer comes before its body is sent, and
    # the body that followed it makes that answer end two waits (issue #17).
    last = len(H11_PLANS) - 1
    answers = [(a.ordinal, a.waits) for a in whole.answered if a.message == last]
    assert answers == [(interim_ordinal, 1), (interim_ordinal, 2)]
    assert not whole.anomalies


# -- public captures ------------------------------------------------------------------------

_FIELDS = (
    "frame.number",
    "tcp.stream",
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "tcp.seq_raw",
    "tcp.flags.syn",
    "tcp.flags.fin",
    "tcp.analysis.keep_alive",
    "tcp.payload",
)

Call = tuple[str, int, bytes | int, int]  # (call, direction, data or gap length, ordinal)


def capture_streams(path: Path) -> dict[int, list[Call]]:
    """Per TCP stream, the calls a reassembler would make: in-order data, gaps for bytes never
    captured, eof at FIN; orig is the SYN sender, else the first packet's sender."""
    command = ["tshark", "-r", str(path), "-T", "fields"]
    for name in _FIELDS:
        command += ["-e", name]
    lines = subprocess.run(command, capture_output=True, check=True, text=True).stdout
    packets: dict[int, list[list[str]]] = {}
    for line in lines.splitlines():
        cols = line.split("\t")
        if cols[1]:
            packets.setdefault(int(cols[1]), []).append(cols)
    return {stream: _reassemble(rows) for stream, rows in packets.items()}


def _reassemble(rows: list[list[str]]) -> list[Call]:
    senders: list[str] = []
    syn_seq: dict[str, int] = {}
    segments: dict[str, list[tuple[int, int, bytes]]] = {}
    fins: dict[str, int] = {}
    for frame, _, ip4, ip6, port, seq, syn, fin, keep_alive, payload in rows:
        sender = f"{ip4 or ip6}:{port}"
        if sender not in senders:
            senders.append(sender)
        if syn == "1":
            syn_seq.setdefault(sender, int(seq))
        if fin == "1":
            fins.setdefault(sender, int(frame))
        if payload and not keep_alive:  # a keep-alive probe repeats one old byte
            segments.setdefault(sender, []).append((int(seq), int(frame), bytes.fromhex(payload)))
    calls: list[tuple[int, int, Call]] = []
    for direction, sender in enumerate(senders[:2]):
        pieces = segments.get(sender, [])
        base = syn_seq[sender] + 1 if sender in syn_seq else (pieces[0][0] if pieces else 0)
        position, ready = 0, 0
        for seq_raw, number, data in sorted(pieces, key=lambda p: ((p[0] - base) % 2**32, p[1])):
            start = (seq_raw - base) % 2**32
            if start + len(data) <= position:
                continue  # retransmission
            ready = max(ready, number)
            if start > position:
                calls.append((ready, direction, ("gap", direction, start - position, ready)))
            data = data[max(0, position - start) :]
            calls.append((ready, direction, ("feed", direction, data, ready)))
            position = max(start, position) + len(data)
        if sender in fins:
            calls.append((max(ready, fins[sender]), direction, ("eof", direction, 0, 0)))
    calls.sort(key=lambda c: (c[0], c[1]))
    return [c[2] for c in calls]


def decode_calls(calls: list[Call]) -> Result:
    decoder = make()
    result = Result(events=[])
    last = 0
    for call, direction, value, ordinal in calls:
        last = max(last, ordinal)
        if call == "feed":
            assert isinstance(value, bytes)
            result.events += decoder.feed(direction, value, ordinal, float(ordinal))
            result.fed[direction] += len(value)
        elif call == "gap":
            assert isinstance(value, int)
            result.events += decoder.gap(direction, value, ordinal, float(ordinal))
            result.fed[direction] += value
            result.events.append(
                Span(
                    direction,
                    result.fed[direction] - value,
                    result.fed[direction],
                    UNDECODED,
                    OPAQUE,
                )
            )
        else:
            result.events += decoder.eof(direction, last, float(last))
    result.events += decoder.finish(float(last + 1))
    check(result)
    return result


def http_streams(name: str) -> list[Result]:
    streams = capture_streams(CAPTURES / name)
    return [decode_calls(calls) for calls in streams.values()]


def summary(results: list[Result]) -> tuple[int, int, int]:
    """(messages, answered, ended) over all streams."""
    return (
        sum(len(r.started) for r in results),
        sum(len(r.answered) for r in results),
        sum(len(r.ended) for r in results),
    )


def tshark_values(name: str, field: str) -> list[int]:
    """Every value of an integer ``field`` in HTTP responses, as tshark dissects them."""
    command = ["tshark", "-r", str(CAPTURES / name), "-Y", "http.response"]
    command += ["-T", "fields", "-e", field]
    lines = subprocess.run(command, capture_output=True, check=True, text=True).stdout
    return [int(v) for line in lines.split() for v in line.split(",") if v]


def test_zeek_pipelined_requests_five_exchanges() -> None:
    (result,) = http_streams("zeek/pipelined-requests.pcap")
    assert summary([result]) == (5, 5, 5)
    assert not result.anomalies
    assert result.owner_bytes()[(UNDECODED, OPAQUE)] == 0
    # Body sizes agree with tshark's Content-Length of each response, in order.
    lengths = tshark_values("zeek/pipelined-requests.pcap", "http.content_length")
    assert [result.notes[m]["response_body_bytes"] for m in range(5)] == lengths
    assert [layers(result, m)[1] for m in range(5)] == lengths


def test_zeek_non_printable_targets_four_connections_one_each() -> None:
    results = http_streams("zeek/http-non-printable-characters.pcap")
    assert [len(r.started) for r in results] == [1, 1, 1, 1]
    assert summary(results) == (4, 4, 4)
    assert all(not r.anomalies for r in results)


def test_ndpi_user_agent_split_over_two_packets_37_exchanges() -> None:
    (result,) = http_streams("ndpi/http_ua_splitted_in_two_pkts.pcapng")
    assert summary([result]) == (37, 37, 37)
    assert not result.anomalies


def test_scapy_chunked_response_one_exchange() -> None:
    results = [r for r in http_streams("scapy/http_chunk.pcap.gz") if r.started]
    (result,) = results
    assert summary([result]) == (1, 1, 1)
    # The capture opens with a TCP keep-alive probe carrying one old byte (seq one below the
    # request's); nothing before it tells it apart from data, so it is skipped as opaque.
    assert result.anomalies == {"http1.resync": 1}
    assert result.owner_bytes()[(UNDECODED, OPAQUE)] == 1
    # De-chunked body = the sum of tshark's chunk sizes (34 chunks, the last one empty).
    chunks = tshark_values("scapy/http_chunk.pcap.gz", "http.chunk_size")
    assert len(chunks) == 34
    assert layers(result, 0)[1] == sum(chunks) == 33653


def test_zeek_1000_requests_one_dropped_response_resyncs_after_the_gap() -> None:
    (result,) = http_streams("zeek/1000-requests-one-dropped-response.pcap.gz")
    # tshark: 1000 requests, 999 responses.  The missing segment is the first response's head.
    assert summary([result]) == (1000, 999, 999)
    assert 0 not in {a.message for a in result.answered}
    assert result.anomalies["http1.lost_response"] == 1
    # 999 bodies of 615 bytes decoded; the body after the lost head is opaque.
    assert result.owner_bytes()[(UNDECODED, OPAQUE)] == 238 + 615  # gap filler + body
    assert sum(layers(result, m)[1] for m in range(1000)) == 999 * 615
    # Every later response answers the request just before it: one round trip each.
    started = {m.message: m.ordinal for m in result.started}
    assert all(a.ordinal > started[a.message] for a in result.answered)


def test_scapy_h2c_upgrade_hands_over_to_http2() -> None:
    (result,) = http_streams("scapy/http2_h2c.pcap")
    assert result.protocols[0] == "http1"
    assert result.protocols[-1] == "http2"
    # The upgraded request is stream 1 (same message); /humans.txt is stream 3.
    assert len(result.started) == 2
    assert result.notes[0]["method"] == "GET"
    assert result.notes[0]["upgrade"] == "h2c"
    # Answered by the 101 (packet 2); the 200 on stream 1 ends it (README: :status 2).
    assert result.answered[0].message == 0 and result.answered[0].ordinal == 2
    assert [result.notes[m]["status"] for m in (0, 1)] == [200, 404]
    assert [e.message for e in result.ended] == [0, 1]
    # The HTTP/1.1 bytes: request head and 101 head, all framing of message 0.
    assert result.layer_bytes(0)[FRAMING] >= 178 + 71


# -- bounds and hostile input -------------------------------------------------------------------


def test_upgrade_never_answered_stops_holding_at_the_bound() -> None:
    body = 300_000
    post = b"POST /big HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % body
    stream = UPGRADE + post + b"x" * body
    result = run(make, [orig(stream)], chunk=32 * 1024)
    assert result.anomalies["http1.upgrade_unanswered"] == 1
    assert len(result.started) == 2
    assert layers(result, 1)[1] == body


def test_pending_requests_are_bounded() -> None:
    many = GET * (http1.MAX_PENDING_EXCHANGES + 10)
    decoder = make()
    result = Result(events=decoder.feed(ORIG, many, 1, 1.0))
    assert len(decoder._pending) == http1.MAX_PENDING_EXCHANGES
    assert result.anomalies["http1.too_many_pending"] == 10
    # Every request is still a message; the oldest just stop waiting for an answer.
    assert len(result.started) == http1.MAX_PENDING_EXCHANGES + 10


POOL = [
    GET,
    OK5,
    UPGRADE,
    SWITCH,
    PREFACE,
    CHUNKED_20,
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"PUT /u HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
    b"HTTP/1.0 200 OK\r\n\r\nclose-delimited",
    b"CONNECT h:1 HTTP/1.1\r\n\r\n",
    b"\x00\xff garbage \r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"5\r\nhello\r\n0\r\n\r\n",
]


def test_hostile_input_never_raises_and_keeps_the_contract(
    stub_h2: list[dict[str, Any]],
) -> None:
    rng = random.Random(20261128)
    for _ in range(400):
        decoder = make()
        result = Result(events=[])
        holes: dict[int, list[tuple[int, int]]] = {ORIG: [], RESP: []}
        ordinal = 0
        for _ in range(rng.randint(1, 8)):
            direction = rng.choice((ORIG, RESP))
            data = bytearray(b"".join(rng.choice(POOL) for _ in range(rng.randint(1, 3))))
            for _ in range(rng.randint(0, 2)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            ordinal += 1
            if rng.random() < 0.15:
                length = rng.randint(1, 40)
                start = result.fed[direction]
                holes[direction].append((start, start + length))
                result.fed[direction] += length
                result.events += decoder.gap(direction, length, ordinal, float(ordinal))
                continue
            at = 0
            while at < len(data):  # random packet sizes, one ordinal each
                piece = bytes(data[at : at + rng.choice((1, 3, 17, 100, 1500))])
                at += len(piece)
                ordinal += 1
                result.events += decoder.feed(direction, piece, ordinal, float(ordinal))
                result.fed[direction] += len(piece)
        result.events += decoder.eof(RESP, ordinal, float(ordinal))
        result.events += decoder.finish(float(ordinal + 1))
        fed = list(result.fed)
        result.fed = [f - sum(e - s for s, e in holes[d]) for d, f in enumerate(fed)]
        check_with_gaps(result, holes)


@pytest.mark.parametrize(
    ("direction", "prefix", "flood"),
    [
        (ORIG, b"", b"a" * 60_000),  # resync: no start line ever
        (RESP, b"", b"HTTP/1.1 x" * 6_000),
        (ORIG, GET, b"\r" * 60_000),  # blank "lines" before a request line
        (ORIG, b"GET / HTTP/1.1\r\nX: ", b"a" * 60_000),  # a header line that never ends
    ],
)
def test_one_byte_packets_cost_linear_time(direction: int, prefix: bytes, flood: bytes) -> None:
    # Each packet must not rescan what earlier ones brought: 60k one-byte packets took 12 s
    # when the resync search started over on every packet; linear, they take about 0.1 s.
    decoder = make()
    started = time.perf_counter()
    decoder.feed(direction, prefix, 0, 0.0)
    for i in range(len(flood)):
        decoder.feed(direction, flood[i : i + 1], i, 0.0)
    decoder.finish(1.0)
    assert time.perf_counter() - started < 3.0


# The lenient request-line reading as one regular expression: ``http1.request_line`` must
# give its result, without its backtracking.
_LENIENT_REQUEST_LINE = re.compile(
    rb"([A-Za-z0-9!#$%&'*+.^_`|~-]{1,32})[ \t]+(.+?)[ \t]+HTTP/1\.([0-9])[ \t]*\r?"
)


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"GET",
                b" ",
                b"\t",
                b"/a",
                b"HTTP/1.1",
                b"HTTP/1.",
                b"\r",
                b"x y",
                b"\n",
                b"9",
                b"P",
                b"HTTP/2",
            ]
        ),
        max_size=9,
    )
)
def test_request_line_reads_as_the_lenient_pattern(parts: list[bytes]) -> None:
    line = b"".join(parts)
    want = _LENIENT_REQUEST_LINE.fullmatch(line)
    got = http1.request_line(bytearray(b"xx" + line + b"yy"), 2, 2 + len(line))
    assert got == (None if want is None else want.group(1, 2)), line


def test_a_request_line_of_blanks_is_read_in_linear_time() -> None:
    """The pattern above backtracks for seconds on 2,000 spaces and hours on 64 KiB."""
    blanks = b"GET" + b" " * 60_000 + b"x" + b" " * 60_000
    assert http1.request_line(blanks, 0, len(blanks)) is None
    line = b"GET" + b" " * 60_000 + b"/" + b" " * 60_000 + b"HTTP/1.1\r"
    assert http1.request_line(line, 0, len(line)) == (b"GET", b"/")
