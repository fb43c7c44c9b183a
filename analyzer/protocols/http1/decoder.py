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
"""

from __future__ import annotations

import re
from collections import deque

from analyzer.decoding.detect import OpaqueDecoder, make_decoder
from analyzer.decoding.events import (
    FRAMING,
    OPAQUE,
    ORIG,
    PAYLOAD,
    RESP,
    UNDECODED,
    Anomaly,
    Event,
    MessageAnswered,
    MessageEnded,
    MessageIds,
    MessageNote,
    MessageStarted,
    ProtocolIdentified,
    Span,
    StreamDecoder,
)
from analyzer.options import DecodeOptions

PROTOCOL = "http1"
KIND = "exchange"

#: Longest header block (start line + fields) accepted.  Servers cap it between 8 KiB (Apache
#: LimitRequestFieldSize) and 64 KiB (nginx large_client_header_buffers can reach it); past this
#: the bytes are not HTTP we can frame.
MAX_HEADER_BYTES = 64 * 1024
#: Heads remembered per direction with what the fast path read from them (see
#: ``_whole_message``): clients resend the same request head, servers the same response head
#: until the Date changes; two each keep a connection's memory to about 1 KiB.
MAX_REMEMBERED_HEADS = 2
#: Longest head remembered: the usual request or response head is 100 to 400 octets.
MAX_REMEMBERED_HEAD_BYTES = 512
#: Longest chunk-size line (RFC 9112 section 7.1.1: size plus chunk extensions).
MAX_CHUNK_LINE_BYTES = 4 * 1024
#: Bytes held after an Upgrade/CONNECT request while waiting for the answer that says whether
#: HTTP/1.1 goes on (RFC 9110 section 7.8).  Clients send nothing until then, so little is held.
MAX_HELD_BYTES = 256 * 1024
#: Requests waiting for their response; past this the oldest is given up as never answered.
MAX_PENDING_EXCHANGES = 4096
#: Longest request target kept in a note.
MAX_TARGET_CHARS = 200

# Direction modes.
_RESYNC = 0  # looking for a start line (capture joined mid-connection, or after a gap)
_HEAD = 1  # reading a start line and header block
_LENGTH = 2  # body of known length (Content-Length)
_CHUNKED = 3  # chunked body (RFC 9112 section 7.1)
_CLOSE = 4  # response body delimited by the connection's close (RFC 9112 section 6.3 item 8)
_HOLD = 5  # waiting for the answer to Upgrade/CONNECT; calls are held, not decoded
_DEAD = 6  # undecodable: everything is opaque
_SWITCHED = 7  # another decoder owns the bytes

# Chunked body states.
_SIZE, _DATA, _DATA_END, _TRAILER = range(4)

_TOKEN = rb"[A-Za-z0-9!#$%&'*+.^_`|~-]"
#: RFC 9112 section 3: method SP request-target SP HTTP-version, read leniently (tabs, spaces
#: inside the target, bare LF) as servers do.
#: That reading as one pattern would be ``TOKEN{1,32} [ \t]+ (.+?) [ \t]+ HTTP/1.D [ \t]* \r?``;
#: ``request_line`` gives its result without its backtracking, which on a line of a few
#: thousand spaces takes seconds (and 64 KiB lines are allowed).  Only the method is a pattern.
_METHOD = re.compile(rb"(" + _TOKEN + rb"{1,32})[ \t]+")
_VERSION_PREFIX = b"HTTP/1."
#: RFC 9112 section 4: HTTP-version SP status-code SP [reason-phrase].
_STATUS_LINE = re.compile(rb"HTTP/1\.([0-9])[ \t]+([0-9]{3})(?:[ \t][^\r\n]*)?\r?")
#: What to resynchronise on (see ``_resync`` for where): a whole status line, and the end of a
#: request line (its start is then found backwards, keeping the search linear).
_RESYNC_STATUS = re.compile(rb"HTTP/1\.[01][ \t]+[0-9]{3}(?:[ \t][^\r\n]*)?\r?\n")
_RESYNC_VERSION = re.compile(rb"[ \t]HTTP/1\.[01][ \t]*\r?\n")
#: End of a header block: an empty line; bare LF tolerated (RFC 9112 section 2.2).
_HEAD_END = re.compile(rb"\n\r?\n")


def request_line(buf: bytes | bytearray, start: int, end: int) -> tuple[bytes, bytes] | None:
    """(method, target) of the request line ``buf[start:end]`` (without its LF), or None.

    The result is the lenient pattern's above: the method, then the target from the end of
    the whitespace after the method to the start of the whitespace before the last token,
    which must be HTTP/1.D followed only by spaces, tabs and one CR.  Linear in the line.
    """
    line = bytes(buf[start:end])
    method = _METHOD.match(line)
    if method is None or b"\n" in line:
        return None
    rest = (line[:-1] if line.endswith(b"\r") else line).rstrip(b" \t")
    if (
        len(rest) < len(_VERSION_PREFIX) + 1
        or not rest.endswith(_VERSION_PREFIX, 0, len(rest) - 1)
        or not 0x30 <= rest[-1] <= 0x39
    ):
        return None
    before = rest[: -len(_VERSION_PREFIX) - 1]
    head = before.rstrip(b" \t")
    if len(head) == len(before):
        return None  # no whitespace before the version
    if len(head) > method.end():
        return method.group(1), head[method.end() :]
    # Only whitespace between method and version: the pattern needs one blank each side of
    # the target and backtracks to make the target the last-but-one blank.
    blanks = before[method.end(1) :]
    if len(blanks) < 3:
        return None
    return method.group(1), blanks[-2:-1]


_BLANK_LINES = re.compile(rb"[\r\n]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")

#: Header fields that decide framing or a protocol switch; the others are not looked at.  A
#: field line is found by the LF before it (the start line's ends the first), which lets the
#: regex engine skip from LF to LF instead of trying a match at every byte.
_FRAMING_FIELD = re.compile(rb"(?i)\n(content-length|transfer-encoding|upgrade)[ \t]*:([^\n]*)")
#: Bytes that start an empty line (see ``_BLANK_LINES``).
_CRLF = b"\r\n"
#: RFC 9110 sections 15.3.5 and 15.4.5: these statuses never carry content.
NO_CONTENT_STATUSES = frozenset({204, 304})
#: RFC 9110 section 9.3.2: the response to HEAD carries no content.
NO_CONTENT_METHODS = frozenset({b"HEAD"})
#: RFC 9110 section 9.3.6: a 2xx to CONNECT turns the connection into a tunnel.
TUNNEL_METHOD = b"CONNECT"
SWITCHING_PROTOCOLS = 101
#: RFC 7540 section 3.2: the token a client uses to ask for HTTP/2 over cleartext.
H2C_TOKEN = b"h2c"
#: RFC 6455 section 4.2.2: the server's 101 carries "Upgrade: websocket" (case-insensitive).
WEBSOCKET_TOKEN = b"websocket"

_Held = tuple[str, int, bytes | int, int, float]  # (call, direction, data or length, ordinal, ts)
#: A remembered head: its (method, target) or its status code, and its framing fields (never
#: changed once parsed, so one dict serves every repeat).
_Head = tuple[tuple[bytes, bytes] | None, int | None, dict[bytes, bytes]]


class _Exchange:
    """One request and its response, as far as they have been seen."""

    __slots__ = (
        "answered",
        "final_seen",
        "message",
        "method",
        "noted",
        "req_start",
        "request_body_bytes",
        "resp_start",
        "response_body_bytes",
        "switch",
        "upgrade",
    )

    def __init__(self, message: int | None, method: bytes = b"") -> None:
        #: message id; None for a request lost in a gap (allocated when its response shows up)
        self.message = message
        self.method = method
        #: the request asked to leave HTTP/1.1 (Upgrade or CONNECT): orig waits for the answer
        self.switch = False
        self.upgrade = b""
        self.answered = False
        self.final_seen = False
        self.request_body_bytes = 0
        self.response_body_bytes = 0
        self.req_start: int | None = None
        self.resp_start: int | None = None
        #: body-byte notes already emitted: bit 0 request, bit 1 response
        self.noted = 0


class _Direction:
    """Decoding state of one direction's stream."""

    __slots__ = (
        "base",
        "blank_end",
        "buf",
        "chunk_state",
        "chunks",
        "direction",
        "end",
        "eof",
        "exchange",
        "line_end",
        "line_start",
        "lost_at_boundary",
        "lost_bytes",
        "mode",
        "pos",
        "remaining",
        "resync_noted",
        "resync_scanned",
        "scan_from",
        "started",
        "status",
        "suspects",
        "whole_bytes",
        "whole_count",
    )

    def __init__(self, direction: int, base: int) -> None:
        self.direction = direction
        self.buf = bytearray()
        #: stream offset of buf[0]; buf[pos:] is not decoded yet
        self.base = base
        self.pos = 0
        #: stream offset after the last byte fed
        self.end = base
        #: (stream offset, ordinal, ts) of the feeds whose bytes are still in buf
        self.chunks: deque[tuple[int, int, float]] = deque()
        #: a capture may start mid-connection: look for a start line first
        self.mode = _RESYNC
        self.resync_noted = False
        #: stream offset up to which the bytes before a start line are known to be CR/LF
        self.blank_end = 0
        #: stream offset up to which _RESYNC has searched for start lines
        self.resync_scanned = 0
        #: in _RESYNC: buf[0] is known to begin a line
        self.line_start = False
        self.remaining = 0
        self.chunk_state = _SIZE
        self.exchange: _Exchange | None = None
        self.started = False
        #: stream offsets of the start line's LF and of where to resume looking for the end of
        #: the header block (offsets, since decoded bytes leave the buffer meanwhile)
        self.line_end = 0
        self.scan_from = 0
        self.status = 0
        self.eof = False
        #: count and bytes of whole messages seen: their mean sizes a gap's losses
        self.whole_count = 0
        self.whole_bytes = 0
        #: after a response-side gap: exchanges pending then, and bytes lost beyond the current one
        self.suspects = 0
        self.lost_bytes = 0
        self.lost_at_boundary = True


