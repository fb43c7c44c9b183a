"""AMQP 0-9-1 decoder: conversations built with pamqp (the real codec), plus nDPI's capture.

Each test reads as a client (ORIG) / broker (RESP) conversation.  Frames are marshalled by pamqp,
so the bytes are the ones a pamqp-based client (aiorabbit, rabbitpy) would put on the wire.
"""

from __future__ import annotations

import base64
import itertools
import random
import shutil
import subprocess
import zlib
from collections import Counter
from pathlib import Path

import pytest
from pamqp import body, commands, frame, header, heartbeat
from pamqp.base import Frame as Method

from analyzer.decoding.detect import DetectingDecoder, make_decoder
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
    MessageAnswered,
    MessageEnded,
    MessageIds,
    Span,
)
from analyzer.options import DecodeOptions
from analyzer.protocols.amqp import channels as amqp_channels
from analyzer.protocols.amqp import framing as amqp_framing
from analyzer.protocols.amqp import wire as amqp_wire
from analyzer.protocols.amqp.decoder import AmqpDecoder

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


def make() -> AmqpDecoder:
    return AmqpDecoder(MessageIds(), DecodeOptions())


# ------------------------------------------------------------------ frame builders


def method(value: Method, channel: int = 0) -> bytes:
    return frame.marshal(value, channel)


def content_header(channel: int, body_size: int) -> bytes:
    props = commands.Basic.Properties(content_type="text/plain", delivery_mode=2)
    return frame.marshal(header.ContentHeader(0, body_size, props), channel)


def content(channel: int, payload: bytes, frame_max: int = 131072) -> bytes:
    """Content header + body frames, split the way a client honouring frame_max splits them."""
    out = content_header(channel, len(payload))
    room = frame_max - 8  # frame header (7) + frame-end (1), AMQP 0-9-1 section 4.2.3
    for i in range(0, len(payload), room):
        out += frame.marshal(body.ContentBody(payload[i : i + room]), channel)
    return out


def publish(channel: int, payload: bytes, key: str = "q", frame_max: int = 131072) -> bytes:
    start = method(commands.Basic.Publish(exchange="", routing_key=key), channel)
    return start + content(channel, payload, frame_max)


def deliver(channel: int, tag: int, payload: bytes, consumer: str = "ctag") -> bytes:
    start = commands.Basic.Deliver(
        consumer_tag=consumer, delivery_tag=tag, exchange="", routing_key="q"
    )
    return method(start, channel) + content(channel, payload)


def ack(channel: int, tag: int, multiple: bool = False) -> bytes:
    return method(commands.Basic.Ack(delivery_tag=tag, multiple=multiple), channel)


HEARTBEAT = heartbeat.Heartbeat.marshal()
PROTOCOL_HEADER = frame.marshal(header.ProtocolHeader(), 0)

# Connection negotiation as RabbitMQ and a client do it (AMQP 0-9-1 section 2.2.4).
NEGOTIATION: list[Step] = [
    (ORIG, PROTOCOL_HEADER),
    (
        RESP,
        method(
            commands.Connection.Start(
                server_properties={"product": "RabbitMQ", "version": "3.12.0"},
                mechanisms="PLAIN AMQPLAIN",
                locales="en_US",
            )
        ),
    ),
    (
        ORIG,
        method(
            commands.Connection.StartOk(
                client_properties={"product": "pamqp"},
                mechanism="PLAIN",
                response="\0guest\0guest",
                locale="en_US",
            )
        ),
    ),
    (RESP, method(commands.Connection.Tune(channel_max=2047, frame_max=131072, heartbeat=60))),
    (
        ORIG,
        method(commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=60))
        + method(commands.Connection.Open(virtual_host="/")),
    ),
    (RESP, method(commands.Connection.OpenOk())),
    (ORIG, method(commands.Channel.Open(), 1)),
    (RESP, method(commands.Channel.OpenOk(), 1)),
]
CLOSE: list[Step] = [
    (
        ORIG,
        method(
            commands.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0), 1
        ),
    ),
    (RESP, method(commands.Channel.CloseOk(), 1)),
    (
        ORIG,
        method(
            commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0)
        ),
    ),
    (RESP, method(commands.Connection.CloseOk())),
]


def total(steps: list[Step]) -> int:
    return sum(len(data) for _, data in steps)


def owners(result: Result) -> Counter[int]:
    c: Counter[int] = Counter()
    for (owner, _), n in result.owner_bytes().items():
        c[owner] += n
    return c


def by_kind(result: Result) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for m in result.started:
        out.setdefault(m.kind, []).append(m.message)
    return out


# ------------------------------------------------------------------ the simplest conversations


def test_fire_and_forget_publish_is_one_message_with_no_answer() -> None:
    steps = [*NEGOTIATION, (ORIG, publish(1, b"hello")), *CLOSE]
    whole, cuts = all_ways(make, steps)
    assert whole.protocols == ["amqp"]
    [m] = whole.started
    assert (m.kind, m.sender) == ("publish", ORIG)
    assert whole.answered == [] and [e.message for e in whole.ended] == [m.message]
    # Every byte is accounted: setup, one message, teardown; nothing undecoded.
    negotiation, close = total(NEGOTIATION), total(CLOSE)
    assert owners(whole) == {SETUP: negotiation, m.message: len(publish(1, b"hello")),
                             TEARDOWN: close}  # fmt: skip
    assert whole.layer_bytes(m.message) == {PAYLOAD: 5, FRAMING: len(publish(1, b"hello")) - 5}
    assert whole.notes[m.message] == {
        "method": "Basic.Publish",
        "channel": 1,
        "exchange": "",
        "routing_key": "q",
        "body_size": 5,
        "ack": None,
    }
    assert not whole.anomalies
    # A cut inside the message still charges every byte fed and never invents a message.
    cut = next(r for r in cuts if r.fed[ORIG] == len(PROTOCOL_HEADER) + 3)
    assert cut.started == [] and cut.anomalies["amqp.truncated_frame"] == 1


