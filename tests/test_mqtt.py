"""MQTT decoder: literal bytes from the OASIS specifications, paho-mqtt's encoder, the harness.

Conversations are client (ORIG) / broker (RESP) steps.  ``packet`` builds a control packet the
way section 2.1 describes it (type and flags byte, Remaining Length, the rest), so each test can
say exactly which bytes are framing and which are payload.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from analyzer.decoding.detect import REGISTRY, DetectingDecoder, detect
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
    MessageIds,
)
from analyzer.options import DecodeOptions
from analyzer.protocols.mqtt import MqttDecoder, decoder, detect_connect
from analyzer.protocols.mqtt.wire import MalformedPacket, read_varint

try:
    from tests.decoder_harness import Step, all_ways, run
except ModuleNotFoundError:  # pytest's default "prepend" import mode puts tests/ on sys.path
    from decoder_harness import Step, all_ways, run  # type: ignore[no-redef,import-not-found,unused-ignore]


def make() -> MqttDecoder:
    return MqttDecoder(MessageIds(), DecodeOptions())


def varint(value: int) -> bytes:
    """Section 1.5.5's encoding, written out: seven bits a byte, least significant first."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def string(value: bytes) -> bytes:
    return struct.pack(">H", len(value)) + value


def packet(kind: int, flags: int, rest: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + varint(len(rest)) + rest


def connect(level: int = 4, will: bytes | None = None, client: bytes = b"c1") -> bytes:
    name = b"MQIsdp" if level == 3 else b"MQTT"
    flags = 0x02 | (0x04 if will is not None else 0)  # clean session, will flag
    props = b"\x00" if level == 5 else b""
    rest = string(name) + bytes([level, flags]) + b"\x00\x3c" + props + string(client)
    if will is not None:
        rest += props + string(b"will/topic") + string(will)
    return packet(1, 0, rest)


CONNACK = packet(2, 0, b"\x00\x00")
CONNACK5 = packet(2, 0, b"\x00\x00\x00")
PINGREQ, PINGRESP, DISCONNECT = b"\xc0\x00", b"\xd0\x00", b"\xe0\x00"


def publish(topic: bytes, payload: bytes, qos: int = 0, pid: int = 1, props: bytes | None = None):
    head = string(topic) + (struct.pack(">H", pid) if qos else b"")
    if props is not None:
        head += varint(len(props)) + props
    return packet(3, qos << 1, head + payload), len(payload)


def ack(kind: int, pid: int) -> bytes:
    return packet(kind, 0x02 if kind == 6 else 0, struct.pack(">H", pid))


PUBLISH_TYPE, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE = 3, 4, 5, 6, 7, 8


def layer_of(result: Any, owner: int, layer: int) -> int:
    return int(result.owner_bytes()[(owner, layer)])


# ---------------------------------------------------------------- the specification's bytes


def test_remaining_length_examples_of_section_1_5_5() -> None:
    """The table of section 1.5.5: the edges of one to four bytes."""
    for value, encoded in [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_151, b"\xff\xff\x7f"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (268_435_455, b"\xff\xff\xff\x7f"),
    ]:
        assert varint(value) == encoded
        assert read_varint(encoded, 0, len(encoded)) == (value, len(encoded))
    assert read_varint(b"\xff\xff", 0, 2) is None  # needs more bytes
    with pytest.raises(MalformedPacket) as err:
        read_varint(b"\xff\xff\xff\xff\x01", 0, 5)
    assert err.value.anomaly == "mqtt.bad_remaining_length"


def test_qos0_publish_framing_and_payload() -> None:
    pub, size = publish(b"a/b", b"hello world")
    steps: list[Step] = [(ORIG, connect()), (RESP, CONNACK), (ORIG, pub), (ORIG, DISCONNECT)]
    whole, _ = all_ways(make, steps)
    [message] = whole.started
    assert (message.kind, message.sender, message.protocol) == ("publish", ORIG, "mqtt")
    assert layer_of(whole, message.message, PAYLOAD) == size
    assert layer_of(whole, message.message, FRAMING) == len(pub) - size
    assert layer_of(whole, SETUP, FRAMING) == len(connect()) + len(CONNACK)
    assert layer_of(whole, TEARDOWN, FRAMING) == len(DISCONNECT)
    assert whole.answered == [] and len(whole.ended) == 1
    assert whole.notes[message.message] == {"topic": "a/b", "qos": 0}
    assert not whole.anomalies


def test_qos1_puback_belongs_to_its_publish_by_packet_id() -> None:
    """Two QoS 1 publishes in flight, acknowledged out of order (section 4.6 allows it only
    across topics, but matching must go by Packet Identifier, never by order)."""
    one, _ = publish(b"t", b"x" * 10, qos=1, pid=7)
    two, _ = publish(b"t", b"y" * 20, qos=1, pid=9)
    steps: list[Step] = [
        (ORIG, connect()),
        (RESP, CONNACK),
        (ORIG, one + two),
        (RESP, ack(PUBACK, 9)),
        (RESP, ack(PUBACK, 7)),
    ]
    whole, _ = all_ways(make, steps)
    first, second = (m.message for m in whole.started)
    assert layer_of(whole, first, PAYLOAD) == 10 and layer_of(whole, second, PAYLOAD) == 20
    assert layer_of(whole, first, FRAMING) == len(one) - 10 + 4
    assert layer_of(whole, second, FRAMING) == len(two) - 20 + 4
    assert [a.message for a in whole.answered] == [second, first]
    assert [a.waits for a in whole.answered] == [1, 1]
    assert [e.message for e in whole.ended] == [second, first]


def test_qos2_flow_is_one_message_answered_with_two_waits() -> None:
    pub, size = publish(b"q2", b"z" * 33, qos=2, pid=300)
    steps: list[Step] = [
        (ORIG, connect()),
        (RESP, CONNACK),
        (ORIG, pub),
        (RESP, ack(PUBREC, 300)),
        (ORIG, ack(PUBREL, 300)),
        (RESP, ack(PUBCOMP, 300)),
    ]
    whole, cuts = all_ways(make, steps)
    [message] = whole.started
    assert layer_of(whole, message.message, FRAMING) == len(pub) - size + 3 * 4
    assert [(a.message, a.waits) for a in whole.answered] == [(message.message, 2)]
    assert not whole.anomalies
    assert any(r.anomalies["mqtt.truncated_packet"] for r in cuts)


def test_broker_publish_is_a_deliver_acknowledged_by_the_client() -> None:
    pub, size = publish(b"news", b"d" * 5, qos=1, pid=1)
    steps: list[Step] = [(ORIG, connect()), (RESP, CONNACK + pub), (ORIG, ack(PUBACK, 1))]
    whole, _ = all_ways(make, steps)
    [message] = whole.started
    assert (message.kind, message.sender) == ("deliver", RESP)
    assert [a.message for a in whole.answered] == [message.message]
    assert layer_of(whole, message.message, PAYLOAD) == size


def test_control_packets() -> None:
    subscribe = packet(8, 2, b"\x00\x01" + string(b"a/#") + b"\x01")
    suback = packet(9, 0, b"\x00\x01\x01")
    unsubscribe = packet(10, 2, b"\x00\x02" + string(b"a/#"))
    unsuback = packet(11, 0, b"\x00\x02")
    steps: list[Step] = [
        (ORIG, connect()),
        (RESP, CONNACK),
        (ORIG, subscribe),
        (RESP, suback),
        (ORIG, PINGREQ),
        (RESP, PINGRESP),
        (ORIG, unsubscribe),
        (RESP, unsuback),
    ]
    whole, _ = all_ways(make, steps)
    assert not whole.started
    control = len(subscribe + suback + PINGREQ + PINGRESP + unsubscribe + unsuback)
    assert layer_of(whole, CONTROL, FRAMING) == control


def test_will_payload_is_setup_payload() -> None:
    for level in (3, 4, 5):
        hello = connect(level=level, will=b"gone for good")
        whole, _ = all_ways(make, [(ORIG, hello), (RESP, CONNACK)])
        assert layer_of(whole, SETUP, PAYLOAD) == len(b"gone for good"), level
        assert layer_of(whole, SETUP, FRAMING) == len(hello) + len(CONNACK) - 13


def test_mqtt5_properties_are_framing_and_topic_aliases_name_the_topic() -> None:
    # Topic Alias 1 (0x23), Message Expiry 60 s (0x02), User Property ("k", "v") (0x26)
    props = b"\x23\x00\x01" + b"\x02\x00\x00\x00\x3c" + b"\x26" + string(b"k") + string(b"v")
    first, size = publish(b"sensors/1", b"p" * 12, qos=1, pid=1, props=props)
    again, _ = publish(b"", b"q" * 8, qos=0, props=b"\x23\x00\x01")
    stray, _ = publish(b"", b"r", qos=0, props=b"\x23\x00\x02")
    steps: list[Step] = [
        (ORIG, connect(level=5)),
        (RESP, CONNACK5),
        (ORIG, first),
        (RESP, packet(PUBACK, 0, b"\x00\x01\x00\x00")),  # reason Success, no properties
        (ORIG, again + stray),
    ]
    whole, _ = all_ways(make, steps)
    one, two, three = (m.message for m in whole.started)
    assert layer_of(whole, one, PAYLOAD) == size
    assert layer_of(whole, one, FRAMING) == len(first) - size + 6
    assert whole.notes[two]["topic"] == "sensors/1"
    assert whole.notes[three]["topic"] == ""
    assert whole.anomalies == {"mqtt.unknown_topic_alias": 1}


def test_mqtt5_failed_pubrec_ends_the_flow() -> None:
    pub, _ = publish(b"t", b"x", qos=2, pid=5, props=b"")
    steps: list[Step] = [
        (ORIG, connect(level=5)),
        (RESP, CONNACK5),
        (ORIG, pub),
        (RESP, packet(PUBREC, 0, b"\x00\x05\x80")),  # Unspecified error
        (ORIG, ack(PUBREL, 5)),
    ]
    whole, _ = all_ways(make, steps)
    [message] = whole.started
    assert [e.message for e in whole.ended] == [message.message]
    assert whole.anomalies == {"mqtt.unmatched_ack": 1}  # the PUBREL after a failure
    assert layer_of(whole, CONTROL, FRAMING) == 4


# ---------------------------------------------------------------- bad input


def test_bad_remaining_length_charges_the_rest_undecoded() -> None:
    pub, _ = publish(b"t", b"ok")
    bad = b"\x30\xff\xff\xff\xff\x01" + b"garbage" * 5
    steps: list[Step] = [(ORIG, connect() + pub), (ORIG, bad), (ORIG, pub), (RESP, CONNACK)]
    whole, _ = all_ways(make, steps)
    assert whole.anomalies == {"mqtt.bad_remaining_length": 1}
    assert len(whole.started) == 1
    assert layer_of(whole, UNDECODED, OPAQUE) == len(bad) + len(pub)


def test_reserved_type_and_qos3_are_named() -> None:
    whole = run(make, [(ORIG, connect()), (ORIG, b"\x00\x00" + b"\x30\x02ab")])
    assert whole.anomalies == {"mqtt.bad_packet_type": 1}
    qos3 = packet(3, 0x06, string(b"t") + b"\x00\x01hi")
    pub, _ = publish(b"t", b"fine")
    whole = run(make, [(ORIG, connect() + qos3 + pub)])
    assert whole.anomalies == {"mqtt.bad_qos": 1}
    assert layer_of(whole, UNDECODED, OPAQUE) == len(qos3)
    assert len(whole.started) == 1  # framing survives a bad packet whose length is known


def test_lying_lengths_inside_a_packet() -> None:
    """A topic length past the packet, a PUBACK too short for its id, an unknown property."""
    lie = packet(3, 0, b"\x40\x00abc")
    short_ack = packet(PUBACK, 0, b"\x01")
    whole = run(make, [(ORIG, connect() + lie), (RESP, CONNACK + short_ack)])
    assert whole.anomalies == {"mqtt.bad_packet": 2}
    assert layer_of(whole, UNDECODED, OPAQUE) == len(lie) + len(short_ack)
    odd = packet(3, 0, string(b"t") + b"\x02\x7f\x00" + b"data")
    whole = run(make, [(ORIG, connect(level=5) + odd)])
    assert whole.anomalies == {"mqtt.bad_properties": 1}


def test_a_packet_longer_than_the_stream_is_truncated_not_waited_on_forever() -> None:
    huge = b"\x30\xff\xff\xff\x7f" + string(b"t") + b"x" * 100  # claims 256 MiB
    whole = run(make, [(ORIG, connect() + huge)])
    assert whole.anomalies == {"mqtt.truncated_packet": 1}
    assert layer_of(whole, UNDECODED, OPAQUE) == len(huge)


def test_big_publish_streams_with_bounded_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoder, "MAX_BUFFERED_PACKET_BYTES", 64)
    pub, size = publish(b"big", bytes(1000), qos=1, pid=2)
    steps: list[Step] = [(ORIG, connect()), (RESP, CONNACK), (ORIG, pub), (RESP, ack(PUBACK, 2))]
    dec = make()
    run(lambda: dec, steps, chunk=50)
    assert len(dec._dirs[ORIG].buf) < 64 + 50
    whole, _ = all_ways(make, steps)
    [message] = whole.started
    assert layer_of(whole, message.message, PAYLOAD) == size
    assert [a.message for a in whole.answered] == [message.message]
    oversized = packet(8, 2, b"\x00\x01" + string(b"t" * 100) + b"\x00")
    whole = run(make, [(ORIG, connect() + oversized + PINGREQ)], chunk=40)
    assert whole.anomalies == {"mqtt.oversized_packet": 1}
    assert layer_of(whole, CONTROL, FRAMING) == len(PINGREQ)


