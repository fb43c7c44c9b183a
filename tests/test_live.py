"""``wireprobe capture``: real peers on loopback (or behind a veth pair), recorded and analysed.

These tests run real programs: hypercorn and httpx in this process, pika against the RabbitMQ
broker on 127.0.0.1:5672, an AF_PACKET tap (root), ``ip netns`` for ``--mtu``.  Scenarios are
small so the file stays well under a minute.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
from conftest import analyze_json, check_conservation

import analyzer.live
import analyzer.live.amqp
from analyzer.errors import UsageError
from analyzer.live import LiveOptions, LiveResult, LiveRunError, run_capture
from analyzer.live.netns import leftovers, namespace_for, setup_commands
from analyzer.live.options import DEFAULT_AMQP_URL
from analyzer.live.plan import batches, connection_groups, expected, message_kind
from analyzer.live.recorder import bpf_program, keep_connections, open_connections, tcp_facts
from analyzer.synth import Scenario, generate
from analyzer.tls.keylog import KeyLog

# --- helpers ---------------------------------------------------------------------------------


def capture(tmp_path: Path, **options: Any) -> tuple[LiveResult, dict[str, Any]]:
    """Run a live scenario into ``tmp_path`` and analyse its recording with its key log."""
    result = run_capture(LiveOptions(output=tmp_path / "live.pcap", **options))
    return result, analyse(result.pcap, result.keylog)


def analyse(pcap: Path, keylog: Path | None) -> dict[str, Any]:
    keys = KeyLog()
    if keylog is not None:
        keys.load(str(keylog))
    return analyze_json([pcap], keylog=keys)


def assert_as_asked(result: LiveResult, analysis: dict[str, Any]) -> None:
    """The analysis shows what the scenario asked for, and the recording is whole."""
    want = result.expected
    protocol = result.options.protocol
    assert list(analysis["summary"]) == [protocol]
    summary = analysis["summary"][protocol]
    assert summary["connections"] == want.connections
    assert summary["messages"] == want.messages
    assert summary["tcp_handshakes"] == want.tcp_handshakes
    assert summary["tls_full_handshakes"] == want.tls_full_handshakes
    assert summary["tls_resumed_handshakes"] == want.tls_resumed_handshakes
    kinds = {m["kind"] for m in analysis["messages"]}
    assert kinds == {message_kind(result.options)}
    for conn in analysis["connections"]:
        assert conn["undecoded_bytes"] == 0, conn
        assert conn["anomalies"] == [], conn
        if result.options.tls != "off":
            assert conn["tls"]["decrypted"] and conn["tls"]["version"] == result.options.tls
    check_conservation(analysis)
    assert len(result.sent) == result.options.messages
    assert {sent.kind for sent in result.sent} == kinds
    assert len(result.clients) == want.connections
    assert result.dropped_packets == 0
    assert result.unclosed == ()
    assert_nothing_left(result)


def assert_nothing_left(result: LiveResult | None = None) -> None:
    """No tap thread, no client process, no namespace; the server port closed."""
    assert not [t for t in threading.enumerate() if t.name == "wireprobe-tap"]
    assert not client_processes()
    assert leftovers(namespace_for(os.getpid(), 1500)) == []
    if result is not None and result.options.protocol != "amqp" and result.options.mtu is None:
        with pytest.raises(OSError):  # hypercorn stopped: nothing listens on its port
            socket.create_connection(("127.0.0.1", server_port(result)), timeout=1).close()


def server_port(result: LiveResult) -> int:
    facts = tcp_facts(Path(result.pcap).read_bytes()[24 + 16 :])
    assert facts is not None
    return facts.dst[1]


def client_processes() -> list[str]:
    """Client processes (``--mtu``) this process started that still exist.

    Only children of this process count: other runs of this file may be going on at once.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, not ")".
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if b"analyzer.live.client" in cmdline and ppid == os.getpid():
                found.append(entry.name)
    return found


