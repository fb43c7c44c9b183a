"""AMQP 0-9-1 between pika and a real broker (RabbitMQ by default).

Two kinds of connection: an *admin* connection, never recorded, that declares the run's queue,
fills it for ``consume`` and deletes it at the end (also when the run fails); and the *recorded*
connections, one every ``per_connection`` messages, each doing what the generator models
(``analyzer.synth.amqp``): open, channel, ``Confirm.Select`` for ``confirm``, ``Queue.Declare``,
then

- ``publish``: ``Basic.Publish`` back to back, nothing answers;
- ``confirm``: each publish waits for its ``Basic.Ack`` (pika's ``confirm_delivery`` makes
  ``basic_publish`` synchronous);
- ``consume``: ``Basic.Qos(prefetch_count=1)``, ``Basic.Consume``, and each delivery
  acknowledged; the admin connection put exactly this connection's messages in the queue first,
  so the broker delivers no more than that and nothing is requeued at close;

and ``Channel.Close``, ``Connection.Close``.  The recorder keeps only the recorded connections'
frames (by client port), so the admin traffic and anyone else's traffic to the broker stay out.

The queue carries ``x-expires``: should this process die before deleting it, the broker drops it
on its own once unused (RabbitMQ "Queue TTL").
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions

from analyzer.errors import UsageError
from analyzer.live.plan import Sent, connection_groups

#: IANA port of AMQP (RFC-less; AMQP 0-9-1 section 4.2.1), pika's default too.
AMQP_PORT = 5672
#: Start of every queue a live run declares.
QUEUE_PREFIX = "wireprobe-live-"
#: The broker drops the queue after this long unused, if this process could not delete it.
QUEUE_EXPIRES_MS = 60_000
#: Properties the generator's messages carry (``analyzer.synth.amqp._content``).
CONTENT_TYPE = "application/octet-stream"
PERSISTENT = 2
#: One delivery on loopback takes milliseconds; a broker silent this long is stuck.
DELIVERY_TIMEOUT_S = 30.0
#: How long one wait for deliveries lasts before the deadline is looked at again.
POLL_S = 0.05
#: Seconds pika waits for the broker's TCP accept and for the AMQP handshake.
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class AmqpPlan:
    """What one AMQP run does."""

    url: str
    mode: str
    messages: int
    per_connection: int
    payload: int
    #: "off", or the TLS version the recorded connections speak to ``tls_port``
    tls: str = "off"
    #: the TLS terminator in front of the broker (``analyzer.live.tlsrelay``); None: cleartext
    tls_port: int | None = None
    #: where the client writes its NSS key log (TLS only)
    keylog: str | None = None
    #: the properties every message carries: "plain", or an RPC "request" or "reply"
    #: (``analyzer.synth.amqp.message_properties``)
    properties: str = "plain"


def parameters(url: str) -> Any:
    """pika's connection parameters for ``url`` (``UsageError`` for a URL pika rejects)."""
    try:
        params = pika.URLParameters(url)
    except Exception as err:  # pika raises ValueError and others for bad URLs
        raise UsageError(f"--amqp-url {url}: {err}") from err
    params.socket_timeout = CONNECT_TIMEOUT_S
    params.blocked_connection_timeout = DELIVERY_TIMEOUT_S
    params.connection_attempts = 1
    return params


def broker_port(url: str) -> int:
    """The broker's TCP port (what the recorder filters on)."""
    return int(parameters(url).port)


def connect(params: Any) -> Any:
    """A blocking connection; ``UsageError`` that says how to start a broker when none answers."""
    try:
        return pika.BlockingConnection(params)
    except pika.exceptions.AMQPConnectionError as err:
        where = f"{params.host}:{params.port}"
        raise UsageError(
            f"no AMQP broker at {where} ({type(err).__name__}): "
            "start one with `rabbitmq-server -detached`"
        ) from err


