"""NATS between nats-py and a real nats-server (127.0.0.1:4222 by default).

Each recorded connection subscribes to a subject of its own, publishes ``per_connection``
messages to it and waits until the server has delivered every one back, then drains and closes.
So one connection shows both kinds of NATS message: PUB (``publish``, client to server) and MSG
(``deliver``, server to client), as many of each.  The recorder keeps only the recorded
connections' frames (by client port), so other clients of the server stay out.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from analyzer.errors import UsageError
from analyzer.live.eventloop import run_in_private_loop
from analyzer.live.mqtt import broker_address
from analyzer.live.plan import Sent, connection_groups

#: nats-server's default client port.
NATS_PORT = 4222
DEFAULT_SERVER = f"127.0.0.1:{NATS_PORT}"
#: Start of every subject a live run uses; the rest names the run.
SUBJECT_PREFIX = "wireprobe.live."
#: Every delivery on loopback takes milliseconds; a server silent this long is stuck.
DELIVERY_TIMEOUT_S = 30.0
#: Seconds to wait for the TCP accept and the INFO / CONNECT / PING / PONG exchange.
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class NatsPlan:
    """What one NATS run does."""

    #: "host:port" of nats-server
    server: str
    messages: int
    per_connection: int
    payload: int


def subject_name() -> str:
    """A subject no other run uses (process id and random bits), recognisable as ours."""
    return f"{SUBJECT_PREFIX}{os.getpid()}.{secrets.token_hex(4)}"


async def _connect(server: str) -> Any:
    import nats
    from nats.errors import NoServersError

    host, port = broker_address(server)
    try:
        return await nats.connect(
            f"nats://{host}:{port}",
            connect_timeout=CONNECT_TIMEOUT_S,
            max_reconnect_attempts=0,
            allow_reconnect=False,
        )
    except (NoServersError, OSError) as err:
        raise UsageError(
            f"no NATS server at {host}:{port} ({type(err).__name__}): "
            "start one with `nats-server &`"
        ) from err


def _client_endpoint(client: Any) -> tuple[str, int]:
    # nats-py exposes no accessor; its TCP transport keeps the asyncio writer (nats-py 2.x).
    endpoint: tuple[str, int] = client._transport._io_writer.get_extra_info("sockname")
    return endpoint


async def _one_connection(
    plan: NatsPlan, count: int, on_connect: Callable[[tuple[str, int]], None]
) -> tuple[str, int]:
    client = await _connect(plan.server)
    endpoint = _client_endpoint(client)
    on_connect(endpoint)
    body = b"x" * plan.payload
    delivered = asyncio.Event()
    got = 0

    async def on_message(_message: Any) -> None:
        nonlocal got
        got += 1
        if got == count:
            delivered.set()

    subject = subject_name()
    await client.subscribe(subject, cb=on_message)
    for _ in range(count):
        await client.publish(subject, body)
    await client.flush()
    try:
        await asyncio.wait_for(delivered.wait(), DELIVERY_TIMEOUT_S)
    except TimeoutError as err:
        raise RuntimeError(f"nats-server delivered {got} of {count} messages") from err
    finally:
        await client.drain()
    return endpoint


def run_nats(plan: NatsPlan, on_connect: Callable[[tuple[str, int]], None]) -> list[Sent]:
    """Run the scenario; ``on_connect`` gets each recorded connection's client endpoint."""

    async def scenario() -> list[Sent]:
        sent: list[Sent] = []
        for index, count in enumerate(connection_groups(plan.messages, plan.per_connection)):
            endpoint = await _one_connection(plan, count, on_connect)
            for kind in ("publish", "deliver"):
                sent += [
                    Sent(group=index, kind=kind, payload_bytes=plan.payload, client=endpoint)
                    for _ in range(count)
                ]
        return sent

    return run_in_private_loop(scenario())