def queue_exists(name: str) -> bool:
    connection = pika.BlockingConnection(pika.URLParameters(DEFAULT_AMQP_URL))
    try:
        connection.channel().queue_declare(name, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker as err:
        assert err.reply_code == 404
        return False
    finally:
        if connection.is_open:
            connection.close()


# --- the plan and the options, without sockets --------------------------------------------


def test_groups_and_batches_split_the_messages() -> None:
    assert connection_groups(5, 2) == [2, 2, 1]
    assert connection_groups(4, 4) == [4]
    assert batches(7, 3) == [3, 3, 1]


def test_expected_counts_follow_reuse_and_concurrency() -> None:
    # HTTP/1.1 does not multiplex: 2 requests in flight are 2 connections per client.
    h1 = expected(LiveOptions(protocol="http1", messages=5, per_connection=3, concurrency=2))
    assert (h1.connections, h1.tls_full_handshakes) == (4, 0)
    h2 = expected(LiveOptions(protocol="http2", tls="1.3", messages=5, concurrency=4))
    assert (h2.connections, h2.tls_full_handshakes, h2.tls_resumed_handshakes) == (1, 1, 0)
    amqp = expected(LiveOptions(protocol="amqp", messages=5, per_connection=1))
    assert (amqp.connections, amqp.messages) == (5, 5)


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"protocol": "smtp"}, "--protocol"),
        ({"tls": "1.1"}, "--tls"),
        ({"messages": 0}, "--messages"),
        ({"per_connection": 0}, "--per-connection"),
        ({"protocol": "amqp", "concurrency": 4}, "--concurrency"),
        ({"amqp_mode": "publish"}, "--amqp-mode"),
        ({"protocol": "amqp", "amqp_mode": "confirm-async"}, "--amqp-mode"),
        ({"protocol": "amqp", "tls": "1.3", "mtu": 1500}, "TLS terminator"),
        ({"mtu": 9000}, "--mtu"),
        ({"keylog": Path("k.keys")}, "--keylog"),
    ],
)
def test_bad_options_are_one_line_usage_errors(options: dict[str, Any], complaint: str) -> None:
    with pytest.raises(UsageError) as caught:
        run_capture(LiveOptions(**options))
    assert complaint in str(caught.value)
    assert "\n" not in str(caught.value)


# --- the recorder's pure parts, on generated frames ----------------------------------------


def test_recorder_sees_a_connection_open_until_its_last_ack() -> None:
    generated = generate(Scenario(protocol="http1", messages=2, per_connection=1))
    frames = [(ts, data, len(data)) for ts, data in generated.frames]
    server = tcp_facts(frames[0][1])
    assert server is not None and server.flags & 0x02  # a SYN to the server
    port = server.dst[1]
    assert open_connections(frames, port) == set()
    clients = {tcp_facts(f[1]).src for f in frames if tcp_facts(f[1]).dst[1] == port}  # type: ignore[union-attr]
    assert len(clients) == 2
    # Without the last frame (the final ACK of the second close), that connection is open.
    assert len(open_connections(frames[:-1], port)) == 1
    # A client that was asked for and never seen is open too.
    assert ("198.18.0.1", 1) in open_connections(frames, port, {("198.18.0.1", 1)})
    one = next(iter(clients))
    kept = keep_connections(frames, port, {one})
    assert kept and all(one in (tcp_facts(f[1]).src, tcp_facts(f[1]).dst) for f in kept)  # type: ignore[union-attr]


def test_kernel_filter_matches_the_port_in_both_directions() -> None:
    program = bpf_program(8443)
    assert [k for code, _, _, k in program if code == 0x15][2:] == [8443, 8443]
    assert program[-1] == (0x6, 0, 0, 0)  # anything else: dropped in the kernel


def test_namespace_plan_uses_the_benchmark_range_and_short_names() -> None:
    ns = namespace_for(4_194_303, 1500)
    assert ns.host_address.startswith("198.1") and ns.ns_address.startswith("198.1")
    assert len(ns.host_interface) <= 15 and len(ns.ns_interface) <= 15
    assert ["ip", "netns", "add", ns.name] == setup_commands(ns)[0]


# --- live scenarios: what was asked is what the analysis shows -----------------------------

