"""Hostile bytes for the MQTT, NATS and WebSocket decoders: never an exception, always the contract.

Hypothesis writes conversations that start like the protocol (a valid opening, so the decoder
is really framing) and then turn into anything: random bytes, bit flips of valid packets, random
cuts.  The decoder harness checks every fed byte is charged exactly once.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.decoding.detect import DetectingDecoder
from analyzer.decoding.events import ORIG, RESP, MessageIds, StreamDecoder
from analyzer.options import DecodeOptions
from analyzer.protocols.mqtt import MqttDecoder
from analyzer.protocols.nats import NatsDecoder
from analyzer.protocols.websocket import WebSocketDecoder

try:
    from tests.decoder_harness import run
except ModuleNotFoundError:  # pytest's default "prepend" import mode puts tests/ on sys.path
    from decoder_harness import run  # type: ignore[no-redef,import-not-found,unused-ignore]

MQTT_OPENING = [
    (ORIG, b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01c"),
    (RESP, b"\x20\x03\x00\x00\x00"),
    (ORIG, b"\x32\x0a\x00\x01t\x00\x01\x03\x23\x00\x01x"),
]
NATS_OPENING = [(RESP, b"INFO {}\r\n"), (ORIG, b"CONNECT {}\r\nPUB a 1\r\nx\r\n")]
WS_OPENING = [(ORIG, b"\x81\x82abcd\x09\x0a"), (RESP, b"\x02\x01a\x80\x01b")]

UPGRADE_OPENING = [
    (ORIG, b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
    (RESP, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"),
]


def _detecting(port: int) -> StreamDecoder:
    return DetectingDecoder(MessageIds(), DecodeOptions(), (50000, port))


FACTORIES: dict[str, tuple[Callable[[], StreamDecoder], list[tuple[int, bytes]]]] = {
    "mqtt": (lambda: MqttDecoder(MessageIds(), DecodeOptions()), MQTT_OPENING),
    "nats": (lambda: NatsDecoder(MessageIds(), DecodeOptions()), NATS_OPENING),
    "websocket": (lambda: WebSocketDecoder(MessageIds(), DecodeOptions()), WS_OPENING),
    # Detection in front, on the ports that hint at them: garbage there must not crash either.
    "detect-1883": (lambda: _detecting(1883), MQTT_OPENING),
    "detect-4222": (lambda: _detecting(4222), NATS_OPENING),
    "detect-upgrade": (lambda: _detecting(8080), UPGRADE_OPENING + WS_OPENING),
}

steps = st.lists(
    st.tuples(st.sampled_from([ORIG, RESP]), st.binary(min_size=1, max_size=64)), max_size=6
)
flips = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 7)), max_size=4)
#: Examples per run: a few seconds in CI; set the variable for a longer hunt.
EXAMPLES = int(os.environ.get("WIREPROBE_HOSTILE_EXAMPLES", "300"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _flipped(opening: list[tuple[int, bytes]], where: list[tuple[int, int]]):
    out = [(d, bytearray(data)) for d, data in opening]
    total = sum(len(data) for _, data in out)
    for at, bit in where:
        at %= total
        for _, data in out:
            if at < len(data):
                data[at] ^= 1 << bit
                break
            at -= len(data)
    return [(d, bytes(data)) for d, data in out]


@SETTINGS
@given(
    protocol=st.sampled_from(sorted(FACTORIES)),
    tail=steps,
    where=flips,
    chunk=st.sampled_from([None, 1, 3, 7]),
)
def test_hostile_input_keeps_the_contract(
    protocol: str, tail: list[tuple[int, bytes]], where: list[tuple[int, int]], chunk: int | None
) -> None:
    make, opening = FACTORIES[protocol]
    conversation = _flipped(opening, where) + tail
    whole = run(make, conversation, chunk=chunk)  # the harness asserts the contract
    ended = [e.message for e in whole.ended]
    # Every message of these decoders ends exactly once by the time ``finish`` returns (the
    # HTTP/1.1 decoder in front of the Upgrade promises no such thing for its exchanges).
    if protocol != "detect-upgrade":
        assert sorted(ended) == sorted(m.message for m in whole.started)
    else:
        assert len(set(ended)) == len(ended)
