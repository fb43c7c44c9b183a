"""TLS records and handshakes: a sans-IO StreamDecoder on the ciphertext stream.

``TlsDecoder`` frames the TLS record layer (RFC 8446 5.1, RFC 5246 6.2), reassembles and parses
the handshake, counts handshakes (DESIGN.md section 4), charges every ciphertext byte to the
ledger (DESIGN.md section 3) and, with secrets from ``options.keylog``, decrypts application data
(``analyzer.tls.crypto``) and hands the plaintext to an inner ``DetectingDecoder`` whose spans are
translated back to the ciphertext offsets where the plaintext sits.

It is the top of a stack of modules, one job each: ``records`` (record headers, spans),
``handshake`` (message types, hello parsing), ``state`` (the connection's facts and each
direction's progress), ``protection`` (which keys open a protected record, and what an unreadable
one is), ``plaintext`` (plaintext offsets back to ciphertext, record overhead), and below them
``crypto`` (record decryption), ``keys`` (key schedule) and ``suites`` (the suite table).

Ledger, per record:

* handshake records (header + content), ChangeCipherSpec, and in TLS 1.3 the encrypted handshake
  records (EncryptedExtensions ... Finished, EndOfEarlyData, NewSessionTicket): ``SETUP``/``TLS``;
  a record carrying only KeyUpdate: ``CONTROL``/``TLS``;
* alerts: close_notify ``TEARDOWN``/``TLS``, others ``CONTROL``/``TLS``.  An alert encrypted
  without keys (TLS <= 1.2) is taken as close_notify: nearly all are, and a fatal one ends the
  connection as well (approximation);
* decrypted application data: the plaintext keeps the inner decoder's owner and layer; the header
  and the expansion (explicit nonce, tag, MAC, padding, TLS 1.3 inner type byte) are ``TLS``,
  split pro rata (``accounting.apportion``) among the owners of the record's plaintext once the
  inner decoder has spanned all of it;
* an empty application data record (TLS 1.0 CBC's countermeasure) is charged with the next
  record of its direction (``CONTROL`` if none comes); heartbeats are ``CONTROL``/``TLS``;
* application data without keys: ``UNDECODED``; the header and the suite's fixed expansion
  (``tlscrypto.fixed_expansion_bytes``: a lower bound for CBC, whose padding is unknowable) are
  ``TLS``, the rest ``OPAQUE``.  ``SetupEnded`` marks the first application data record.

With keys, 0-RTT records (RFC 8446 4.2.10) are held until the ServerHello names the suite and,
when the server's handshake secret is logged, until its EncryptedExtensions say which ALPN the
connection speaks and whether early data was accepted (the facts of every TLS 1.3 handshake,
full, resumed or 0-RTT, come from there); then they are read with the early secret, unless the
server rejected them (it never read them either, so they are undecoded).  Without the early
secret, the first client record the handshake secret opens ends the early data, and the
unreadable record just before it was EndOfEarlyData (setup) when EncryptedExtensions accepted
early data.  A record that fails to authenticate is anomaly
``tls.decrypt_failed``; that direction is not decrypted again (its sequence number is lost).

TLS 1.3 without keys (Wireshark's heuristic): the server's protected records from its ServerHello
up to the client's Finished are handshake; the client's protected records before the ServerHello
are 0-RTT application data, and its first protected record after it is its Finished (the first two
when early data is taken as accepted: EndOfEarlyData travels in its own record).  0.5-RTT data the
server sends before the client's Finished is therefore counted as setup, and NewSessionTicket
records after it as undecoded data.

Early data without keys: reported accepted when the client offered it and the server selected a
PSK (the server may still have rejected it; only EncryptedExtensions, encrypted, would tell).
Handshakes: a ClientHello starts one (its retry after HelloRetryRequest does not).  TLS <= 1.2:
full when the server sent ServerHelloDone, resumed when its ChangeCipherSpec came without one
(session id or ticket resumption; PSK suites without Certificate still send ServerHelloDone, so
they count as full, as TShark does).  TLS 1.3: resumed when the ServerHello carries pre_shared_key.

Nothing derived from secrets ever goes into an anomaly or a note.
"""

from __future__ import annotations

from collections.abc import Callable