class Http1Decoder:
    """Decodes one HTTP/1.x connection (see the module docstring)."""

    def __init__(
        self, ids: MessageIds, options: DecodeOptions, *, base: tuple[int, int] = (0, 0)
    ) -> None:
        self._ids = ids
        self._options = options
        self._dirs = (_Direction(ORIG, base[ORIG]), _Direction(RESP, base[RESP]))
        #: exchanges whose response is not complete, in request order; [0] is being answered
        self._pending: deque[_Exchange] = deque()
        self._out: list[Event] = [ProtocolIdentified(PROTOCOL)]
        #: per direction, the span being grown: [start, end, owner, layer]
        self._open: list[list[int] | None] = [None, None]
        self._ts = 0.0
        self._inner: StreamDecoder | None = None
        self._held: list[_Held] = []
        self._held_bytes = 0
        #: the Upgrade/CONNECT exchange orig waits on
        self._hold_exchange: _Exchange | None = None
        #: (protocol, exchange, ts) once resp switched protocols and orig has yet to follow
        self._switch: tuple[str, _Exchange, float] | None = None
        #: per direction, whole heads the fast path read -> what it read from them (``_Head``),
        #: so a repeated head is not parsed again
        self._heads: tuple[dict[bytes, _Head], dict[bytes, _Head]] = ({}, {})

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
        while self._inner is None and self._dirs[ORIG].mode == _HOLD:
            self._release_hold()
        if self._inner is not None:
            self._out += self._inner.finish(ts)
        for st in self._dirs:
            if not self._charge_rest(st) and st.mode in (_LENGTH, _CHUNKED):
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
        if mode == _HOLD:
            self._hold(("feed", direction, data, ordinal, ts), len(data))
            return
        size = len(data)
        if not size:
            return
        self._ts = ts
        if not st.buf:
            # Fast paths (DESIGN.md section 7) for a feed that starts where nothing is pending:
            # the start of a message, or bytes wholly inside a body.
            if mode == _HEAD:
                # (An empty buffer in _HEAD means no start line nor blank line is pending.)
                if not st.started and self._whole_messages(st, data, ordinal, ts):
                    return
            elif mode == _CLOSE or (
                size <= st.remaining
                and (mode == _LENGTH or (mode == _CHUNKED and st.chunk_state == _DATA))
            ):
                self._body_only(st, size)
                return
        st.chunks.append((st.end, ordinal, ts))
        st.buf += data
        st.end += size
        self._pump(st)

    def _whole_messages(self, st: _Direction, data: bytes, ordinal: int, ts: float) -> bool:
        """Fast path: ``data`` begins a message in a direction with nothing buffered.

        The usual packet of a request or response holds a whole head, then its body or part
        of it (or, pipelined, several whole messages).  These are read as ``_read_head`` and
        ``_read_length`` would, with the same events in the same order, but straight from
        ``data``: no buffering, no decoding loop.  False, having changed nothing, when
        ``data`` does not begin with a whole start line: the general path then reads it.
        Whatever the fast path cannot read goes on in the general path."""
        origin = st.base  # nothing is buffered: the stream offset of data[0]
        size = len(data)
        start = 0
        while True:
            end = self._whole_message(st, data, start, origin, ordinal, ts)
            if end < 0:
                break
            if end == size:
                return True
            start = end
        if start == 0:
            return False
        # The rest takes the general path, as if ``_pump`` had read up to ``start``.
        self._buffer_rest(st, data, start, origin, ordinal, ts)
        self._pump(st)
        return True

    def _whole_message(
        self, st: _Direction, data: bytes, start: int, origin: int, ordinal: int, ts: float
    ) -> int:
        """For ``_whole_messages``: read the message at data[start:] (st.base is its offset,
        ``origin`` data[0]'s).  Returns where it ends; ``len(data)`` once data is used up (the
        body goes on, or the general path took the rest); -1, having changed nothing, if
        data[start:] begins with a blank line or holds no whole line."""
        # 1. The start line.  As in ``_read_head``, it is matched once its LF is in, and only
        # once (the lenient request-line pattern can be slow on hostile lines); blank lines
        # before it are left to ``_read_head``.
        if data[start] in _CRLF:
            return -1
        newline = data.find(b"\n", start)
        if newline < 0:
            return -1
        direction = st.direction
        head_end = _HEAD_END.search(data, newline)
        whole = head_end is not None and head_end.end() - start <= MAX_HEADER_BYTES
        # A head seen before on this direction reads the same: take what was read from it.
        heads = self._heads[direction]
        key = b""
        known: _Head | None = None
        if whole and head_end is not None and head_end.end() - start <= MAX_REMEMBERED_HEAD_BYTES:
            key = bytes(data[start : head_end.end()])
            known = heads.get(key)
        request: tuple[bytes, bytes] | None = None
        status: int | None = None
        if known is not None:
            request, status, _ = known
        elif direction == ORIG:
            request = request_line(data, start, newline)
        else:
            matched = _STATUS_LINE.fullmatch(data, start, newline)
            status = None if matched is None else int(matched.group(2))
        st.blank_end = origin + start  # (as ``_read_head`` leaves it)
        if request is None and status is None:
            self._buffer_rest(st, data, start, origin, ordinal, ts)
            self._bad(st, "http1.bad_message")
            self._pump(st)
            return len(data)
        if request is not None:
            self._start_request(st, request[0], request[1], ordinal, ts)
        elif status is not None:
            self._start_response(st, status, ordinal, ts)
        if not whole or head_end is None:
            # ``_read_head`` goes on from its second step: the end of the header block.
            st.started = True
            st.line_end = st.scan_from = origin + newline
            self._buffer_rest(st, data, start, origin, ordinal, ts)
            self._pump(st)
            return len(data)
        # 2. The head is framing.  (``_charge`` spelled out for the usual case: no open span.)
        end = head_end.end()
        exchange = st.exchange
        assert exchange is not None and exchange.message is not None
        message = exchange.message
        opened = self._open
        if opened[direction] is None:
            opened[direction] = [origin + start, origin + end, message, FRAMING]
        else:
            self._charge(st, 0, end - start, message, FRAMING)
        if known is not None:
            fields = known[2]
        else:
            fields = _parse_fields(data, newline, head_end.start() + 1)
            if key:
                if len(heads) >= MAX_REMEMBERED_HEADS:
                    heads.clear()
                heads[key] = (request, status, fields)
        # 3. How the body is framed, when it is plainly (else ``length`` is None).
        length: int | None
        if direction == ORIG:
            if (
                b"upgrade" in fields
                or b"transfer-encoding" in fields
                or exchange.method == TUNNEL_METHOD
            ):
                length = None
            else:
                raw_length = fields.get(b"content-length")
                length = 0 if raw_length is None else _content_length(raw_length)
        else:
            length = self._plain_response_length(st, exchange, fields)
        size = len(data)
        if length is None:
            # ``_read_head`` goes on from its last step: the framing the fields say.
            self._buffer_rest(st, data, start, origin, ordinal, ts)
            st.pos = end - start
            if direction == ORIG:
                self._request_head(st, exchange, fields)
            else:
                self._response_head(st, exchange, fields)
            self._pump(st)
            return size
        # 4. The body, as far as this feed holds it (``_read_length``).
        body = size - end if size - end < length else length
        if body:
            # ``_charge``: the open span is the head's (framing), which a body never extends.
            head = opened[direction]
            assert head is not None
            self._out.append(Span(direction, head[0], head[1], head[2], head[3]))
            opened[direction] = [origin + end, origin + end + body, message, PAYLOAD]
            if direction == ORIG:
                exchange.request_body_bytes += body
            else:
                exchange.response_body_bytes += body
        if body < length:
            st.mode = _LENGTH
            st.remaining = length - body
            st.base = st.end = origin + size
            return size
        # 5. The message is complete.
        end += body
        st.base = st.end = origin + end
        self._message_done(st)
        return end

    def _buffer_rest(
        self, st: _Direction, data: bytes, start: int, origin: int, ordinal: int, ts: float
    ) -> None:
        """Hand data[start:] to the general path: buffer it as ``_feed`` would have buffered
        ``data``, less the bytes the fast path decoded (st.base is already past them)."""
        st.chunks.append((origin, ordinal, ts))
        st.buf += memoryview(data)[start:]
        st.end = origin + len(data)

    def _plain_response_length(
        self, st: _Direction, exchange: _Exchange, fields: dict[bytes, bytes]
    ) -> int | None:
        """For ``_whole_message``: the body length of a final response framed by Content-Length
        or by having no content, having done what ``_response_head`` does first; else None,
        having done nothing."""
        status = st.status
        if status < 200 or exchange.switch or exchange.method == TUNNEL_METHOD:
            # An interim response, or one to Upgrade or CONNECT (which may switch, or release
            # held bytes; a CONNECT whose head was not read has not set ``switch``).
            return None
        if exchange.method in NO_CONTENT_METHODS or status in NO_CONTENT_STATUSES:
            length: int | None = 0
        elif b"transfer-encoding" in fields:
            return None
        else:
            raw_length = fields.get(b"content-length")
            if raw_length is None:
                return None  # delimited by the close
            length = _content_length(raw_length)
            if length is None:
                return None
        exchange.final_seen = True
        assert exchange.message is not None  # (``_note``, spelled out: its check holds here)
        self._out.append(MessageNote(exchange.message, "status", status))
        return length

    def _body_only(self, st: _Direction, size: int) -> None:
        """Fast path (DESIGN.md section 7): a segment wholly inside a body (``_feed`` checked
        that it cannot reach past the body's end) is counted, not buffered."""
        exchange = st.exchange
        assert exchange is not None and exchange.message is not None
        direction = st.direction
        opened = self._open
        start = st.end  # nothing is buffered: st.base == st.end
        if opened[direction] is None:  # ``_charge``, spelled out for the usual case
            opened[direction] = [start, start + size, exchange.message, PAYLOAD]
        else:
            self._charge(st, 0, size, exchange.message, PAYLOAD)
        if direction == ORIG:
            exchange.request_body_bytes += size
        else:
            exchange.response_body_bytes += size
        st.base = st.end = start + size
        mode = st.mode
        if mode != _CLOSE:
            st.remaining -= size
            if st.remaining == 0:
                if mode == _LENGTH:
                    self._message_done(st)
                else:
                    st.chunk_state = _DATA_END

    def _gap(self, direction: int, length: int, ordinal: int, ts: float) -> None:
        if self._inner is not None:
            self._out += self._inner.gap(direction, length, ordinal, ts)
            return
        st = self._dirs[direction]
        if st.mode == _HOLD:
            self._hold(("gap", direction, length, ordinal, ts), 0)
            return
        self._ts = ts
        broken = st.pos < len(st.buf)
        if broken:
            self._charge_rest(st)
        st.buf.clear()
        st.pos = 0
        st.base = st.end
        st.chunks.clear()
        if not broken and st.mode == _LENGTH and st.remaining < length:
            # The body ended inside the gap: the message is complete, the rest is unknown.
            length -= st.remaining
            st.base = st.end = st.end + st.remaining
            st.remaining = 0
            self._message_done(st)
            if st.mode == _HOLD:  # an Upgrade request ended: what follows waits for the answer
                self._hold(("gap", direction, length, ordinal, ts), 0)
                return
        st.end += length
        st.base = st.end
        if not broken and self._skip_in_body(st, length):
            return
        if st.mode != _DEAD:
            self._lose_sync(st, length)

    def _eof(self, direction: int, ordinal: int, ts: float) -> None:
        if self._inner is not None:
            self._out += self._inner.eof(direction, ordinal, ts)
            return
        st = self._dirs[direction]
        if st.mode == _HOLD:
            self._hold(("eof", direction, 0, ordinal, ts), 0)
            return
        self._ts = ts
        st.eof = True
        if st.mode == _CLOSE:
            # RFC 9112 section 6.3 item 8: the close ends a body that has no length.
            self._message_done(st)

    # -- events --------------------------------------------------------------------------------

    def _flush(self) -> list[Event]:
        self._close_spans()
        out = self._out
        self._out = []
        return out

    def _close_spans(self) -> None:
        # Both directions spelled out (and in ``feed``): this runs at the end of every call.
        spans = self._open
        orig, resp = spans
        if orig is not None:
            self._out.append(Span(ORIG, orig[0], orig[1], orig[2], orig[3]))
            spans[ORIG] = None
        if resp is not None:
            self._out.append(Span(RESP, resp[0], resp[1], resp[2], resp[3]))
            spans[RESP] = None

    def _charge(self, st: _Direction, start: int, end: int, owner: int, layer: int) -> None:
        """Buffer bytes [start, end) belong to ``owner`` at ``layer``; merges neighbours."""
        if end <= start:
            return
        first, last = st.base + start, st.base + end
        span = self._open[st.direction]
        if span is not None:
            if span[1] == first and span[2] == owner and span[3] == layer:
                span[1] = last
                return
            self._out.append(Span(st.direction, span[0], span[1], span[2], span[3]))
        self._open[st.direction] = [first, last, owner, layer]

    def _origin(self, st: _Direction, offset: int) -> tuple[int, float]:
        """Ordinal and ts of the feed that delivered stream byte ``offset``."""
        chunks = st.chunks
        _, ordinal, ts = chunks[0]
        if len(chunks) == 1:  # the usual case: the bytes came in one feed
            return ordinal, ts
        for start, chunk_ordinal, chunk_ts in chunks:
            if start > offset:
                break
            ordinal, ts = chunk_ordinal, chunk_ts
        return ordinal, ts

    def _note(self, exchange: _Exchange, key: str, value: object) -> None:
        if exchange.message is not None:
            self._out.append(MessageNote(exchange.message, key, value))

    def _note_bodies(self, exchange: _Exchange) -> None:
        """Body sizes of a message cut short (complete ones were noted when they ended)."""
        if not exchange.noted & 1 and exchange.req_start is not None:
            exchange.noted |= 1
            self._note(exchange, "request_body_bytes", exchange.request_body_bytes)
        if not exchange.noted & 2 and exchange.resp_start is not None:
            exchange.noted |= 2
            self._note(exchange, "response_body_bytes", exchange.response_body_bytes)

    # -- the decoding loop -----------------------------------------------------------------

    def _pump(self, st: _Direction) -> None:
        """Decode as much of ``st.buf`` as is complete, then drop what was decoded."""
        while st.pos < len(st.buf):
            # (An empty rest decodes to nothing in every mode: stop without asking.)
            mode = st.mode
            if mode == _HEAD:
                progressed = self._read_head(st)
            elif mode == _LENGTH:
                progressed = self._read_length(st)
            elif mode == _CHUNKED:
                progressed = self._read_chunked(st)
            elif mode == _CLOSE:
                progressed = self._read_close(st)
            elif mode == _RESYNC:
                progressed = self._resync(st)
            elif mode == _DEAD:
                self._charge(st, st.pos, len(st.buf), UNDECODED, OPAQUE)
                st.pos = len(st.buf)
                progressed = False
            else:  # _HOLD, _SWITCHED: the bytes were handed on
                progressed = False
            if not progressed:
                break
        pos = st.pos
        if pos:
            st.base += pos
            st.pos = 0
            if pos == len(st.buf):  # the usual case: everything was decoded
                st.buf.clear()
                st.chunks.clear()
                return
            del st.buf[:pos]
            chunks = st.chunks
            while len(chunks) > 1 and chunks[1][0] <= st.base:
                chunks.popleft()

    def _resync(self, st: _Direction) -> bool:
        """Skip to the next start line; the bytes before it cannot be decoded.

        A start line is looked for where a message can begin: at a line start, or where a
        packet's data begins (bodies often end without a line feed, and senders start a new
        message in a new segment)."""
        buf = st.buf
        # Start lines end with LF: with no new LF since the last search there is nothing new
        # to find, and rescanning the partial line on every packet would be quadratic.
        fresh = max(st.pos, st.resync_scanned - st.base)
        st.resync_scanned = st.base + len(buf)
        found = self._find_start_line(st) if buf.find(b"\n", fresh) >= 0 else None
        if found is not None:
            self._skip(st, found)
            st.mode = _HEAD
            st.resync_noted = False
            return True
        # A start line may still begin after the last LF, or at a later packet's start.
        cut = buf.rfind(b"\n", st.pos) + 1
        if cut > st.pos:
            st.line_start = True
        if len(buf) - cut > MAX_HEADER_BYTES:
            cut = len(buf)
            st.line_start = False
        self._skip(st, cut)
        return False

    def _find_start_line(self, st: _Direction) -> int | None:
        """Index of the first complete start line at a place a message may begin."""
        buf = st.buf
        if st.direction == RESP:
            # The status line begins with its fixed version text: the search is linear.
            for match in _RESYNC_STATUS.finditer(buf, st.pos):
                if self._may_start(st, match.start()):
                    return match.start()
            return None
        # A request line ends with its version: find those, then where the line may begin.
        for match in _RESYNC_VERSION.finditer(buf, st.pos):
            line_begin = buf.rfind(b"\n", st.pos, match.start()) + 1
            starts = [line_begin] if line_begin > st.pos or self._may_start(st, st.pos) else []
            starts += [
                start - st.base
                for start, _, _ in st.chunks
                if st.base + max(line_begin, st.pos) < start < st.base + match.start()
            ]
            for start in starts:
                if request_line(buf, start, match.end() - 1) is not None:
                    return start
        return None

    def _may_start(self, st: _Direction, index: int) -> bool:
        if index == 0:
            if st.line_start:
                return True
        elif st.buf[index - 1] == 0x0A:
            return True
        offset = st.base + index
        return any(start == offset for start, _, _ in st.chunks)

    def _skip(self, st: _Direction, upto: int) -> None:
        if upto > st.pos:
            if not st.resync_noted:
                st.resync_noted = True
                self._out.append(Anomaly("http1.resync"))
            self._charge(st, st.pos, upto, UNDECODED, OPAQUE)
            st.lost_bytes += upto - st.pos
            st.pos = upto

    def _read_head(self, st: _Direction) -> bool:
        """Start line and header block (RFC 9112 sections 2.1, 3, 4, 5).

        (Most heads are read by the fast path, ``_whole_message``, which mirrors this.)"""
        buf, pos, base = st.buf, st.pos, st.base
        if st.started:
            scan_from = st.scan_from - base
        else:
            # RFC 9112 section 2.2: empty lines before a start line are ignored; they are
            # charged with the header block that follows.
            # (Resume after the blanks already seen: rescanning them per packet is quadratic.)
            first = max(pos, st.blank_end - base)
            if first < len(buf) and buf[first] in _CRLF:
                blank = _BLANK_LINES.match(buf, first)
                assert blank is not None
                first = blank.end()
            st.blank_end = base + first
            newline = buf.find(b"\n", first)
            if newline < 0:
                return self._check_head_size(st, len(buf))
            # The start line (``_start``, spelled out: this runs once per message).
            started = False
            if st.direction == ORIG:
                request = request_line(buf, first, newline)
                if request is not None:
                    ordinal, ts = self._origin(st, base + first)
                    self._start_request(st, request[0], request[1], ordinal, ts)
                    started = True
            else:
                status = _STATUS_LINE.fullmatch(buf, first, newline)
                if status is not None:
                    ordinal, ts = self._origin(st, base + first)
                    self._start_response(st, int(status.group(2)), ordinal, ts)
                    started = True
            if not started:
                self._bad(st, "http1.bad_message")
                return True
            st.started = True
            # Stream offsets, not buffer indexes: ``_pump`` drops decoded bytes from the front
            # of the buffer while this header block is still incomplete.
            st.line_end = st.scan_from = base + newline
            scan_from = newline
        match = _HEAD_END.search(buf, scan_from)
        if match is None:
            st.scan_from = max(st.scan_from, base + len(buf) - 2)
            return self._check_head_size(st, len(buf))
        end = match.end()
        if end - pos > MAX_HEADER_BYTES:
            self._bad(st, "http1.header_too_large")
            return True
        exchange = st.exchange
        assert exchange is not None and exchange.message is not None
        self._charge(st, pos, end, exchange.message, FRAMING)
        fields = _parse_fields(buf, st.line_end - base, match.start() + 1)
        st.pos = end
        st.started = False
        if st.direction == ORIG:
            self._request_head(st, exchange, fields)
        else:
            self._response_head(st, exchange, fields)
        return True

    def _check_head_size(self, st: _Direction, end: int) -> bool:
        """False (need data) while the header block fits; past the bound it is garbage."""
        if end - st.pos <= MAX_HEADER_BYTES:
            return False
        self._bad(st, "http1.header_too_large")
        return True

    def _bad(self, st: _Direction, anomaly: str) -> None:
        """Undecodable: the rest of this direction is opaque (DESIGN.md section 8)."""
        self._out.append(Anomaly(anomaly))
        owner = UNDECODED
        if st.started and st.exchange is not None and st.exchange.message is not None:
            owner = st.exchange.message
        self._charge(st, st.pos, len(st.buf), owner, OPAQUE)
        st.pos = len(st.buf)
        st.started = False
        st.mode = _DEAD
        if st.direction == ORIG and self._hold_exchange is None and self._switch is not None:
            self._force_switch()

    # -- start lines ---------------------------------------------------------------------------

    def _start_request(
        self, st: _Direction, method: bytes, target: bytes | bytearray, ordinal: int, ts: float
    ) -> None:
        """A request line, delivered by feed ``ordinal``: a new exchange."""
        message = self._ids.next()
        exchange = _Exchange(message, method)
        exchange.req_start = st.base + st.pos
        out = self._out
        out += (
            MessageStarted(message, PROTOCOL, KIND, ORIG, ordinal, ts),
            MessageNote(message, "method", method.decode("latin-1")),
            MessageNote(message, "target", target[:MAX_TARGET_CHARS].decode("latin-1")),
        )
        pending = self._pending
        if len(pending) >= MAX_PENDING_EXCHANGES:
            pending.popleft()
            out.append(Anomaly("http1.too_many_pending"))
        pending.append(exchange)
        st.exchange = exchange

    def _start_response(self, st: _Direction, status: int, ordinal: int, ts: float) -> None:
        """A status line, delivered by feed ``ordinal``: the response to the oldest request."""
        pending = self._pending
        if not st.suspects and pending and pending[0].message is not None:
            exchange = pending[0]  # the usual case of ``_answered_exchange``
        else:
            exchange = self._answered_exchange(st, ordinal, ts)
        if exchange.resp_start is None:
            exchange.resp_start = st.base + st.pos
        if not exchange.answered:
            exchange.answered = True
            assert exchange.message is not None
            self._out.append(MessageAnswered(exchange.message, ordinal, ts))
        st.exchange = exchange
        st.status = status

    def _answered_exchange(self, st: _Direction, ordinal: int, ts: float) -> _Exchange:
        """The exchange a response answers: the oldest pending one (RFC 9112 section 9.3.2)."""
        if st.suspects:
            self._drop_lost_responses(st)
        pending = self._pending
        if pending and pending[0].message is not None:
            return pending[0]
        # No request for it: joined mid-connection, or the request was lost in a gap.
        exchange = pending.popleft() if pending else _Exchange(None)
        exchange.message = self._ids.next()
        self._out.append(MessageStarted(exchange.message, PROTOCOL, KIND, ORIG, ordinal, ts))
        self._out.append(Anomaly("http1.orphan_response"))
        pending.appendleft(exchange)
        return exchange

    def _drop_lost_responses(self, st: _Direction) -> None:
        """After a response-side gap, skip the exchanges whose responses were lost: as many as
        the bytes between the last decoded response and this one make responses of the mean
        size seen.  Without a mean: one if the gap began between responses, else none (the
        gap cut the response in progress).  At least one pending exchange is left for this
        response."""
        count, total = st.whole_count, st.whole_bytes
        estimate = round(st.lost_bytes * count / total) if total else int(st.lost_at_boundary)
        skip = min(estimate, st.suspects, len(self._pending) - 1)
        st.suspects = 0
        if skip <= 0:
            return
        self._out.append(Anomaly("http1.lost_response", skip))
        for _ in range(skip):
            self._note_bodies(self._pending.popleft())

    # -- header blocks -------------------------------------------------------------------------

    def _request_head(
        self, st: _Direction, exchange: _Exchange, fields: dict[bytes, bytes]
    ) -> None:
        upgrade = fields.get(b"upgrade")
        exchange.switch = upgrade is not None or exchange.method == TUNNEL_METHOD
        exchange.upgrade = (upgrade or b"").lower()
        coding = fields.get(b"transfer-encoding")
        if coding is not None:
            # RFC 9112 section 6.3 item 4: only chunked as the last coding frames a request.
            if _last_coding(coding) != b"chunked":
                self._bad(st, "http1.bad_transfer_encoding")
                return
            self._begin_chunked(st)
            return
        length = _content_length(fields.get(b"content-length"))
        if length is None:
            self._bad(st, "http1.bad_content_length")
        elif length > 0:
            st.mode = _LENGTH
            st.remaining = length
        else:
            self._message_done(st)

    def _response_head(
        self, st: _Direction, exchange: _Exchange, fields: dict[bytes, bytes]
    ) -> None:
        status = st.status
        if status < 200:
            if status == SWITCHING_PROTOCOLS and exchange.switch:
                upgrade = (fields.get(b"upgrade") or exchange.upgrade).lower()
                self._switch_protocols(st, exchange, _upgraded_protocol(upgrade))
                return
            if status == SWITCHING_PROTOCOLS:
                self._out.append(Anomaly("http1.unexpected_switch"))
            # RFC 9110 section 15.2: an interim response; the final one follows.
            st.exchange = None
            return
        exchange.final_seen = True
        self._note(exchange, "status", status)
        if exchange.method == TUNNEL_METHOD and status < 300:
            self._switch_protocols(st, exchange, "")
            return
        self._begin_response_body(st, exchange, status, fields)
        if exchange is self._hold_exchange:
            # Not switching after all: orig's held bytes are HTTP/1.1 again.
            self._release_hold()

    def _begin_response_body(
        self, st: _Direction, exchange: _Exchange, status: int, fields: dict[bytes, bytes]
    ) -> None:
        """RFC 9112 section 6.3, in its order."""
        if exchange.method in NO_CONTENT_METHODS or status in NO_CONTENT_STATUSES:
            self._message_done(st)
            return
        coding = fields.get(b"transfer-encoding")
        if coding is not None:
            if _last_coding(coding) == b"chunked":
                self._begin_chunked(st)
            else:
                st.mode = _CLOSE
                if st.eof:
                    self._message_done(st)
            return
        raw_length = fields.get(b"content-length")
        length = _content_length(raw_length)
        if length is None:
            self._bad(st, "http1.bad_content_length")
        elif raw_length is None:
            st.mode = _CLOSE
            if st.eof:
                self._message_done(st)
        elif length > 0:
            st.mode = _LENGTH
            st.remaining = length
        else:
            self._message_done(st)

    # -- bodies ----------------------------------------------------------------------------

    def _count_body(self, st: _Direction, size: int) -> None:
        exchange = st.exchange
        assert exchange is not None and exchange.message is not None
        self._charge(st, st.pos, st.pos + size, exchange.message, PAYLOAD)
        st.pos += size
        if st.direction == ORIG:
            exchange.request_body_bytes += size
        else:
            exchange.response_body_bytes += size

    def _read_length(self, st: _Direction) -> bool:
        size = min(st.remaining, len(st.buf) - st.pos)
        if size <= 0:
            return False
        self._count_body(st, size)
        st.remaining -= size
        if st.remaining == 0:
            self._message_done(st)
        return True

    def _read_close(self, st: _Direction) -> bool:
        size = len(st.buf) - st.pos
        if size > 0:
            self._count_body(st, size)
        return False

    def _begin_chunked(self, st: _Direction) -> None:
        st.mode = _CHUNKED
        st.chunk_state = _SIZE

    def _read_chunked(self, st: _Direction) -> bool:
        """RFC 9112 section 7.1: size line, data, CRLF, ..., last-chunk, trailers, CRLF."""
        state = st.chunk_state
        if state == _DATA:
            size = min(st.remaining, len(st.buf) - st.pos)
            if size <= 0:
                return False
            self._count_body(st, size)
            st.remaining -= size
            if st.remaining == 0:
                st.chunk_state = _DATA_END
            return True
        if state == _DATA_END:
            return self._read_chunk_end(st)
        newline = st.buf.find(b"\n", st.pos)
        if newline < 0:
            bound = MAX_CHUNK_LINE_BYTES if state == _SIZE else MAX_HEADER_BYTES
            if len(st.buf) - st.pos > bound:
                self._bad(st, "http1.bad_chunk")
                return True
            return False
        line = bytes(st.buf[st.pos : newline])
        if state == _SIZE:
            size_text = line.split(b";", 1)[0].strip(b" \t\r")
            if _HEX.fullmatch(size_text) is None:
                self._bad(st, "http1.bad_chunk")
                return True
            st.remaining = int(size_text, 16)
            st.chunk_state = _DATA if st.remaining else _TRAILER
        self._charge_framing(st, newline + 1)
        if state == _TRAILER and line.strip(b"\r") == b"":
            self._message_done(st)
        return True

    def _read_chunk_end(self, st: _Direction) -> bool:
        tail = bytes(st.buf[st.pos : st.pos + 2])
        if tail.startswith(b"\n"):
            end = st.pos + 1
        elif tail == b"\r\n":
            end = st.pos + 2
        elif tail in (b"", b"\r"):
            return False
        else:
            self._bad(st, "http1.bad_chunk")
            return True
        self._charge_framing(st, end)
        st.chunk_state = _SIZE
        return True

    def _charge_framing(self, st: _Direction, end: int) -> None:
        exchange = st.exchange
        assert exchange is not None and exchange.message is not None
        self._charge(st, st.pos, end, exchange.message, FRAMING)
        st.pos = end

    # -- ends of messages ----------------------------------------------------------------

    def _message_done(self, st: _Direction) -> None:
        """The request or the final response in ``st`` is complete."""
        exchange = st.exchange
        assert exchange is not None
        st.exchange = None
        st.mode = _HEAD
        start = exchange.req_start if st.direction == ORIG else exchange.resp_start
        if start is not None:
            st.whole_count += 1
            st.whole_bytes += st.base + st.pos - start
        message = exchange.message
        assert message is not None  # (``_note``, spelled out: its check holds here)
        if st.direction == ORIG:
            exchange.noted |= 1
            self._out.append(
                MessageNote(message, "request_body_bytes", exchange.request_body_bytes)
            )
            if exchange.switch and not exchange.final_seen:
                self._hold_orig(st, exchange)
            return
        exchange.noted |= 2
        self._out += (
            MessageNote(message, "response_body_bytes", exchange.response_body_bytes),
            MessageEnded(message, self._ts),
        )
        pending = self._pending
        if pending and pending[0] is exchange:
            pending.popleft()

    def _skip_in_body(self, st: _Direction, length: int) -> bool:
        """A gap inside a body of known extent keeps the framing in step (True)."""
        if st.mode == _CLOSE:
            return True
        if st.mode == _LENGTH or (st.mode == _CHUNKED and st.chunk_state == _DATA):
            if length > st.remaining:
                return False
            st.remaining -= length
            if st.remaining == 0:
                if st.mode == _LENGTH:
                    self._message_done(st)
                else:
                    st.chunk_state = _DATA_END
            return True
        return False

    def _lose_sync(self, st: _Direction, length: int) -> None:
        """A gap where the framing cannot follow: resynchronise on the next start line."""
        self._out.append(Anomaly("http1.gap"))
        current = st.exchange
        st.exchange = None
        st.started = False
        st.mode = _RESYNC
        st.resync_noted = False
        st.line_start = False
        count, total = st.whole_count, st.whole_bytes
        if st.direction == ORIG:
            # Requests lost in the gap still get responses: hold their places in the queue.
            lost = round(length * count / total) if total else int(current is None)
            if current is None:
                lost = max(lost, 1)
            for _ in range(min(lost, MAX_PENDING_EXCHANGES - len(self._pending))):
                self._pending.append(_Exchange(None))
            return
        if st.suspects:
            st.lost_bytes += length  # another gap before the next response was found
            return
        if current is None and self._pending and self._pending[0].answered:
            current = self._pending[0]  # between an interim and the final response
        st.lost_at_boundary = current is None
        st.lost_bytes = length
        if current is not None:
            # Part of the loss is the rest of the response in progress: about the mean size
            # less what was seen of it.
            if current.resp_start is not None and count:
                seen = st.base - length - current.resp_start
                st.lost_bytes -= max(0, total // count - seen)
            if self._pending and self._pending[0] is current:
                self._note_bodies(self._pending.popleft())
        st.suspects = len(self._pending)

    def _charge_rest(self, st: _Direction) -> bool:
        """Undecoded bytes left at a gap or the end: part of a message if one was started.
        False if there were none."""
        if st.pos >= len(st.buf):
            return False
        exchange = st.exchange
        if st.mode in (_HEAD, _CHUNKED) and exchange is not None and exchange.message is not None:
            self._out.append(Anomaly("http1.truncated"))
            self._charge(st, st.pos, len(st.buf), exchange.message, FRAMING)
        else:
            if st.mode == _HEAD:
                self._out.append(Anomaly("http1.truncated"))
            elif st.mode == _RESYNC and not st.resync_noted:
                st.resync_noted = True
                self._out.append(Anomaly("http1.resync"))
            self._charge(st, st.pos, len(st.buf), UNDECODED, OPAQUE)
        st.pos = len(st.buf)
        return True

    # -- leaving HTTP/1.1: Upgrade and CONNECT -----------------------------------------------

    def _hold(self, call: _Held, size: int) -> None:
        self._held.append(call)
        self._held_bytes += size
        if self._held_bytes <= MAX_HELD_BYTES:
            return
        if self._switch is not None:
            self._out.append(Anomaly("http1.upgrade_request_unfinished"))
            self._force_switch()
        else:
            self._out.append(Anomaly("http1.upgrade_unanswered"))
            self._release_hold()

    def _to_held(self, st: _Direction) -> None:
        """Move the undecoded bytes of ``st`` into the held calls, with their ordinals."""
        offset = st.base + st.pos
        entries = list(st.chunks)
        for index, (start, ordinal, ts) in enumerate(entries):
            stop = entries[index + 1][0] if index + 1 < len(entries) else st.end
            first, last = max(start, offset), stop
            if last > first:
                piece = bytes(st.buf[first - st.base : last - st.base])
                self._held.append(("feed", st.direction, piece, ordinal, ts))
                self._held_bytes += len(piece)
        st.buf.clear()
        st.pos = 0
        st.base = st.end = offset
        st.chunks.clear()
        st.mode = _HOLD

    def _hold_orig(self, st: _Direction, exchange: _Exchange) -> None:
        """RFC 9110 section 7.8: after an Upgrade request, what orig sends next depends on
        the answer; hold it until then."""
        self._hold_exchange = exchange
        self._to_held(st)
        if self._switch is not None:
            self._build_inner()

    def _release_hold(self) -> None:
        """The answer kept HTTP/1.1: decode orig's held calls as HTTP/1.1."""
        st = self._dirs[ORIG]
        self._hold_exchange = None
        if st.mode != _HOLD:
            return
        st.mode = _HEAD
        mine = [call for call in self._held if call[1] == ORIG]
        self._held = [call for call in self._held if call[1] != ORIG]
        self._held_bytes = sum(len(c[2]) for c in self._held if isinstance(c[2], bytes))
        self._replay(mine, self)

    def _switch_protocols(self, st: _Direction, exchange: _Exchange, protocol: str) -> None:
        """resp left HTTP/1.1 after this header block; orig follows once its request ends."""
        self._switch = (protocol, exchange, self._ts)
        if protocol != "http2":  # h2c's response goes on as stream 1, whose status HTTP/2 notes
            self._note(exchange, "status", st.status)
        self._to_held(st)
        orig = self._dirs[ORIG]
        if orig.mode == _HOLD or orig.mode == _DEAD:
            self._build_inner()

    def _force_switch(self) -> None:
        orig = self._dirs[ORIG]
        if orig.mode != _HOLD:
            self._to_held(orig)
        self._build_inner()

    def _build_inner(self) -> None:
        """Both directions reached the switch: build the next decoder and replay the held calls."""
        assert self._switch is not None
        protocol, exchange, ts = self._switch
        orig, resp = self._dirs
        base = (orig.base, resp.base)
        assert exchange.message is not None
        inner: StreamDecoder
        if protocol == "http2":
            self._note(exchange, "upgrade", H2C_TOKEN.decode())
            inner = make_decoder(
                "http2",
                self._ids,
                self._options,
                base=base,
                upgraded=True,
                upgrade_message=exchange.message,
            )
            if isinstance(inner, OpaqueDecoder):  # no HTTP/2 decoder: keep the offsets right
                inner = OpaqueDecoder("http2", base)
        elif protocol == "websocket":
            # The Upgrade exchange stays this message; the frames are the WebSocket decoder's.
            self._note(exchange, "upgrade", WEBSOCKET_TOKEN.decode())
            self._out.append(MessageEnded(exchange.message, ts))
            inner = make_decoder("websocket", self._ids, self._options, base=base)
        else:
            # A tunnel (CONNECT, WebSocket...): its bytes are not ours to decode.
            self._out.append(Anomaly("http1.tunnel"))
            self._out.append(MessageEnded(exchange.message, ts))
            inner = OpaqueDecoder(PROTOCOL, base)
        if self._pending and self._pending[0] is exchange:
            self._pending.popleft()
        if protocol == "http2":
            exchange.noted |= 2  # the response body comes on stream 1, counted by HTTP/2
        self._note_bodies(exchange)
        orig.mode = resp.mode = _SWITCHED
        self._inner = inner
        self._switch = None
        self._hold_exchange = None
        self._close_spans()  # ours first: the ledger then sees spans in stream order
        held = sorted(self._held, key=lambda call: call[3])
        self._held = []
        self._held_bytes = 0
        self._replay(held, inner)

    def _replay(self, calls: list[_Held], target: StreamDecoder) -> None:
        for call, direction, value, ordinal, ts in calls:
            if target is self:
                if call == "feed":
                    assert isinstance(value, bytes)
                    self._feed(direction, value, ordinal, ts)
                elif call == "gap":
                    assert isinstance(value, int)
                    self._gap(direction, value, ordinal, ts)
                else:
                    self._eof(direction, ordinal, ts)
            elif call == "feed":
                assert isinstance(value, bytes)
                self._out += target.feed(direction, value, ordinal, ts)
            elif call == "gap":
                assert isinstance(value, int)
                self._out += target.gap(direction, value, ordinal, ts)
            else:
                self._out += target.eof(direction, ordinal, ts)


def _upgraded_protocol(upgrade: bytes) -> str:
    """The decoder a 101 hands over to: "http2" (h2c), "websocket", or "" (a tunnel)."""
    if H2C_TOKEN in upgrade:
        return "http2"
    return "websocket" if WEBSOCKET_TOKEN in upgrade else ""


def _parse_fields(buf: bytes | bytearray, newline: int, end: int) -> dict[bytes, bytes]:
    """The framing fields of the header lines in buf[newline + 1:end] (RFC 9112 section 5),
    leniently.  Repeated fields are joined with commas (RFC 9110 section 5.3); other fields are
    not looked at.  ``buf[newline]`` must be the LF that ends the start line."""
    fields: dict[bytes, bytes] = {}
    # (A loop of searches costs less than finditer for the one or two fields usually found.)
    search = _FRAMING_FIELD.search
    match = search(buf, newline, end)
    while match is not None:
        name, raw_value = match.group(1, 2)
        key = bytes(name.lower())
        value = bytes(raw_value.strip(b" \t\r"))
        fields[key] = fields[key] + b"," + value if key in fields else value
        match = search(buf, match.end(), end)
    return fields


def _last_coding(value: bytes) -> bytes:
    return value.rsplit(b",", 1)[-1].strip(b" \t").lower()


def _content_length(value: bytes | None) -> int | None:
    """RFC 9110 section 8.6: identical repeated values are one; anything else is invalid."""
    if value is None:
        return 0
    if value.isdigit() and len(value) <= 18:
        return int(value)  # the usual single value, read as the general case below reads it
    values = {part.strip(b" \t") for part in value.split(b",")}
    if len(values) != 1:
        return None
    (text,) = values
    return int(text) if text.isdigit() and len(text) <= 18 else None
