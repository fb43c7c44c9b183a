"""Live traffic between real peers, recorded (``wireprobe capture``, issue 6).

``run_capture`` starts the tap, runs the scenario between real programs (hypercorn and httpx for
HTTP, pika and a RabbitMQ broker for AMQP), waits until every connection's close is on the tap,
and writes the pcap (and the client's TLS key log); the CLI analyses the pcap like any other::

    result = run_capture(LiveOptions(protocol="http2", tls="1.3", messages=20, concurrency=4,
                                     output=Path("h2.pcap")))
    result.pcap, result.keylog, result.expected.connections

Everything the run starts is stopped on the way out, failure or not: the server task, the
client connections, the broker queue, the tap.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

import httpx
import pika.exceptions

from analyzer.errors import WireprobeError
from analyzer.live.amqp import AMQP_PORT, AmqpPlan, broker_port, check_broker, parameters, run_amqp
from analyzer.live.client import encode_plan
from analyzer.live.eventloop import run_in_private_loop
from analyzer.live.http import HttpPlan, listening_socket, run_http
from analyzer.live.mqtt import MqttPlan, broker_address, run_mqtt, tls_broker
from analyzer.live.mqtt import check_broker as check_mqtt_broker
from analyzer.live.nats import NatsPlan, run_nats
from analyzer.live.netns import Namespace, namespace_for, network_namespace, relay, run_client
from analyzer.live.options import LiveOptions
from analyzer.live.plan import Expected, Sent, expected
from analyzer.live.recorder import Recorder, keep_connections, write_pcap
from analyzer.live.tlsrelay import server_context, tls_terminator
from analyzer.live.websocket import WebSocketPlan, run_websocket

__all__ = ["LiveOptions", "LiveResult", "LiveRunError", "Sent", "run_capture"]

LOOPBACK_INTERFACE = "lo"
LOOPBACK_ADDRESS = "127.0.0.1"

Endpoint = tuple[str, int]
#: Runs the scenario, appending each recorded connection's client endpoint to the list.
Scenario = Callable[[list[Endpoint]], list[Sent]]


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveResult:
    """What a live run did and where its recording is."""

    options: LiveOptions
    #: the recording (classic pcap, nanosecond timestamps, Ethernet)
    pcap: Path
    #: the client's NSS key log (None without TLS)
    keylog: Path | None
    #: every message, in the order sent
    sent: tuple[Sent, ...]
    #: client endpoints of the recorded connections, in the order opened
    clients: tuple[Endpoint, ...]
    #: what the analysis of the recording must show
    expected: Expected
    #: frames in the pcap
    packets: int
    #: frames the kernel dropped before the tap read them (0 on a healthy run)
    dropped_packets: int
    #: recorded connections whose close (FINs and last ACK, or RST) the tap did not see
    unclosed: tuple[Endpoint, ...]


class LiveRunError(WireprobeError):
    """A peer or the tap failed during the run (the CLI prints it in one line, exit 2)."""


#: Failures of the real peers and sockets during a run, reported as ``LiveRunError``.
PEER_FAILURES = (RuntimeError, OSError, pika.exceptions.AMQPError, httpx.HTTPError)


def run_capture(options: LiveOptions) -> LiveResult:
    """Run ``options`` between real peers and record it.

    ``UsageError`` for what cannot run here (bad options, no broker, no privilege);
    ``LiveRunError`` when a peer fails on the way.  Either way nothing is left running.
    """
    with _noting_interrupts() as interrupted:
        try:
            result = _run_capture(options)
        except PEER_FAILURES as err:
            if interrupted.is_set():  # the peers failed because Ctrl-C stopped their partner
                raise KeyboardInterrupt from err
            raise LiveRunError(f"live run failed: {type(err).__name__}: {err}") from err
    if interrupted.is_set():  # a peer library swallowed the KeyboardInterrupt
        raise KeyboardInterrupt
    return result


@contextmanager
def _noting_interrupts() -> Iterator[threading.Event]:
    """Remember a Ctrl-C even when a library (hypercorn, httpx) catches the KeyboardInterrupt."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted  # signal handlers can only be set in the main thread
        return

    def note(signum: int, frame: FrameType | None) -> None:
        interrupted.set()
        signal.default_int_handler(signum, frame)

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield interrupted
    finally:
        # None: the handler was not set from Python (an embedding program); leave ours then.
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _run_capture(options: LiveOptions) -> LiveResult:
    options.validate()
    keylog = options.keylog_path
    if keylog is not None:
        # The ssl module appends to a key log; an old one would mix in other runs' secrets.
        keylog.unlink(missing_ok=True)
    if options.protocol == "amqp":
        check_broker(options.amqp_url)
    if options.protocol == "mqtt":
        return _mqtt(options)
    if options.protocol == "nats":
        return _record(
            options,
            LOOPBACK_INTERFACE,
            broker_address(options.nats_server)[1],
            lambda clients: run_nats(_nats_plan(options), clients.append),
        )
    if options.protocol == "websocket":
        return _websocket(options)
    if options.mtu is not None:
        return _run_in_namespace(options, options.mtu)
    if options.protocol == "amqp":
        port = broker_port(options.amqp_url)
        plan = _amqp_plan(options, options.amqp_url)
        if options.tls != "off":
            return _amqp_over_tls(options, plan)
        return _record(options, LOOPBACK_INTERFACE, port, lambda clients: _amqp(plan, clients))
    sock = listening_socket(LOOPBACK_ADDRESS)
    try:
        port = sock.getsockname()[1]
        return _record(
            options, LOOPBACK_INTERFACE, port, lambda clients: _http(options, sock, clients, None)
        )
    finally:
        sock.close()  # a no-op once hypercorn took the descriptor over