from analyzer.decoding.detect import DetectingDecoder
from analyzer.decoding.events import (
    CONTROL,
    OPAQUE,
    SETUP,
    TEARDOWN,
    TLS,
    UNDECODED,
    Anomaly,
    Answering,
    Event,
    MessageIds,
    ProtocolIdentified,
    Span,
    StreamDecoder,
    Unsolicited,
)
from analyzer.errors import DecodeError
from analyzer.options import DecodeOptions
from analyzer.tls.handshake import (
    CERTIFICATE,
    CLIENT_HELLO,
    ENCRYPTED_EXTENSIONS,
    END_OF_EARLY_DATA,
    FINISHED,
    HANDSHAKE_HEADER_BYTES,
    KEY_UPDATE,
    KEY_UPDATE_HEADER,
    MAX_HANDSHAKE_BYTES,
    NEW_SESSION_TICKET,
    SERVER_HELLO,
    SERVER_HELLO_DONE,
    ClientHello,
    ServerHello,
    parse_client_hello,
    parse_encrypted_extensions,
    parse_server_hello,
)
from analyzer.tls.protection import RecordProtection
from analyzer.tls.records import (
    ALERT,
    ALERT_FATAL,
    APPLICATION_DATA,
    CHANGE_CIPHER_SPEC,
    CLOSE_NOTIFY,
    HANDSHAKE,
    RECORD_HEADER_BYTES,
    add_span,
    parse_record_header,
    version_name,
)
from analyzer.tls.state import (
    ALPN_PROTOCOLS,
    CLIENT_HANDSHAKE,
    HANDSHAKE_KEYS,
    Handshake,
)

# The names tests and tools read from this module before the split into records, handshake,
# state, protection and plaintext.
__all__ = [
    "ALPN_PROTOCOLS",
    "MAX_HANDSHAKE_BYTES",
    "MAX_HELD_BYTES",
    "ClientHello",
    "ServerHello",
    "TlsDecoder",
    "parse_client_hello",
    "parse_encrypted_extensions",
    "parse_server_hello",
    "version_name",
]

#: Client records held while waiting for the ServerHello that says how to read them (0-RTT data:
#: OpenSSL's default max_early_data is 16 KiB; browsers send far less).  Past it they go opaque.
MAX_HELD_BYTES = 64 * 1024