def test_publish_with_synchronous_confirm_is_answered_by_the_ack() -> None:
    steps = [
        *NEGOTIATION,
        (ORIG, method(commands.Confirm.Select(), 1)),
        (RESP, method(commands.Confirm.SelectOk(), 1)),
        (ORIG, publish(1, b"one")),
        (RESP, ack(1, 1)),
        (ORIG, publish(1, b"two")),
        (RESP, ack(1, 2)),
    ]
    whole, _ = all_ways(make, steps)
    first, second = whole.started
    # Ordinals: whole-step feeding makes each step one packet, numbered from 1.
    ack_ordinals = [i + 1 for i, (_, data) in enumerate(steps) if data == ack(1, 1)]
    assert [a.ordinal for a in whole.answered] == [ack_ordinals[0], len(steps)]
    assert [a.message for a in whole.answered] == [first.message, second.message]
    assert whole.notes[first.message]["delivery_tag"] == 1
    assert whole.notes[second.message]["ack"] == "ack"
    # The confirm's 21 bytes are the message's, not control's.
    assert owners(whole)[first.message] == len(publish(1, b"one")) + len(ack(1, 1))
    assert CONTROL not in owners(whole)
    # Fed one byte per packet, a message starts at its method's first byte and is answered at
    # the ack's first byte, even though both frames are decoded only at their last byte.
    bytewise = run(make, steps, chunk=1)
    first_byte = sum(len(d) for _, d in steps[:10]) + 1
    ack_byte = first_byte + len(publish(1, b"one"))
    assert (bytewise.started[0].ordinal, bytewise.answered[0].ordinal) == (first_byte, ack_byte)


def test_multiple_confirm_splits_its_bytes_across_the_messages_it_confirms() -> None:
    steps = [
        *NEGOTIATION,
        (ORIG, method(commands.Confirm.Select(), 1)),
        (RESP, method(commands.Confirm.SelectOk(), 1)),
        (ORIG, publish(1, b"a") + publish(1, b"b") + publish(1, b"c")),
        (RESP, ack(1, 3, multiple=True)),
    ]
    result = run(make, steps)
    ids = [m.message for m in result.started]
    assert [a.message for a in result.answered] == ids
    # 21 bytes over three messages: 7 each, as three contiguous spans in tag order.
    ack_spans = [s for s in result.spans if s.direction == RESP and s.owner in ids]
    assert [(s.owner, s.end - s.start) for s in sorted(ack_spans, key=lambda s: s.start)] == [
        (ids[0], 7),
        (ids[1], 7),
        (ids[2], 7),
    ]
    assert all(result.notes[i]["ack"] == "ack" for i in ids)


def test_multiple_ack_with_more_messages_than_bytes_still_answers_them_all() -> None:
    publishes = b"".join(publish(1, b"x") for _ in range(30))
    steps = [
        *NEGOTIATION,
        (ORIG, method(commands.Confirm.Select(), 1)),
        (RESP, method(commands.Confirm.SelectOk(), 1)),
        (ORIG, publishes),
        (RESP, method(commands.Basic.Nack(delivery_tag=0, multiple=True), 1)),
    ]
    result = run(make, steps)
    assert len(result.answered) == 30 == len(result.ended)
    assert {n["ack"] for n in result.notes.values()} == {"nack"}
    assert owners(result)[CONTROL] == 0


def test_get_answered_by_getok_and_getempty_is_control() -> None:
    get = method(commands.Basic.Get(queue="q", no_ack=False), 1)
    get_ok = commands.Basic.GetOk(delivery_tag=1, exchange="", routing_key="q", message_count=0)
    steps = [
        (ORIG, get),
        (RESP, method(get_ok, 1) + content(1, b"body")),
        (ORIG, ack(1, 1)),
        (ORIG, get),
        (RESP, method(commands.Basic.GetEmpty(), 1)),
    ]
    whole, _ = all_ways(make, steps)
    [m] = whole.started
    assert (m.kind, m.sender, m.ordinal) == ("get", ORIG, 1)
    # Answered by the GetOk (packet 2), charged the consumer ack, ended by it.
    assert [(a.message, a.ordinal) for a in whole.answered] == [(m.message, 2)]
    assert owners(whole) == {
        m.message: len(get) + len(steps[1][1]) + len(ack(1, 1)),
        CONTROL: len(get) + len(steps[4][1]),
    }
    assert whole.notes[m.message]["ack"] == "ack"


def test_unanswered_get_at_the_end_is_control_not_a_message() -> None:
    result = run(make, [(ORIG, method(commands.Basic.Get(queue="q"), 1))])
    assert result.started == [] and owners(result) == {CONTROL: result.fed[ORIG]}