def _run_in_namespace(options: LiveOptions, mtu: int) -> LiveResult:
    """The same scenario with the client behind a veth pair of ``mtu`` (analyzer.live.netns)."""
    with network_namespace(namespace_for(os.getpid(), mtu)) as ns:
        if options.protocol == "amqp":
            port = broker_port(options.amqp_url)
            return _record(
                options,
                ns.host_interface,
                port,
                lambda clients: _amqp_relayed(options, ns, clients),
            )
        sock = listening_socket(ns.host_address)
        try:
            port = sock.getsockname()[1]
            return _record(
                options, ns.host_interface, port, lambda clients: _http(options, sock, clients, ns)
            )
        finally:
            sock.close()


def _amqp_over_tls(options: LiveOptions, plan: AmqpPlan) -> LiveResult:
    """The broker behind a TLS terminator (analyzer.live.tlsrelay), the TLS side recorded."""
    params = parameters(options.amqp_url)
    keylog = options.keylog_path
    with tempfile.TemporaryDirectory(prefix="wireprobe-live-tls-") as workdir:
        context = server_context(options.tls, Path(workdir))
        with tls_terminator(context, (str(params.host), int(params.port))) as tls_port:
            tls_plan = replace(
                plan,
                tls=options.tls,
                tls_port=tls_port,
                keylog=str(keylog) if keylog else None,
            )
            return _record(
                options, LOOPBACK_INTERFACE, tls_port, lambda clients: _amqp(tls_plan, clients)
            )


def _amqp_plan(options: LiveOptions, url: str) -> AmqpPlan:
    return AmqpPlan(
        url=url,
        mode=options.mode,
        messages=options.messages,
        per_connection=options.messages_per_connection,
        payload=options.payload,
        properties=options.amqp_properties,
    )


def _mqtt(options: LiveOptions) -> LiveResult:
    """The shared broker in clear; with --tls a Mosquitto of the run's own (live.mqtt)."""
    with contextlib.ExitStack() as stack:
        broker = options.mqtt_broker
        if options.tls != "off":
            broker = stack.enter_context(tls_broker(options.tls))
        check_mqtt_broker(broker)
        plan = _mqtt_plan(options, broker)
        return _record(
            options,
            LOOPBACK_INTERFACE,
            broker_address(broker)[1],
            lambda clients: run_mqtt(plan, clients.append),
        )


