"""What a live scenario asks for, worked out before any socket opens (pure functions).

The tests compare the analysis of a recording with these figures: how many connections the
scenario opens, how many messages of which kind it records, how many TLS handshakes.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.live.options import LiveOptions


@dataclass(frozen=True, slots=True, kw_only=True)
class Sent:
    """One message the client sent (or, for ``consume``, received and acknowledged)."""

    #: index of the connection group (a new client every ``per_connection`` messages)
    group: int
    #: the message kind the analyzer should report: "exchange", "stream", "publish", "deliver"
    kind: str
    #: body bytes
    payload_bytes: int
    #: the client's (address, port) of the connection that carried it
    client: tuple[str, int]
    #: AMQP: the queue it went through (the run's own, deleted at the end); None for HTTP
    queue: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Expected:
    """The figures a recording of the scenario must show."""

    connections: int
    messages: int
    tcp_handshakes: int
    tls_full_handshakes: int
    tls_resumed_handshakes: int


def connection_groups(messages: int, per_connection: int) -> list[int]:
    """Messages of each connection group: K each, the rest in the last."""
    full, rest = divmod(messages, per_connection)
    return [per_connection] * full + ([rest] if rest else [])


def batches(messages: int, concurrency: int) -> list[int]:
    """Sizes of the batches of at most ``concurrency`` messages sent together."""
    return connection_groups(messages, concurrency)


def connections_per_group(options: LiveOptions, group_messages: int) -> int:
    """TCP connections one group opens.

    HTTP/1.1 without pipelining needs one connection per request in flight, and the pool opens
    only as many as the first (largest) batch asks for; HTTP/2 multiplexes, AMQP uses one.
    """
    if options.protocol == "http1":
        return min(options.concurrency, group_messages)
    return 1


MESSAGE_KINDS = {"http1": "exchange", "http2": "stream"}
AMQP_KINDS = {"publish": "publish", "confirm": "publish", "consume": "deliver"}


def message_kind(options: LiveOptions) -> str:
    """The kind of message the analyzer reports for this scenario (DESIGN.md section 2)."""
    if options.protocol == "amqp":
        return AMQP_KINDS[options.mode]
    if options.protocol == "websocket":
        return "client_to_server"  # and as many "server_to_client" echoes, after the Upgrade
    if options.protocol in ("mqtt", "nats"):
        return "publish"  # NATS: and as many "deliver", its subscription's copies
    return MESSAGE_KINDS[options.protocol]


def _delivered_back(options: LiveOptions) -> bool:
    """NATS and MQTT 5 runs subscribe to their own subject (analyzer.live.nats, .mqtt)."""
    return options.protocol == "nats" or (options.protocol == "mqtt" and options.mqtt_version == 5)


def _messages(options: LiveOptions, connections: int) -> int:
    if options.protocol == "websocket":  # each echoed, plus each connection's Upgrade exchange
        return 2 * options.messages + connections
    return options.messages * (2 if _delivered_back(options) else 1)


def expected(options: LiveOptions) -> Expected:
    """Connections, messages and handshakes the recording of ``options`` must show."""
    groups = connection_groups(options.messages, options.messages_per_connection)
    connections = sum(connections_per_group(options, size) for size in groups)
    tls = options.tls != "off"
    return Expected(
        connections=connections,
        messages=_messages(options, connections),
        tcp_handshakes=connections,
        # The client keeps no session cache (analyzer.live.http), so none is resumed.
        tls_full_handshakes=connections if tls else 0,
        tls_resumed_handshakes=0,
    )