LIVE_SCENARIOS: dict[str, dict[str, Any]] = {
    "http1-keepalive": {"protocol": "http1", "messages": 4, "per_connection": 2},
    "http1-tls13-new-conn": {"protocol": "http1", "tls": "1.3", "messages": 3, "per_connection": 1},
    "http1-tls12-two-in-flight": {
        "protocol": "http1",
        "tls": "1.2",
        "messages": 4,
        "concurrency": 2,
    },
    "http2-multiplexed": {"protocol": "http2", "messages": 6, "concurrency": 3},
    "http2-tls13-new-conn": {"protocol": "http2", "tls": "1.3", "messages": 2, "per_connection": 1},
    "http2-tls12-reuse": {
        "protocol": "http2",
        "tls": "1.2",
        "messages": 4,
        "per_connection": 2,
        "concurrency": 2,
    },
    "amqp-publish": {"protocol": "amqp", "amqp_mode": "publish", "messages": 4},
    "amqp-confirm-new-conn": {
        "protocol": "amqp",
        "amqp_mode": "confirm",
        "messages": 3,
        "per_connection": 1,
    },
    "amqp-consume": {
        "protocol": "amqp",
        "amqp_mode": "consume",
        "messages": 4,
        "per_connection": 2,
    },
    # AMQP over TLS: the broker behind the run's TLS terminator (analyzer.live.tlsrelay).
    "amqp-tls13-confirm": {
        "protocol": "amqp",
        "tls": "1.3",
        "amqp_mode": "confirm",
        "messages": 4,
        "per_connection": 2,
    },
    "amqp-tls12-consume": {"protocol": "amqp", "tls": "1.2", "amqp_mode": "consume", "messages": 3},
}


@pytest.mark.parametrize("name", sorted(LIVE_SCENARIOS))
def test_live_recording_shows_what_was_asked(tmp_path: Path, name: str) -> None:
    result, analysis = capture(tmp_path, **LIVE_SCENARIOS[name])
    assert_as_asked(result, analysis)
    if result.options.protocol == "amqp":
        assert not queue_exists(result.sent[0].queue or "")


#: An Ethernet frame of a 1500-byte IP packet.
ETHERNET_FRAME_BYTES = 1514


@pytest.mark.parametrize(
    "options",
    [
        {"protocol": "http1", "tls": "1.3", "messages": 2, "per_connection": 1, "payload": 5000},
        {"protocol": "amqp", "amqp_mode": "consume", "messages": 2, "payload": 4000},
    ],
    ids=["http1-tls13", "amqp-consume"],
)
def test_mtu_1500_gives_ethernet_sized_segments(tmp_path: Path, options: dict[str, Any]) -> None:
    result, analysis = capture(tmp_path, mtu=1500, **options)
    assert_as_asked(result, analysis)
    assert all(client[0].startswith("198.1") for client in result.clients)
    sizes = [c["wire_bytes"] for c in analysis["connections"]]
    assert all(size > options["payload"] for size in sizes)
    frames = frame_lengths(result.pcap)
    # Bodies of 4000+ bytes had to be cut into several full-sized segments.
    assert max(frames) == ETHERNET_FRAME_BYTES
    assert sum(1 for n in frames if n == ETHERNET_FRAME_BYTES) >= 2 * options["messages"]


def frame_lengths(pcap: Path) -> list[int]:
    data = pcap.read_bytes()
    at, lengths = 24, []
    while at < len(data):
        captured = int.from_bytes(data[at + 8 : at + 12], "little")
        lengths.append(int.from_bytes(data[at + 12 : at + 16], "little"))
        at += 16 + captured
    return lengths


# --- live against synthetic ----------------------------------------------------------------

#: Linux puts the RFC 7323 timestamp option (10 bytes + 2 NOPs) in every segment; the generator's
#: segments carry no options after the SYN.
TCP_TIMESTAMP_OPTION_BYTES = 12
#: A pure ACK on Ethernet with timestamps: 14 + 20 + 32 bytes.
PURE_ACK_WIRE_BYTES = 66
#: Segments per message the live peers may send beyond the generator's, each one at most a pure
#: ACK's header bytes: httpx (h11) and hypercorn write a message's head and body separately (one
#: more segment each way), and Linux ACKs every segment in quick-ack mode where the generator
#: models delayed ACKs (RFC 9293 section 3.8.6.3: at most every second segment), one more pure
#: ACK per data segment of a 3000-byte body.  Counted in the other direction too: the live
#: broker acknowledges some publishes in the same segment as its Basic.Ack.
EXTRA_SEGMENTS_PER_MESSAGE = 8
#: HTTP header bytes per message the live peers and the generator may differ by.  HTTP/1.1: the
#: generator sends httpx's and hypercorn's header set at their sizes (analyzer.synth.http1), so
#: only the values differ (the Host's address and port, the date; measured: 5 bytes).  HTTP/2:
#: httpx adds accept, accept-encoding and its user-agent, hypercorn date and server, which the
#: generator leaves out; HPACK's dynamic table makes the repeats cost about 22 bytes.
HTTP_HEADER_SLACK_BYTES = {"http1": 16, "http2": 60}
#: The generator's queue (analyzer.synth.amqp.QUEUE): Basic.Publish carries it as routing key.
SYNTH_QUEUE = "synth"

