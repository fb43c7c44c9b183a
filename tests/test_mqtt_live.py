"""``wireprobe capture --protocol mqtt``: paho-mqtt against the real Mosquitto on 127.0.0.1:1883.

The recording must show what was asked (connections, messages, round trips per QoS) and agree
with the generator's scenario byte for byte in the application layers: the same packets, with
only the topic (the run's own name) longer than the generator's.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import check_conservation
from test_live import analyse

from analyzer.errors import UsageError
from analyzer.live import LiveOptions, run_capture
from analyzer.live.mqtt import DEFAULT_BROKER, topic_name
from analyzer.synth import Scenario, generate
from analyzer.synth.mqtt import TOPIC as SYNTH_TOPIC


def _broker_up() -> bool:
    host, _, port = DEFAULT_BROKER.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


needs_broker = pytest.mark.skipif(not _broker_up(), reason="no MQTT broker on 127.0.0.1:1883")


def per_message(analysis: dict[str, Any], layer: str) -> float:
    messages = analysis["messages"]
    return float(sum(m["layers"][layer] for m in messages) / len(messages))


@needs_broker
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_live_mqtt_shows_what_was_asked_and_agrees_with_the_generator(
    tmp_path: Path, qos: int
) -> None:
    options: dict[str, Any] = {"messages": 4, "per_connection": 2, "payload": 300}
    result = run_capture(
        LiveOptions(protocol="mqtt", mqtt_qos=qos, output=tmp_path / "live.pcap", **options)
    )
    live = analyse(result.pcap, None)
    check_conservation(live)
    assert result.unclosed == () and result.dropped_packets == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("paho-mqtt")]
    summary = live["summary"]["mqtt"]
    assert (summary["connections"], summary["messages"]) == (2, 4)
    for conn in live["connections"]:
        assert conn["anomalies"] == [] and conn["undecoded_bytes"] == 0, conn
    assert {m["kind"] for m in live["messages"]} == {"publish"}
    assert {m["round_trips"] for m in live["messages"]} == {float(qos)}

    synth_run = generate(Scenario(protocol="mqtt", mqtt_qos=qos, **options))
    synth_run.write(tmp_path / "synth.pcap")
    synth = analyse(tmp_path / "synth.pcap", None)
    assert per_message(live, "payload") == per_message(synth, "payload") == 300
    # The same PUBLISH and acknowledgements; only the topic (the run's own) is longer.
    topic_gap = len(topic_name()) - len(SYNTH_TOPIC)
    assert per_message(live, "framing") - per_message(synth, "framing") == topic_gap
    # The same turns: TCP, then CONNECT / CONNACK (bytes differ: client ids, TCP timestamps).
    assert [c["setup_round_trips"] for c in live["connections"]] == [2, 2]
    assert [c["setup_round_trips"] for c in synth["connections"]] == [2, 2]


def test_no_broker_is_a_usage_error(tmp_path: Path) -> None:
    options = LiveOptions(protocol="mqtt", mqtt_broker="127.0.0.1:1", output=tmp_path / "x.pcap")
    with pytest.raises(UsageError, match="mosquitto -d"):
        run_capture(options)
    assert not (tmp_path / "x.pcap").exists()
    with pytest.raises(UsageError, match="mqtt-qos"):
        run_capture(LiveOptions(protocol="mqtt", mqtt_qos=4, output=tmp_path / "y.pcap"))
    with pytest.raises(UsageError, match="no --mtu"):
        run_capture(LiveOptions(protocol="mqtt", mtu=1500, output=tmp_path / "z.pcap"))
    with pytest.raises(UsageError, match="no --tls"):
        run_capture(LiveOptions(protocol="nats", tls="1.3", output=tmp_path / "z.pcap"))


@needs_broker
def test_live_mqtt5_topic_aliases_and_deliveries(tmp_path: Path) -> None:
    """MQTT 5 against the real broker: properties in every packet, a Topic Alias standing for
    the topic, and the broker's deliveries acknowledged by the client (analyzer.live.mqtt)."""
    result = run_capture(
        LiveOptions(
            protocol="mqtt", mqtt_version=5, mqtt_qos=2, messages=3, output=tmp_path / "5.pcap"
        )
    )
    live = analyse(result.pcap, None)
    check_conservation(live)
    [conn] = live["connections"]
    assert conn["anomalies"] == [] and conn["undecoded_bytes"] == 0
    assert conn["messages"] == result.expected.messages == len(result.sent) == 6
    kinds = sorted(m["kind"] for m in live["messages"])
    assert kinds == ["deliver"] * 3 + ["publish"] * 3
    assert len({m["detail"]["topic"] for m in live["messages"]}) == 1
    with pytest.raises(UsageError, match="mqtt-version"):
        run_capture(LiveOptions(protocol="mqtt", mqtt_version=3, output=tmp_path / "v.pcap"))


@needs_broker
def test_live_mqtt_over_tls_with_a_broker_of_its_own(tmp_path: Path) -> None:
    """--tls starts a Mosquitto with a TLS listener for the run, and stops it afterwards."""
    import subprocess

    def brokers() -> list[str]:
        found = subprocess.run(["pgrep", "-a", "mosquitto"], capture_output=True, text=True)
        return found.stdout.splitlines()

    before = brokers()
    result = run_capture(
        LiveOptions(protocol="mqtt", tls="1.2", mqtt_qos=2, messages=2, output=tmp_path / "t.pcap")
    )
    assert brokers() == before
    assert result.keylog is not None
    live = analyse(result.pcap, result.keylog)
    check_conservation(live)
    [conn] = live["connections"]
    assert conn["tls"]["version"] == "1.2" and conn["tls"]["decrypted"]
    assert (conn["protocol"], conn["messages"], conn["anomalies"]) == ("mqtt", 2, [])
    assert {m["round_trips"] for m in live["messages"]} == {2.0}
