"""HTTP/2 conversations from h2 on both ends (RFC 9113).

Each message is one stream: ``POST /items`` with ``payload`` body bytes (``GET`` for 0), answered
by ``200`` with a small JSON body.  ``concurrency`` C opens C streams at once and waits for all
their responses before the next batch.  Flow control is the default one (65 535-byte windows,
RFC 9113 section 6.9.2): a large body waits for the server's WINDOW_UPDATEs, as it would on a real
connection whose server keeps the defaults.  Labels (DESIGN.md sections 2-3): the preface, the
first SETTINGS of each side and their ACKs are setup; WINDOW_UPDATE, PING and later SETTINGS
control; GOAWAY teardown; HEADERS and DATA belong to their stream's message, frame headers and
HPACK blocks as framing, DATA payload as payload.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import h2.config
import h2.connection
import h2.events

from analyzer.decoding.events import CONTROL, FRAMING, ORIG, PAYLOAD, RESP, SETUP, TEARDOWN
from analyzer.synth.conversation import Chunk, Conversation, Flight, MessageInfo

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_BYTES = 9
RESPONSE_BODY = b'{"status":"ok"}'
AUTHORITY = b"synth.wireprobe.test"

# RFC 9113 section 6 frame types.
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
FLAG_ACK = 0x1
#: Owners of frames that belong to no stream; SETTINGS is decided by ``_settings_owner``.
CONNECTION_FRAME_OWNERS = {PING: CONTROL, GOAWAY: TEARDOWN, WINDOW_UPDATE: CONTROL}

#: Rounds of flights one batch may take before the generator gives up (a flow-control bug).
MAX_ROUNDS_PER_BATCH = 10_000


@dataclass(slots=True)
class _Labeller:
    """Cuts one side's output into frames and labels them; state spans the connection."""

    direction: int
    streams: dict[int, int] = field(default_factory=dict)
    settings_sent: int = 0
    acks_sent: int = 0

    def label(self, data: bytes) -> list[Chunk]:
        chunks: list[Chunk] = []
        if data.startswith(PREFACE):
            chunks.append(Chunk(data=PREFACE, owner=SETUP, layer=FRAMING))
            data = data[len(PREFACE) :]
        offset = 0
        while offset < len(data):
            length = int.from_bytes(data[offset : offset + 3], "big")
            end = offset + FRAME_HEADER_BYTES + length
            chunks += self._frame(data[offset:end])
            offset = end
        return chunks

    def _frame(self, frame: bytes) -> list[Chunk]:
        kind, flags = frame[3], frame[4]
        stream = int.from_bytes(frame[5:9], "big") & 0x7FFFFFFF
        if kind == SETTINGS:
            return [Chunk(data=frame, owner=self._settings_owner(flags), layer=FRAMING)]
        if stream == 0 or kind not in (DATA, HEADERS, RST_STREAM):
            owner = CONNECTION_FRAME_OWNERS.get(kind, CONTROL)
            return [Chunk(data=frame, owner=owner, layer=FRAMING)]
        message = self.streams[stream]
        if kind == DATA:
            return [
                Chunk(data=frame[:FRAME_HEADER_BYTES], owner=message, layer=FRAMING),
                Chunk(data=frame[FRAME_HEADER_BYTES:], owner=message, layer=PAYLOAD),
            ]
        if kind == HEADERS and self.direction == ORIG:
            return [Chunk(data=frame, owner=message, layer=FRAMING, starts=(message,))]
        if kind == HEADERS:
            return [Chunk(data=frame, owner=message, layer=FRAMING, answers=(message,))]
        return [Chunk(data=frame, owner=message, layer=FRAMING)]

    def _settings_owner(self, flags: int) -> int:
        # Only the first SETTINGS of a side and its ACK are setup (DESIGN.md section 2).
        if flags & FLAG_ACK:
            self.acks_sent += 1
            return SETUP if self.acks_sent == 1 else CONTROL
        self.settings_sent += 1
        return SETUP if self.settings_sent == 1 else CONTROL