def test_consumer_acks_with_multiple_answer_each_delivery() -> None:
    consume = commands.Basic.Consume(queue="q", consumer_tag="ctag", no_ack=False)
    steps = [
        (ORIG, method(commands.Basic.Qos(prefetch_count=10), 1)),
        (RESP, method(commands.Basic.QosOk(), 1)),
        (ORIG, method(consume, 1)),
        (RESP, method(commands.Basic.ConsumeOk(consumer_tag="ctag"), 1)),
        (RESP, deliver(1, 1, b"m1") + deliver(1, 2, b"m2")),
        (ORIG, ack(1, 2, multiple=True)),
        (RESP, deliver(1, 3, b"m3")),
        (ORIG, method(commands.Basic.Reject(delivery_tag=3, requeue=False), 1)),
    ]
    whole, _ = all_ways(make, steps)
    assert [(m.kind, m.sender) for m in whole.started] == [("deliver", RESP)] * 3
    assert [a.ordinal for a in whole.answered] == [6, 6, 8]
    assert [whole.notes[m.message]["ack"] for m in whole.started] == ["ack", "ack", "reject"]
    assert [whole.notes[m.message]["delivery_tag"] for m in whole.started] == [1, 2, 3]
    assert owners(whole)[CONTROL] == sum(len(d) for _, d in steps[:4])


def test_no_ack_consumer_deliveries_end_with_their_content() -> None:
    steps = [
        (ORIG, method(commands.Basic.Consume(queue="q", consumer_tag="c", no_ack=True), 1)),
        (RESP, method(commands.Basic.ConsumeOk(consumer_tag="c"), 1)),
        (RESP, deliver(1, 1, b"m1", consumer="c")),
        (RESP, HEARTBEAT),
    ]
    decoder = make()
    events: list[Event] = []
    for ordinal, (direction, data) in enumerate(steps, 1):
        events += decoder.feed(direction, data, ordinal, float(ordinal))
    # Ended at packet 3 (its content), before finish, and never answered.
    assert [e.ts for e in events if isinstance(e, MessageEnded)] == [3.0]
    fed = [sum(len(d) for r, d in steps if r == direction) for direction in (ORIG, RESP)]
    result = Result(events=events + decoder.finish(9.0), fed=fed)
    check(result)
    assert result.answered == [] and owners(result)[CONTROL] == total(steps) - len(steps[2][1])


def test_return_is_a_message_of_its_own_and_blocked_is_noted() -> None:
    returned = commands.Basic.Return(
        reply_code=312, reply_text="NO_ROUTE", exchange="x", routing_key="nowhere"
    )
    steps = [
        (RESP, method(commands.Connection.Blocked(reason="low on memory"))),
        (ORIG, publish(1, b"p", key="nowhere")),
        (RESP, method(returned, 1) + content(1, b"p")),
        (RESP, method(commands.Connection.Unblocked())),
        (ORIG, publish(1, b"q")),
    ]
    whole, _ = all_ways(make, steps)
    kinds = [(m.kind, m.sender) for m in whole.started]
    assert kinds == [("publish", ORIG), ("return", RESP), ("publish", ORIG)]
    first, ret, last = (m.message for m in whole.started)
    assert whole.notes[first]["blocked"] is True and "blocked" not in whole.notes[last]
    assert whole.notes[ret]["reply_code"] == 312 and whole.notes[ret]["routing_key"] == "nowhere"
    assert owners(whole)[CONTROL] == len(steps[0][1]) + len(steps[3][1])


def test_body_split_over_frame_max_and_channels_interleaved() -> None:
    big = bytes(range(256)) * 40  # 10240 bytes over frames of 4096
    one = publish(1, big, frame_max=4096)
    two = publish(2, b"small")
    # Interleave channel 2's whole publish after channel 1's content header (legal: section
    # 4.2.6 only forbids interleaving within a channel).
    method_1 = method(commands.Basic.Publish(exchange="", routing_key="q"), 1)
    header_end = len(method_1) + len(content_header(1, len(big)))
    opened = [
        (ORIG, method(commands.Channel.Open(), 2)),
        (RESP, method(commands.Channel.OpenOk(), 2)),
    ]
    steps = [*NEGOTIATION, *opened, (ORIG, one[:header_end] + two + one[header_end:])]
    result = run(make, steps)
    a, b = result.started
    assert result.layer_bytes(a.message)[PAYLOAD] == len(big)
    assert result.layer_bytes(b.message)[PAYLOAD] == 5
    assert result.notes[a.message]["body_size"] == len(big)
    assert [e.message for e in result.ended] == [b.message, a.message]
    assert not result.anomalies


