"""The fast path (DESIGN.md section 7): whole messages and body bytes read straight from a feed.

A feed that starts where nothing is buffered is read here when it can be, with the same events
in the same order as the general path (framer.py), and without buffering; heads seen before on
a direction are remembered with what was read from them.
"""

from __future__ import annotations

from analyzer.decoding.events import FRAMING, ORIG, PAYLOAD, MessageNote, Span
from analyzer.protocols.http1.gaps import Gaps
from analyzer.protocols.http1.state import CLOSE, DATA_END, LENGTH, Direction, Exchange, Head
from analyzer.protocols.http1.wire import (
    CRLF,
    HEAD_END,
    MAX_HEADER_BYTES,
    NO_CONTENT_METHODS,
    NO_CONTENT_STATUSES,
    STATUS_LINE,
    TUNNEL_METHOD,
    content_length,
    request_line,
)

#: Heads remembered per direction with what the fast path read from them (see
#: ``_whole_message``): clients resend the same request head, servers the same response head
#: until the Date changes; two each keep a connection's memory to about 1 KiB.
MAX_REMEMBERED_HEADS = 2
#: Longest head remembered: the usual request or response head is 100 to 400 octets.
MAX_REMEMBERED_HEAD_BYTES = 512


class FastPath(Gaps):
    """Reading the usual packets without buffering them."""

    def _whole_messages(self, st: Direction, data: bytes, ordinal: int, ts: float) -> bool:
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
        self, st: Direction, data: bytes, start: int, origin: int, ordinal: int, ts: float
    ) -> int:
        """For ``_whole_messages``: read the message at data[start:] (st.base is its offset,
        ``origin`` data[0]'s).  Returns where it ends; ``len(data)`` once data is used up (the
        body goes on, or the general path took the rest); -1, having changed nothing, if
        data[start:] begins with a blank line or holds no whole line."""
        # 1. The start line.  As in ``_read_head``, it is matched once its LF is in, and only
        # once (the lenient request-line pattern can be slow on hostile lines); blank lines
        # before it are left to ``_read_head``.
        if data[start] in CRLF:
            return -1
        newline = data.find(b"\n", start)
        if newline < 0:
            return -1
        direction = st.direction
        head_end = HEAD_END.search(data, newline)
        whole = head_end is not None and head_end.end() - start <= MAX_HEADER_BYTES
        # A head seen before on this direction reads the same: take what was read from it.
        heads = self._heads[direction]
        key = b""
        known: Head | None = None
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
            matched = STATUS_LINE.fullmatch(data, start, newline)
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
            fields = self._fields(data, newline, head_end.start() + 1)
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
                or b"expect" in fields  # (rare: ``_request_head`` notes the expectation)
                or exchange.method == TUNNEL_METHOD
            ):
                length = None
            else:
                raw_length = fields.get(b"content-length")
                length = 0 if raw_length is None else content_length(raw_length)
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
            st.mode = LENGTH
            st.remaining = length - body
            st.base = st.end = origin + size
            return size
        # 5. The message is complete.
        end += body
        st.base = st.end = origin + end
        self._message_done(st)
        return end

    def _buffer_rest(
        self, st: Direction, data: bytes, start: int, origin: int, ordinal: int, ts: float
    ) -> None:
        """Hand data[start:] to the general path: buffer it as ``_feed`` would have buffered
        ``data``, less the bytes the fast path decoded (st.base is already past them)."""
        st.chunks.append((origin, ordinal, ts))
        st.buf += memoryview(data)[start:]
        st.end = origin + len(data)

    def _plain_response_length(
        self, st: Direction, exchange: Exchange, fields: dict[bytes, bytes]
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
            length = content_length(raw_length)
            if length is None:
                return None
        exchange.final_seen = True
        assert exchange.message is not None  # (``_note``, spelled out: its check holds here)
        self._out.append(MessageNote(exchange.message, "status", status))
        return length

    def _body_only(self, st: Direction, size: int) -> None:
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
        if mode != CLOSE:
            st.remaining -= size
            if st.remaining == 0:
                if mode == LENGTH:
                    self._message_done(st)
                else:
                    st.chunk_state = DATA_END