def test_gap_loses_framing_but_not_inside_a_streamed_payload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(decoder, "MAX_BUFFERED_PACKET_BYTES", 16)
    pub, _ = publish(b"g", bytes(200))
    dec = make()
    events = dec.feed(ORIG, connect() + pub[:50], 1, 1.0)
    events += dec.gap(ORIG, 100, 2, 2.0)
    events += dec.feed(ORIG, pub[150:] + PINGREQ, 3, 3.0)
    events += dec.finish(4.0)
    names = [e.name for e in events if type(e).__name__ == "Anomaly"]
    assert names == ["mqtt.gap"]
    assert sum(1 for e in events if type(e).__name__ == "MessageEnded") == 1


def test_unmatched_acknowledgements_are_control() -> None:
    whole = run(make, [(ORIG, connect()), (RESP, CONNACK + ack(PUBACK, 4) + ack(PUBCOMP, 4))])
    assert whole.anomalies == {"mqtt.unmatched_ack": 2}
    assert layer_of(whole, CONTROL, FRAMING) == 8


def test_mid_connection_assumes_3_1_1() -> None:
    pub, size = publish(b"t", b"abc", qos=1, pid=3)
    whole = run(make, [(ORIG, pub), (RESP, ack(PUBACK, 3))])
    assert whole.anomalies == {"mqtt.level_assumed": 1}
    [message] = whole.started
    assert layer_of(whole, message.message, PAYLOAD) == size


