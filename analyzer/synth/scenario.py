"""What to generate: one frozen value, checked before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, replace

from analyzer.errors import UsageError

PROTOCOLS = ("http1", "http2", "amqp", "mqtt", "websocket")
TLS_MODES = ("off", "1.2", "1.3")
AMQP_MODES = ("publish", "confirm", "confirm-async", "consume")
MQTT_QOS_LEVELS = (0, 1, 2)
#: Statuses the HTTP server answers with: 200 with a small JSON body (a REST call), 202 and
#: 204 with none (a notification accepted: the one-way pattern of issue 14).
HTTP_STATUSES = (200, 202, 204)
#: AMQP message properties: "plain"; "request", an RPC request (``reply_to`` and
#: ``correlation_id``); "reply", an RPC reply (``correlation_id``).
AMQP_PROPERTIES = ("plain", "request", "reply")

#: RFC 791 section 3.1: every IPv4 host must accept 576-byte datagrams, so no path MTU is lower.
MIN_MTU = 576
#: Jumbo frames; above this no common link carries one packet.
MAX_MTU = 9216
#: Loss of half the segments or more is not a network anyone measures costs on.
MAX_LOSS = 0.5
#: One message body held in memory per side; 64 MiB keeps a generated capture loadable.
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
#: A generated capture holds every packet in memory; a million messages is already a big file.
MAX_MESSAGES = 1_000_000
#: Round trips longer than a minute are no network path.
MAX_RTT_MS = 60_000.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One synthetic traffic scenario (the options of ``wireprobe generate``)."""

    #: "http1", "http2", "amqp" or "mqtt"
    protocol: str = "http1"
    #: "off", "1.2" or "1.3"
    tls: str = "off"
    #: messages in all connections together
    messages: int = 10
    #: messages per connection (a new connection every K); None: all on one connection
    per_connection: int | None = None
    #: body bytes of each message (request body, AMQP message body)
    payload: int = 100
    #: concurrent HTTP/2 streams or pipelined HTTP/1.1 requests
    concurrency: int = 1
    #: AMQP only: "publish", "confirm", "confirm-async" or "consume" (None: "confirm")
    amqp_mode: str | None = None
    #: MQTT only: QoS of every PUBLISH, 0, 1 or 2 (None: 1)
    mqtt_qos: int | None = None
    #: HTTP only: the status of every response (``HTTP_STATUSES``)
    http_status: int = 200
    #: AMQP only: the properties every message carries (``AMQP_PROPERTIES``)
    amqp_properties: str = "plain"
    #: reconnects resume the TLS session (tickets)
    resume: bool = False
    #: IP MTU of the path in bytes
    mtu: int = 1500
    #: round-trip time between the peers
    rtt_ms: float = 10.0
    #: probability that a data segment is lost after the capture point (and retransmitted)
    loss: float = 0.0
    #: probability that a data segment is overtaken by the next one of its flight (before the
    #: capture point, so the capture shows it)
    reorder: float = 0.0
    seed: int = 0

    @property
    def mode(self) -> str:
        """The AMQP mode in effect."""
        return self.amqp_mode or "confirm"

    @property
    def messages_per_connection(self) -> int:
        """K, with "all on one connection" resolved."""
        return self.per_connection or self.messages

    def validate(self) -> Scenario:
        """Raise ``UsageError`` (one line) for a bad value or combination; return self."""
        for problem in _problems(self):
            raise UsageError(problem)
        return self