def _mqtt_plan(options: LiveOptions, broker: str) -> MqttPlan:
    return MqttPlan(
        broker=broker,
        tls=options.tls,
        keylog=options.keylog_path,
        qos=1 if options.mqtt_qos is None else options.mqtt_qos,
        level=options.mqtt_version,
        messages=options.messages,
        per_connection=options.messages_per_connection,
        payload=options.payload,
    )


def _websocket(options: LiveOptions) -> LiveResult:
    plan = WebSocketPlan(
        messages=options.messages,
        per_connection=options.messages_per_connection,
        payload=options.payload,
    )
    sock = listening_socket(LOOPBACK_ADDRESS)
    try:
        port = sock.getsockname()[1]
        return _record(
            options, LOOPBACK_INTERFACE, port, lambda c: run_websocket(plan, sock, c.append)
        )
    finally:
        sock.close()


def _nats_plan(options: LiveOptions) -> NatsPlan:
    return NatsPlan(
        server=options.nats_server,
        messages=options.messages,
        per_connection=options.messages_per_connection,
        payload=options.payload,
    )


def _http_plan(options: LiveOptions, workdir: Path) -> HttpPlan:
    return HttpPlan(
        protocol=options.protocol,
        tls=options.tls,
        messages=options.messages,
        per_connection=options.messages_per_connection,
        payload=options.payload,
        concurrency=options.concurrency,
        keylog=options.keylog_path,
        workdir=workdir,
        status=options.http_status,
    )


def _amqp(plan: AmqpPlan, clients: list[Endpoint]) -> list[Sent]:
    return run_amqp(plan, clients.append)


def _amqp_relayed(options: LiveOptions, ns: Namespace, clients: list[Endpoint]) -> list[Sent]:
    """pika in the namespace, through a relay on the host's veth address to the broker."""
    params = parameters(options.amqp_url)
    port = int(params.port)
    url = urlunsplit(urlsplit(options.amqp_url)._replace(netloc=_netloc(options.amqp_url, ns)))

    async def relayed() -> tuple[list[Sent], list[Endpoint]]:
        server = await relay((ns.host_address, port), (params.host, port))
        try:
            return await run_client(ns, encode_plan(_amqp_plan(options, url)))
        finally:
            server.close()
            await server.wait_closed()

    sent, recorded = run_in_private_loop(relayed())
    clients += recorded
    return sent


def _netloc(url: str, ns: Namespace) -> str:
    """``url``'s user part with the host replaced by the relay's address."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    where = f"{ns.host_address}:{parts.port or AMQP_PORT}"
    return f"{user}@{where}" if user else where


def _http(
    options: LiveOptions, sock: socket.socket, clients: list[Endpoint], ns: Namespace | None
) -> list[Sent]:
    with tempfile.TemporaryDirectory(prefix="wireprobe-live-") as workdir:
        plan = _http_plan(options, Path(workdir))

        async def in_namespace(url: str) -> list[Sent]:
            assert ns is not None
            sent, _ = await run_client(ns, encode_plan(plan, url))
            return sent

        sent = run_in_private_loop(run_http(plan, sock, in_namespace if ns else None))
    clients += list(dict.fromkeys(message.client for message in sent))
    return sent


def _record(options: LiveOptions, interface: str, port: int, scenario: Scenario) -> LiveResult:
    """Tap, scenario, wait for the closes, stop the tap, write the pcap."""
    recorder = Recorder(interface, port)
    recorder.start()
    clients: list[Endpoint] = []
    try:
        sent = scenario(clients)
        unclosed = recorder.wait_closed(set(clients))
    finally:
        dropped = recorder.stop()
    frames = keep_connections(recorder.frames, port, set(clients))
    write_pcap(options.output, frames)
    return LiveResult(
        options=options,
        pcap=options.output,
        keylog=options.keylog_path,
        sent=tuple(sent),
        clients=tuple(clients),
        expected=expected(options),
        packets=len(frames),
        dropped_packets=dropped,
        unclosed=tuple(sorted(unclosed)),
    )
