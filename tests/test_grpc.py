"""gRPC calls on HTTP/2 (issue #16): each length-prefixed message a message, against the
conversations built here (their messages, octets and answers are the ground truth)."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from hpack import Encoder

from analyzer.decoding.events import FRAMING, ORIG, PAYLOAD, RESP, MessageStarted
from analyzer.protocols.http2.decoder import PREFACE

if TYPE_CHECKING:
    from tests.decoder_harness import Result, Step, all_ways, run
    from tests.test_http2 import ACK, CAPTURES, Made, capture, data, headers, settings
    from tests.tshark import fields
else:
    try:
        from tests.decoder_harness import Result, Step, all_ways, run
        from tests.test_http2 import ACK, CAPTURES, Made, capture, data, headers, settings
        from tests.tshark import fields
    except ModuleNotFoundError:  # tests/ is no package: pytest put tests/ itself on sys.path
        from decoder_harness import Result, Step, all_ways, run
        from test_http2 import ACK, CAPTURES, Made, capture, data, headers, settings
        from tshark import fields

PATH = "/echo.Echo/Say"
REQUEST = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", PATH),
    (":authority", "localhost"),
    ("content-type", "application/grpc+proto"),
    ("te", "trailers"),
]
RESPONSE = [(":status", "200"), ("content-type", "application/grpc")]
TRAILERS = [("grpc-status", "0")]


def lpm(body: bytes) -> bytes:
    """A length-prefixed message: compressed flag 0, 4-octet length, the body."""
    return struct.pack(">BL", 0, len(body)) + body


class Call:
    """A conversation of one gRPC call on stream 1, built step by step."""

    def __init__(self, request_fields: list[tuple[str, str]] = REQUEST) -> None:
        self.orig, self.resp = Encoder(), Encoder()
        block = self.orig.encode(request_fields)
        self.steps: list[Step] = [
            (ORIG, PREFACE + settings() + headers(1, block)),
            (RESP, settings() + ACK + headers(1, self.resp.encode(RESPONSE))),
        ]

    def send(self, direction: int, *frames: bytes) -> int:
        """One step of DATA frames; returns its ordinal (steps are fed whole, one each)."""
        self.steps.append((direction, b"".join(frames)))
        return len(self.steps)

    def end(self) -> int:
        self.send(ORIG, data(1, b"", "END_STREAM"))
        return self.send(RESP, headers(1, self.resp.encode(TRAILERS), "END_STREAM"))


def grpc_messages(result: Result) -> list[MessageStarted]:
    return [m for m in result.started if m.protocol == "grpc"]


def octets(result: Result, message: int) -> tuple[int, int]:
    layers = result.layer_bytes(message)
    return layers[FRAMING], layers[PAYLOAD]


def answers(result: Result) -> dict[int, int]:
    return {a.message: a.ordinal for a in result.answered}


def test_unary_call_is_a_request_and_a_response_message() -> None:
    call = Call()
    asked = call.send(ORIG, data(1, lpm(b"ping!")))
    said = call.send(RESP, data(1, lpm(b"pong, longer")))
    call.end()
    whole, _ = all_ways(Made(), call.steps)
    request, response = grpc_messages(whole)
    assert (request.kind, request.sender, request.ordinal) == ("request", ORIG, asked)
    assert (response.kind, response.sender, response.ordinal) == ("response", RESP, said)
    assert octets(whole, request.message) == (5, 5)
    assert octets(whole, response.message) == (5, 12)
    assert answers(whole)[request.message] == said
    assert whole.notes[request.message]["path"] == PATH
    ended = {e.message for e in whole.ended}
    assert {request.message, response.message} <= ended
    # The HTTP/2 stream is still its own message, which keeps the frames' octets.
    (stream,) = [m for m in whole.started if m.protocol == "http2"]
    assert octets(whole, stream.message)[1] == 0 and stream.message in ended


def test_client_streaming_requests_are_all_answered_by_the_response() -> None:
    call = Call()
    for word in (b"a", b"bb", b"ccc"):
        call.send(ORIG, data(1, lpm(word)))
    said = call.send(RESP, data(1, lpm(b"sum")))
    call.end()
    whole, _ = all_ways(Made(), call.steps)
    requests = [m for m in grpc_messages(whole) if m.kind == "request"]
    assert [octets(whole, m.message) for m in requests] == [(5, 1), (5, 2), (5, 3)]
    assert [answers(whole)[m.message] for m in requests] == [said] * 3


def test_server_streaming_answers_the_request_once_with_its_first_response() -> None:
    call = Call()
    call.send(ORIG, data(1, lpm(b"list")))
    first = call.send(RESP, data(1, lpm(b"one")))
    call.send(RESP, data(1, lpm(b"two")), data(1, lpm(b"three")))
    call.end()
    whole, _ = all_ways(Made(), call.steps)
    responses = [m for m in grpc_messages(whole) if m.kind == "response"]
    assert [octets(whole, m.message) for m in responses] == [(5, 3), (5, 3), (5, 5)]
    (request,) = [m for m in grpc_messages(whole) if m.kind == "request"]
    assert [a.message for a in whole.answered].count(request.message) == 1
    assert answers(whole)[request.message] == first


def test_bidi_each_request_is_answered_by_the_next_later_response() -> None:
    call = Call()
    call.send(ORIG, data(1, lpm(b"q1")))
    a1 = call.send(RESP, data(1, lpm(b"r1")))
    call.send(ORIG, data(1, lpm(b"q2")))
    a2 = call.send(RESP, data(1, lpm(b"r2")))
    call.end()
    whole = run(Made(), call.steps)
    requests = [m for m in grpc_messages(whole) if m.kind == "request"]
    assert [answers(whole)[m.message] for m in requests] == [a1, a2]


def test_a_message_split_over_frames_and_several_in_one_frame() -> None:
    call = Call()
    big = lpm(b"x" * 100)
    call.send(ORIG, data(1, big[:3]), data(1, big[3:60]))
    call.send(ORIG, data(1, big[60:] + lpm(b"y") + lpm(b"")))
    call.send(RESP, data(1, lpm(b"ok")))
    call.end()
    whole, _ = all_ways(Made(), call.steps)
    requests = [m for m in grpc_messages(whole) if m.kind == "request"]
    assert [octets(whole, m.message) for m in requests] == [(5, 100), (5, 1), (5, 0)]
    # Every frame header stays the stream's: 9 octets per DATA frame, none to the messages.
    assert whole.anomalies == {}


def test_trailers_answer_a_request_no_response_message_answered() -> None:
    call = Call()
    call.send(ORIG, data(1, lpm(b"fail me")))
    trailers = call.end()
    whole = run(Made(), call.steps)
    (request,) = grpc_messages(whole)
    assert answers(whole)[request.message] == trailers


def test_a_prefix_that_lies_is_named_not_a_traceback() -> None:
    call = Call()
    call.send(ORIG, data(1, struct.pack(">BL", 0, 1000) + b"short"))
    call.end()
    whole, _ = all_ways(Made(), call.steps)
    assert whole.anomalies["grpc.truncated_message"] == 1
    (request,) = grpc_messages(whole)
    assert octets(whole, request.message) == (5, 5)


def test_a_bad_flag_charges_the_rest_opaque() -> None:
    call = Call()
    call.send(ORIG, data(1, b"\x09" + b"\x00" * 4 + b"rest"))
    call.end()
    whole = run(Made(), call.steps)
    assert whole.anomalies["grpc.bad_prefix"] == 1


def test_a_stream_without_grpc_content_type_has_no_grpc_messages() -> None:
    fields = [f for f in REQUEST if f[0] != "content-type"]
    call = Call(fields)
    call.send(ORIG, data(1, lpm(b"ping!")))
    call.end()
    assert grpc_messages(run(Made(), call.steps)) == []


def test_a_real_capture_has_the_messages_tshark_finds() -> None:
    """tshark's grpc dissector lists each complete message's length; ours must agree, and the
    message the capture cuts off (tshark shows none) is named."""
    name = "wireshark/grpc_stream_reassembly_sample.pcapng.gz"
    rows = fields(CAPTURES / name, ["tcp.stream", "grpc.message_length"], "-Y", "grpc")
    for stream in (0, 1):
        theirs = sorted(int(n) for row in rows if row[0] == str(stream) for n in row[1].split(","))
        whole = run(Made(), list(capture(name, stream)))
        ended = {e.message for e in whole.ended}
        ours = [m.message for m in grpc_messages(whole)]
        assert sorted(octets(whole, m)[1] for m in ours if m in ended) == theirs
        assert all(octets(whole, m)[0] == 5 for m in ours)
        assert whole.anomalies["grpc.truncated_message"] == len(ours) - len(theirs)
