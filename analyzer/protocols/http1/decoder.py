"""HTTP/1.x decoder: each direction's bytes -> exchanges with framing and payload counts.

One message per exchange (DESIGN.md section 2): a request and its response, interim 1xx
responses included.  Requests (``orig``) and responses (``resp``) are framed independently, so
pipelined requests are decoded as they arrive; responses are matched to requests in order
(RFC 9112 section 9.3.2).  The response side consults the request it answers for the facts that
decide its framing (HEAD, CONNECT, Upgrade), which is the "two roles kept in step" of DESIGN.md
section 6.

Why a framer of our own and not h11 on the wire bytes: h11 gives no byte counts, pauses the
request side until a response is sent into it (pipelining would have to be buffered), rejects
real traffic (control bytes in request targets, as in zeek/http-non-printable-characters.pcap)
and cannot start mid-connection or after a gap.  It costs about 20 us per header block, several
times the per-packet budget of DESIGN.md section 7.  The body rules (RFC 9112 section 6.3) are
the tables below and ``_begin_response_body``; h11 is the oracle the tests compare against.

Byte ledger: start lines, header blocks, chunk-size lines, chunk CRLFs and trailers are
FRAMING; de-chunked bodies are PAYLOAD; bytes that cannot be decoded are UNDECODED/OPAQUE.
After ``101 Switching Protocols`` to h2c every later byte goes to the HTTP/2 decoder, which
carries on the same message as stream 1 (RFC 7540 section 3.2).

The decoder is one class assembled from a chain of mixins, one module each, because every part
works on the same per-connection state on the per-packet path (see base.py):

- ``wire``: the syntax (start lines, framing fields) and the RFC facts that decide framing;
- ``state``: a direction's modes, an exchange, a direction;
- ``base``: that state, and the spans and notes written;
- ``upgrade``: holding across Upgrade/CONNECT, and handing over after a switch;
- ``resync``: finding the next start line (mid-connection, after a gap);
- ``framer``: the general path: heads, bodies, ends of messages;
- ``gaps``: lost bytes, inside a body or not;
- ``fastpath``: whole messages and body bytes read straight from a feed;
- here: the ``StreamDecoder`` interface, and the two seams to the outside: the field parser
  and the factory of the decoder that carries on after a switch.
"""

from __future__ import annotations

from analyzer.decoding.detect import OpaqueDecoder, make_decoder
from analyzer.decoding.events import ORIG, RESP, Anomaly, Event, Span, StreamDecoder
from analyzer.protocols.http1.fastpath import MAX_REMEMBERED_HEADS, FastPath
from analyzer.protocols.http1.state import (
    CHUNKED,
    CLOSE,
    DATA,
    HEAD,
    HOLD,
    LENGTH,
    MAX_PENDING_EXCHANGES,
    PROTOCOL,
)
from analyzer.protocols.http1.wire import MAX_HEADER_BYTES, request_line
from analyzer.protocols.http1.wire import parse_fields as _parse_fields

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_PENDING_EXCHANGES",
    "MAX_REMEMBERED_HEADS",
    "PROTOCOL",
    "Http1Decoder",
    "request_line",
]