def check_broker(url: str) -> None:
    """``UsageError`` unless something accepts TCP connections at the broker's address."""
    params = parameters(url)
    try:
        socket.create_connection((params.host, params.port), CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise UsageError(
            f"no AMQP broker at {params.host}:{params.port} ({err.strerror or err}): "
            "start one with `rabbitmq-server -detached`"
        ) from err


def client_endpoint(connection: Any) -> tuple[str, int]:
    """The client side (address, port) of a pika connection, to pick its frames out."""
    # pika exposes no accessor; the transport keeps the socket (pika 1.3, io_services_utils).
    sock: socket.socket = connection._impl._transport._sock
    address: tuple[str, int] = sock.getsockname()
    return address


def queue_name() -> str:
    """A queue name no other run uses (process id and random bits), recognisable as ours."""
    return f"{QUEUE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def run_queue(params: Any) -> Iterator[tuple[str, Any]]:
    """Declare the run's queue on the admin connection; delete it and close on the way out."""
    admin = connect(params)
    try:
        channel = admin.channel()
        channel.confirm_delivery()
        queue = queue_name()
        channel.queue_declare(queue, arguments={"x-expires": QUEUE_EXPIRES_MS})
        try:
            yield queue, channel
        finally:
            channel.queue_delete(queue)
    finally:
        with contextlib.suppress(pika.exceptions.AMQPError):
            admin.close()


def recorded_parameters(plan: AmqpPlan) -> Any:
    """The recorded connections' parameters: the broker's, or its TLS terminator's with the
    client's TLS context (the admin connection always goes to the broker in clear)."""
    params = parameters(plan.url)
    if plan.tls_port is None:
        return params
    from pathlib import Path

    from analyzer.live.tlsrelay import client_context

    keylog = Path(plan.keylog) if plan.keylog else None
    params.port = plan.tls_port
    params.ssl_options = pika.SSLOptions(client_context(plan.tls, keylog))
    return params


def run_amqp(plan: AmqpPlan, on_connect: Callable[[tuple[str, int]], None]) -> list[Sent]:
    """Run the scenario; ``on_connect`` gets each recorded connection's client endpoint."""
    params = parameters(plan.url)
    recorded = recorded_parameters(plan)
    body = b"x" * plan.payload
    sent: list[Sent] = []
    with run_queue(params) as (queue, admin):
        for index, count in enumerate(connection_groups(plan.messages, plan.per_connection)):
            if plan.mode == "consume":
                for m in range(count):
                    admin.basic_publish("", queue, body, _properties(plan.properties, m))
            connection = connect(recorded)
            try:
                client = client_endpoint(connection)
                on_connect(client)
                _one_connection(connection, plan, queue, body, count)
            finally:
                with contextlib.suppress(pika.exceptions.AMQPError):
                    connection.close()
            kind = "deliver" if plan.mode == "consume" else "publish"
            sent += [
                Sent(group=index, kind=kind, payload_bytes=plan.payload, client=client, queue=queue)
                for _ in range(count)
            ]
    return sent


def _properties(kind: str = "plain", message: int = 0) -> Any:
    """The generator's properties (``analyzer.synth.amqp.message_properties``): an RPC request
    names its reply queue and a correlation id, a reply repeats the id."""
    from analyzer.synth.amqp import REPLY_QUEUE, correlation_id

    rpc: dict[str, str] = {}
    if kind in ("request", "reply"):
        rpc["correlation_id"] = correlation_id(message, 0)
    if kind == "request":
        rpc["reply_to"] = REPLY_QUEUE
    return pika.BasicProperties(content_type=CONTENT_TYPE, delivery_mode=PERSISTENT, **rpc)


def _one_connection(connection: Any, plan: AmqpPlan, queue: str, body: bytes, count: int) -> None:
    mode = plan.mode
    channel = connection.channel()
    if mode == "confirm":
        channel.confirm_delivery()
    channel.queue_declare(queue, arguments={"x-expires": QUEUE_EXPIRES_MS})
    if mode == "consume":
        _consume(connection, channel, queue, count)
        return
    for m in range(count):
        channel.basic_publish("", queue, body, _properties(plan.properties, m))
    channel.close()


def _consume(connection: Any, channel: Any, queue: str, count: int) -> None:
    channel.basic_qos(prefetch_count=1)
    acked = 0

    def on_message(ch: Any, method: Any, _properties: Any, _body: bytes) -> None:
        nonlocal acked
        ch.basic_ack(method.delivery_tag)
        acked += 1

    channel.basic_consume(queue, on_message)
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while acked < count and time.monotonic() < deadline:
        connection.process_data_events(time_limit=POLL_S)
    if acked < count:
        raise RuntimeError(f"the broker delivered {acked} of {count} messages")
    channel.close()
