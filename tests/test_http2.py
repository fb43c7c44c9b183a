"""The HTTP/2 decoder, as conversations: literal frames, genuine h2 peers, and real captures.

The second opinion everywhere is ``oracle``: a plain walk over whole frames with hyperframe's
header parser that says which stream (or bucket) each byte belongs to.  The decoder, which
streams DATA bodies, buffers metadata frames and survives cuts and gaps, must agree with it.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from analyzer.decoding.events import (
    CONTROL,
    FRAMING,
    OPAQUE,
    ORIG,
    PAYLOAD,
    RESP,
    SETUP,
    TEARDOWN,
    UNDECODED,
    Event,
    MessageIds,
    MessageNote,
    MessageStarted,
    Span,
    StreamDecoder,
)
from analyzer.options import DecodeOptions
from analyzer.protocols.http2.decoder import PREFACE, Http2Decoder

if TYPE_CHECKING:
    from tests.decoder_harness import Result, Step, all_ways, check, run
else:
    try:
        from tests.decoder_harness import Result, Step, all_ways, check, run
    except ModuleNotFoundError:  # tests/ is no package: pytest put tests/ itself on sys.path
        from decoder_harness import Result, Step, all_ways, check, run

CAPTURES = Path(__file__).resolve().parents[1] / "captures" / "public"


class Made:
    """A factory that remembers the decoders it built (to read their frame counts)."""

    def __init__(self, **kwargs: object) -> None:
        self.kwargs = kwargs
        self.built: list[Http2Decoder] = []

    def __call__(self) -> StreamDecoder:
        decoder = Http2Decoder(MessageIds(), DecodeOptions(), **self.kwargs)  # type: ignore[arg-type]
        self.built.append(decoder)
        return decoder

    @property
    def first(self) -> Http2Decoder:
        """The first decoder built: the whole conversation, for ``run`` and ``all_ways``."""
        return self.built[0]


def by_stream(result: Result) -> dict[int, int]:
    """HTTP/2 stream id -> message id, from the ``stream_id`` notes."""
    return {
        int(notes["stream_id"]): m  # type: ignore[call-overload]
        for m, notes in result.notes.items()
        if "stream_id" in notes  # gRPC messages have a call instead
    }


# --- literal frames ---------------------------------------------------------------------------


def settings(**values: int) -> bytes:
    ids = {"table": 1, "push": 2, "streams": 3, "window": 4}
    return SettingsFrame(0, {ids[k]: v for k, v in values.items()}).serialize()


ACK = SettingsFrame(0, flags=["ACK"]).serialize()
REQUEST = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "example.com")]
RESPONSE = [(":status", "200"), ("content-type", "text/plain")]


def rfc_size(fields: list[tuple[str, str]]) -> int:
    """RFC 7541 section 4.1: name + value octets + 32 per field."""
    return sum(len(n) + len(v) + 32 for n, v in fields)


def headers(stream: int, block: bytes, *flags: str) -> bytes:
    return HeadersFrame(stream, block, flags=["END_HEADERS", *flags]).serialize()


def data(stream: int, body: bytes, *flags: str, pad: int = 0) -> bytes:
    if pad:
        return DataFrame(stream, body, flags=["PADDED", *flags], pad_length=pad).serialize()
    return DataFrame(stream, body, flags=list(flags)).serialize()


def extension_frame(frame_type: int, body: bytes) -> bytes:
    """An extension frame on stream 0 (hyperframe's ExtensionFrame serialises length 0)."""
    return struct.pack(">HBBBL", 0, len(body), frame_type, 0, 0) + body


def simple_get() -> tuple[list[Step], bytes, bytes]:
    """A GET and its 200 with a 5-byte body; returns (steps, request block, response block)."""
    request_block = Encoder().encode(REQUEST)
    response_block = Encoder().encode(RESPONSE)
    steps: list[Step] = [
        (ORIG, PREFACE + settings(streams=100) + headers(1, request_block, "END_STREAM")),
        (RESP, settings(streams=128, window=65535) + ACK),
        (RESP, headers(1, response_block) + data(1, b"hello", "END_STREAM")),
        (ORIG, ACK),
    ]
    return steps, request_block, response_block


def test_preface_and_first_settings_are_setup_the_rest_is_one_message() -> None:
    steps, request_block, response_block = simple_get()
    whole, cuts = all_ways(Made(), steps)
    assert len(whole.started) == 1
    started = whole.started[0]
    assert (started.protocol, started.kind, started.sender) == ("http2", "stream", ORIG)
    assert whole.owner_bytes() == Counter(
        {
            (SETUP, FRAMING): 24 + (9 + 6) + (9 + 12) + 9 + 9,
            (0, FRAMING): 9 + len(request_block) + 9 + len(response_block) + 9,
            (0, PAYLOAD): 5,
        }
    )
    assert [a.ordinal for a in whole.answered] == [3]  # the step carrying the response HEADERS
    assert [e.message for e in whole.ended] == [0]
    notes = whole.notes[0]
    assert notes["method"] == "GET" and notes["path"] == "/" and notes["status"] == 200
    assert notes["authority"] == "example.com" and notes["stream_id"] == 1
    assert notes["hpack"] == {
        "orig": {"encoded": len(request_block), "decoded": rfc_size(REQUEST)},
        "resp": {"encoded": len(response_block), "decoded": rfc_size(RESPONSE)},
    }
    assert not whole.anomalies
    assert whole.protocols == ["http2"]
    # Cut anywhere: the contract holds, and the message exists once its whole HEADERS frame
    # is in (a metadata frame is decoded whole), never before.
    request_end = len(PREFACE) + 15 + 9 + len(request_block)
    for n, cut in enumerate(cuts):
        assert len(cut.started) == (1 if n >= request_end else 0)
        # ... and ends with the last byte of the response's DATA (only orig's ACK comes after).
        assert len(cut.ended) == (1 if n >= len(cuts) - 9 else 0)


def test_byte_at_a_time_answers_at_the_first_byte_of_the_response_headers() -> None:
    steps, _, _ = simple_get()
    result = run(Made(), steps, chunk=1)
    first_response_byte = len(steps[0][1]) + len(steps[1][1]) + 1  # ordinals count from 1
    assert [a.ordinal for a in result.answered] == [first_response_byte]
    assert [s.ordinal for s in result.started] == [len(PREFACE) + 15 + 1]


def test_padding_and_pad_length_are_framing_data_is_payload() -> None:
    block = Encoder().encode(REQUEST)
    response = Encoder().encode(RESPONSE)
    steps: list[Step] = [
        (ORIG, PREFACE + settings() + headers(1, block)),
        (ORIG, data(1, b"abcdef", pad=7) + data(1, b"", "END_STREAM", pad=3)),
        (RESP, settings() + ACK + headers(1, response, "END_STREAM")),
    ]
    whole, _ = all_ways(Made(), steps)
    assert whole.layer_bytes(0)[PAYLOAD] == 6
    # Two DATA frames: 9 + 1 (pad length) + 7 and 9 + 1 + 3 framing bytes.
    framing = 9 + len(block) + (9 + 1 + 7) + (9 + 1 + 3) + 9 + len(response)
    assert whole.layer_bytes(0)[FRAMING] == framing
    assert [e.message for e in whole.ended] == [0]


def test_continuation_frames_each_count_nine_bytes_and_the_block_decodes_whole() -> None:
    fields = [*REQUEST, ("x-long", "v" * 300)]
    block = Encoder().encode(fields)
    parts = [block[:100], block[100:200], block[200:]]
    orig = (
        PREFACE
        + settings()
        + HeadersFrame(1, parts[0], flags=["END_STREAM"]).serialize()
        + ContinuationFrame(1, parts[1]).serialize()
        + ContinuationFrame(1, parts[2], flags=["END_HEADERS"]).serialize()
    )
    steps: list[Step] = [(ORIG, orig), (RESP, settings() + ACK)]
    made = Made()
    whole, _ = all_ways(made, steps)
    assert whole.layer_bytes(0) == Counter({FRAMING: 3 * 9 + len(block)})
    assert whole.notes[0]["hpack"] == {
        "orig": {"encoded": len(block), "decoded": rfc_size(fields)},
        "resp": {"encoded": 0, "decoded": 0},
    }
    assert whole.notes[0]["path"] == "/"
    assert made.first.frame_counts["CONTINUATION"] == 2


def test_a_push_is_its_own_message_announced_by_push_promise_and_never_answered() -> None:
    server = Encoder()
    promise_block = server.encode([*REQUEST[:2], (":path", "/style.css"), REQUEST[3]])
    promise = PushPromiseFrame(1, promised_stream_id=2, data=promise_block, flags=["END_HEADERS"])
    resp = (
        settings()
        + ACK
        + promise.serialize()
        + headers(1, server.encode(RESPONSE))
        + headers(2, server.encode(RESPONSE))
        + data(2, b"css!", "END_STREAM")
        + data(1, b"html", "END_STREAM")
    )
    steps: list[Step] = [
        (ORIG, PREFACE + settings() + headers(1, Encoder().encode(REQUEST), "END_STREAM")),
        (RESP, resp),
    ]
    whole, _ = all_ways(Made(), steps)
    streams = by_stream(whole)
    push = streams[2]
    kinds = {s.message: (s.kind, s.sender) for s in whole.started}
    assert kinds == {streams[1]: ("stream", ORIG), push: ("push", RESP)}
    assert [a.message for a in whole.answered] == [streams[1]]
    assert sorted(e.message for e in whole.ended) == sorted(streams.values())
    # The PUSH_PROMISE (9 + 4-byte promised id + block) is the pushed message's request.
    assert whole.layer_bytes(push)[FRAMING] == (9 + 4 + len(promise_block)) + (9 + 2) + 9
    assert whole.notes[push]["path"] == "/style.css"
    assert whole.notes[push]["hpack"]["resp"]["encoded"] == len(promise_block) + 2  # type: ignore[index]


def test_rst_stream_ends_the_message_and_control_frames_go_to_their_buckets() -> None:
    block = Encoder().encode(REQUEST)
    orig = (
        PREFACE
        + settings()
        + headers(1, block, "END_STREAM")
        + PriorityFrame(3, depends_on=0, stream_weight=16).serialize()
        + PingFrame(0, b"12345678").serialize()
        + WindowUpdateFrame(0, 1000).serialize()
        + WindowUpdateFrame(1, 1000).serialize()
        + settings(window=1 << 20)
        + extension_frame(0xBB, b"xyz")
    )
    resp = (
        settings()
        + ACK
        + RstStreamFrame(1, 8).serialize()
        + PingFrame(0, b"12345678", flags=["ACK"]).serialize()
        + ACK
        + GoAwayFrame(0, 1, 0).serialize()
    )
    steps: list[Step] = [(ORIG, orig), (RESP, resp)]
    made = Made()
    whole, _ = all_ways(made, steps)
    assert whole.owner_bytes() == Counter(
        {
            (SETUP, FRAMING): 24 + 9 + 9 + 9,
            (0, FRAMING): 9 + len(block) + 13,
            (CONTROL, FRAMING): 14 + 17 + 13 + 13 + 15 + 12 + 17 + 9,
            (TEARDOWN, FRAMING): 17,
        }
    )
    assert [e.message for e in whole.answered] == [0]  # the reset is the only answer it got
    assert [e.message for e in whole.ended] == [0]
    assert whole.anomalies == Counter({"http2.unknown_frame": 1})
    assert made.first.frame_counts == {
        "HEADERS": 1,
        "PRIORITY": 1,
        "RST_STREAM": 1,
        "SETTINGS": 5,
        "PING": 2,
        "GOAWAY": 1,
        "WINDOW_UPDATE": 2,
        "0xbb": 1,
    }


def test_base_offsets_shift_every_span() -> None:
    steps, _, _ = simple_get()
    decoder = Http2Decoder(MessageIds(), DecodeOptions(), base=(1000, 2000))
    events: list[Event] = []
    for n, (direction, chunk) in enumerate(steps, 1):
        events += decoder.feed(direction, chunk, n, float(n))
    events += decoder.finish(9.0)
    spans = [e for e in events if isinstance(e, Span)]
    assert min(s.start for s in spans if s.direction == ORIG) == 1000
    assert min(s.start for s in spans if s.direction == RESP) == 2000
    fed = [sum(len(c) for d, c in steps if d == direction) for direction in (ORIG, RESP)]
    assert sum(s.end - s.start for s in spans) == sum(fed)
    assert max(s.end for s in spans if s.direction == RESP) == 2000 + fed[RESP]


# --- the oracle -------------------------------------------------------------------------------


def oracle(steps: list[Step], *, preface: bool = True) -> Counter[tuple[object, int]]:
    """(stream id or bucket name, layer) -> bytes, by walking whole frames of each direction."""
    out: Counter[tuple[object, int]] = Counter()
    for direction in (ORIG, RESP):
        stream = b"".join(chunk for d, chunk in steps if d == direction)
        at = 0
        if direction == ORIG and preface:
            assert stream.startswith(PREFACE)
            out[("setup", FRAMING)] += len(PREFACE)
            at = len(PREFACE)
        first_settings = first_ack = True
        block_owner: object = None
        while at + 9 <= len(stream):
            frame, length = Frame.parse_frame_header(memoryview(stream[at : at + 9]))
            if at + 9 + length > len(stream):
                if frame.type == 0 and "PADDED" not in frame.flags:
                    # A DATA frame cut off by the capture's end: what came is still payload.
                    out[(frame.stream_id, FRAMING)] += 9
                    out[(frame.stream_id, PAYLOAD)] += len(stream) - at - 9
                    at = len(stream)
                break
            frame.parse_body(memoryview(stream[at + 9 : at + 9 + length]))
            size = 9 + length
            kind: int = frame.type or 0
            if kind == 4:  # SETTINGS
                first = first_ack if "ACK" in frame.flags else first_settings
                out[("setup" if first else "control", FRAMING)] += size
                if "ACK" in frame.flags:
                    first_ack = False
                else:
                    first_settings = False
            elif kind in (2, 6, 8) or kind > 9:  # PRIORITY, PING, WINDOW_UPDATE, extensions
                out[("control", FRAMING)] += size
            elif kind == 7:
                out[("teardown", FRAMING)] += size
            elif isinstance(frame, DataFrame):
                out[(frame.stream_id, PAYLOAD)] += len(frame.data)
                out[(frame.stream_id, FRAMING)] += size - len(frame.data)
            elif isinstance(frame, PushPromiseFrame):  # belongs to the pushed stream
                block_owner = frame.promised_stream_id
                out[(block_owner, FRAMING)] += size
            elif kind == 9:
                out[(block_owner, FRAMING)] += size
            else:  # HEADERS, RST_STREAM
                block_owner = frame.stream_id
                out[(frame.stream_id, FRAMING)] += size
            at += size
        if at < len(stream):
            out[("truncated", OPAQUE)] += len(stream) - at
    return +out


BUCKETS = {SETUP: "setup", CONTROL: "control", TEARDOWN: "teardown", UNDECODED: "truncated"}


def as_oracle(result: Result) -> Counter[tuple[object, int]]:
    """The decoder's spans keyed like ``oracle``'s (message ids turned into stream ids)."""
    stream_of = {m: s for s, m in by_stream(result).items()}
    for message, notes in result.notes.items():
        if "call" in notes:  # a gRPC message: its octets are its call's stream's
            stream_of[message] = stream_of[notes["call"]]  # type: ignore[index]
    out: Counter[tuple[object, int]] = Counter()
    for (owner, layer), size in result.owner_bytes().items():
        out[(stream_of[owner] if owner >= 0 else BUCKETS[owner], layer)] += size
    return out


# --- genuine peers: h2 ----------------------------------------------------------------------


class Peers:
    """An h2 client and server in memory; every byte either sends is recorded as a step."""

    def __init__(self) -> None:
        self.client = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.server = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.steps: list[Step] = []

    def pump(self) -> None:
        while True:
            moved = False
            for direction, sender, receiver in (
                (ORIG, self.client, self.server),
                (RESP, self.server, self.client),
            ):
                chunk = sender.data_to_send()
                if chunk:
                    self.steps.append((direction, chunk))
                    receiver.receive_data(chunk)
                    moved = True
            if not moved:
                return


def busy_conversation() -> list[Step]:
    """8 concurrent streams, a POST with padded DATA, a request big enough for CONTINUATION,
    a push, a reset, a PING and a GOAWAY."""
    peers = Peers()
    client, server = peers.client, peers.server
    client.initiate_connection()
    server.initiate_connection()
    peers.pump()
    rng = random.Random(7)
    big = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(30000))
    for n in range(8):
        stream = 2 * n + 1
        fields = [(":method", "GET"), (":scheme", "https"), (":path", f"/item/{n}")]
        fields.append((":authority", "example.org"))
        if n == 3:
            fields.append(("x-big", big))
        client.send_headers(stream, fields, end_stream=n != 5)
    client.send_data(11, b"posted body" * 50, pad_length=17)
    client.end_stream(11)
    client.ping(b"pingping")
    peers.pump()
    promised = [(":method", "GET"), (":scheme", "https"), (":path", "/pushed.css")]
    server.push_stream(1, 2, [*promised, (":authority", "example.org")])
    server.send_headers(2, [(":status", "200")])
    server.send_data(2, b"p" * 300, end_stream=True)
    for n in range(8):
        stream = 2 * n + 1
        if n == 6:
            server.reset_stream(stream, 7)
            continue
        server.send_headers(stream, [(":status", "200"), ("server", "h2")])
        server.send_data(stream, bytes([n]) * (1000 + n), pad_length=n * 3 or None)
        server.end_stream(stream)
        peers.pump()
    server.close_connection()
    peers.pump()
    return peers.steps


