"""MQTT between paho-mqtt and a real broker (Mosquitto by default, 127.0.0.1:1883).

Each recorded connection does what the generator models (``analyzer.synth.mqtt``): CONNECT with a
clean session, ``per_connection`` PUBLISHes at one QoS with one in flight (each waits for its
flow to complete: PUBACK at QoS 1, PUBCOMP at QoS 2; QoS 0 only waits for paho to write it), and
DISCONNECT.  Nobody subscribes to the run's topic, so the broker delivers nothing back and the
recording holds only the publisher's side of the conversation.  The recorder keeps only the
recorded connections' frames (by client port), so other clients of the broker stay out.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from analyzer.errors import UsageError
from analyzer.live.plan import Sent, connection_groups

#: IANA port of MQTT (RFC-less; OASIS MQTT 3.1.1 section 4.2), Mosquitto's default listener.
MQTT_PORT = 1883
DEFAULT_BROKER = f"127.0.0.1:{MQTT_PORT}"
#: Start of every topic a live run publishes to; the rest names the run.
TOPIC_PREFIX = "wireprobe/live/"
#: paho-mqtt's and Mosquitto's default keep alive; the runs are far shorter.
KEEP_ALIVE_S = 60
#: One publish flow on loopback takes milliseconds; a broker silent this long is stuck.
PUBLISH_TIMEOUT_S = 30.0
#: Seconds to wait for the broker's TCP accept and CONNACK.
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttPlan:
    """What one MQTT run does."""

    #: "host:port" of the broker
    broker: str
    qos: int
    messages: int
    per_connection: int
    payload: int


def broker_address(broker: str) -> tuple[str, int]:
    """("host", port) of ``host:port`` (``UsageError`` when it is not one)."""
    host, _, port = broker.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--mqtt-broker wants HOST:PORT, got {broker!r}")
    return host, int(port)


def check_broker(broker: str) -> None:
    """``UsageError`` unless something accepts TCP connections at the broker's address."""
    host, port = broker_address(broker)
    try:
        socket.create_connection((host, port), CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise UsageError(
            f"no MQTT broker at {host}:{port} ({err.strerror or err}): "
            "start one with `mosquitto -d`"
        ) from err


def topic_name() -> str:
    """A topic no other run uses (process id and random bits), recognisable as ours."""
    return f"{TOPIC_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"


def _client(index: int) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"wireprobe-{os.getpid()}-{index}",
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    client.max_inflight_messages_set(1)
    return client


def _connected(client: Any, host: str, port: int) -> None:
    """Connect and wait for CONNACK, so that setup is over before the first PUBLISH (as in the
    generator; paho would otherwise send PUBLISHes right behind its CONNECT)."""
    accepted = threading.Event()
    refused: list[str] = []

    def on_connect(_client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        accepted.set()

    client.on_connect = on_connect
    client.connect(host, port, KEEP_ALIVE_S)
    client.loop_start()
    if not accepted.wait(CONNECT_TIMEOUT_S) or refused:
        client.loop_stop()
        raise RuntimeError(f"the MQTT broker refused or ignored CONNECT: {refused or 'timeout'}")


def run_mqtt(plan: MqttPlan, on_connect: Callable[[tuple[str, int]], None]) -> list[Sent]:
    """Run the scenario; ``on_connect`` gets each recorded connection's client endpoint."""
    host, port = broker_address(plan.broker)
    body = b"x" * plan.payload
    topic = topic_name()
    sent: list[Sent] = []
    for index, count in enumerate(connection_groups(plan.messages, plan.per_connection)):
        client = _client(index)
        _connected(client, host, port)
        endpoint: tuple[str, int] = client.socket().getsockname()
        on_connect(endpoint)
        try:
            for _ in range(count):
                info = client.publish(topic, body, qos=plan.qos)
                info.wait_for_publish(PUBLISH_TIMEOUT_S)
                if not info.is_published():
                    raise RuntimeError(f"the broker did not complete a QoS {plan.qos} publish")
        finally:
            client.disconnect()
            client.loop_stop()
        sent += [
            Sent(group=index, kind="publish", payload_bytes=plan.payload, client=endpoint)
            for _ in range(count)
        ]
    return sent