class TlsDecoder(RecordProtection):
    """TLS record layer, handshake, key-log decryption; see the module docstring."""

    # -- StreamDecoder ---------------------------------------------------------------------------

    def feed(self, direction: int, data: bytes, ordinal: int, ts: float) -> list[Event]:
        out = self._announce()
        st = self._dirs[direction]
        if st.dead:
            add_span(out, direction, st.offset, st.offset + len(data), UNDECODED, OPAQUE)
            st.offset += len(data)
            return out
        st.buf += data
        self._feed_records = self._feed_tickets = 0
        self._frame(direction, ordinal, ts, out)
        if self._feed_tickets and self._feed_tickets >= self._feed_records:
            self._marks.append(Unsolicited(direction, ordinal))
        if self._marks:
            out += self._marks
            self._marks = []
        return out

    def gap(self, direction: int, length: int, ordinal: int, ts: float) -> list[Event]:
        out = self._announce()
        st = self._dirs[direction]
        if not st.dead:
            # Record boundaries and sequence numbers are lost with the missing bytes.
            out.append(Anomaly("tls.gap"))
            self._kill(direction, out)
        st.offset += length
        return out

    def eof(self, direction: int, ordinal: int, ts: float) -> list[Event]:
        out: list[Event] = []
        if self._inner is not None:
            self._from_inner(self._inner.eof(direction, ordinal, ts), out)
        return out

    def finish(self, ts: float) -> list[Event]:
        out = self._announce()
        for direction in (0, 1):
            self._release_held(direction, out)
            self._flush_deferred(direction, False, out)
        out += self._marks
        self._marks = []
        for direction, st in enumerate(self._dirs):
            if st.buf and not st.dead:
                out.append(Anomaly("tls.truncated_record"))
                self._kill(direction, out)
        if self._inner is not None:
            self._from_inner(self._inner.finish(ts), out)
        for st in self._dirs:
            st.plain.finish(out)
        self._emit_handshake(out)
        return out

    # -- record framing --------------------------------------------------------------------------

    def _announce(self) -> list[Event]:
        if self._announced:
            return []
        self._announced = True
        return [ProtocolIdentified("tls")]

    def _frame(self, d: int, ordinal: int, ts: float, out: list[Event]) -> None:
        """Cut whole records off the direction's buffer and process each."""
        st = self._dirs[d]
        buf = st.buf
        pos = 0
        while len(buf) - pos >= RECORD_HEADER_BYTES:
            header = parse_record_header(buf, pos)
            if header is None:
                out.append(Anomaly("tls.bad_record" if st.seen else "tls.not_tls"))
                del buf[:pos]
                st.offset += pos
                self._kill(d, out)
                return
            ctype, version, length = header
            end = pos + RECORD_HEADER_BYTES + length
            if len(buf) < end:
                break
            st.seen = True
            fragment = bytes(buf[pos + RECORD_HEADER_BYTES : end])
            self._record(d, st.offset + pos, ctype, version, fragment, ordinal, ts, out)
            pos = end
            self._after_record(out)
        if pos:
            del buf[:pos]
            st.offset += pos

    def _kill(self, d: int, out: list[Event]) -> None:
        """Charge what is buffered, and everything after, to undecoded/opaque."""
        st = self._dirs[d]
        st.dead = True
        if st.buf:
            add_span(out, d, st.offset, st.offset + len(st.buf), UNDECODED, OPAQUE)
            st.offset += len(st.buf)
            st.buf = bytearray()
        # Nothing further reaches the inner decoder from this side; records it holds still
        # resolve through its finish.

    def _after_record(self, out: list[Event]) -> None:
        """Client records held for the server's word can go once it has been read."""
        if not self._awaiting_server():
            self._release_held(self._client, out)

    def _awaiting_server(self) -> bool:
        """0-RTT records wait for the ServerHello (which suite, which keys) and, when the server's
        handshake can be read, for its EncryptedExtensions: the ALPN the early data speaks and
        whether the server took it at all (RFC 8446 4.2.10) are there, not in the ServerHello."""
        hs = self._hs
        if hs is None or hs.server is None:  # (a retry is not kept: HRR leaves it None)
            return True
        server = self._dirs[1 - self._client]
        return hs.tls13 and hs.early_accepted is None and server.hs_parse

    def _record(
        self,
        d: int,
        start: int,
        ctype: int,
        version: int,
        fragment: bytes,
        ordinal: int,
        ts: float,
        out: list[Event],
    ) -> None:
        st = self._dirs[d]
        end = start + RECORD_HEADER_BYTES + len(fragment)
        self._record_ordinal = ordinal
        self._feed_records += 1
        if self._holds(d, ctype):
            st.held.append((start, ctype, version, fragment, ordinal, ts))
            st.held_bytes += len(fragment)
            if st.held_bytes > MAX_HELD_BYTES:
                self._release_held(d, out)
            return
        if ctype == CHANGE_CIPHER_SPEC:
            add_span(out, d, start, end, SETUP, TLS)
            self._change_cipher_spec(d, out)
        elif ctype == APPLICATION_DATA or st.encrypted:
            # TLS <= 1.2 protects every record type after ChangeCipherSpec (RFC 5246 6.2.3),
            # and each one counts in the sequence number.
            self._protected(d, start, ctype, version, fragment, ordinal, ts, out)
        elif ctype == HANDSHAKE:
            add_span(out, d, start, end, self._handshake_owner(fragment), TLS)
            self._handshake_bytes(d, fragment, out)
        elif ctype == ALERT:
            self._alert(d, start, end, fragment, out)
        else:  # heartbeat (RFC 6520): keep-alive traffic of no message
            add_span(out, d, start, end, CONTROL, TLS)

    def _holds(self, d: int, ctype: int) -> bool:
        """0-RTT data comes before the server flight that says how to read it."""
        hs = self._hs
        return (
            ctype == APPLICATION_DATA
            and d == self._client
            and hs is not None
            and hs.client is not None
            and hs.client.early_data
            and not self._replaying_early
            and self._awaiting_server()
        )

    def _release_held(self, d: int, out: list[Event]) -> None:
        st = self._dirs[d]
        if not st.held:
            return
        held, st.held, st.held_bytes = st.held, [], 0
        self._replaying_early = True
        for start, ctype, version, fragment, ordinal, ts in held:
            self._record(d, start, ctype, version, fragment, ordinal, ts, out)
        self._replaying_early = False

    # -- plaintext content types -----------------------------------------------------------------

    def _alert(self, d: int, start: int, end: int, content: bytes, out: list[Event]) -> None:
        """RFC 8446 6: close_notify is teardown; any other alert is control."""
        if len(content) >= 2 and content[1] == CLOSE_NOTIFY:
            add_span(out, d, start, end, TEARDOWN, TLS)
            return
        add_span(out, d, start, end, CONTROL, TLS)
        if len(content) >= 2 and content[0] == ALERT_FATAL:
            out.append(Anomaly("tls.fatal_alert"))

    def _handshake_owner(self, content: bytes) -> int:
        """KeyUpdate alone in its record is control (RFC 8446 4.6.3); the rest is setup."""
        if content[:HANDSHAKE_HEADER_BYTES] == KEY_UPDATE_HEADER and len(content) == 5:
            return CONTROL
        return SETUP

    def _change_cipher_spec(self, d: int, out: list[Event]) -> None:
        """TLS <= 1.2: this side's next records are protected with the pending keys."""
        hs = self._hs
        if hs is None or hs.server is None or hs.tls13:
            return  # TLS 1.3 middlebox-compatibility CCS (RFC 8446 D.4): no meaning
        st = self._dirs[d]
        st.encrypted = True
        st.decryptor, st.pending = st.pending, None
        if st.decryptor is None:
            st.hs_parse = False
            st.hs_buf = bytearray()
            st.hs_skip = 0
        if d != self._client:
            hs.server_ccs = True
            self._emit_handshake(out)  # an abbreviated handshake's server flight ends here

    # -- handshake messages ----------------------------------------------------------------------

    def _handshake_bytes(self, d: int, content: bytes, out: list[Event]) -> None:
        """Reassemble handshake messages across records (RFC 8446 5.1) and act on each."""
        st = self._dirs[d]
        if not st.hs_parse:
            return
        if st.hs_skip:
            skipped = min(st.hs_skip, len(content))
            st.hs_skip -= skipped
            content = content[skipped:]
        buf = st.hs_buf
        buf += content
        while len(buf) >= HANDSHAKE_HEADER_BYTES:
            mtype = buf[0]
            length = int.from_bytes(buf[1:4], "big")
            if length > MAX_HANDSHAKE_BYTES:
                out.append(Anomaly("tls.handshake_too_long"))
                self._message(d, mtype, None, out)
                st.hs_skip = HANDSHAKE_HEADER_BYTES + length - len(buf)
                buf.clear()
                if st.hs_skip < 0:  # cannot happen: the message was incomplete
                    st.hs_skip = 0
                return
            if len(buf) < HANDSHAKE_HEADER_BYTES + length:
                return
            body = bytes(buf[HANDSHAKE_HEADER_BYTES : HANDSHAKE_HEADER_BYTES + length])
            del buf[: HANDSHAKE_HEADER_BYTES + length]
            try:
                self._message(d, mtype, body, out)
            except DecodeError as err:
                out.append(Anomaly(err.anomaly))
                st.hs_parse = False
                buf.clear()
                return
            if not st.hs_parse:  # the message switched this side to unreadable keys
                buf.clear()
                return

    def _message(self, d: int, mtype: int, body: bytes | None, out: list[Event]) -> None:
        """Act on one whole handshake message (``body`` None: too long to keep)."""
        hs = self._hs
        if mtype != NEW_SESSION_TICKET:
            # A flight of the handshake: whatever unsolicited data shares its packet (an HTTP/2
            # server's SETTINGS after its Finished), the packet answers the peer.
            self._marks.append(Answering(d, self._record_ordinal))
        if mtype == CLIENT_HELLO and body is not None:
            self._client_hello(d, parse_client_hello(body), out)
        elif mtype == SERVER_HELLO and body is not None:
            self._server_hello(d, parse_server_hello(body), out)
        elif hs is None:
            return
        elif mtype == ENCRYPTED_EXTENSIONS and body is not None:
            hs.alpn, hs.early_accepted = parse_encrypted_extensions(body)
        elif mtype == CERTIFICATE and d != self._client:
            hs.certificate = True
        elif mtype == SERVER_HELLO_DONE:
            hs.hello_done = True
            self._emit_handshake(out)
        elif mtype == FINISHED and hs.tls13:
            self._tls13_finished(d, out)
        elif mtype == END_OF_EARLY_DATA:
            self._use_secret(d, CLIENT_HANDSHAKE, HANDSHAKE_KEYS)
        elif mtype == KEY_UPDATE and hs.tls13:
            self._key_update(d)
        elif mtype == NEW_SESSION_TICKET and hs.tls13:
            # Sent whenever the server likes after the handshake (RFC 8446 4.6.1): no answer.
            self._feed_tickets += 1

    def _client_hello(self, d: int, hello: ClientHello, out: list[Event]) -> None:
        """Each ClientHello starts a handshake, except the retry after HelloRetryRequest."""
        hs = self._hs
        if hs is not None and hs.retry and d == self._client:
            hs.client, hs.retry = hello, False
            return
        if hs is not None:
            self._emit_handshake(out)
        if hs is None:
            self._client = d
        self._hs = Handshake(hello)

    def _server_hello(self, d: int, hello: ServerHello, out: list[Event]) -> None:
        hs = self._hs
        if hs is None or hs.server is not None:
            # Capture started after the ClientHello (or a stray ServerHello): count it anyway.
            if hs is not None:
                self._emit_handshake(out)
            self._client = 1 - d
            hs = self._hs = Handshake(None)
        if hello.hrr:
            hs.retry = True
            self._release_held(self._client, out)  # 0-RTT is rejected after a retry
            return
        hs.server = hello
        self._version, self._suite = hello.version, hello.cipher_suite
        if hs.tls13:
            self._tls13_keys(hs, hello)
            if self._dirs[d].decryptor is None:
                self._emit_handshake(out)  # nothing more will be learnt without keys
        else:
            self._tls12_keys(hs, hello, out)

    # -- protected records and the inner decoder -------------------------------------------------

    def _protected(
        self,
        d: int,
        start: int,
        ctype: int,
        version: int,
        fragment: bytes,
        ordinal: int,
        ts: float,
        out: list[Event],
    ) -> None:
        opened = self._open_protected(d, start, ctype, version, fragment, ordinal, out)
        if opened is None:
            return
        real, plain = opened
        end = start + RECORD_HEADER_BYTES + len(fragment)
        if real == HANDSHAKE:
            add_span(out, d, start, end, self._handshake_owner(plain), TLS)
            self._handshake_bytes(d, plain, out)
        elif real == ALERT:
            self._alert(d, start, end, plain, out)
        elif real == APPLICATION_DATA:
            self._application(d, start, version, len(fragment), plain, ordinal, ts, out)
        else:
            add_span(out, d, start, end, CONTROL, TLS)

    def _application(
        self,
        d: int,
        start: int,
        version: int,
        length: int,
        plain: bytes,
        ordinal: int,
        ts: float,
        out: list[Event],
    ) -> None:
        self._first_application(ordinal, out)
        st = self._dirs[d]
        end = start + RECORD_HEADER_BYTES + length
        prefix = min(self._explicit_nonce(version), length - len(plain))
        cipher_start = start + RECORD_HEADER_BYTES + prefix
        overhead = [(start, cipher_start), (cipher_start + len(plain), end)]
        if not st.plain.add(cipher_start, len(plain), overhead, out) or st.dead:
            return
        inner = self._inner_decoder()
        self._from_inner(inner.feed(d, plain, ordinal, ts), out)

    def _inner_decoder(self) -> StreamDecoder:
        if self._inner is None:
            alpn = self._hs.outcome().alpn if self._hs is not None else None
            protocol = ALPN_PROTOCOLS.get(alpn or "")
            self._inner = _INNER_FACTORY(self._ids, self._options, self._ports, protocol)
        return self._inner

    def _from_inner(self, events: list[Event], out: list[Event]) -> None:
        """Pass the inner decoder's events on, its spans moved to ciphertext offsets."""
        for event in events:
            if isinstance(event, Span):
                self._translate(event, out)
            elif isinstance(event, ProtocolIdentified) and event.protocol == "unknown":
                continue  # "tls" says more than an undetected plaintext protocol
            else:
                out.append(event)

    def _translate(self, span: Span, out: list[Event]) -> None:
        self._dirs[span.direction].plain.translate(span, out)


def _detecting(
    ids: MessageIds, options: DecodeOptions, ports: tuple[int, int], protocol: str | None
) -> StreamDecoder:
    return DetectingDecoder(ids, options, ports, protocol=protocol)


#: Builds the plaintext decoder (a seam for tests that want to record what it is fed).
_INNER_FACTORY: Callable[
    [MessageIds, DecodeOptions, tuple[int, int], str | None], StreamDecoder
] = _detecting