def test_h2_peers_every_byte_where_the_oracle_puts_it_whole_and_byte_at_a_time() -> None:
    steps = busy_conversation()
    made = Made()
    whole = run(made, steps)
    assert as_oracle(whole) == oracle(steps)
    bytewise = run(Made(), steps, chunk=1)
    assert as_oracle(bytewise) == oracle(steps)
    assert len(whole.started) == 9  # 8 requests and 1 push
    assert sorted(e.message for e in whole.ended) == sorted(m.message for m in whole.started)
    streams = by_stream(whole)
    assert len(whole.answered) == 8 and streams[2] not in {a.message for a in whole.answered}
    assert whole.notes[streams[1]]["status"] == 200 and "status" not in whole.notes[streams[13]]
    assert whole.notes[streams[7]]["hpack"]["orig"]["decoded"] > 30000  # type: ignore[index]
    assert not whole.anomalies
    counts = made.first.frame_counts
    assert counts["CONTINUATION"] >= 1 and counts["PUSH_PROMISE"] == 1
    assert counts["RST_STREAM"] == 1 and counts["GOAWAY"] == 1 and counts["PING"] == 2


def test_h2_peers_cut_anywhere_keeps_the_contract() -> None:
    steps = busy_conversation()
    total = sum(len(c) for _, c in steps)
    whole = run(Made(), steps)
    for cut in random.Random(3).sample(range(total), 60):
        result = run(Made(), steps, cut=cut)
        assert len(result.started) <= len(whole.started)
        assert all(e.message in {m.message for m in whole.started} for e in result.ended)