#: Bytes a TLS record adds: 5 of header and a 16-byte AEAD tag, plus the inner content type in
#: TLS 1.3 (RFC 8446 section 5.2) or the 8-byte explicit nonce of TLS 1.2 AES-GCM (RFC 5288
#: section 3; hypercorn offers only ECDHE+AESGCM suites).
TLS_RECORD_OVERHEAD_BYTES = {"1.3": 22, "1.2": 29}
#: Records per message the live peers write beyond the generator's: h11 sends a message's head
#: and body in two calls (one more record each way), and the h2 stacks put every frame in its
#: own record where the generator seals a flight's frames together (measured: 4.7 more).
EXTRA_TLS_RECORDS_PER_MESSAGE = {"http1": 2, "http2": 5}

COMPARED: dict[str, dict[str, Any]] = {
    "http1": {"protocol": "http1", "messages": 4, "per_connection": 2, "payload": 3000},
    "http1-tls13": {
        "protocol": "http1",
        "tls": "1.3",
        "messages": 4,
        "per_connection": 2,
        "payload": 3000,
    },
    "http2-tls12": {
        "protocol": "http2",
        "tls": "1.2",
        "messages": 6,
        "concurrency": 3,
        "payload": 3000,
    },
    "http2": {"protocol": "http2", "messages": 6, "concurrency": 3, "payload": 3000},
    "amqp-confirm": {"protocol": "amqp", "amqp_mode": "confirm", "messages": 4, "payload": 3000},
    "amqp-publish": {"protocol": "amqp", "amqp_mode": "publish", "messages": 4, "payload": 300},
}


def per_message(analysis: dict[str, Any], layer: str) -> float:
    messages = analysis["messages"]
    return float(sum(m["layers"][layer] for m in messages) / len(messages))


@pytest.mark.parametrize("name", sorted(COMPARED))
def test_live_agrees_with_the_generator(tmp_path: Path, name: str) -> None:
    options = COMPARED[name]
    live_result, live = capture(tmp_path, mtu=1500, **options)
    generated = generate(Scenario(mtu=1500, **options))
    keys = tmp_path / "synth.keys" if generated.keylog else None
    generated.write(tmp_path / "synth.pcap", keys)
    synth = analyse(tmp_path / "synth.pcap", keys)
    protocol = str(options["protocol"])
    tls = str(options.get("tls", "off"))

    # Counts agree exactly.
    counts = ("connections", "messages", "tcp_handshakes", "tls_full_handshakes")
    for field in counts:
        assert live["summary"][protocol][field] == synth["summary"][protocol][field], field
    # A busy machine makes even loopback retransmit now and then (a tail loss probe, RFC 8985
    # section 7); retransmitted bytes are charged like the original (DESIGN.md section 3), so
    # they are the only slack allowed in the exact comparisons below.
    messages = len(live["messages"])
    resent = sum(c["retransmitted_bytes"] for c in live["connections"]) / messages
    # Bodies are the same bytes on both sides.
    payload_gap = per_message(live, "payload") - per_message(synth, "payload")
    assert 0 <= payload_gap <= resent

    # Framing: AMQP sends the same frames; only the routing key (the queue's name) differs.
    framing_gap = per_message(live, "framing") - per_message(synth, "framing")
    if protocol == "amqp":
        queue = live_result.sent[0].queue or ""
        assert 0 <= framing_gap - (len(queue) - len(SYNTH_QUEUE)) <= resent
    elif protocol == "http1":
        assert abs(framing_gap) <= HTTP_HEADER_SLACK_BYTES[protocol] + resent, framing_gap
    else:
        assert 0 <= framing_gap <= HTTP_HEADER_SLACK_BYTES[protocol] + resent

    # TLS: the same suite and version; the live peers cut their bytes into more records.
    tls_gap = per_message(live, "tls") - per_message(synth, "tls")
    if tls == "off":
        assert per_message(live, "tls") == per_message(synth, "tls") == 0
    else:
        extra = EXTRA_TLS_RECORDS_PER_MESSAGE[protocol] * TLS_RECORD_OVERHEAD_BYTES[tls]
        assert 0 <= tls_gap <= extra + resent, (tls_gap, extra)

    # Headers below: the same segments give the same bytes but for the timestamp option; the
    # live stacks may send a bounded number of segments more (or fewer) per message.
    headers = ("link", "ip", "tcp")
    live_l234 = sum(per_message(live, layer) for layer in headers)
    synth_l234 = sum(per_message(synth, layer) for layer in headers)
    live_segments = per_message(live, "link") / 14
    allowed = (
        live_segments * TCP_TIMESTAMP_OPTION_BYTES
        + EXTRA_SEGMENTS_PER_MESSAGE * PURE_ACK_WIRE_BYTES
        + resent  # a retransmitted segment's headers come with its bytes
    )
    assert abs(live_l234 - synth_l234) <= allowed, (live_l234, synth_l234, allowed)


