"""HTTP/1.1 conversations from h11 on both ends.

Each message is one exchange (DESIGN.md section 2): ``POST /items`` carrying ``payload`` body
bytes (``GET /items`` when the payload is 0), answered by ``200 OK`` with a small JSON body, the
shape of a REST call.  ``concurrency`` C pipelines C requests in one flight (RFC 9112 section
9.3.2); the server answers them in order in one flight.

h11's client role refuses to send a request before the previous response (it does not
pipeline), so each request is serialised by its own client-role connection, which also parses
its response; the server role parses the pipelined stream as a real server would.
"""

from __future__ import annotations

import h11

from analyzer.decoding.events import FRAMING, ORIG, PAYLOAD, RESP
from analyzer.synth.conversation import Chunk, Conversation, Flight, MessageInfo

HOST = b"synth.wireprobe.test"
RESPONSE_BODY = b'{"status":"ok"}'
#: The header set (and sizes) real peers send, so live and generated runs compare (issue 14):
#: httpx's defaults, its user agent's length with the generator's name (19 bytes, as
#: ``python-httpx/0.29.0``), and hypercorn's ``date`` and ``server``.  An IMF-fixdate is
#: always 29 bytes (RFC 9110 section 5.6.7); the generator's clock starts on 2026-01-01.
CLIENT_HEADERS = [
    (b"Host", HOST),
    (b"Accept", b"*/*"),
    (b"Accept-Encoding", b"gzip, deflate"),
    (b"Connection", b"keep-alive"),
    (b"User-Agent", b"wireprobe-synth/1.0"),
]
SERVER_HEADERS = [(b"date", b"Thu, 01 Jan 2026 00:00:00 GMT"), (b"server", b"wireprobe-h11")]
#: hypercorn (h11) sends an empty reason phrase, which RFC 9112 section 4 allows.
REASON = b""


def response_headers(status: int, body: bytes) -> list[tuple[bytes, bytes]]:
    """A JSON body's headers; a 202 says its empty length, a 204 has no length at all
    (RFC 9110 section 8.6: a server must not send Content-Length in a 204)."""
    if status == 204:
        return list(SERVER_HEADERS)
    return [
        *([(b"content-type", b"application/json")] if body else []),
        (b"content-length", str(len(body)).encode()),
        *SERVER_HEADERS,
    ]


def conversation(
    n_messages: int, payload: bytes, concurrency: int, status: int = 200
) -> Conversation:
    """``n_messages`` exchanges on one keep-alive connection, ``concurrency`` at a time, each
    answered with ``status`` (200 with ``RESPONSE_BODY``; 202 or 204 with no body)."""
    server = h11.Connection(h11.SERVER)
    flights: list[Flight] = []
    for first in range(0, n_messages, concurrency):
        batch = range(first, min(first + concurrency, n_messages))
        clients = {m: h11.Connection(h11.CLIENT) for m in batch}
        requests = [chunk for m in batch for chunk in _request(clients[m], m, payload)]
        flights.append(Flight(direction=ORIG, chunks=tuple(requests)))
        server.receive_data(b"".join(c.data for c in requests))
        responses = [chunk for m in batch for chunk in _respond(server, m, status)]
        for m in batch:
            _check_response(clients[m], [c.data for c in responses if c.owner == m], status)
        flights.append(Flight(direction=RESP, chunks=tuple(responses)))
    messages = tuple(
        MessageInfo(sender=ORIG, kind="exchange", answered=True) for _ in range(n_messages)
    )
    return Conversation(protocol="http1", flights=tuple(flights), messages=messages, alpn=None)


def _request(client: h11.Connection, message: int, payload: bytes) -> list[Chunk]:
    headers = list(CLIENT_HEADERS)
    if payload:
        headers += [(b"content-type", b"application/octet-stream")]
        headers += [(b"Content-Length", str(len(payload)).encode())]
    method = b"POST" if payload else b"GET"
    head = client.send(h11.Request(method=method, target=b"/items", headers=headers))
    body = client.send(h11.Data(data=payload)) if payload else b""
    tail = client.send(h11.EndOfMessage())
    return _labelled(message, head or b"", body or b"", tail or b"", starts=True)


def _respond(server: h11.Connection, message: int, status: int) -> list[Chunk]:
    """Parse the next request from the server's buffer and answer it."""
    while True:
        event = server.next_event()
        if isinstance(event, h11.EndOfMessage):
            break
        if event is h11.NEED_DATA:
            raise AssertionError("the server did not get a whole request")
    body_bytes = RESPONSE_BODY if status == 200 else b""
    headers = response_headers(status, body_bytes)
    head = server.send(h11.Response(status_code=status, headers=headers, reason=REASON))
    body = server.send(h11.Data(data=body_bytes)) if body_bytes else b""
    tail = server.send(h11.EndOfMessage())
    server.start_next_cycle()
    return _labelled(message, head or b"", body or b"", tail or b"", starts=False)


def _labelled(message: int, head: bytes, body: bytes, tail: bytes, *, starts: bool) -> list[Chunk]:
    first = Chunk(
        data=head,
        owner=message,
        layer=FRAMING,
        starts=(message,) if starts else (),
        answers=() if starts else (message,),
    )
    # One write per request or response, head and body together, as http.client does for a
    # bytes body (to avoid the Nagle/delayed-ACK stall).
    chunks = [first]
    if body:
        chunks.append(Chunk(data=body, owner=message, layer=PAYLOAD, joined=True))
    if tail:  # chunked encoding's last chunk; Content-Length bodies have none
        chunks.append(Chunk(data=tail, owner=message, layer=FRAMING, joined=True))
    return chunks


def _check_response(client: h11.Connection, pieces: list[bytes], status: int) -> None:
    client.receive_data(b"".join(pieces))
    events = []
    while (event := client.next_event()) is not h11.NEED_DATA:
        events.append(event)
        if isinstance(event, h11.EndOfMessage):
            break
    if not any(isinstance(e, h11.Response) and e.status_code == status for e in events):
        raise AssertionError(f"client did not parse a {status} response: {events}")
