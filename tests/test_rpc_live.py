"""A real AMQP RPC through RabbitMQ (pika, on 127.0.0.1:5672), recorded and assembled by
correlation id: every call answered and complete, its four legs on two connections.

The caller and the worker are two pika connections in this process, as in RabbitMQ's tutorial 6;
the recording is an AF_PACKET tap on loopback (root), like the other live tests.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pika
import pytest
from conftest import analyze_json, check_conservation

from analyzer.live.recorder import LOOPBACK_INTERFACE, Recorder, write_pcap

CALLS = 5
BROKER = pika.ConnectionParameters(
    "127.0.0.1", 5672, credentials=pika.PlainCredentials("guest", "guest")
)


def _worker(queue: str, ready: threading.Event, served: list[int]) -> None:
    """Answer ``CALLS`` requests from ``queue``, each to its reply_to with its correlation id."""
    connection = pika.BlockingConnection(BROKER)
    channel = connection.channel()
    channel.queue_declare(queue, exclusive=False, auto_delete=True)

    def on_request(ch: Any, method: Any, props: Any, body: bytes) -> None:
        answer = pika.BasicProperties(correlation_id=props.correlation_id)
        ch.basic_publish("", props.reply_to, b"reply to " + body, answer)
        ch.basic_ack(method.delivery_tag)
        served.append(1)
        if len(served) == CALLS:
            ch.stop_consuming()

    channel.basic_consume(queue, on_request)
    ready.set()
    channel.start_consuming()
    connection.close()


def _call(queue: str, direct_reply_to: bool) -> list[str]:
    """Make ``CALLS`` calls one after another, each waiting for its reply; their ids."""
    connection = pika.BlockingConnection(BROKER)
    channel = connection.channel()
    if direct_reply_to:
        reply_to = "amq.rabbitmq.reply-to"  # RabbitMQ's pseudo-queue: no queue declared
    else:
        reply_to = channel.queue_declare("", exclusive=True).method.queue
    replies: dict[str, bytes] = {}

    def on_reply(_ch: Any, _method: Any, props: Any, body: bytes) -> None:
        replies[props.correlation_id] = body

    channel.basic_consume(reply_to, on_reply, auto_ack=True)
    ids = []
    for n in range(CALLS):
        correlation = str(uuid.uuid4())
        ids.append(correlation)
        props = pika.BasicProperties(reply_to=reply_to, correlation_id=correlation)
        channel.basic_publish("", queue, f"call {n}".encode(), props)
        while correlation not in replies:
            connection.process_data_events(time_limit=1)
    connection.close()
    return ids


def _record_rpc(tmp_path: Path, direct_reply_to: bool) -> tuple[Path, list[str]]:
    queue = f"wireprobe-rpc-{uuid.uuid4().hex[:8]}"
    recorder = Recorder(LOOPBACK_INTERFACE, 5672)
    recorder.start()
    try:
        ready, served = threading.Event(), []
        worker = threading.Thread(target=_worker, args=(queue, ready, served), daemon=True)
        worker.start()
        assert ready.wait(30)
        ids = _call(queue, direct_reply_to)
        worker.join(30)
        recorder.wait_closed(None)
    finally:
        recorder.stop()
    pcap = tmp_path / "rpc.pcap"
    write_pcap(pcap, recorder.frames)
    return pcap, ids


@pytest.mark.parametrize("direct_reply_to", [False, True], ids=["reply-queue", "direct-reply-to"])
def test_a_real_rpc_is_assembled_from_the_wire(tmp_path: Path, direct_reply_to: bool) -> None:
    pcap, ids = _record_rpc(tmp_path, direct_reply_to)
    result = analyze_json([pcap])
    check_conservation(result)
    rpc = result["summary"]["amqp"]["rpc"]
    assert (rpc["calls"], rpc["answered"], rpc["complete"]) == (CALLS, CALLS, CALLS), rpc
    assert (rpc["unanswered"], rpc["replies_without_call"], rpc["evicted"]) == (0, 0, 0)
    assert 0 < rpc["latency"]["min"] <= rpc["latency"]["max"] < 30
    assert rpc["latency_last_byte"]["min"] >= rpc["latency"]["min"]
    seen = {m["detail"].get("correlation_id") for m in result["messages"]} - {None}
    assert seen == set(ids)
    # Every leg is a message of one of the two connections, and the legs add up.
    messages = [m for m in result["messages"] if m["detail"].get("correlation_id") in ids]
    assert len(messages) == 4 * CALLS
    assert len({m["connection"] for m in messages}) == 2
    total = sum(m["marginal_bytes"] for m in messages) / CALLS
    assert rpc["end_to_end"]["marginal_bytes_per_call"] == pytest.approx(total)