# --- nothing is left behind, even when the run fails ---------------------------------------


def test_no_broker_is_a_usage_error_that_says_how_to_start_one(tmp_path: Path) -> None:
    options = LiveOptions(
        protocol="amqp", amqp_url="amqp://guest:guest@127.0.0.1:1/", output=tmp_path / "x.pcap"
    )
    with pytest.raises(UsageError, match="rabbitmq-server -detached"):
        run_capture(options)
    assert not (tmp_path / "x.pcap").exists()
    assert_nothing_left()


def test_failed_amqp_run_deletes_its_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names: list[str] = []
    real_name = analyzer.live.amqp.queue_name

    def recorded_name() -> str:
        names.append(real_name())
        return names[-1]

    def broken(*_: object) -> None:
        assert queue_exists(names[0])  # the queue was there while the run ran
        raise RuntimeError("client crashed")

    monkeypatch.setattr(analyzer.live.amqp, "queue_name", recorded_name)
    monkeypatch.setattr(analyzer.live.amqp, "_one_connection", broken)
    with pytest.raises(LiveRunError, match="client crashed"):
        run_capture(LiveOptions(protocol="amqp", messages=2, output=tmp_path / "x.pcap"))
    assert names and not queue_exists(names[0])
    assert_nothing_left()


def test_interrupted_namespace_run_removes_namespace_and_interfaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []

    async def interrupted(*_: object) -> None:
        seen.append(leftovers(namespace_for(os.getpid(), 1500)))
        raise KeyboardInterrupt

    monkeypatch.setattr(analyzer.live, "run_client", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_capture(LiveOptions(protocol="http1", mtu=1500, output=tmp_path / "x.pcap"))
    assert len(seen) == 1 and len(seen[0]) == 2  # namespace and interface existed during the run
    assert_nothing_left()


def test_without_capture_privilege_the_run_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_socket = socket.socket

    def refused(family: int = socket.AF_INET, *args: Any) -> socket.socket:
        if family == socket.AF_PACKET:  # what an unprivileged user gets (packet(7))
            raise PermissionError(1, "Operation not permitted")
        return real_socket(family, *args)

    monkeypatch.setattr(socket, "socket", refused)
    with pytest.raises(UsageError, match="no privilege to capture"):
        run_capture(LiveOptions(protocol="http1", output=tmp_path / "x.pcap"))
    monkeypatch.undo()
    assert not (tmp_path / "x.pcap").exists()
    assert_nothing_left()


def test_other_clients_of_the_broker_stay_out_of_the_recording(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone else talks to the broker during the run: the tap keeps only our connections."""
    stranger = socket.create_connection(("127.0.0.1", 5672), timeout=5)
    host, port = stranger.getsockname()
    stranger_end = f"{host}:{port}"
    real_one_connection = analyzer.live.amqp._one_connection

    def with_stranger(*args: Any) -> None:
        stranger.sendall(b"AMQP\x00\x00\x09\x01")  # the broker answers with Connection.Start
        assert stranger.recv(7)
        real_one_connection(*args)

    monkeypatch.setattr(analyzer.live.amqp, "_one_connection", with_stranger)
    try:
        result, analysis = capture(tmp_path, protocol="amqp", amqp_mode="publish", messages=2)
    finally:
        stranger.close()
    assert_as_asked(result, analysis)
    ours = {f"{host}:{port}" for host, port in result.clients}
    assert {conn["orig"] for conn in analysis["connections"]} == ours
    assert stranger_end not in ours
