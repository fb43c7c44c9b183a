"""Leaving HTTP/1.1: Upgrade and CONNECT (RFC 9110 sections 7.8 and 9.3.6).

After a request that may leave HTTP/1.1, what orig sends next is held until the answer says
whether HTTP/1.1 goes on; after ``101 Switching Protocols`` (or a 2xx to CONNECT) both
directions are handed, from the switch on, to the decoder of the new protocol.
"""

from __future__ import annotations

from analyzer.decoding.events import ORIG, Anomaly, MessageEnded, StreamDecoder
from analyzer.protocols.http1.base import DecoderBase
from analyzer.protocols.http1.state import DEAD, HEAD, HOLD, SWITCHED, Direction, Exchange, Held
from analyzer.protocols.http1.wire import H2C_TOKEN, WEBSOCKET_TOKEN

#: Bytes held after an Upgrade/CONNECT request while waiting for the answer that says whether
#: HTTP/1.1 goes on (RFC 9110 section 7.8).  Clients send nothing until then, so little is held.
MAX_HELD_BYTES = 256 * 1024


class Upgrade(DecoderBase):
    """Holding orig's bytes across an Upgrade or CONNECT, and handing over after a switch."""

    def _hold(self, call: Held, size: int) -> None:
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

    def _to_held(self, st: Direction) -> None:
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
        st.mode = HOLD

    def _hold_orig(self, st: Direction, exchange: Exchange) -> None:
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
        if st.mode != HOLD:
            return
        st.mode = HEAD
        mine = [call for call in self._held if call[1] == ORIG]
        self._held = [call for call in self._held if call[1] != ORIG]
        self._held_bytes = sum(len(c[2]) for c in self._held if isinstance(c[2], bytes))
        self._replay_here(mine)

    def _switch_protocols(self, st: Direction, exchange: Exchange, protocol: str) -> None:
        """resp left HTTP/1.1 after this header block; orig follows once its request ends."""
        self._switch = (protocol, exchange, self._ts)
        if protocol != "http2":  # h2c's response goes on as stream 1, whose status HTTP/2 notes
            self._note(exchange, "status", st.status)
        self._to_held(st)
        orig = self._dirs[ORIG]
        if orig.mode == HOLD or orig.mode == DEAD:
            self._build_inner()

    def _force_switch(self) -> None:
        orig = self._dirs[ORIG]
        if orig.mode != HOLD:
            self._to_held(orig)
        self._build_inner()

    def _build_inner(self) -> None:
        """Both directions reached the switch: build the next decoder and replay the held calls."""
        assert self._switch is not None
        protocol, exchange, ts = self._switch
        orig, resp = self._dirs
        base = (orig.base, resp.base)
        assert exchange.message is not None
        if protocol == "http2":
            self._note(exchange, "upgrade", H2C_TOKEN.decode())
        elif protocol == "websocket":
            # The Upgrade exchange stays this message; the frames are the WebSocket decoder's.
            self._note(exchange, "upgrade", WEBSOCKET_TOKEN.decode())
            self._out.append(MessageEnded(exchange.message, ts))
        else:
            self._out.append(Anomaly("http1.tunnel"))
            self._out.append(MessageEnded(exchange.message, ts))
        inner = self._inner_decoder(protocol, exchange.message, base)
        if self._pending and self._pending[0] is exchange:
            self._pending.popleft()
        if protocol == "http2":
            exchange.noted |= 2  # the response body comes on stream 1, counted by HTTP/2
        self._note_bodies(exchange)
        orig.mode = resp.mode = SWITCHED
        self._inner = inner
        self._switch = None
        self._hold_exchange = None
        self._close_spans()  # ours first: the ledger then sees spans in stream order
        held = sorted(self._held, key=lambda call: call[3])
        self._held = []
        self._held_bytes = 0
        self._replay_into(held, inner)

    def _replay_here(self, calls: list[Held]) -> None:
        """Decode held calls as HTTP/1.1 after all."""
        for call, direction, value, ordinal, ts in calls:
            if call == "feed":
                assert isinstance(value, bytes)
                self._feed(direction, value, ordinal, ts)
            elif call == "gap":
                assert isinstance(value, int)
                self._gap(direction, value, ordinal, ts)
            else:
                self._eof(direction, ordinal, ts)

    def _replay_into(self, calls: list[Held], target: StreamDecoder) -> None:
        """Hand held calls to the decoder that took the connection over."""
        for call, direction, value, ordinal, ts in calls:
            if call == "feed":
                assert isinstance(value, bytes)
                self._out += target.feed(direction, value, ordinal, ts)
            elif call == "gap":
                assert isinstance(value, int)
                self._out += target.gap(direction, value, ordinal, ts)
            else:
                self._out += target.eof(direction, ordinal, ts)
