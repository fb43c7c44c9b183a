"""WebSocket echo conversations (RFC 6455): an Upgrade, then binary messages echoed back.

The client sends ``GET /echo`` with ``Upgrade: websocket`` and a key, the server answers ``101``
with the key's accept value (section 4.2.2), then each of the client's messages (one masked
binary frame, section 5.3) is echoed by the server (unmasked), and both close (status 1000).
Frames are written here from section 5.2, independently of the decoder's reader.

Labels (DESIGN.md section 2.1): frame headers and masking keys framing, the data bytes as on the
wire (masked from the client) payload, CLOSE frames teardown.  The Upgrade exchange is message 0,
an HTTP/1.1 ``exchange`` answered by the 101, since that is what the analyzer reports for it
today (DESIGN.md 2.1 says why); messages 1.. are WebSocket messages, ``client_to_server`` and
``server_to_client`` in turn.
"""

from __future__ import annotations

import base64
import hashlib
import struct

from analyzer.decoding.events import FRAMING, ORIG, PAYLOAD, RESP, TEARDOWN
from analyzer.synth.conversation import Chunk, Conversation, Flight, MessageInfo

HOST = b"synth.wireprobe.test"
#: RFC 6455 section 1.3: the GUID the server appends to the client's key.
ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: The example key of RFC 6455 section 1.3 (16 bytes, base64).
CLIENT_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
BINARY, CLOSE = 0x2, 0x8
NORMAL_CLOSURE = 1000


def accept_value(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for ``key`` (section 4.2.2 item 5.4)."""
    return base64.b64encode(hashlib.sha1(key + ACCEPT_GUID).digest())


def frame_header(opcode: int, length: int, mask: bytes | None) -> bytes:
    """FIN set, no RSV bits; the shortest length encoding (section 5.2); the masking key."""
    first = bytes([0x80 | opcode])
    flag = 0x80 if mask is not None else 0
    if length < 126:
        head = first + bytes([flag | length])
    elif length < 1 << 16:
        head = first + bytes([flag | 126]) + struct.pack(">H", length)
    else:
        head = first + bytes([flag | 127]) + struct.pack(">Q", length)
    return head + (mask or b"")


def masked(data: bytes, mask: bytes) -> bytes:
    """Section 5.3: octet i XOR mask[i mod 4]."""
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def _mask_for(message: int) -> bytes:
    # A client must pick an unpredictable key per frame; the generator is deterministic instead.
    return struct.pack(">I", (message * 2654435761 + 1) & 0xFFFFFFFF)


def _frame(message: int, opcode: int, data: bytes, client: bool) -> list[Chunk]:
    mask = _mask_for(message) if client else None
    head = frame_header(opcode, len(data), mask)
    body = masked(data, mask) if mask is not None else data
    chunks = [Chunk(data=head, owner=message, layer=FRAMING, starts=(message,))]
    if body:
        chunks.append(Chunk(data=body, owner=message, layer=PAYLOAD, joined=True))
    return chunks


def _close(client: bool) -> Chunk:
    status = struct.pack(">H", NORMAL_CLOSURE)
    mask = _mask_for(0) if client else None
    data = frame_header(CLOSE, len(status), mask) + (masked(status, mask) if mask else status)
    return Chunk(data=data, owner=TEARDOWN, layer=FRAMING)


def _handshake() -> tuple[Flight, Flight]:
    request = (
        b"GET /echo HTTP/1.1\r\nHost: " + HOST + b"\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + CLIENT_KEY + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    response = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_value(CLIENT_KEY) + b"\r\n\r\n"
    )
    return (
        Flight(direction=ORIG, chunks=(Chunk(data=request, owner=0, layer=FRAMING, starts=(0,)),)),
        Flight(
            direction=RESP, chunks=(Chunk(data=response, owner=0, layer=FRAMING, answers=(0,)),)
        ),
    )


def conversation(n_messages: int, payload: bytes) -> Conversation:
    """The Upgrade and ``n_messages`` client messages, each echoed: 1 + 2n messages."""
    flights = list(_handshake())
    infos = [MessageInfo(sender=ORIG, kind="exchange", answered=True, protocol="http1")]
    for m in range(n_messages):
        out, back = 1 + 2 * m, 2 + 2 * m
        flights.append(Flight(direction=ORIG, chunks=tuple(_frame(out, BINARY, payload, True))))
        flights.append(Flight(direction=RESP, chunks=tuple(_frame(back, BINARY, payload, False))))
        infos.append(MessageInfo(sender=ORIG, kind="client_to_server", answered=False))
        infos.append(MessageInfo(sender=RESP, kind="server_to_client", answered=False))
    flights.append(Flight(direction=ORIG, chunks=(_close(True),)))
    flights.append(Flight(direction=RESP, chunks=(_close(False),)))
    return Conversation(
        protocol="websocket", flights=tuple(flights), messages=tuple(infos), alpn=None
    )
