"""The general path: each direction's buffered bytes -> start lines, header blocks, bodies.

Requests and responses are framed independently and matched in order (RFC 9112 section 9.3.2);
a body's extent follows RFC 9112 section 6.3.  Most packets are read by the fast path
(fastpath.py), which mirrors this and hands over to it whatever it cannot read.
"""

from __future__ import annotations

from analyzer.decoding.events import (
    FRAMING,
    OPAQUE,
    ORIG,
    PAYLOAD,
    UNDECODED,
    Anomaly,
    MessageAnswered,
    MessageEnded,
    MessageNote,
    MessageStarted,
)
from analyzer.protocols.http1.resync import Resync
from analyzer.protocols.http1.state import (
    CHUNKED,
    CLOSE,
    DATA,
    DATA_END,
    DEAD,
    HEAD,
    KIND,
    LENGTH,
    MAX_PENDING_EXCHANGES,
    PROTOCOL,
    RESYNC,
    SIZE,
    TRAILER,
    Direction,
    Exchange,
)
from analyzer.protocols.http1.wire import (
    BLANK_LINES,
    CONTINUE,
    CONTINUE_EXPECTATION,
    CRLF,
    HEAD_END,
    HEX_DIGITS,
    MAX_CHUNK_LINE_BYTES,
    MAX_HEADER_BYTES,
    NO_CONTENT_METHODS,
    NO_CONTENT_STATUSES,
    STATUS_LINE,
    SWITCHING_PROTOCOLS,
    TUNNEL_METHOD,
    content_length,
    last_coding,
    request_line,
    upgraded_protocol,
)

#: Longest request target kept in a note.
MAX_TARGET_CHARS = 200