# ---------------------------------------------------------------- detection and the registry


def test_detect_connect() -> None:
    hello = connect()
    assert detect_connect(hello) is True
    assert detect_connect(connect(level=3)) is True
    assert all(detect_connect(hello[:n]) is None for n in range(0, 8))
    assert detect_connect(b"GET / HTTP/1.1\r\n") is False
    assert detect_connect(b"\x10\x0a\x00\x04MQTX") is False
    assert detect_connect(b"\x10\xff\xff\xff\xff\x01") is False


def test_detection_picks_mqtt_on_any_port_and_swaps_roles() -> None:
    options = DecodeOptions()
    assert detect(connect(), b"", (40000, 9999), options) == "mqtt"
    assert detect(b"", b"", (50000, 1883), options, final=True) == "mqtt"
    assert detect(b"", b"", (50000, 8883), options, final=True) == "tls"
    pub, _ = publish(b"t", b"x", qos=1)
    steps: list[Step] = [(RESP, connect()), (ORIG, CONNACK), (RESP, pub), (ORIG, ack(PUBACK, 1))]
    whole = run(lambda: DetectingDecoder(MessageIds(), options, (1883, 50000)), steps)
    assert [(m.kind, m.sender) for m in whole.started] == [("publish", RESP)]
    assert whole.protocols == ["mqtt"]


