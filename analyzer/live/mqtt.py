"""MQTT between paho-mqtt and a real broker (Mosquitto by default, 127.0.0.1:1883).

Each recorded connection does what the generator models (``analyzer.synth.mqtt``): CONNECT with a
clean session, ``per_connection`` PUBLISHes at one QoS with one in flight (each waits for its
flow to complete: PUBACK at QoS 1, PUBCOMP at QoS 2; QoS 0 only waits for paho to write it), and
DISCONNECT.  With MQTT 3.1.1 (``level`` 4) nobody subscribes to the run's topic, so the broker
delivers nothing back and the recording holds only the publisher's side.  With MQTT 5 (``level``
5) the client first subscribes to its own topic at the same QoS and waits until every PUBLISH
has been delivered back (and acknowledged), and its PUBLISHes after the first name the topic by
a Topic Alias (section 3.3.2.3.4): the recording then holds both kinds of message, ``publish``
and ``deliver``, as many of each, and exercises MQTT 5 properties on a real broker.  The
recorder keeps only the recorded connections' frames (by client port), so other clients of the
broker stay out.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
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
#: The Topic Alias an MQTT 5 run gives its topic (any of 1..Mosquitto's max_topic_alias 10).
TOPIC_ALIAS = 1
LEVELS = (4, 5)


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttPlan:
    """What one MQTT run does."""

    #: "host:port" of the broker
    broker: str
    qos: int
    #: protocol level: 4 (MQTT 3.1.1) or 5 (MQTT 5.0)
    level: int = 4
    #: "off", "1.2" or "1.3": TLS to a broker of the run's own (``tls_broker``)
    tls: str = "off"
    #: where the client writes its NSS key log (TLS only)
    keylog: Path | None = None
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


#: Mosquitto's names for the TLS versions (mosquitto.conf ``tls_version``).
MOSQUITTO_TLS_VERSIONS = {"1.2": "tlsv1.2", "1.3": "tlsv1.3"}
#: Seed of the broker's certificate (the generator's helper derives its key from it).
CERTIFICATE_SEED = 8883
#: How long a freshly started Mosquitto may take to listen, and to stop.
BROKER_START_S = 10.0


@contextlib.contextmanager
def tls_broker(version: str) -> Iterator[str]:
    """A Mosquitto of this run's own with a TLS listener on a free loopback port (the shared
    broker on 1883 is left alone); yields its "host:port" and stops it by its PID."""
    from analyzer.synth.tlswrap import write_certificate

    binary = shutil.which("mosquitto")
    if binary is None:
        raise UsageError("--protocol mqtt --tls needs mosquitto installed (apt install mosquitto)")
    with tempfile.TemporaryDirectory(prefix="wireprobe-mqtt-tls-") as workdir:
        cert, key = write_certificate(CERTIFICATE_SEED, Path(workdir))
        port = _free_port()
        conf = Path(workdir) / "mosquitto.conf"
        # Started as root, Mosquitto drops to user "mosquitto", which cannot read the private
        # temporary directory; ``user`` naming ourselves keeps it as us (no effect otherwise).
        conf.write_text(
            f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
            f"certfile {cert}\nkeyfile {key}\ntls_version {MOSQUITTO_TLS_VERSIONS[version]}\n"
        )
        broker = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            _wait_listening(port, broker)
            yield f"127.0.0.1:{port}"
        finally:
            broker.terminate()
            try:
                broker.wait(BROKER_START_S)
            except subprocess.TimeoutExpired:
                broker.kill()
                broker.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_listening(port: int, broker: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + BROKER_START_S
    while time.monotonic() < deadline:
        if broker.poll() is not None:
            raise RuntimeError(f"mosquitto exited with status {broker.returncode} at start")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        time.sleep(0.05)
    raise RuntimeError(f"mosquitto did not listen on port {port} in {BROKER_START_S:g} s")


def _tls_context(plan: MqttPlan) -> ssl.SSLContext:
    from analyzer.synth.tlswrap import VERSIONS

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # The broker's certificate is the one this run just made: nothing to verify it against.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = VERSIONS[plan.tls]
    if plan.keylog is not None:
        context.keylog_filename = str(plan.keylog)
    return context


def topic_name() -> str:
    """A topic no other run uses (process id and random bits), recognisable as ours."""
    return f"{TOPIC_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"


def _client(index: int, level: int) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client_id = f"wireprobe-{os.getpid()}-{index}"
    if level == 5:  # MQTT 5 has Clean Start in CONNECT instead (paho: connect(clean_start=))
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id, protocol=mqtt.MQTTv5)
    else:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id, protocol=mqtt.MQTTv311, clean_session=True
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


def _wait(event: threading.Event, what: str) -> None:
    if not event.wait(PUBLISH_TIMEOUT_S):
        raise RuntimeError(f"the MQTT broker did not {what} in {PUBLISH_TIMEOUT_S:g} s")


def _subscribe(client: Any, topic: str, qos: int, count: int) -> threading.Event:
    """MQTT 5: subscribe to ``topic``; the event is set once ``count`` messages came back."""
    subscribed, delivered = threading.Event(), threading.Event()
    got = [0]

    def on_subscribe(*_args: Any) -> None:
        subscribed.set()

    def on_message(*_args: Any) -> None:
        got[0] += 1
        if got[0] == count:
            delivered.set()

    client.on_subscribe, client.on_message = on_subscribe, on_message
    client.subscribe(topic, qos)
    _wait(subscribed, "answer SUBSCRIBE")
    return delivered


def _publish_all(client: Any, plan: MqttPlan, topic: str, count: int) -> None:
    """``count`` PUBLISHes, one in flight; MQTT 5 names the topic by its alias after the first."""
    properties = None
    if plan.level == 5:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.TopicAlias = TOPIC_ALIAS
    body = b"x" * plan.payload
    for index in range(count):
        name = "" if properties is not None and index else topic
        info = client.publish(name, body, qos=plan.qos, properties=properties)
        info.wait_for_publish(PUBLISH_TIMEOUT_S)
        if not info.is_published():
            raise RuntimeError(f"the broker did not complete a QoS {plan.qos} publish")


def run_mqtt(plan: MqttPlan, on_connect: Callable[[tuple[str, int]], None]) -> list[Sent]:
    """Run the scenario; ``on_connect`` gets each recorded connection's client endpoint."""
    host, port = broker_address(plan.broker)
    topic = topic_name()
    sent: list[Sent] = []
    for index, count in enumerate(connection_groups(plan.messages, plan.per_connection)):
        client = _client(index, plan.level)
        if plan.tls != "off":
            client.tls_set_context(_tls_context(plan))
        _connected(client, host, port)
        endpoint: tuple[str, int] = client.socket().getsockname()
        on_connect(endpoint)
        kinds = ["publish"]
        try:
            delivered = None
            if plan.level == 5:
                delivered = _subscribe(client, topic, plan.qos, count)
                kinds.append("deliver")
            _publish_all(client, plan, topic, count)
            if delivered is not None:
                _wait(delivered, f"deliver {count} messages back")
        finally:
            client.disconnect()
            client.loop_stop()
        sent += [
            Sent(group=index, kind=kind, payload_bytes=plan.payload, client=endpoint)
            for kind in kinds
            for _ in range(count)
        ]
    return sent