def test_upgraded_connection_charges_stream_1_to_the_http1_message() -> None:
    client = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
    server = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
    settings_header = client.initiate_upgrade_connection()
    server.initiate_upgrade_connection(settings_header)
    steps: list[Step] = []
    for direction, sender, receiver in ((ORIG, client, server), (RESP, server, client)):
        chunk = sender.data_to_send()
        steps.append((direction, chunk))
        receiver.receive_data(chunk)
    server.send_headers(1, [(":status", "200")])
    server.send_data(1, b"upgraded body", end_stream=True)
    steps.append((RESP, server.data_to_send()))

    class Http1Stub:
        """Stands in for the HTTP/1.1 decoder: it started message 0, then handed over."""

        def __init__(self) -> None:
            ids = MessageIds()
            self.message = ids.next()
            self.inner = Http2Decoder(
                ids, DecodeOptions(), upgraded=True, upgrade_message=self.message
            )
            self.started = False

        def _with_start(self, events: list[Event]) -> list[Event]:
            if not self.started:
                self.started = True
                events.insert(0, MessageStarted(self.message, "http1", "exchange", ORIG, 0, 0.0))
            return events

        def feed(self, direction: int, chunk: bytes, ordinal: int, ts: float) -> list[Event]:
            return self._with_start(self.inner.feed(direction, chunk, ordinal, ts))

        def gap(self, direction: int, length: int, ordinal: int, ts: float) -> list[Event]:
            return self._with_start(self.inner.gap(direction, length, ordinal, ts))

        def eof(self, direction: int, ordinal: int, ts: float) -> list[Event]:
            return self._with_start(self.inner.eof(direction, ordinal, ts))

        def finish(self, ts: float) -> list[Event]:
            return self._with_start(self.inner.finish(ts))

    whole, _ = all_ways(Http1Stub, steps)
    http2_started = [s for s in whole.started if s.protocol == "http2"]
    assert http2_started == []
    assert whole.layer_bytes(0)[PAYLOAD] == len(b"upgraded body")
    assert [a.message for a in whole.answered] == [0]
    assert [e.message for e in whole.ended] == [0]
    assert whole.notes[0]["status"] == 200
    assert whole.owner_bytes()[(SETUP, FRAMING)] == oracle(steps)[("setup", FRAMING)]