@dataclass(slots=True)
class _Peers:
    client: h2.connection.H2Connection
    server: h2.connection.H2Connection
    labels: tuple[_Labeller, _Labeller]
    flights: list[Flight] = field(default_factory=list)
    done: set[int] = field(default_factory=set)
    to_respond: list[int] = field(default_factory=list)
    #: the status of every response
    status: int = 200

    def send(self, direction: int) -> None:
        """Flush one side's pending output as a flight and let the other side read it."""
        side = self.client if direction == ORIG else self.server
        data = side.data_to_send()
        if not data:
            return
        # What ``data_to_send`` returns goes out in one write, as an h2-based server writes it.
        chunks = [
            replace(c, joined=i > 0) for i, c in enumerate(self.labels[direction].label(data))
        ]
        self.flights.append(Flight(direction=direction, chunks=tuple(chunks)))
        peer = self.server if direction == ORIG else self.client
        for event in peer.receive_data(data):
            self._observe(peer, event)

    def _observe(self, peer: h2.connection.H2Connection, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
            peer.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        if isinstance(event, h2.events.StreamEnded):
            if peer is self.server:
                self.to_respond.append(event.stream_id)
            else:
                self.done.add(event.stream_id)


def conversation(
    n_messages: int, payload: bytes, concurrency: int, status: int = 200
) -> Conversation:
    """``n_messages`` streams on one connection, ``concurrency`` at a time, each answered with
    ``status`` (200 with ``RESPONSE_BODY``; 202 or 204 with END_STREAM on the HEADERS)."""
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    peers = _Peers(client, server, (_Labeller(ORIG), _Labeller(RESP)), status=status)
    client.initiate_connection()
    server.initiate_connection()
    for first in range(0, n_messages, concurrency):
        _batch(peers, range(first, min(first + concurrency, n_messages)), payload)
    client.close_connection()
    peers.send(ORIG)
    messages = tuple(
        MessageInfo(sender=ORIG, kind="stream", answered=True) for _ in range(n_messages)
    )
    return Conversation(
        protocol="http2", flights=tuple(peers.flights), messages=messages, alpn="h2"
    )


def _batch(peers: _Peers, batch: range, payload: bytes) -> None:
    unsent: dict[int, bytes] = {}
    for message in batch:
        stream = peers.client.get_next_available_stream_id()
        peers.labels[ORIG].streams[stream] = message
        peers.labels[RESP].streams[stream] = message
        peers.client.send_headers(stream, _request_headers(payload), end_stream=not payload)
        if payload:
            unsent[stream] = payload
    streams = set(peers.labels[ORIG].streams) - peers.done
    for _ in range(MAX_ROUNDS_PER_BATCH):
        _send_body(peers.client, unsent)
        peers.send(ORIG)
        _respond(peers)
        peers.send(RESP)
        if streams <= peers.done:
            return
    raise AssertionError("HTTP/2 batch made no progress (flow control)")


def _send_body(client: h2.connection.H2Connection, unsent: dict[int, bytes]) -> None:
    """Send what the stream and connection windows allow, in frames of at most the frame size."""
    for stream, rest in list(unsent.items()):
        while rest:
            room = min(client.local_flow_control_window(stream), client.max_outbound_frame_size)
            if room <= 0:
                break
            piece, rest = rest[:room], rest[room:]
            client.send_data(stream, piece, end_stream=not rest)
        if rest:
            unsent[stream] = rest
        else:
            del unsent[stream]


def _respond(peers: _Peers) -> None:
    body = RESPONSE_BODY if peers.status == 200 else b""
    headers = [(b":status", str(peers.status).encode())]
    if peers.status != 204:  # RFC 9110 section 8.6: no content-length in a 204
        headers += [(b"content-type", b"application/json")] if body else []
        headers += [(b"content-length", str(len(body)).encode())]
    for stream in peers.to_respond:
        peers.server.send_headers(stream, headers, end_stream=not body)
        if body:
            peers.server.send_data(stream, body, end_stream=True)
    peers.to_respond.clear()


def _request_headers(payload: bytes) -> list[tuple[bytes, bytes]]:
    headers = [
        (b":method", b"POST" if payload else b"GET"),
        (b":scheme", b"https"),
        (b":authority", AUTHORITY),
        (b":path", b"/items"),
        (b"user-agent", b"wireprobe-synth/1"),
    ]
    if payload:
        headers += [(b"content-type", b"application/octet-stream")]
        headers += [(b"content-length", str(len(payload)).encode())]
    return headers
