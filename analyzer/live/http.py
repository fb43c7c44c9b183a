"""HTTP/1.1 and HTTP/2 between real programs: hypercorn serving, httpx asking.

Both run in one asyncio loop on loopback.  Each message is ``POST /items`` with ``payload`` body
bytes (``GET /items`` for 0) answered by ``200`` with a small JSON body: the same REST call the
generator models (``analyzer.synth.http1``), so the two can be compared.  A new ``httpx`` client,
hence new connections, every ``per_connection`` requests; within a client, requests go in
``asyncio.gather`` batches of ``concurrency`` with at most ``concurrency`` connections (HTTP/1.1
does not pipeline in httpx, so C requests in flight are C connections; HTTP/2 multiplexes them
as C streams on one connection).

TLS: hypercorn with a self-signed certificate from the generator's helper; the client context is
pinned to the asked version and writes the NSS key log (``SSLContext.keylog_filename``).  The
client keeps no session cache, so every connection does a full handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from hypercorn.asyncio import serve
from hypercorn.config import Config

from analyzer.live.plan import MESSAGE_KINDS, Sent, batches, connection_groups
from analyzer.synth.tlswrap import VERSIONS, write_certificate

#: The generator's response body (``analyzer.synth.http1.RESPONSE_BODY``), so sizes compare.
RESPONSE_BODY = b'{"status":"ok"}'
RESPONSE_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"15")]
EMPTY_HEADERS = [(b"content-length", b"0")]
PATH = "/items"
#: A loopback request that takes longer than this is a hung peer, not a slow network.
REQUEST_TIMEOUT_S = 30.0
#: Hypercorn keeps idle connections open at least this long, so only the client closes them.
SERVER_KEEP_ALIVE_S = 60.0
#: Connections the kernel queues before hypercorn accepts them (at most --concurrency at once).
LISTEN_BACKLOG = 1024
#: Seed of the certificate (any fixed value: the generator derives its key from it).
CERTIFICATE_SEED = 6

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def items_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI app: read the whole body, answer 200 with the JSON body."""
    await _answer(200, scope, receive, send)


def app_for(status: int) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The ASGI app answering ``status``: 200 with the JSON body, 202 or 204 with none (a
    notification accepted; the generator's ``http_status``)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await _answer(status, scope, receive, send)

    return app


async def _answer(status: int, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    more = True
    while more:
        event = await receive()
        more = event.get("more_body", False)
    body = RESPONSE_BODY if status == 200 else b""
    # As the generator: a 202 says its empty length, a 204 carries none (RFC 9110 section 8.6).
    headers = RESPONSE_HEADERS if status == 200 else [] if status == 204 else EMPTY_HEADERS
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpPlan:
    """What one HTTP run does."""

    protocol: str
    tls: str
    messages: int
    per_connection: int
    payload: int
    concurrency: int
    keylog: Path | None
    workdir: Path
    #: the status the server answers every request with
    status: int = 200


def listening_socket(host: str) -> socket.socket:
    """A TCP socket bound to a free port of ``host`` (hypercorn takes it over by descriptor)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(LISTEN_BACKLOG)
    return sock


def server_config(sock: socket.socket, plan: HttpPlan) -> Config:
    """Hypercorn's configuration: the given socket, quiet logs, TLS when asked."""
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.keep_alive_timeout = SERVER_KEEP_ALIVE_S
    config.accesslog = None
    config.errorlog = logging.getLogger("wireprobe.live.hypercorn")
    if plan.tls != "off":
        cert, key = write_certificate(CERTIFICATE_SEED, plan.workdir)
        config.certfile, config.keyfile = str(cert), str(key)
    return config


def client_context(plan: HttpPlan) -> ssl.SSLContext | bool:
    """The client's TLS context (pinned version, key log), or False for cleartext."""
    if plan.tls == "off":
        return False
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # The server's certificate is the one this run just made: nothing to verify it against.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = VERSIONS[plan.tls]
    if plan.keylog is not None:
        context.keylog_filename = str(plan.keylog)
    return context


#: The client side, given the server's URL (``drive`` in this process, or a namespaced one).
ClientJob = Callable[[str], Awaitable[list[Sent]]]


async def run_http(
    plan: HttpPlan, sock: socket.socket, client_job: ClientJob | None = None
) -> list[Sent]:
    """Serve on ``sock`` (already listening), run the client, stop the server."""
    host, port = sock.getsockname()
    config = server_config(sock, plan)
    stop = asyncio.Event()
    app: Any = app_for(plan.status)
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))
    scheme = "https" if plan.tls != "off" else "http"
    url = f"{scheme}://{host}:{port}{PATH}"
    client = asyncio.ensure_future(client_job(url) if client_job else drive(plan, url))
    try:
        # The socket listens before hypercorn starts, so the client may connect at once; if the
        # server dies instead, its error is the one to report, not the client's timeout.
        await asyncio.wait({server, client}, return_when=asyncio.FIRST_COMPLETED)
        if server.done() and not client.done():
            client.cancel()
            server.result()
            raise RuntimeError("hypercorn stopped before the client finished")
        return client.result()
    finally:
        client.cancel()
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await server


async def drive(plan: HttpPlan, url: str) -> list[Sent]:
    """The client side: connection groups, gather batches; what was sent."""
    body = b"x" * plan.payload
    sent: list[Sent] = []
    verify = client_context(plan)
    kind = MESSAGE_KINDS[plan.protocol]
    for index, group in enumerate(connection_groups(plan.messages, plan.per_connection)):
        limits = httpx.Limits(
            max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency
        )
        async with httpx.AsyncClient(
            http1=plan.protocol == "http1",
            http2=plan.protocol == "http2",
            verify=verify,
            limits=limits,
            timeout=REQUEST_TIMEOUT_S,
        ) as client:
            for batch in batches(group, plan.concurrency):
                answers = await asyncio.gather(*(_call(client, url, body) for _ in range(batch)))
                sent += [
                    Sent(group=index, kind=kind, payload_bytes=plan.payload, client=c)
                    for c in answers
                ]
    return sent


async def _call(client: httpx.AsyncClient, url: str, body: bytes) -> tuple[str, int]:
    if body:
        response = await client.post(
            url, content=body, headers={"content-type": "application/octet-stream"}
        )
    else:
        response = await client.get(url)
    response.raise_for_status()
    stream = response.extensions["network_stream"]
    client_addr: tuple[str, int] = stream.get_extra_info("client_addr")
    return client_addr