# --- captures joined late, gaps, garbage -------------------------------------------------


def test_mid_connection_resyncs_on_frame_headers_and_counts_header_blocks_undecoded() -> None:
    steps = busy_conversation()
    orig = b"".join(c for d, c in steps if d == ORIG)
    resp = b"".join(c for d, c in steps if d == RESP)
    # Join both directions a few bytes into a frame: the first bytes are not frame starts.
    late: list[Step] = [(ORIG, orig[len(PREFACE) + 5 :]), (RESP, resp[20:])]
    result = run(Made(), late)
    anomalies = result.anomalies
    assert anomalies["http2.no_preface"] == 1 and anomalies["http2.mid_connection"] == 1
    assert anomalies["http2.hpack_after_gap"] == 2 and anomalies["http2.resync"] == 2
    assert result.owner_bytes()[(SETUP, FRAMING)] == 0  # no setup seen, so none charged
    opaque = result.owner_bytes()[(UNDECODED, OPAQUE)]
    assert 0 < opaque < 100
    # The same 9 streams, with their bodies exactly; header blocks counted, not decoded.
    assert len(result.started) == 9
    payload = sum(size for (owner, layer), size in oracle(steps).items() if layer == PAYLOAD)
    assert sum(result.layer_bytes(m.message)[PAYLOAD] for m in result.started) == payload
    for notes in result.notes.values():
        assert "method" not in notes and "status" not in notes
        hpack = notes["hpack"]
        assert hpack["orig"]["decoded"] is None or hpack["orig"]["encoded"] == 0  # type: ignore[index]


