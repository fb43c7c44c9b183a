"""What ``wireprobe capture`` runs: one frozen value, checked before anything starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analyzer.errors import UsageError
from analyzer.synth.scenario import AMQP_PROPERTIES, HTTP_STATUSES

PROTOCOLS = ("http1", "http2", "amqp", "mqtt", "nats", "websocket")
TLS_MODES = ("off", "1.2", "1.3")
AMQP_MODES = ("publish", "confirm", "consume")
MQTT_QOS_LEVELS = (0, 1, 2)
#: Mosquitto's default listener on loopback (analyzer.live.mqtt).
DEFAULT_MQTT_BROKER = "127.0.0.1:1883"
#: nats-server's default client port on loopback (analyzer.live.nats).
DEFAULT_NATS_SERVER = "127.0.0.1:4222"
#: RabbitMQ's guest user may only log in over loopback, which is where the default broker is.
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
#: A live run keeps every captured frame in memory until it writes the pcap; 100 000 messages
#: of small payloads is a few hundred MB of frames at most.
MAX_MESSAGES = 100_000
#: One body is held in memory by both peers; 16 MiB is far past any REST or queue message.
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
#: Open connections at once; each is a socket on both ends of loopback.
MAX_CONCURRENCY = 256
#: Only an Ethernet-sized path is offered (a network namespace behind a veth pair, issue 6).
SUPPORTED_MTUS = (1500,)


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveOptions:
    """One live scenario (the options of ``wireprobe capture``)."""

    #: "http1", "http2" or "amqp"
    protocol: str = "http1"
    #: "off", "1.2" or "1.3" (AMQP: through a TLS terminator in front of the broker)
    tls: str = "off"
    #: messages in all connections together
    messages: int = 10
    #: messages per connection (a new connection every K); None: all on one connection
    per_connection: int | None = None
    #: body bytes of each message (HTTP request body, AMQP message body)
    payload: int = 100
    #: HTTP requests in flight at once (HTTP/2 streams on one connection, HTTP/1.1 connections)
    concurrency: int = 1
    #: AMQP only: "publish", "confirm" or "consume" (None: "confirm")
    amqp_mode: str | None = None
    #: HTTP only: the status the server answers with (200, or 202/204 without a body)
    http_status: int = 200
    #: AMQP only: the properties of every message ("plain", RPC "request" or "reply")
    amqp_properties: str = "plain"
    #: the broker to talk to (AMQP only)
    amqp_url: str = DEFAULT_AMQP_URL
    #: MQTT only: QoS of every PUBLISH (None: 1)
    mqtt_qos: int | None = None
    #: MQTT only: 4 (3.1.1, publish only) or 5 (5.0: a Topic Alias, and the client subscribed
    #: to its own topic, so each PUBLISH is delivered back; analyzer.live.mqtt)
    mqtt_version: int = 4
    #: the MQTT broker, "host:port" (MQTT only)
    mqtt_broker: str = DEFAULT_MQTT_BROKER
    #: nats-server, "host:port" (NATS only)
    nats_server: str = DEFAULT_NATS_SERVER
    #: IP MTU of the client's path; None: loopback (64 KiB segments)
    mtu: int | None = None
    #: where the recording goes
    output: Path = Path("capture.pcap")
    #: where the client's TLS key log goes (None: next to the output, ``.keys``, when TLS is on)
    keylog: Path | None = None

    @property
    def mode(self) -> str:
        """The AMQP mode in effect."""
        return self.amqp_mode or "confirm"

    @property
    def messages_per_connection(self) -> int:
        """K, with "all on one connection" resolved."""
        return self.per_connection or self.messages

    @property
    def keylog_path(self) -> Path | None:
        """The key log the client writes (None without TLS)."""
        if self.tls == "off":
            return None
        return self.keylog or self.output.with_suffix(".keys")

    def validate(self) -> LiveOptions:
        """Raise ``UsageError`` (one line) for a bad value or combination; return self."""
        for problem in _problems(self):
            raise UsageError(problem)
        return self


def _problems(o: LiveOptions) -> list[str]:
    checks: list[tuple[bool, str]] = [
        (o.protocol in PROTOCOLS, f"--protocol must be one of {', '.join(PROTOCOLS)}"),
        (o.tls in TLS_MODES, f"--tls must be one of {', '.join(TLS_MODES)}"),
        (1 <= o.messages <= MAX_MESSAGES, f"--messages must be between 1 and {MAX_MESSAGES}"),
        (o.per_connection is None or o.per_connection >= 1, "--per-connection must be >= 1"),
        (0 <= o.payload <= MAX_PAYLOAD_BYTES, f"--payload must be 0..{MAX_PAYLOAD_BYTES} bytes"),
        (
            1 <= o.concurrency <= MAX_CONCURRENCY,
            f"--concurrency must be between 1 and {MAX_CONCURRENCY}",
        ),
        (
            o.concurrency == 1 or o.protocol != "amqp",
            "--concurrency applies to HTTP only (AMQP has --amqp-mode)",
        ),
        (
            o.amqp_mode is None or o.protocol == "amqp",
            "--amqp-mode applies to --protocol amqp only",
        ),
        (o.amqp_mode is None or o.amqp_mode in AMQP_MODES, f"--amqp-mode: {'|'.join(AMQP_MODES)}"),
        (
            o.http_status in HTTP_STATUSES and (o.http_status == 200 or o.protocol != "amqp"),
            "--http-status must be 200, 202 or 204, and applies to HTTP only",
        ),
        (
            o.amqp_properties in AMQP_PROPERTIES
            and (o.amqp_properties == "plain" or o.protocol == "amqp"),
            "--amqp-properties must be plain, request or reply, and applies to AMQP only",
        ),
        (
            o.tls == "off" or o.protocol != "amqp" or o.mtu is None,
            "--tls with --protocol amqp runs on loopback only (its TLS terminator is not "
            "relayed into the --mtu namespace): drop --mtu",
        ),
        (
            o.amqp_url.startswith("amqp://") or o.protocol != "amqp",
            "--amqp-url must start with amqp://",
        ),
        (
            o.mtu is None or o.mtu in SUPPORTED_MTUS,
            f"--mtu must be one of {', '.join(map(str, SUPPORTED_MTUS))} (or absent: loopback)",
        ),
        (o.mqtt_qos is None or o.protocol == "mqtt", "--mqtt-qos applies to --protocol mqtt"),
        (o.mqtt_qos is None or o.mqtt_qos in MQTT_QOS_LEVELS, "--mqtt-qos must be 0, 1 or 2"),
        (o.mqtt_version in (4, 5), "--mqtt-version must be 4 (3.1.1) or 5"),
        (o.mqtt_version == 4 or o.protocol == "mqtt", "--mqtt-version applies to mqtt only"),
        (
            o.protocol not in ("mqtt", "nats", "websocket")
            or (o.mtu is None and o.concurrency == 1),
            f"--protocol {o.protocol} records on loopback, one connection at a time: "
            "no --mtu or --concurrency",
        ),
        (
            o.protocol not in ("nats", "websocket") or o.tls == "off",
            f"--protocol {o.protocol} records in clear only: no --tls",
        ),
        (o.keylog is None or o.tls != "off", "--keylog needs --tls 1.2 or 1.3"),
        (o.keylog is None or o.keylog != o.output, "--keylog and -o must be different files"),
    ]
    return [message for ok, message in checks if not ok]