class Http1Decoder(FastPath):
    """Decodes one HTTP/1.x connection (see the module docstring)."""

    # -- the StreamDecoder interface ---------------------------------------------------------

    def feed(self, direction: int, data: bytes, ordinal: int, ts: float) -> list[Event]:
        self._feed(direction, data, ordinal, ts)
        # ``_flush`` and ``_close_spans``, spelled out: this runs once per packet.
        out = self._out
        spans = self._open
        orig, resp = spans
        if orig is not None:
            out.append(Span(ORIG, orig[0], orig[1], orig[2], orig[3]))
            spans[ORIG] = None
        if resp is not None:
            out.append(Span(RESP, resp[0], resp[1], resp[2], resp[3]))
            spans[RESP] = None
        self._out = []
        return out

    def gap(self, direction: int, length: int, ordinal: int, ts: float) -> list[Event]:
        self._gap(direction, length, ordinal, ts)
        return self._flush()

    def eof(self, direction: int, ordinal: int, ts: float) -> list[Event]:
        self._eof(direction, ordinal, ts)
        return self._flush()

    def finish(self, ts: float) -> list[Event]:
        self._ts = ts
        if self._switch is not None:
            # resp switched but the upgrade request never ended: hand over what is left.
            self._force_switch()
        # No answer came: what orig held is HTTP/1.1 (each round decodes strictly fewer bytes).
        while self._inner is None and self._dirs[ORIG].mode == HOLD:
            self._release_hold()
        if self._inner is not None:
            self._out += self._inner.finish(ts)
        for st in self._dirs:
            if not self._charge_rest(st) and st.mode in (LENGTH, CHUNKED):
                self._out.append(Anomaly("http1.truncated"))  # the body was cut short
        for exchange in self._pending:
            self._note_bodies(exchange)
        for st in self._dirs:
            if st.exchange is not None:
                self._note_bodies(st.exchange)
        return self._flush()

    # -- calls, before flushing ---------------------------------------------------------------

    def _feed(self, direction: int, data: bytes, ordinal: int, ts: float) -> None:
        if self._inner is not None:
            self._out += self._inner.feed(direction, data, ordinal, ts)
            return
        st = self._dirs[direction]
        mode = st.mode
        if mode == HOLD:
            self._hold(("feed", direction, data, ordinal, ts), len(data))
            return
        size = len(data)
        if not size:
            return
        self._ts = ts
        if not st.buf:
            # Fast paths (DESIGN.md section 7) for a feed that starts where nothing is pending:
            # the start of a message, or bytes wholly inside a body.
            if mode == HEAD:
                # (An empty buffer in HEAD means no start line nor blank line is pending.)
                if not st.started and self._whole_messages(st, data, ordinal, ts):
                    return
            elif mode == CLOSE or (
                size <= st.remaining
                and (mode == LENGTH or (mode == CHUNKED and st.chunk_state == DATA))
            ):
                self._body_only(st, size)
                return
        st.chunks.append((st.end, ordinal, ts))
        st.buf += data
        st.end += size
        self._pump(st)

    def _eof(self, direction: int, ordinal: int, ts: float) -> None:
        if self._inner is not None:
            self._out += self._inner.eof(direction, ordinal, ts)
            return
        st = self._dirs[direction]
        if st.mode == HOLD:
            self._hold(("eof", direction, 0, ordinal, ts), 0)
            return
        self._ts = ts
        st.eof = True
        if st.mode == CLOSE:
            # RFC 9112 section 6.3 item 8: the close ends a body that has no length.
            self._message_done(st)

    # -- the seams to the outside --------------------------------------------------------------

    def _fields(self, buf: bytes | bytearray, newline: int, end: int) -> dict[bytes, bytes]:
        # Every head the decoder parses goes through here, looked up in this module when called
        # (the memo of fastpath.py is proved by counting the calls of ``_parse_fields``).
        return _parse_fields(buf, newline, end)

    def _inner_decoder(self, protocol: str, message: int, base: tuple[int, int]) -> StreamDecoder:
        if protocol == "http2":
            inner = make_decoder(
                "http2",
                self._ids,
                self._options,
                base=base,
                upgraded=True,
                upgrade_message=message,
            )
            if isinstance(inner, OpaqueDecoder):  # no HTTP/2 decoder: keep the offsets right
                inner = OpaqueDecoder("http2", base)
            return inner
        if protocol == "websocket":
            return make_decoder("websocket", self._ids, self._options, base=base)
        # A tunnel (CONNECT, WebSocket...): its bytes are not ours to decode.
        return OpaqueDecoder(PROTOCOL, base)