def feed_with_gap(steps: list[Step], direction: int, at: int, length: int) -> Result:
    """Feed ``steps`` whole, but bytes [at, at+length) of ``direction`` are never captured."""
    decoder = Http2Decoder(MessageIds(), DecodeOptions())
    result = Result(events=[])
    position = [0, 0]
    for ordinal, (d, chunk) in enumerate(steps, 1):
        start = position[d]
        position[d] += len(chunk)
        if d == direction and start <= at < start + len(chunk):
            cut = at - start
            result.events += decoder.feed(d, chunk[:cut], ordinal, float(ordinal))
            result.events += decoder.gap(d, length, ordinal, float(ordinal))
            rest = chunk[cut + length :]
            result.events += decoder.feed(d, rest, ordinal, float(ordinal))
            result.fed[d] += cut + length + len(rest)
        else:
            result.events += decoder.feed(d, chunk, ordinal, float(ordinal))
            result.fed[d] += len(chunk)
    result.events += decoder.finish(99.0)
    return result


def gap_conversation() -> tuple[list[Step], int]:
    """A 10000-byte DATA frame between two responses; returns steps and the body's offset."""
    server = Encoder()
    request = Encoder()
    resp_head = settings() + ACK + headers(1, server.encode(RESPONSE))
    body_at = len(resp_head) + 9
    steps: list[Step] = [
        (
            ORIG,
            PREFACE
            + settings()
            + headers(1, request.encode(REQUEST), "END_STREAM")
            + headers(3, request.encode(REQUEST), "END_STREAM"),
        ),
        (RESP, resp_head + data(1, b"x" * 10000, "END_STREAM")),
        (RESP, headers(3, server.encode([(":status", "404")]), "END_STREAM")),
    ]
    return steps, body_at


def gap_free_spans(result: Result, skipped: tuple[int, int, int]) -> None:
    """``check`` with the gap's bytes filled in as a span, since no packet carried them."""
    direction, at, length = skipped
    result.events.append(Span(direction, at, at + length, UNDECODED, OPAQUE))
    check(result)


def test_a_gap_inside_a_data_body_keeps_step_and_hpack() -> None:
    steps, body_at = gap_conversation()
    result = feed_with_gap(steps, RESP, body_at + 100, 5000)
    gap_free_spans(result, (RESP, body_at + 100, 5000))
    streams = by_stream(result)
    assert result.layer_bytes(streams[1])[PAYLOAD] == 5000
    assert result.notes[streams[3]]["status"] == 404  # decoded: the table is intact
    assert not result.anomalies
    assert len(result.ended) == 2


def test_a_gap_across_frames_resyncs_and_stops_decoding_that_directions_headers() -> None:
    steps, body_at = gap_conversation()
    result = feed_with_gap(steps, RESP, body_at + 9000, 1009 + 5)  # into the next frame
    gap_free_spans(result, (RESP, body_at + 9000, 1014))
    assert result.anomalies["http2.hpack_after_gap"] == 1
    streams = by_stream(result)
    assert "status" not in result.notes[streams[3]]
    assert result.notes[streams[1]]["method"] == "GET"  # orig's table is untouched
    # The gap swallowed the end of stream 1's DATA frame, whose END_STREAM still counts.
    assert streams[1] in {e.message for e in result.ended}


def test_garbage_never_raises_and_every_byte_is_charged() -> None:
    rng = random.Random(11)
    for n in range(30):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
        start = PREFACE + settings() if n % 2 else b""
        whole = run(Made(), [(ORIG, start + junk), (RESP, junk[::-1])])
        pieces = run(Made(), [(ORIG, start + junk), (RESP, junk[::-1])], chunk=7)
        assert pieces.owner_bytes() == whole.owner_bytes()
        assert whole.anomalies["http2.no_preface"] == (0 if start else 1)
        assert whole.anomalies["http2.mid_connection"] == 1


def test_bit_flips_in_a_real_conversation_never_raise() -> None:
    steps = busy_conversation()[:8]
    rng = random.Random(5)
    for _ in range(40):
        flipped = []
        for direction, chunk in steps:
            buf = bytearray(chunk)
            for _ in range(3):
                buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
            flipped.append((direction, bytes(buf)))
        run(Made(), flipped)


# --- real captures, with tshark as the second opinion -------------------------------------


