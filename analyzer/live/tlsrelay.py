"""A TLS terminator in front of the broker: AMQP over TLS without touching RabbitMQ's config.

What stunnel or a load balancer does in production: accept TLS on a port of its own, and relay
each connection's plaintext to the broker's cleartext listener.  The recorder taps the TLS side
only (by the terminator's port), so the capture holds exactly what a client of a TLS broker
sends and receives; the client's key log (``SSLContext.keylog_filename``) lets the analyzer
decrypt it.  The relay's own connection to the broker is on the broker's port and stays out of
the capture.  Everything runs in one thread with its own asyncio loop, stopped on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

from analyzer.synth.tlswrap import VERSIONS, write_certificate

LISTEN_ADDRESS = "127.0.0.1"
#: Bytes read at once on either side; one AMQP frame_max (128 KiB) takes two reads at most.
RELAY_CHUNK_BYTES = 65536
#: The terminator starts in milliseconds; a second is a failure to report.
START_TIMEOUT_S = 5.0
#: Connections are closed by then (the recorder waited for their FINs); this only bounds a hang.
STOP_TIMEOUT_S = 5.0
#: Seed of the terminator's certificate (any fixed value; the client does not verify it).
CERTIFICATE_SEED = 5671


def server_context(tls: str, workdir: Path) -> ssl.SSLContext:
    """The terminator's TLS context: a fresh self-signed certificate, the version pinned."""
    cert, key = write_certificate(CERTIFICATE_SEED, workdir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.minimum_version = context.maximum_version = VERSIONS[tls]
    return context


def client_context(tls: str, keylog: Path | None) -> ssl.SSLContext:
    """The client's context: the version pinned, the NSS key log written, no verification (the
    certificate is the one this run just made)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = VERSIONS[tls]
    if keylog is not None:
        context.keylog_filename = str(keylog)
    return context


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then close the other side (AMQP closes with Connection.Close
    and its OK before TCP closes, so no half-closed state needs to be kept)."""
    try:
        while data := await reader.read(RELAY_CHUNK_BYTES):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass  # the peer went away; closing the other side tells its partner
    finally:
        with contextlib.suppress(ConnectionError, ssl.SSLError, RuntimeError):
            writer.close()


class _Terminator:
    def __init__(self, context: ssl.SSLContext, upstream: tuple[str, int]) -> None:
        self.context, self.upstream = context, upstream
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.stop: asyncio.Event | None = None
        self.failure: BaseException | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def serve(self) -> None:
        self.stop = asyncio.Event()
        server = await asyncio.start_server(self.handle, LISTEN_ADDRESS, 0, ssl=self.context)
        self.port = int(server.sockets[0].getsockname()[1])
        self.ready.set()
        async with server:
            await self.stop.wait()

    def run(self) -> None:
        try:
            self.loop.run_until_complete(self.serve())
        except BaseException as err:  # reported to the caller's thread by ``tls_terminator``
            self.failure = err
            self.ready.set()


@contextlib.contextmanager
def tls_terminator(context: ssl.SSLContext, upstream: tuple[str, int]) -> Iterator[int]:
    """Accept TLS on a free loopback port and relay to ``upstream``; yields the port."""
    terminator = _Terminator(context, upstream)
    thread = threading.Thread(target=terminator.run, name="wireprobe-tls-terminator", daemon=True)
    thread.start()
    if not terminator.ready.wait(START_TIMEOUT_S) or terminator.failure is not None:
        raise RuntimeError(f"the TLS terminator did not start: {terminator.failure}")
    try:
        yield terminator.port
    finally:
        if terminator.stop is not None:
            terminator.loop.call_soon_threadsafe(terminator.stop.set)
        thread.join(STOP_TIMEOUT_S)
        if not thread.is_alive():
            terminator.loop.close()