class Framer(Resync):
    """The decoding loop and the reading of heads and bodies."""

    def _pump(self, st: Direction) -> None:
        """Decode as much of ``st.buf`` as is complete, then drop what was decoded."""
        while st.pos < len(st.buf):
            # (An empty rest decodes to nothing in every mode: stop without asking.)
            mode = st.mode
            if mode == HEAD:
                progressed = self._read_head(st)
            elif mode == LENGTH:
                progressed = self._read_length(st)
            elif mode == CHUNKED:
                progressed = self._read_chunked(st)
            elif mode == CLOSE:
                progressed = self._read_close(st)
            elif mode == RESYNC:
                progressed = self._resync(st)
            elif mode == DEAD:
                self._charge(st, st.pos, len(st.buf), UNDECODED, OPAQUE)
                st.pos = len(st.buf)
                progressed = False
            else:  # HOLD, SWITCHED: the bytes were handed on
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

    def _read_head(self, st: Direction) -> bool:
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
            if first < len(buf) and buf[first] in CRLF:
                blank = BLANK_LINES.match(buf, first)
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
                status = STATUS_LINE.fullmatch(buf, first, newline)
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
        match = HEAD_END.search(buf, scan_from)
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
        fields = self._fields(buf, st.line_end - base, match.start() + 1)
        st.pos = end
        st.started = False
        if st.direction == ORIG:
            self._request_head(st, exchange, fields)
        else:
            self._response_head(st, exchange, fields)
        return True

    def _check_head_size(self, st: Direction, end: int) -> bool:
        """False (need data) while the header block fits; past the bound it is garbage."""
        if end - st.pos <= MAX_HEADER_BYTES:
            return False
        self._bad(st, "http1.header_too_large")
        return True

    def _bad(self, st: Direction, anomaly: str) -> None:
        """Undecodable: the rest of this direction is opaque (DESIGN.md section 8)."""
        self._out.append(Anomaly(anomaly))
        owner = UNDECODED
        if st.started and st.exchange is not None and st.exchange.message is not None:
            owner = st.exchange.message
        self._charge(st, st.pos, len(st.buf), owner, OPAQUE)
        st.pos = len(st.buf)
        st.started = False
        st.mode = DEAD
        if st.direction == ORIG and self._hold_exchange is None and self._switch is not None:
            self._force_switch()

    # -- start lines ---------------------------------------------------------------------------

    def _start_request(
        self, st: Direction, method: bytes, target: bytes | bytearray, ordinal: int, ts: float
    ) -> None:
        """A request line, delivered by feed ``ordinal``: a new exchange."""
        message = self._ids.next()
        exchange = Exchange(message, method)
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

    def _start_response(self, st: Direction, status: int, ordinal: int, ts: float) -> None:
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

    def _answered_exchange(self, st: Direction, ordinal: int, ts: float) -> Exchange:
        """The exchange a response answers: the oldest pending one (RFC 9112 section 9.3.2)."""
        if st.suspects:
            self._drop_lost_responses(st)
        pending = self._pending
        if pending and pending[0].message is not None:
            return pending[0]
        # No request for it: joined mid-connection, or the request was lost in a gap.
        exchange = pending.popleft() if pending else Exchange(None)
        exchange.message = self._ids.next()
        self._out.append(MessageStarted(exchange.message, PROTOCOL, KIND, ORIG, ordinal, ts))
        self._out.append(Anomaly("http1.orphan_response"))
        pending.appendleft(exchange)
        return exchange

    def _drop_lost_responses(self, st: Direction) -> None:
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

    def _request_head(self, st: Direction, exchange: Exchange, fields: dict[bytes, bytes]) -> None:
        upgrade = fields.get(b"upgrade")
        exchange.switch = upgrade is not None or exchange.method == TUNNEL_METHOD
        exchange.upgrade = (upgrade or b"").lower()
        expect = fields.get(b"expect")
        if expect is not None:
            exchange.expect_continue = expect.strip(b" \t").lower() == CONTINUE_EXPECTATION
        coding = fields.get(b"transfer-encoding")
        if coding is not None:
            # RFC 9112 section 6.3 item 4: only chunked as the last coding frames a request.
            if last_coding(coding) != b"chunked":
                self._bad(st, "http1.bad_transfer_encoding")
                return
            self._begin_chunked(st)
            return
        length = content_length(fields.get(b"content-length"))
        if length is None:
            self._bad(st, "http1.bad_content_length")
        elif length > 0:
            st.mode = LENGTH
            st.remaining = length
        else:
            self._message_done(st)

    def _response_head(self, st: Direction, exchange: Exchange, fields: dict[bytes, bytes]) -> None:
        status = st.status
        if status < 200:
            if status == SWITCHING_PROTOCOLS and exchange.switch:
                upgrade = (fields.get(b"upgrade") or exchange.upgrade).lower()
                self._switch_protocols(st, exchange, upgraded_protocol(upgrade))
                return
            if status == SWITCHING_PROTOCOLS:
                self._out.append(Anomaly("http1.unexpected_switch"))
            if status == CONTINUE:
                self._continue_seen(st, exchange)
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

    def _continue_seen(self, st: Direction, exchange: Exchange) -> None:
        """RFC 9110 section 10.1.1: a ``100 Continue`` to a request that expects it, before any
        byte of its body: if the body follows, the client waited for this answer."""
        if (
            exchange.expect_continue
            and exchange.continued is None
            and exchange.request_body_bytes == 0
            and self._dirs[ORIG].exchange is exchange  # the request is not over yet
        ):
            assert exchange.resp_start is not None  # (set by this response's status line)
            exchange.continued = self._origin(st, exchange.resp_start)

    def _begin_response_body(
        self, st: Direction, exchange: Exchange, status: int, fields: dict[bytes, bytes]
    ) -> None:
        """RFC 9112 section 6.3, in its order."""
        if exchange.method in NO_CONTENT_METHODS or status in NO_CONTENT_STATUSES:
            self._message_done(st)
            return
        coding = fields.get(b"transfer-encoding")
        if coding is not None:
            if last_coding(coding) == b"chunked":
                self._begin_chunked(st)
            else:
                st.mode = CLOSE
                if st.eof:
                    self._message_done(st)
            return
        raw_length = fields.get(b"content-length")
        length = content_length(raw_length)
        if length is None:
            self._bad(st, "http1.bad_content_length")
        elif raw_length is None:
            st.mode = CLOSE
            if st.eof:
                self._message_done(st)
        elif length > 0:
            st.mode = LENGTH
            st.remaining = length
        else:
            self._message_done(st)

    # -- bodies ----------------------------------------------------------------------------

    def _count_body(self, st: Direction, size: int) -> None:
        exchange = st.exchange
        assert exchange is not None and exchange.message is not None
        self._charge(st, st.pos, st.pos + size, exchange.message, PAYLOAD)
        st.pos += size
        if st.direction == ORIG:
            exchange.request_body_bytes += size
        else:
            exchange.response_body_bytes += size

    def _read_length(self, st: Direction) -> bool:
        size = min(st.remaining, len(st.buf) - st.pos)
        if size <= 0:
            return False
        self._count_body(st, size)
        st.remaining -= size
        if st.remaining == 0:
            self._message_done(st)
        return True

    def _read_close(self, st: Direction) -> bool:
        size = len(st.buf) - st.pos
        if size > 0:
            self._count_body(st, size)
        return False

    def _begin_chunked(self, st: Direction) -> None:
        st.mode = CHUNKED
        st.chunk_state = SIZE

    def _read_chunked(self, st: Direction) -> bool:
        """RFC 9112 section 7.1: size line, data, CRLF, ..., last-chunk, trailers, CRLF."""
        state = st.chunk_state
        if state == DATA:
            size = min(st.remaining, len(st.buf) - st.pos)
            if size <= 0:
                return False
            self._count_body(st, size)
            st.remaining -= size
            if st.remaining == 0:
                st.chunk_state = DATA_END
            return True
        if state == DATA_END:
            return self._read_chunk_end(st)
        newline = st.buf.find(b"\n", st.pos)
        if newline < 0:
            bound = MAX_CHUNK_LINE_BYTES if state == SIZE else MAX_HEADER_BYTES
            if len(st.buf) - st.pos > bound:
                self._bad(st, "http1.bad_chunk")
                return True
            return False
        line = bytes(st.buf[st.pos : newline])
        if state == SIZE:
            size_text = line.split(b";", 1)[0].strip(b" \t\r")
            if HEX_DIGITS.fullmatch(size_text) is None:
                self._bad(st, "http1.bad_chunk")
                return True
            st.remaining = int(size_text, 16)
            st.chunk_state = DATA if st.remaining else TRAILER
        self._charge_framing(st, newline + 1)
        if state == TRAILER and line.strip(b"\r") == b"":
            self._message_done(st)
        return True

    def _read_chunk_end(self, st: Direction) -> bool:
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
        st.chunk_state = SIZE
        return True

    def _charge_framing(self, st: Direction, end: int) -> None:
        exchange = st.exchange
        assert exchange is not None and exchange.message is not None
        self._charge(st, st.pos, end, exchange.message, FRAMING)
        st.pos = end

    # -- ends of messages ----------------------------------------------------------------

    def _message_done(self, st: Direction) -> None:
        """The request or the final response in ``st`` is complete."""
        exchange = st.exchange
        assert exchange is not None
        st.exchange = None
        st.mode = HEAD
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
            if exchange.continued is not None and exchange.request_body_bytes:
                # The body followed the 100 it waited for: that answer ends two waits, the
                # 100's and the final response's (DESIGN.md section 4).
                ordinal, ts = exchange.continued
                self._out.append(MessageAnswered(message, ordinal, ts, waits=2))
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