def follow(
    path: Path, stream: int, layer: str = "tcp", options: tuple[str, ...] = ()
) -> list[Step]:
    """Each direction's bytes in order, as tshark's ``follow,tcp,raw`` (or ``tls``) gives them."""
    out = subprocess.run(
        ["tshark", "-r", str(path), *options, "-q", "-z", f"follow,{layer},raw,{stream}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = out.split("Node 1:", 1)[1].split("\n", 1)[1].splitlines()
    steps: list[Step] = []
    for line in lines:
        if line.startswith("="):
            break
        steps.append((RESP if line.startswith("\t") else ORIG, bytes.fromhex(line.strip())))
    return steps


@lru_cache
def capture(name: str, stream: int = 0) -> tuple[Step, ...]:
    return tuple(follow(CAPTURES / name, stream))


# The test command installs tshark; without it these cross-checks fail rather than skip.
assert shutil.which("tshark"), "tshark is not installed: run scripts/test.sh"


def decode_capture(steps: list[Step], **kwargs: object) -> tuple[Result, dict[str, int]]:
    made = Made(**kwargs)
    result = run(made, steps)
    return result, made.first.frame_counts


def test_capture_h2_14_headers_six_streams_nineteen_frames() -> None:
    steps = list(capture("wireshark/packet-h2-14_headers.pcapng"))
    result, counts = decode_capture(steps)
    assert counts == {"DATA": 7, "HEADERS": 7, "SETTINGS": 5}  # tshark: 19 frames
    assert len(result.started) == 6  # tshark: 6 streams, :method 6
    assert sum(1 for n in result.notes.values() if "method" in n) == 6
    assert sum(1 for n in result.notes.values() if "status" in n) == 1  # tshark: :status 1
    assert as_oracle(result) == oracle(steps)
    assert not result.anomalies


def test_capture_grpc_two_connections() -> None:
    total: Counter[str] = Counter()
    messages = 0
    methods = statuses = 0
    for stream in (0, 1):
        steps = list(capture("wireshark/grpc_stream_reassembly_sample.pcapng.gz", stream))
        result, counts = decode_capture(steps)
        total.update(counts)
        messages += sum(1 for m in result.started if m.protocol == "http2")
        methods += sum(1 for n in result.notes.values() if n.get("method") == "POST")
        statuses += sum(1 for n in result.notes.values() if "status" in n)
        # The oracle knows HTTP/2 only: each gRPC message's 5-octet prefix is framing to us.
        expected = oracle(steps)
        calls = [n["call"] for n in result.notes.values() if "call" in n]
        assert calls, "the gRPC calls were decoded"
        stream_of = {m: s for s, m in by_stream(result).items()}
        for call in calls:
            expected[(stream_of[call], PAYLOAD)] -= 5  # type: ignore[index]
            expected[(stream_of[call], FRAMING)] += 5  # type: ignore[index]
        assert as_oracle(result) == +expected
    # tshark: DATA 24, WINDOW_UPDATE 14, SETTINGS 8, HEADERS 4, RST_STREAM 1; 2 streams.
    assert total == Counter(
        {"DATA": 24, "WINDOW_UPDATE": 14, "SETTINGS": 8, "HEADERS": 4, "RST_STREAM": 1}
    )
    assert (messages, methods, statuses) == (2, 2, 1)


def test_capture_nghttp2_continuation_and_push_where_tshark_fails() -> None:
    steps = list(capture("arkime/http2-nghttp2.pcap"))
    result, counts = decode_capture(steps)
    # tshark 4.0.17 decodes SETTINGS 3, PRIORITY 5, HEADERS 3, PUSH_PROMISE 1, DATA 4 and then
    # gives up on orig's 16384-byte HEADERS ("Unreassembled fragment"): it never sees that
    # frame's CONTINUATION, nor orig's later SETTINGS ACK, 2 WINDOW_UPDATEs and GOAWAY.  We
    # decode them all (the oracle, walking whole frames, agrees), so we count 5 frames more.
    tshark = Counter({"SETTINGS": 3, "PRIORITY": 5, "HEADERS": 3, "PUSH_PROMISE": 1, "DATA": 4})
    missed_by_tshark = Counter({"CONTINUATION": 1, "SETTINGS": 1, "WINDOW_UPDATE": 2, "GOAWAY": 1})
    assert Counter(counts) == tshark + missed_by_tshark
    assert as_oracle(result) == oracle(steps)
    streams = by_stream(result)
    assert sorted(streams) == [2, 13]  # PRIORITY-only ids 3..11 are no messages
    request = result.notes[streams[13]]
    assert (request["method"], request["path"]) == ("GET", "/")  # tshark: not decoded
    hpack = request["hpack"]
    assert hpack["orig"]["encoded"] > 16384 and hpack["orig"]["decoded"] > 16384  # type: ignore[index]
    push = result.notes[streams[2]]
    assert (push["path"], push["status"]) == ("/stylesheets/screen.css", 200)
    kinds = {s.message: s.kind for s in result.started}
    assert kinds == {streams[13]: "stream", streams[2]: "push"}
    assert [a.message for a in result.answered] == [streams[13]]
    assert len(result.ended) == 2
    assert not result.anomalies


def test_capture_h2c_upgrade_from_after_the_101() -> None:
    steps = list(capture("scapy/http2_h2c.pcap"))
    # Skip what the HTTP/1.1 decoder owns: orig's request, resp's 101 header block.
    assert steps[0][0] == ORIG and steps[0][1].startswith(b"GET /robots.txt")
    switching = steps[1][1]
    end = switching.index(b"\r\n\r\n") + 4
    assert switching.startswith(b"HTTP/1.1 101")
    h2_steps: list[Step] = [(RESP, switching[end:]), *steps[2:]]
    ids = MessageIds()
    upgrade = ids.next()
    decoder = Http2Decoder(ids, DecodeOptions(), upgraded=True, upgrade_message=upgrade)
    result = Result(events=[MessageStarted(upgrade, "http1", "exchange", ORIG, 1, 1.0)])
    for ordinal, (direction, chunk) in enumerate(h2_steps, 2):
        result.events += decoder.feed(direction, chunk, ordinal, float(ordinal))
        result.fed[direction] += len(chunk)
    result.events += decoder.finish(99.0)
    check(result)
    # tshark: SETTINGS 4, HEADERS 3, DATA 2, WINDOW_UPDATE 1; 2 streams, :method 1, :status 2.
    assert decoder.frame_counts == {"DATA": 2, "HEADERS": 3, "SETTINGS": 4, "WINDOW_UPDATE": 1}
    assert [s.message for s in result.started] == [upgrade, upgrade + 1]  # stream 3 is new
    assert result.notes[upgrade]["status"] == 200
    assert result.notes[upgrade + 1]["path"] == "/humans.txt"
    assert result.notes[upgrade + 1]["status"] == 404
    assert sorted(a.message for a in result.answered) == [upgrade, upgrade + 1]
    assert sorted(e.message for e in result.ended) == [upgrade, upgrade + 1]
    assert as_oracle(result) == oracle(h2_steps)  # the same walk, from after the 101
    assert not result.anomalies
    notes = [e for e in result.events if isinstance(e, MessageNote) and e.key == "stream_id"]
    assert {n.value for n in notes} == {1, 3}


# --- HPACK state, bounds and odd frames -----------------------------------------------------


def table_growth(grant: int | None) -> list[Step]:
    """resp's encoder grows its dynamic table to 8192 octets (RFC 7541 section 6.3)."""
    server = Encoder()
    server.header_table_size = 8192
    first = server.encode([*RESPONSE, ("x-big", "b" * 5000)])  # starts with a size update
    orig_settings = settings(table=grant) if grant is not None else settings()
    return [
        (ORIG, PREFACE + orig_settings + headers(1, Encoder().encode(REQUEST), "END_STREAM")),
        (RESP, settings() + ACK + headers(1, first, "END_STREAM")),
    ]


def test_a_larger_table_granted_by_settings_is_honoured() -> None:
    granted = run(Made(), table_growth(8192))
    assert granted.notes[0]["status"] == 200 and not granted.anomalies
    # Without orig's SETTINGS_HEADER_TABLE_SIZE the update is illegal: hpack refuses the block,
    # the anomaly says so and that direction's figures become unknown.
    refused = run(Made(), table_growth(None))
    assert refused.anomalies == Counter({"http2.hpack_error": 1})
    assert refused.notes[0]["hpack"]["resp"]["decoded"] is None  # type: ignore[index]
    assert "status" not in refused.notes[0]


def test_a_broken_header_block_stops_decoding_only_that_direction() -> None:
    request = Encoder()
    steps: list[Step] = [
        (ORIG, PREFACE + settings() + headers(1, b"\x80", "END_STREAM")),  # index 0: invalid
        (ORIG, headers(3, request.encode(REQUEST), "END_STREAM")),
        (RESP, settings() + ACK + headers(3, Encoder().encode(RESPONSE), "END_STREAM")),
    ]
    whole, _ = all_ways(Made(), steps)
    assert whole.anomalies == Counter({"http2.hpack_error": 1})
    streams = by_stream(whole)
    assert "method" not in whole.notes[streams[3]]  # orig's table is lost for good
    assert whole.notes[streams[3]]["status"] == 200  # resp's is independent
    assert whole.layer_bytes(streams[1])[FRAMING] == 10


def test_a_header_frame_over_the_buffer_bound_is_counted_not_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from analyzer.protocols.http2 import decoder as http2

    monkeypatch.setattr(http2, "MAX_BUFFERED_FRAME_BYTES", 64)
    fields = [*REQUEST, ("x-long", "q" * 400)]
    block = Encoder().encode(fields)
    half = len(block) // 2
    orig = (
        PREFACE
        + settings()
        + HeadersFrame(1, block[:half], flags=["END_STREAM"]).serialize()
        + ContinuationFrame(1, block[half:], flags=["END_HEADERS"]).serialize()
    )
    steps: list[Step] = [(ORIG, orig), (RESP, settings() + ACK)]
    whole, _ = all_ways(Made(), steps)
    assert whole.anomalies == Counter({"http2.frame_too_large": 2})
    assert whole.owner_bytes()[(0, FRAMING)] == 2 * 9 + len(block)
    assert whole.notes[0]["hpack"]["orig"]["decoded"] is None  # type: ignore[index]
    assert whole.started[0].ordinal == 1 and len(whole.ended) == 0  # resp never answered
    # END_STREAM still takes effect when the block ends, so a response completes the message.
    response = headers(1, Encoder().encode(RESPONSE), "END_STREAM")
    answered = run(Made(), [*steps, (RESP, response)])
    assert [e.message for e in answered.ended] == [0]


def test_frames_for_streams_forgotten_past_the_bound_are_control(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from analyzer.protocols.http2 import decoder as http2

    monkeypatch.setattr(http2, "MAX_CLOSED_STREAMS", 2)
    request, response = Encoder(), Encoder()
    orig = PREFACE + settings()
    resp = settings() + ACK
    for stream in (1, 3, 5, 7):
        orig += headers(stream, request.encode(REQUEST), "END_STREAM")
        resp += headers(stream, response.encode(RESPONSE), "END_STREAM")
    late = data(1, b"late", "END_STREAM")  # stream 1 ended long ago and was evicted
    result = run(Made(), [(ORIG, orig), (RESP, resp), (RESP, late)])
    assert len(result.started) == 4
    assert result.owner_bytes()[(CONTROL, PAYLOAD)] == 4
    assert result.anomalies == Counter({"http2.frame_on_forgotten_stream": 1})


def test_a_gap_ending_exactly_at_a_data_frames_end_keeps_step() -> None:
    steps, body_at = gap_conversation()
    result = feed_with_gap(steps, RESP, body_at + 1000, 9000)
    gap_free_spans(result, (RESP, body_at + 1000, 9000))
    assert not result.anomalies
    assert result.notes[by_stream(result)[3]]["status"] == 404
    assert len(result.ended) == 2


def test_a_gap_in_the_preface_joins_mid_connection() -> None:
    steps, _ = gap_conversation()
    result = feed_with_gap(steps, ORIG, 3, 10)
    gap_free_spans(result, (ORIG, 3, 10))
    assert result.anomalies["http2.hpack_after_gap"] == 1
    assert result.owner_bytes()[(UNDECODED, OPAQUE)] >= 3  # the preface's first bytes
    assert len(result.started) == 2  # both requests found again after the resync


def test_streams_open_past_the_bound_are_retired_and_still_end_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from analyzer.protocols.http2 import decoder as http2

    monkeypatch.setattr(http2, "MAX_OPEN_STREAMS", 2)
    request, response = Encoder(), Encoder()
    orig = PREFACE + settings()
    for stream in (1, 3, 5):
        orig += headers(stream, request.encode(REQUEST), "END_STREAM")
    resp = settings() + ACK + headers(1, response.encode(RESPONSE), "END_STREAM")
    result = run(Made(), [(ORIG, orig), (RESP, resp)])
    assert result.anomalies == Counter({"http2.too_many_open_streams": 1})
    # Stream 1 was retired when stream 5 opened, yet its response still answers and ends it.
    streams = by_stream(result)
    assert [e.message for e in result.ended] == [streams[1]]
    assert result.notes[streams[1]]["status"] == 200
    assert all("hpack" in notes for notes in result.notes.values())


def round_trips(result: Result) -> list[float]:
    from analyzer.accounting.roundtrips import message_round_trips

    answered = {a.message: a.ordinal for a in result.answered}
    timings = [(m.sender, m.ordinal, answered.get(m.message)) for m in result.started]
    return message_round_trips(timings)


def test_eight_concurrent_streams_cost_an_eighth_of_a_round_trip_each() -> None:
    request, response = Encoder(), Encoder()
    requests = b"".join(
        headers(stream, request.encode(REQUEST), "END_STREAM") for stream in range(1, 17, 2)
    )
    steps: list[Step] = [(ORIG, PREFACE + settings()), (RESP, settings() + ACK)]
    steps += [(ORIG, ACK + requests)]
    for stream in range(1, 17, 2):
        steps.append((RESP, headers(stream, response.encode(RESPONSE)) + data(stream, b"ok")))
        steps.append((RESP, data(stream, b"!", "END_STREAM")))
    result = run(Made(), steps)
    assert round_trips(result) == [1 / 8] * 8
    # The same requests one after another, each waiting for its answer: 1 each.
    request, response = Encoder(), Encoder()
    steps = [(ORIG, PREFACE + settings()), (RESP, settings() + ACK)]
    for stream in (1, 3, 5):
        steps.append((ORIG, headers(stream, request.encode(REQUEST), "END_STREAM")))
        steps.append((RESP, headers(stream, response.encode(RESPONSE), "END_STREAM")))
    one_by_one = run(Made(), steps)
    assert round_trips(one_by_one) == [1.0, 1.0, 1.0]
    assert not one_by_one.anomalies and not result.anomalies


@pytest.mark.parametrize(
    ("name", "stream"),
    [
        ("arkime/http2-nghttp2.pcap", 0),
        ("wireshark/grpc_stream_reassembly_sample.pcapng.gz", 1),
        ("wireshark/packet-h2-14_headers.pcapng", 0),
    ],
)
def test_captures_fed_byte_at_a_time_charge_the_same_bytes(name: str, stream: int) -> None:
    steps = list(capture(name, stream))
    whole = run(Made(), steps)
    bytewise = run(Made(), steps, chunk=1)
    assert bytewise.owner_bytes() == whole.owner_bytes()
    assert [(m.kind, m.sender) for m in bytewise.started] == [
        (m.kind, m.sender) for m in whole.started
    ]
    assert bytewise.notes == whole.notes


#: TLS captures carrying HTTP/2, with tshark's options to decrypt them and its figures (README).
TLS_CAPTURES = {
    "http2-data-reassembly.pcap": (
        ("-o", "tls.keylog_file:" + str(CAPTURES / "wireshark/http2-data-reassembly.keys")),
        ("-d", "tcp.port==8443,tls"),
        {"SETTINGS": 4, "HEADERS": 2, "DATA": 6, "WINDOW_UPDATE": 1},
        (1, 1, 1),
    ),
    "http2-brotli.pcapng": (
        (),  # the pcapng carries its secrets (Decryption Secrets Block)
        (),
        {"SETTINGS": 4, "WINDOW_UPDATE": 2, "HEADERS": 2, "DATA": 1},
        (1, 1, 1),
    ),
    # A Firefox page load: 24 stream ids, 5 of them PRIORITY-only (no message), :method 19,
    # :status 13 in the bytes tshark's follow gives (it drops later server segments as
    # "retransmissions", see test_public.py), PRIORITY, PING and GOAWAY frames.
    "http2_follow_multistream.pcapng": (
        (),
        (),
        {
            "HEADERS": 32,
            "DATA": 32,
            "WINDOW_UPDATE": 21,
            "PRIORITY": 5,
            "SETTINGS": 4,
            "PING": 3,
            "GOAWAY": 1,
        },
        (19, 19, 13),
    ),
}


@pytest.mark.parametrize("name", sorted(TLS_CAPTURES))
def test_tls_captures_decrypted_by_tshark(name: str) -> None:
    keylog, decode_as, frames, (messages, methods, statuses) = TLS_CAPTURES[name]
    steps = follow(CAPTURES / "wireshark" / name, 0, "tls", (*keylog, *decode_as))
    result, counts = decode_capture(steps)
    assert counts == frames
    assert len(result.started) == messages
    assert sum(1 for n in result.notes.values() if "method" in n) == methods
    assert sum(1 for n in result.notes.values() if "status" in n) == statuses
    assert as_oracle(result) == oracle(steps)
    assert not result.anomalies


def test_an_empty_connection_only_names_its_protocol() -> None:
    result = run(Made(), [])
    assert result.protocols == ["http2"]
    assert result.spans == [] and result.started == [] and not result.anomalies


def test_a_preface_cut_short_is_setup_left_opaque() -> None:
    result = run(Made(), [(ORIG, PREFACE[:10])])
    assert result.owner_bytes() == Counter({(SETUP, OPAQUE): 10})


def test_a_repeated_header_block_follows_the_dynamic_table_it_indexes() -> None:
    # A block of indexed fields decodes the same way while the table stays, so the decoder
    # remembers it; once another block inserts an entry, the same bytes mean something else
    # (RFC 7541 section 2.3.3: index 62 is always the newest entry).
    def inserting(path: bytes) -> bytes:
        # :method GET, :scheme http, then :path as a literal with incremental indexing
        # (static name index 4, RFC 7541 section 6.2.1).
        return b"\x82\x86\x44" + bytes([len(path)]) + path

    indexed = b"\x82\x86\xbe"  # :method GET, :scheme http, dynamic entry 62
    blocks = [inserting(b"/a"), indexed, indexed, inserting(b"/b"), indexed, indexed]
    orig = PREFACE + settings()
    for number, block in enumerate(blocks):
        orig += headers(2 * number + 1, block, "END_STREAM")
    whole, _ = all_ways(Made(), [(ORIG, orig), (RESP, settings())])
    assert [whole.notes[m]["path"] for m in range(len(blocks))] == ["/a"] * 3 + ["/b"] * 3
    assert not whole.anomalies