def test_full_rabbitmq_like_session() -> None:
    consume = commands.Basic.Consume(queue="jobs", consumer_tag="c1")
    steps = [
        *NEGOTIATION,
        (ORIG, method(commands.Channel.Open(), 2)),
        (RESP, method(commands.Channel.OpenOk(), 2)),
        (ORIG, method(commands.Confirm.Select(), 1)),
        (RESP, method(commands.Confirm.SelectOk(), 1)),
        (ORIG, method(commands.Queue.Declare(queue="jobs", durable=True), 1)),
        (
            RESP,
            method(commands.Queue.DeclareOk(queue="jobs", message_count=0, consumer_count=0), 1),
        ),
        (ORIG, publish(1, b"j1", key="jobs") + publish(1, b"j2", key="jobs")),
        (RESP, ack(1, 2, multiple=True)),
        (ORIG, HEARTBEAT),
        (RESP, HEARTBEAT),
        (ORIG, method(consume, 2)),
        (RESP, method(commands.Basic.ConsumeOk(consumer_tag="c1"), 2)),
        (RESP, deliver(2, 1, b"j1", "c1") + deliver(2, 2, b"j2", "c1")),
        (ORIG, ack(2, 2, multiple=True)),
        (ORIG, method(commands.Basic.Get(queue="jobs", no_ack=True), 1)),
        (RESP, method(commands.Basic.GetEmpty(), 1)),
        (ORIG, publish(1, bytes(300_000), key="jobs")),  # bodies over frame_max
        (RESP, ack(1, 3)),
        (ORIG, method(commands.Basic.Cancel(consumer_tag="c1"), 2)),
        (RESP, method(commands.Basic.CancelOk(consumer_tag="c1"), 2)),
        *CLOSE,
    ]
    result = run(make, steps)
    assert by_kind(result).keys() == {"publish", "deliver"}
    assert len(by_kind(result)["publish"]) == 3 and len(by_kind(result)["deliver"]) == 2
    assert len(result.answered) == 5 == len(result.ended)
    assert not result.anomalies
    buckets = owners(result)
    assert buckets[SETUP] == total(NEGOTIATION) + sum(len(d) for _, d in steps[8:12])
    assert buckets[TEARDOWN] == total(CLOSE)
    assert UNDECODED not in buckets
    payload = sum(n for (o, layer), n in result.owner_bytes().items() if layer == PAYLOAD)
    assert payload == 2 + 2 + 2 + 2 + 300_000


# ------------------------------------------------------------------ hostile input


def test_bad_frame_end_is_an_anomaly_and_the_decoder_resyncs() -> None:
    broken = bytearray(publish(1, b"lost"))
    broken[-1] = 0x00  # the last body frame's frame-end
    steps = [(ORIG, bytes(broken) + publish(1, b"kept"))]
    whole, _ = all_ways(make, [*NEGOTIATION, *steps])
    assert whole.anomalies["amqp.bad_frame_end"] == 1
    kept = whole.started[-1]
    assert whole.layer_bytes(kept.message)[PAYLOAD] == 4
    # The broken body frame is opaque; its message ends incomplete at finish.
    assert whole.owner_bytes()[(UNDECODED, OPAQUE)] == len(body_frame(b"lost"))


def body_frame(data: bytes) -> bytes:
    return frame.marshal(body.ContentBody(data), 1)


def test_garbage_invents_nothing() -> None:
    garbage = bytes(range(9, 200)) * 3
    result, _ = all_ways(make, [(ORIG, garbage), (RESP, b"\x01\x08\xce" * 20)])
    assert result.started == []
    assert owners(result) == {UNDECODED: len(garbage) + 60}
    assert result.anomalies["amqp.unsynced_start"] == 2


def test_mid_connection_start_resyncs_on_the_next_method_frame() -> None:
    tail = publish(1, b"orphan")[20:]  # starts inside the Publish method frame
    steps = [(ORIG, tail + publish(1, b"whole"))]
    whole, _ = all_ways(make, steps)
    [m] = whole.started
    assert whole.layer_bytes(m.message)[PAYLOAD] == 5
    # The cut-off method is opaque; its content header and body, decodable but orphaned, too.
    assert owners(whole)[UNDECODED] == len(tail)
    assert whole.anomalies["amqp.unsynced_start"] == 1


def test_orphan_content_after_a_clean_frame_boundary() -> None:
    steps = [(RESP, content(1, b"abc") + deliver(1, 7, b"d"))]
    result = run(make, steps)
    [m] = result.started
    assert result.anomalies["amqp.orphan_content"] == 2
    assert result.owner_bytes()[(UNDECODED, PAYLOAD)] == 3
    assert result.owner_bytes()[(UNDECODED, FRAMING)] == len(content(1, b"abc")) - 3
    assert result.notes[m.message]["delivery_tag"] == 7


def test_gap_inside_a_body_is_bridged() -> None:
    data = publish(1, bytes(1000))
    decoder = make()
    events = decoder.feed(ORIG, data[:200], 1, 1.0)
    events += decoder.gap(ORIG, 500, 2, 2.0)
    events += decoder.feed(ORIG, data[700:] + publish(1, b"next"), 3, 3.0)
    events += decoder.finish(4.0)
    result = Result(events=events)
    spans = sorted(result.spans, key=lambda s: s.start)
    covered = sum(s.end - s.start for s in spans)
    assert covered == len(data) - 500 + len(publish(1, b"next"))
    first, second = result.started
    assert result.notes[first.message]["body_size"] == 1000
    assert result.layer_bytes(first.message)[PAYLOAD] == 1000 - 500
    assert result.anomalies == Counter({"amqp.gap": 1})
    assert [e.message for e in result.ended] == [first.message, second.message]


def test_gap_across_frames_loses_the_content_and_resyncs() -> None:
    data = publish(1, b"a" * 50) + ack(1, 1) + publish(1, b"b")
    decoder = make()
    events = decoder.feed(ORIG, data[:30], 1, 1.0)
    events += decoder.gap(ORIG, 60, 2, 2.0)
    events += decoder.feed(ORIG, data[90:], 3, 3.0)
    events += decoder.finish(4.0)
    result = Result(events=events)
    _, second = result.started
    assert result.anomalies["amqp.gap"] == 1
    assert result.anomalies["amqp.truncated_content"] == 1
    assert result.layer_bytes(second.message)[PAYLOAD] == 1
    assert sum(s.end - s.start for s in result.spans) == len(data) - 60