def test_registry_feeds_the_cli_and_the_reports() -> None:
    from analyzer.accounting.records import MESSAGE_PROTOCOLS
    from analyzer.cli import PROTOCOLS, parse_ports
    from analyzer.report.render import PROTOCOL_NAMES

    assert "mqtt" in PROTOCOLS and parse_ports(["mqtt=11883"]) == {11883: "mqtt"}
    assert "mqtt" in MESSAGE_PROTOCOLS and "tls" not in MESSAGE_PROTOCOLS
    assert PROTOCOL_NAMES["mqtt"] == "MQTT"
    assert set(REGISTRY.names) >= {"http1", "http2", "amqp", "tls", "mqtt"}


# ---------------------------------------------------------------- paho-mqtt's encoder


class _Wire:
    """A socket stand-in that keeps what paho writes."""

    def __init__(self) -> None:
        self.data = bytearray()

    def send(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def fileno(self) -> int:
        return -1

    def setblocking(self, flag: bool) -> None:
        pass

    def close(self) -> None:
        pass


def paho_bytes(level: int, calls: list[tuple[str, Any]]) -> bytes:
    """Bytes paho-mqtt's own encoder writes for ``calls`` (its private senders: the same code
    its public API ends in, without a broker)."""
    mqtt = pytest.importorskip("paho.mqtt.client")
    version = {4: mqtt.MQTTv311, 5: mqtt.MQTTv5}[level]
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho", protocol=version)
    wire = _Wire()
    client._sock = wire
    for name, args in calls:
        getattr(client, name)(*args)
    client.loop_write()
    return bytes(wire.data)


@pytest.mark.parametrize("level", [4, 5])
def test_against_paho_encoder(level: int) -> None:
    from paho.mqtt.client import PUBREL as P_REL
    from paho.mqtt.client import MQTTMessageInfo
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = None
    if level == 5:
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = ("app", "wireprobe")
        props.ContentType = "text/plain"
    payloads = [b"a" * 10, b"b" * 200, b"c" * 20000]
    calls: list[tuple[str, Any]] = [("_send_connect", (30,))]
    for qos, body in enumerate(payloads):
        info = MQTTMessageInfo(qos + 1)
        args = (qos + 1, b"paho/topic", body, qos, False, False, info, props)
        calls.append(("_send_publish", args))
    client_bytes = paho_bytes(level, calls)
    replies = paho_bytes(level, [("_send_command_with_mid", (P_REL, 3, False))])
    broker = (CONNACK5 if level == 5 else CONNACK) + ack(PUBACK, 2) + ack(PUBREC, 3)
    steps: list[Step] = [
        (ORIG, client_bytes[: len(client_bytes) // 3]),
        (ORIG, client_bytes[len(client_bytes) // 3 :]),
        (RESP, broker),
        (ORIG, replies),
        (RESP, ack(PUBCOMP, 3)),
    ]
    whole = run(make, steps)
    assert not whole.anomalies
    assert [m.kind for m in whole.started] == ["publish"] * 3
    for message, body in zip(whole.started, payloads, strict=True):
        assert layer_of(whole, message.message, PAYLOAD) == len(body)
        assert whole.notes[message.message]["topic"] == "paho/topic"
    assert [a.waits for a in whole.answered] == [1, 2]


# ---------------------------------------------------------------- goldens against tshark

MQTT_GOLDENS = sorted((Path(__file__).resolve().parents[1] / "captures").glob("*mqtt*.pcap"))


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("capture", MQTT_GOLDENS, ids=[p.name for p in MQTT_GOLDENS])
def test_goldens_count_what_tshark_dissects(capture: Path) -> None:
    """Messages = tshark's PUBLISH packets; round trips per message = the QoS's waits."""
    from conftest import analyze_json, check_conservation

    from analyzer.tls.keylog import KeyLog

    keys = capture.with_suffix(".keys")
    command = ["tshark", "-r", str(capture), "-Y", "mqtt", "-T", "fields", "-e", "mqtt.msgtype"]
    keylog = KeyLog()
    if keys.exists():
        keylog.load(str(keys))
    result = analyze_json([capture], keylog=keylog)
    if keys.exists():
        # tshark knows TLS on 8883 only: a broker of the run's own listens elsewhere.
        port = result["connections"][0]["resp"].rpartition(":")[2]
        command[3:3] = ["-o", f"tls.keylog_file:{keys}", "-d", f"tcp.port=={port},tls"]
        command[3:3] = ["-d", f"tls.port=={port},mqtt"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    types = Counter(int(t) for line in out.split() for t in line.split(","))
    check_conservation(result)
    [conn] = result["connections"]
    assert conn["protocol"] == "mqtt" and not conn["anomalies"]
    assert conn["messages"] == types[PUBLISH_TYPE] > 0
    qos = 2 if types[PUBREC] else 1 if types[PUBACK] else 0
    assert {m["round_trips"] for m in result["messages"]} == {float(qos)}
    # TCP, CONNECT / CONNACK, and SUBSCRIBE / SUBACK when there is one; TLS 1.3 adds its turn,
    # and one more when the client sends CONNECT only after the server's session tickets
    # (OpenSSL's real peers do; the generator seals CONNECT with the client's Finished)
    subscribed = types[SUBSCRIBE] > 0
    plain = 2 + subscribed
    tls_turns = {0} if conn["tls"] is None else {1, 2}
    assert conn["setup_round_trips"] - plain in tls_turns
    kinds = Counter(m["kind"] for m in result["messages"])
    # The MQTT 5 goldens subscribe to their own topic: each PUBLISH comes back as a deliver.
    want = {"publish": 10, "deliver": 10} if subscribed else {"publish": conn["messages"]}
    assert kinds == want
    if subscribed:  # and name it by a Topic Alias after the first: the topic is still known
        assert {m["detail"]["topic"] for m in result["messages"]} == {
            m["detail"]["topic"] for m in result["messages"][:1]
        }


def test_answer_waits_in_the_round_trip_model() -> None:
    """DESIGN.md section 4 with ``waits``: a QoS 2 flow waited on alone costs 2; two sent
    together and then waited on cost 2/2 each; messages without waits stay as they were."""
    from analyzer.accounting.roundtrips import message_round_trips

    alone = [(ORIG, 1, 2), (ORIG, 4, 5)]
    assert message_round_trips(alone, {0: 2, 1: 2}) == [2.0, 2.0]
    assert message_round_trips(alone) == [1.0, 1.0]
    together = [(ORIG, 1, 3), (ORIG, 2, 4)]
    assert message_round_trips(together, {0: 2, 1: 2}) == [1.0, 1.0]
    assert message_round_trips([(ORIG, 1, None)], {0: 2}) == [0.0]  # never answered: no wait


def test_a_resend_with_dup_is_a_message_of_its_own_and_reuse_without_it_is_named() -> None:
    first, _ = publish(b"t", b"one", qos=1, pid=5)
    resend = bytes([first[0] | 0x08]) + first[1:]  # DUP flag (section 3.3.1.1)
    steps: list[Step] = [(ORIG, connect()), (RESP, CONNACK), (ORIG, first + resend)]
    whole = run(make, steps + [(RESP, ack(PUBACK, 5))])
    assert not whole.anomalies and len(whole.started) == 2
    assert [a.message for a in whole.answered] == [whole.started[1].message]
    whole = run(make, steps[:2] + [(ORIG, first + first)])
    assert whole.anomalies == {"mqtt.packet_id_reused": 1}
