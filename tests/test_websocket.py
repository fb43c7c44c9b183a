"""WebSocket after an HTTP/1.1 Upgrade: wsproto's client and server write the bytes.

Each test is a conversation between a wsproto client (ORIG) and a wsproto server (RESP),
handshake included, fed to the connection's detecting decoder as the analyzer would: HTTP/1.1
is detected, its 101 hands the streams to the WebSocket decoder.
"""

from __future__ import annotations

from typing import Any

import pytest

from analyzer.decoding.detect import DetectingDecoder
from analyzer.decoding.events import (
    CONTROL,
    FRAMING,
    OPAQUE,
    ORIG,
    PAYLOAD,
    RESP,
    TEARDOWN,
    UNDECODED,
    MessageIds,
)
from analyzer.options import DecodeOptions
from analyzer.protocols.websocket import WebSocketDecoder

try:
    from tests.decoder_harness import Result, Step, all_ways, run
except ModuleNotFoundError:  # pytest's default "prepend" import mode puts tests/ on sys.path
    from decoder_harness import (  # type: ignore[no-redef,import-not-found,unused-ignore]
        Result,
        Step,
        all_ways,
        run,
    )

wsproto = pytest.importorskip("wsproto")
from wsproto import ConnectionType, WSConnection  # noqa: E402
from wsproto.events import (  # noqa: E402
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate  # noqa: E402


def make() -> DetectingDecoder:
    return DetectingDecoder(MessageIds(), DecodeOptions(), (50123, 8765))


def layer_of(result: Result, owner: int, layer: int) -> int:
    return int(result.owner_bytes()[(owner, layer)])


class Pair:
    """A wsproto client and server in step; ``steps`` collects what each wrote."""

    def __init__(self, deflate: bool = False) -> None:
        self.client = WSConnection(ConnectionType.CLIENT)
        self.server = WSConnection(ConnectionType.SERVER)
        self.steps: list[Step] = []
        extensions: list[Any] = [PerMessageDeflate()] if deflate else []
        self.send(ORIG, Request(host="example.com", target="/chat", extensions=extensions))
        self.send(RESP, AcceptConnection(extensions=[PerMessageDeflate()] if deflate else []))

    def send(self, direction: int, event: Any) -> bytes:
        sender, receiver = (
            (self.client, self.server) if direction == ORIG else (self.server, self.client)
        )
        data = sender.send(event)
        receiver.receive_data(data)
        list(receiver.events())
        self.steps.append((direction, data))
        return data


def test_handshake_then_messages_control_and_close() -> None:
    pair = Pair()
    hello = pair.send(ORIG, TextMessage(data="hello, server"))
    reply = pair.send(RESP, BytesMessage(data=b"\x00" * 300))
    ping = pair.send(ORIG, Ping(payload=b"are you there"))
    close = pair.send(ORIG, CloseConnection(code=1000, reason="bye"))
    close += pair.send(RESP, CloseConnection(code=1000, reason="bye"))
    whole, _ = all_ways(make, pair.steps)
    upgrade, first, second = whole.started
    assert (upgrade.protocol, upgrade.kind) == ("http1", "exchange")
    assert whole.notes[upgrade.message]["upgrade"] == "websocket"
    assert whole.notes[upgrade.message]["status"] == 101
    assert [(m.protocol, m.kind, m.sender) for m in (first, second)] == [
        ("websocket", "client_to_server", ORIG),
        ("websocket", "server_to_client", RESP),
    ]
    assert whole.protocols[-1] == "websocket"
    # Client frames: 2 header bytes + 4-byte masking key; server frames: 2 or 4 header bytes.
    assert layer_of(whole, first.message, PAYLOAD) == len("hello, server")
    assert layer_of(whole, first.message, FRAMING) == len(hello) - 13 == 6
    assert layer_of(whole, second.message, PAYLOAD) == 300
    assert layer_of(whole, second.message, FRAMING) == len(reply) - 300 == 4
    assert layer_of(whole, CONTROL, FRAMING) == len(ping)
    assert layer_of(whole, TEARDOWN, FRAMING) == len(close)
    assert [a.message for a in whole.answered] == [upgrade.message]  # by the 101
    assert not whole.anomalies


def test_fragments_are_joined_into_one_message_with_control_frames_between() -> None:
    pair = Pair()
    parts = [
        pair.send(ORIG, BytesMessage(data=b"a" * 100, message_finished=False)),
        pair.send(ORIG, Ping(payload=b"p")),
        pair.send(ORIG, BytesMessage(data=b"b" * 70_000, message_finished=False)),
        pair.send(ORIG, BytesMessage(data=b"c" * 5, message_finished=True)),
    ]
    whole = run(make, pair.steps)
    assert not whole.anomalies
    _, message = whole.started
    assert layer_of(whole, message.message, PAYLOAD) == 70_105
    # 6 + (2 + 8 + 4) + 6 header bytes: the 70,000-byte fragment takes the 64-bit length.
    assert layer_of(whole, message.message, FRAMING) == 6 + 14 + 6
    assert layer_of(whole, CONTROL, FRAMING) == len(parts[1])
    assert len(whole.ended) == 2


def test_permessage_deflate_payload_is_counted_as_on_the_wire() -> None:
    pair = Pair(deflate=True)
    text = "compress me " * 200
    frame = pair.send(ORIG, TextMessage(data=text))
    whole = run(make, pair.steps)
    _, message = whole.started
    assert whole.notes[message.message]["compressed"] is True
    assert layer_of(whole, message.message, PAYLOAD) == len(frame) - 6 < len(text)


# ---------------------------------------------------------------- bad input, decoder alone


def ws() -> WebSocketDecoder:
    return WebSocketDecoder(MessageIds(), DecodeOptions())


def test_a_2_63_byte_length_is_an_anomaly_not_an_allocation() -> None:
    bad = b"\x82\x7f" + (1 << 63).to_bytes(8, "big") + b"payload"
    good = b"\x81\x02hi"
    whole = run(ws, [(RESP, good + bad + good)])
    assert whole.anomalies == {"websocket.bad_length": 1}
    assert len(whole.started) == 1
    assert layer_of(whole, UNDECODED, OPAQUE) == len(bad) + len(good)


def test_a_frame_longer_than_the_stream_is_truncated_and_streamed() -> None:
    dec = ws()
    head = b"\x82\x7f" + (1 << 62).to_bytes(8, "big")
    whole = run(lambda: dec, [(RESP, head + b"z" * 50_000)], chunk=1000)
    assert whole.anomalies == {"websocket.truncated_frame": 1}
    [message] = whole.started
    assert layer_of(whole, message.message, PAYLOAD) == 50_000
    assert len(dec._dirs[RESP].header) == 0


@pytest.mark.parametrize(
    ("frame", "anomaly"),
    [
        (b"\x83\x00", "websocket.bad_opcode"),
        (b"\x09\x01x", "websocket.bad_control_frame"),  # a fragmented PING
        (b"\x89\x7e\x00\x80" + b"x" * 128, "websocket.bad_control_frame"),  # 128-byte PING
    ],
)
def test_headers_no_endpoint_may_send(frame: bytes, anomaly: str) -> None:
    whole = run(ws, [(ORIG, b"\x81\x80abcd" + frame + b"\x81\x00")])
    assert whole.anomalies == {anomaly: 1}
    assert layer_of(whole, UNDECODED, OPAQUE) == len(frame) + 2


def test_orphan_continuation_and_unfinished_messages() -> None:
    whole = run(ws, [(RESP, b"\x80\x03abc" + b"\x01\x02hi" + b"\x82\x01x" + b"\x01\x01y")])
    assert whole.anomalies == {
        "websocket.orphan_continuation": 1,
        "websocket.unfinished_message": 2,
    }
    assert layer_of(whole, UNDECODED, OPAQUE) == 5
    assert len(whole.started) == len(whole.ended) == 3


def test_gap_inside_a_payload_keeps_framing() -> None:
    dec = ws()
    events = dec.feed(RESP, b"\x82\x7e\x01\x00" + b"a" * 10, 1, 1.0)
    events += dec.gap(RESP, 200, 2, 2.0)
    events += dec.feed(RESP, b"a" * 46 + b"\x8a\x00", 3, 3.0)
    events += dec.finish(4.0)
    assert [e.name for e in events if type(e).__name__ == "Anomaly"] == ["websocket.gap"]
    assert sum(1 for e in events if type(e).__name__ == "MessageEnded") == 1