def test_a_frame_bigger_than_the_buffer_bound_streams_past(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(amqp_framing, "MAX_BUFFERED_FRAME_BYTES", 1024)
    data = publish(1, bytes(10_000)) + publish(1, b"after")
    decoder = make()
    events = []
    for i in range(0, len(data), 300):
        events += decoder.feed(ORIG, data[i : i + 300], i, float(i))
        assert len(decoder._dirs[ORIG].buf) <= 1024 + 300  # bounded, never the whole body
    result = Result(events=events + decoder.finish(1e6), fed=[len(data), 0])
    check(result)
    first, second = result.started
    assert result.layer_bytes(first.message)[PAYLOAD] == 10_000
    assert [e.message for e in result.ended] == [first.message, second.message]
    assert not result.anomalies


def test_huge_non_body_frame_is_taken_as_corrupt_and_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(amqp_framing, "MAX_BUFFERED_FRAME_BYTES", 64)
    big = method(commands.Queue.Declare(queue="q" * 200), 1)
    result = run(make, [(ORIG, big + HEARTBEAT)])
    assert result.anomalies["amqp.frame_too_large"] == 1
    assert owners(result) == {UNDECODED: len(big), CONTROL: len(HEARTBEAT)}


def test_unmatched_ack_is_control_and_an_anomaly() -> None:
    steps = [*NEGOTIATION, (RESP, ack(1, 5))]
    result = run(make, steps)
    assert result.anomalies["amqp.unmatched_ack"] == 1
    assert owners(result)[CONTROL] == len(ack(1, 5))


def test_mid_connection_confirms_are_inferred_from_the_first_ack() -> None:
    # No Channel.Open or Confirm.Select captured: publishes 41 and 42 of a confirming channel.
    steps = [
        (ORIG, publish(1, b"a")),
        (RESP, ack(1, 41)),
        (ORIG, publish(1, b"b") + publish(1, b"c")),
        (RESP, ack(1, 43, multiple=True)),
    ]
    whole, _ = all_ways(make, steps)
    ids = [m.message for m in whole.started]
    assert [a.message for a in whole.answered] == ids
    assert [whole.notes[i]["delivery_tag"] for i in ids] == [41, 42, 43]
    assert whole.anomalies["amqp.confirm_inferred"] == 1


def test_publishes_on_a_known_channel_without_confirms_never_wait() -> None:
    steps = [*NEGOTIATION, (ORIG, publish(1, b"a")), (RESP, ack(1, 1))]
    result = run(make, steps)
    assert result.answered == []
    assert result.anomalies["amqp.unmatched_ack"] == 1


def test_wrong_protocol_version_header() -> None:
    result = run(make, [(ORIG, b"AMQP\x01\x01\x00\x0a"), (RESP, PROTOCOL_HEADER)])
    assert result.anomalies["amqp.protocol_version"] == 1
    assert owners(result) == {SETUP: 16}


def test_base_offsets_are_respected() -> None:
    decoder = AmqpDecoder(MessageIds(), DecodeOptions(), base=(100, 200))
    events = decoder.feed(ORIG, HEARTBEAT, 1, 1.0) + decoder.feed(RESP, HEARTBEAT, 2, 2.0)
    spans = [e for e in events + decoder.finish(3.0) if isinstance(e, Span)]
    assert {(s.direction, s.start, s.end) for s in spans} == {(0, 100, 108), (1, 200, 208)}


# ------------------------------------------------------------------ a real capture


def follow_tcp(path: Path, stream: int) -> list[Step]:
    """Each direction's payload in capture order, as tshark's follow,tcp,raw reassembles it."""
    out = subprocess.run(
        ["tshark", "-r", str(path), "-q", "-z", f"follow,tcp,raw,{stream}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    steps: list[Step] = []
    body_lines = out.split("=" * 67)[1].splitlines()
    for line in body_lines:
        if not line.strip() or ":" in line:
            continue
        direction = RESP if line.startswith("\t") else ORIG
        steps.append((direction, bytes.fromhex(line.strip())))
    return steps


def test_ndpi_capture_matches_tshark_counts() -> None:
    """ndpi/amqp.pcap: 3 mid-stream connections; tshark counts Basic.Publish 23, Deliver 8,
    Ack 5, method frames 36, content headers 31, bodies 31 (README of captures-public)."""
    # The test command installs tshark; without it this cross-check fails rather than skips.
    assert shutil.which("tshark"), "tshark is not installed: run scripts/test.sh"
    kinds: Counter[str] = Counter()
    acks: Counter[object] = Counter()
    framing = payload = 0
    for stream in range(3):
        steps = follow_tcp(CAPTURES / "ndpi" / "amqp.pcap", stream)
        result = run(make, steps)
        kinds.update(m.kind for m in result.started)
        acks.update(n.get("ack") for n in result.notes.values())
        assert not result.anomalies, (stream, result.anomalies)
        layers: Counter[int] = Counter()
        for (_, layer), n in result.owner_bytes().items():
            layers[layer] += n
        assert owners(result).keys() <= {*(m.message for m in result.started)}
        framing += layers[FRAMING]
        payload += layers[PAYLOAD]
        assert layers[OPAQUE] == 0
    assert kinds == {"publish": 23, "deliver": 8}
    # The 5 Basic.Ack are consumer acks of channel-1 deliveries; 3 deliveries on channel 3 are
    # never acked (a no_ack consumer whose Basic.Consume predates the capture).
    assert acks == {"ack": 5, None: 26}
    # tshark's amqp.length per frame (-T fields -e amqp.type -e amqp.length): 98 frames of
    # 12954 bytes with their 8 framing bytes each; the 31 body frames carry 7995 bytes.
    assert framing + payload == 12_954
    assert payload == 7_995


def test_random_damage_never_raises_and_keeps_the_contract() -> None:
    """Bit flips, random chunking and gaps over a whole session: a result, never an exception."""
    rng = random.Random(20261128)
    payload = bytes(rng.randrange(256) for _ in range(300))
    session = [*NEGOTIATION, (ORIG, method(commands.Confirm.Select(), 1))]
    session += [(ORIG, publish(1, payload)), (RESP, ack(1, 1))]
    session += [(RESP, deliver(1, 1, b"d" * 5000)), (ORIG, ack(1, 1)), *CLOSE]
    for _ in range(150):
        decoder = make()
        events: list[Event] = []
        fed = [0, 0]
        for ordinal, (direction, data) in enumerate(session, 1):
            damaged = bytearray(data)
            for _ in range(rng.randrange(3)):
                damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
            size = rng.choice((1, 7, 100, 4096))
            pieces = [bytes(damaged[i : i + size]) for i in range(0, len(damaged), size)]
            for piece in pieces:
                if rng.random() < 0.05:
                    events += decoder.gap(direction, len(piece), ordinal, float(ordinal))
                else:
                    events += decoder.feed(direction, piece, ordinal, float(ordinal))
                    fed[direction] += len(piece)
        events += decoder.finish(1e3)
        result = Result(events=events)
        for direction in (ORIG, RESP):
            spans = sorted((s for s in result.spans if s.direction == direction), key=_start)
            assert all(a.end <= b.start for a, b in itertools.pairwise(spans))
            assert sum(s.end - s.start for s in spans) == fed[direction]
        assert len(result.started) <= 2
        started = sorted(m.message for m in result.started)
        assert sorted(e.message for e in result.ended) == started  # each ends exactly once
        assert {s.owner for s in result.spans if s.owner >= 0} <= set(started)


def _start(span: Span) -> int:
    return span.start


def test_registry_builds_this_decoder() -> None:
    decoder = make_decoder("amqp", MessageIds(), DecodeOptions())
    assert isinstance(decoder, AmqpDecoder)


def test_getok_without_its_get_is_started_and_answered_by_the_same_packet() -> None:
    get_ok = commands.Basic.GetOk(delivery_tag=9, exchange="", routing_key="q", message_count=3)
    result = run(make, [(RESP, method(get_ok, 1) + content(1, b"x"))])
    [m] = result.started
    [a] = result.answered
    assert (m.kind, m.sender, m.ordinal) == ("get", ORIG, 1) and a.ordinal == 1
    assert result.notes[m.message]["delivery_tag"] == 9


def test_nowait_consumer_with_no_ack_needs_no_consume_ok() -> None:
    consume = commands.Basic.Consume(queue="q", consumer_tag="fast", no_ack=True, nowait=True)
    steps = [(ORIG, method(consume, 1)), (RESP, deliver(1, 1, b"a", consumer="fast"))]
    decoder = make()
    events = decoder.feed(ORIG, steps[0][1], 1, 1.0) + decoder.feed(RESP, steps[1][1], 2, 2.0)
    # Ended with its content, not held until finish waiting for an ack.
    assert [e.ts for e in events if isinstance(e, MessageEnded)] == [2.0]


def test_many_unconfirmed_publishes_mean_no_confirms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(amqp_channels, "MAX_UNCONFIRMED_GUESSES", 3)
    decoder = make()
    events: list[Event] = []
    for ordinal in range(1, 6):
        events += decoder.feed(ORIG, publish(1, b"p"), ordinal, float(ordinal))
    # The 4th publish showed the channel does not confirm: 1-4 end then, the 5th with its content.
    assert [e.ts for e in events if isinstance(e, MessageEnded)] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_channel_close_ends_what_waits_for_an_ack() -> None:
    steps = [
        *NEGOTIATION,
        (ORIG, method(commands.Confirm.Select(), 1)),
        (ORIG, publish(1, b"never confirmed")),
        (RESP, method(commands.Channel.Close(404, "NOT_FOUND", 60, 40), 1)),
        (ORIG, method(commands.Channel.CloseOk(), 1)),
    ]
    decoder = make()
    events: list[Event] = []
    for ordinal, (direction, data) in enumerate(steps, 1):
        events += decoder.feed(direction, data, ordinal, float(ordinal))
    assert [e.ts for e in events if isinstance(e, MessageEnded)] == [len(steps) - 2.0]
    assert not any(isinstance(e, MessageAnswered) for e in events)


def test_a_method_inside_content_and_an_unknown_method_are_anomalies() -> None:
    unknown = frame.marshal(commands.Basic.Qos(), 1)
    unknown = unknown[:7] + b"\x00\x3c\x00\x63" + unknown[11:]  # Basic method 99: none such
    steps = [
        (ORIG, method(commands.Basic.Publish(exchange="", routing_key="q"), 1)),
        (ORIG, content_header(1, 10) + HEARTBEAT + unknown),
        (ORIG, ack(1, 1)),  # on channel 1 while its body is still due
    ]
    whole, _ = all_ways(make, steps)
    assert whole.anomalies["amqp.bad_method"] == 1
    assert whole.anomalies["amqp.content_interrupted"] == 1
    assert whole.anomalies["amqp.unmatched_ack"] == 1
    # Its framing is sound (header and frame-end), its payload is not understood.
    assert whole.owner_bytes()[(UNDECODED, FRAMING)] == 8
    assert whole.owner_bytes()[(UNDECODED, OPAQUE)] == len(unknown) - 8


# A real session with RabbitMQ 3.10.8 on 127.0.0.1:5672 (guest/guest), recorded on 2026-11-28 by a
# small pamqp client over a socket: the broker's bytes are genuine, the client's are pamqp's.
# Client steps: protocol header, StartOk, TuneOk (frame_max 4096) + Open, Channel.Open 1,
# Confirm.Select, Queue.Declare (server-named, exclusive); publish "sync-1" and wait for its
# confirm; publish "a", "b" * 10000 (three body frames), "c" together; publish "lost" mandatory to
# a missing queue (Basic.Return, then its confirm); Basic.Get (GetOk, then Basic.Ack 1);
# Basic.Qos 10, Basic.Consume (3 deliveries), Basic.Ack 4 multiple; Basic.Get on the empty queue
# (GetEmpty); Basic.Cancel; Channel.Close; Connection.Close.  Stored as zlib(base64) of
# [direction u8][length u32][bytes] records, one per send() / recv() in order.
RABBITMQ_SESSION = (
    "eNrtnO9v20QYx+/apEmT9Me2bBIDdRZCLAXipK6qjSkSTLBuk9om3Vp4h2VfLslpztm1z23DK/47kJDyt/By7+Dx"
    "XZKhklG6wRv6fCLFvufn/XgROfrKhBBSfLx/2CFkmVJC6Gv4gstvpASfZbj7tcK8yPNFIJTgyS44f74ZpX4gkgGP"
    "XRbKnoiHiaJ3+TkbeLLP3dmNL2RXyD44S76XCGZLj71S9A4kJekwy/Yk44ErQyV6I0VvgkNypkQobT8I2SveVfTW"
    "LDqKRRjrWSj6kZeqAZdKMC8Ld3ueCNKYuywIE67oemTmZhJPQshY64oYarsxj4KRq0JFKyxIEwV+6Q35S1jYcuz5"
    "vlBfnw6XWRiNYtEfqMz+4JvpyKqxTctpNh/UnabjWN/tn3kx/8J6LplthbElVGJ5vR7slad4YpeF7IXxUM8wq/Pl"
    "nmBcJrxrpbLLYwtWYO139izHbtrW99xPhOKPrIFSUfKo0TCTGZ7YLBwWo8BTWa2szI0ncQD722gfdSxnx3bs7UIU"
    "h92U6ckWX+i8/cPCKY+TSeelbXuraT+Eu9XO3uPnB1Z25NkNWPJcuscvx9mxP9WHT76Coy/D9cM/1109g/2Dsc/r"
    "sDaVn6ZXSD+Fsfme1MrKVE2tCtTaKPxOFuC+pZt88sZxDxxkHQZjYyuCrUYbk/GKMebBuEl06iolmW2JVEmJNnXQ"
    "ujEVwZRN2cStGGOeHEOuDqsYSw4sZR1SNYYKcSAku05nsW0cn4OjvOHB9ve5rKvTkZvuxN29s61j/6C9++xUnnx7"
    "SCbogj+YvPukRWpwvSx1vKDDP4DwKUs/kZLi56oBhy3keNGsNRlJVt/SU7ttWqxATmeSQ3Xz2mfv3ZzOa0698fsW"
    "vr8+p/Daax9BEARBEARBEARBkP8t+PyPIAiCIAiCIAiCINfl+b9g4U4gCIIgyJzfyf9I0MfeJiTMUa1ibBvP3Unf"
    "GzKsJykb1E9SnvL6+ehHOqdVbl6rXBAmSncLTM2PIcOhD4sHbfdF+/joyZziV619cRF5I8W0jedT8Oz+g73LYgcm"
    "ZQtSns6kleRy/efiVXWc5O90nOSW8ZTBU9L2i/LV1kS+umMMdTBUL53nwllEpvrW2pHJLEDmbXBMdrEJw9Y0jmRq"
    "3UtqXllCeqHD4jt0QC0pgiAIgiAIgiAIgly//8jw+R9BEARBEARBEARBrsnzP2pJEQRBEGTu7+RcAV7u35P4sbep"
    "Giei0nfQY87e4Nkiz4w0cvaizxbZyFahw9beiBnvZWLGLPCOsa2SKqmRXxb9EZ+923Mmo6ySzWmsfq8oKRHnr7Fm"
    "m0pke/wHe7rL/w=="
)


def rabbitmq_session() -> list[Step]:
    raw = zlib.decompress(base64.b64decode("".join(RABBITMQ_SESSION)))
    steps: list[Step] = []
    position = 0
    while position < len(raw):
        direction, size = raw[position], int.from_bytes(raw[position + 1 : position + 5])
        steps.append((direction, raw[position + 5 : position + 5 + size]))
        position += 5 + size
    return steps


def test_real_rabbitmq_session() -> None:
    steps = rabbitmq_session()
    result = run(make, steps)
    assert not result.anomalies
    kinds = [(m.kind, m.sender) for m in result.started]
    assert (
        kinds
        == [("publish", ORIG)] * 5 + [("return", RESP), ("get", ORIG)] + [("deliver", RESP)] * 3
    )
    notes = [result.notes[m.message] for m in result.started]
    assert [n["body_size"] for n in notes] == [6, 1, 10000, 1, 4, 4, 6, 1, 10000, 1]
    assert [n.get("delivery_tag") for n in notes] == [1, 2, 3, 4, 5, None, 1, 2, 3, 4]
    assert [n["ack"] for n in notes] == ["ack"] * 5 + [None] + ["ack"] * 4
    assert notes[5]["reply_code"] == 312
    # Everything but the return is answered; the Return (a broker-sent message) is not.
    returned = result.started[5].message
    assert {a.message for a in result.answered} == {m.message for m in result.started} - {returned}
    # Synchronous confirm: answered by the very next packet from the broker.
    first = result.started[0]
    assert next(a.ordinal for a in result.answered if a.message == first.message) == (
        first.ordinal + 1
    )
    buckets = owners(result)
    assert UNDECODED not in buckets
    assert buckets[TEARDOWN] == 68  # Channel.Close/CloseOk, Connection.Close/CloseOk
    payload = sum(n for (_, layer), n in result.owner_bytes().items() if layer == PAYLOAD)
    assert payload == sum(n["body_size"] for n in notes)  # type: ignore[misc]
    # Byte at a time gives the same ledger; cut anywhere (sampled), the contract holds.
    assert run(make, steps, chunk=1).owner_bytes() == result.owner_bytes()
    for cut in range(0, total(steps), 97):
        assert len(run(make, steps, cut=cut).started) <= len(result.started)


def test_publishes_before_a_mid_capture_confirm_select_are_not_confirmed() -> None:
    steps = [
        (ORIG, publish(1, b"before")),
        (ORIG, method(commands.Confirm.Select(), 1)),
        (ORIG, publish(1, b"after")),
        (RESP, ack(1, 1)),
        (RESP, ack(1, 2)),  # nothing has tag 2: the publish before the select is not numbered
    ]
    result = run(make, steps)
    before, after = (m.message for m in result.started)
    assert [a.message for a in result.answered] == [after]
    assert result.notes[before]["ack"] is None and result.notes[after]["delivery_tag"] == 1
    assert result.anomalies == Counter({"amqp.unmatched_ack": 1})


def test_detection_hands_a_real_session_to_this_decoder() -> None:
    steps = rabbitmq_session()
    detected = run(lambda: DetectingDecoder(MessageIds(), DecodeOptions(), (40000, 5672)), steps)
    direct = run(make, steps)
    assert detected.protocols == ["amqp"]
    assert detected.owner_bytes() == direct.owner_bytes()


# ------------------------------------------------------------------ methods unpacked by hand


def pamqp_fields(payload: bytes) -> tuple[str, ...] | None:
    """What the decoder reads of a method, as pamqp alone decodes it (None: not a method)."""
    factory = commands.INDEX_MAPPING.get(int.from_bytes(payload[:4], "big"))
    if factory is None:
        return None
    value = factory()
    try:
        value.unmarshal(payload[4:])
    except amqp_wire._PAMQP_ERRORS:
        return None
    return described(value)


def described(value: object) -> tuple[str, ...]:
    keys = ("name", "exchange", "routing_key", "reply_code", "delivery_tag", "consumer_tag")
    found = tuple(repr(getattr(value, key, None)) for key in keys)
    return (*found, repr(bool(getattr(value, "multiple", False))))


HAND_UNPACKED = [
    commands.Basic.Publish(exchange="amq.topic", routing_key="a.b", mandatory=True),
    commands.Basic.Publish(exchange="", routing_key="caf\u00e9", immediate=True),
    commands.Basic.Return(reply_code=312, reply_text="NO_ROUTE", exchange="x", routing_key="k"),
    commands.Basic.Deliver("ctag-1", 2**40, True, "x", "r\u00e9"),
    commands.Basic.GetOk(7, False, "", "q", 3),
    commands.Basic.Ack(9, multiple=True),
    commands.Basic.Ack(10),
    commands.Basic.Nack(11, multiple=True, requeue=False),
    commands.Basic.Nack(12, multiple=False, requeue=True),
    commands.Basic.Reject(13, requeue=True),
]


@pytest.mark.parametrize("value", HAND_UNPACKED, ids=lambda v: v.name)
def test_methods_unpacked_by_hand_read_as_pamqp_reads_them_whole_cut_and_damaged(
    value: Method,
) -> None:
    # The decoder unpacks content-carrying methods and acks with struct (they come once per
    # message); every prefix, a bad UTF-8 octet and trailing bytes must read as pamqp reads them.
    payload = method(value)[7:-1]  # frame header and frame-end off: the method payload
    assert amqp_wire._decode_method(payload) is not None
    damaged = [payload[:n] for n in range(len(payload) + 1)] + [payload + b"\x00\x01"]
    damaged += [payload[:i] + b"\xff" + payload[i + 1 :] for i in range(4, len(payload))]
    for data in damaged:
        ours = amqp_wire._decode_method(data)
        assert (None if ours is None else described(ours)) == pamqp_fields(data), data