def _problems(s: Scenario) -> list[str]:
    checks: list[tuple[bool, str]] = [
        (s.protocol in PROTOCOLS, f"--protocol must be one of {', '.join(PROTOCOLS)}"),
        (s.tls in TLS_MODES, f"--tls must be one of {', '.join(TLS_MODES)}"),
        (1 <= s.messages <= MAX_MESSAGES, f"--messages must be between 1 and {MAX_MESSAGES}"),
        (s.per_connection is None or s.per_connection >= 1, "--per-connection must be >= 1"),
        (0 <= s.payload <= MAX_PAYLOAD_BYTES, f"--payload must be 0..{MAX_PAYLOAD_BYTES} bytes"),
        (s.concurrency >= 1, "--concurrency must be >= 1"),
        (
            s.concurrency == 1 or s.protocol != "amqp",
            "--concurrency applies to HTTP only (AMQP has --amqp-mode)",
        ),
        (
            s.amqp_mode is None or s.protocol == "amqp",
            "--amqp-mode applies to --protocol amqp only",
        ),
        (s.amqp_mode is None or s.amqp_mode in AMQP_MODES, f"--amqp-mode: {'|'.join(AMQP_MODES)}"),
        (
            s.mqtt_qos is None or s.protocol == "mqtt",
            "--mqtt-qos applies to --protocol mqtt only",
        ),
        (s.mqtt_qos is None or s.mqtt_qos in MQTT_QOS_LEVELS, "--mqtt-qos must be 0, 1 or 2"),
        (
            s.concurrency == 1 or s.protocol not in ("mqtt", "websocket"),
            "--concurrency applies to HTTP only (MQTT and WebSocket keep one message in flight)",
        ),
        (
            s.http_status in HTTP_STATUSES,
            f"--http-status must be one of {', '.join(map(str, HTTP_STATUSES))}",
        ),
        (
            s.http_status == 200 or s.protocol in ("http1", "http2"),
            "--http-status applies to HTTP only",
        ),
        (
            s.amqp_properties in AMQP_PROPERTIES,
            f"--amqp-properties: {'|'.join(AMQP_PROPERTIES)}",
        ),
        (
            s.amqp_properties == "plain" or s.protocol == "amqp",
            "--amqp-properties applies to --protocol amqp only",
        ),
        (not s.resume or s.tls != "off", "--resume needs --tls 1.2 or 1.3"),
        (MIN_MTU <= s.mtu <= MAX_MTU, f"--mtu must be between {MIN_MTU} and {MAX_MTU}"),
        (0.0 < s.rtt_ms <= MAX_RTT_MS, f"--rtt-ms must be > 0 and <= {MAX_RTT_MS:g}"),
        (0.0 <= s.loss < MAX_LOSS, f"--loss must be in [0, {MAX_LOSS})"),
        (0.0 <= s.reorder < MAX_LOSS, f"--reorder must be in [0, {MAX_LOSS})"),
        (s.seed >= 0, "--seed must be >= 0"),
    ]
    return [message for ok, message in checks if not ok]


#: Named scenarios for the common questions (``wireprobe generate --preset NAME``).
PRESETS: dict[str, Scenario] = {
    "rest-new-conn": Scenario(protocol="http1", messages=20, per_connection=1, payload=512),
    "rest-keepalive": Scenario(protocol="http1", messages=20, payload=512),
    "rest-tls-new-conn": Scenario(
        protocol="http1", tls="1.3", messages=20, per_connection=1, payload=512
    ),
    "rest-tls-resume": Scenario(
        protocol="http1", tls="1.3", messages=20, per_connection=1, payload=512, resume=True
    ),
    "h2-multiplexed": Scenario(protocol="http2", tls="1.3", messages=32, concurrency=8),
    "amqp-publish": Scenario(protocol="amqp", amqp_mode="publish", messages=50, payload=512),
    "amqp-confirm": Scenario(protocol="amqp", amqp_mode="confirm", messages=50, payload=512),
    "amqp-confirm-async": Scenario(
        protocol="amqp", amqp_mode="confirm-async", messages=50, payload=512
    ),
    "amqp-consume": Scenario(protocol="amqp", amqp_mode="consume", messages=50, payload=512),
}


def preset(name: str, **overrides: object) -> Scenario:
    """The named preset with some fields replaced; ``UsageError`` for an unknown name."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r} (known: {', '.join(sorted(PRESETS))})")
    return replace(PRESETS[name], **overrides)  # type: ignore[arg-type]


def from_options(preset_name: str | None = None, **options: object) -> Scenario:
    """The scenario of ``wireprobe generate``: a preset (or the defaults) with the options given.

    Options whose value is None were not given on the command line and keep the preset's value;
    the result is validated (``UsageError`` for a bad value or combination).
    """
    base = preset(preset_name) if preset_name else Scenario()
    given = {name: value for name, value in options.items() if value is not None}
    unknown = sorted(set(given) - set(Scenario.__dataclass_fields__))
    if unknown:
        raise UsageError(f"unknown scenario option(s): {', '.join(unknown)}")
    return replace(base, **given).validate()  # type: ignore[arg-type]
