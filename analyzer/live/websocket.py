"""WebSocket echo between the ``websockets`` client and server on loopback.

The server (``websockets.asyncio.server``) listens on a free port and echoes every message; each
recorded connection does what the generator models (``analyzer.synth.websocket``): the Upgrade,
``per_connection`` binary messages of ``payload`` bytes, each sent once the previous echo came
back, and a close (1000) from the client.  permessage-deflate is off on both ends, as in the
generator, so payload bytes are the same on both.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from analyzer.live.eventloop import run_in_private_loop
from analyzer.live.plan import Sent, connection_groups

#: The generator's request target (analyzer.synth.websocket).
PATH = "/echo"
#: An echo on loopback takes milliseconds; longer means a peer is stuck.
ECHO_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSocketPlan:
    """What one WebSocket run does."""

    messages: int
    per_connection: int
    payload: int


async def _echo(connection: Any) -> None:
    async for message in connection:
        await connection.send(message)


async def _one_connection(
    url: str, count: int, body: bytes, on_connect: Callable[[tuple[str, int]], None]
) -> tuple[str, int]:
    from websockets.asyncio.client import connect

    async with connect(url, compression=None, open_timeout=ECHO_TIMEOUT_S) as client:
        endpoint: tuple[str, int] = client.local_address[:2]
        on_connect(endpoint)
        for _ in range(count):
            await client.send(body)
            echoed = await asyncio.wait_for(client.recv(), ECHO_TIMEOUT_S)
            if echoed != body:
                raise RuntimeError("the WebSocket server echoed something else")
    return endpoint


def run_websocket(
    plan: WebSocketPlan, sock: socket.socket, on_connect: Callable[[tuple[str, int]], None]
) -> list[Sent]:
    """Serve on ``sock`` and run the scenario against it; one Sent per message each way."""
    from websockets.asyncio.server import serve

    host, port = sock.getsockname()[:2]
    url = f"ws://{host}:{port}{PATH}"
    body = b"x" * plan.payload

    async def scenario() -> list[Sent]:
        sent: list[Sent] = []
        async with serve(_echo, sock=sock, compression=None):
            for index, count in enumerate(connection_groups(plan.messages, plan.per_connection)):
                endpoint = await _one_connection(url, count, body, on_connect)
                sent += [
                    Sent(group=index, kind=kind, payload_bytes=plan.payload, client=endpoint)
                    for _ in range(count)
                    for kind in ("client_to_server", "server_to_client")
                ]
        return sent

    return run_in_private_loop(scenario())
