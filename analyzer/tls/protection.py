"""Protected TLS records: which keys open them, and what they are when nothing can.

``RecordProtection`` sits between ``ConnectionState`` and ``TlsDecoder``: it gives each direction
its decryptor from the key log (TLS <= 1.2: both at ChangeCipherSpec from the master secret;
TLS 1.3: handshake, then application traffic secrets, 0-RTT early secret, KeyUpdate), opens
protected records with it, and charges the records it cannot open (see ``analyzer.tls.decoder``
for the ledger and the heuristics without keys).
"""

from __future__ import annotations

from analyzer.decoding.events import (
    CONTROL,
    OPAQUE,
    SETUP,
    TEARDOWN,
    TLS,
    UNDECODED,
    Anomaly,
    Event,
)
from analyzer.errors import DecodeError
from analyzer.tls.crypto import (
    CIPHER_SUITES,
    RecordDecryptor,
    fixed_expansion_bytes,
    tls12_decryptors,
    tls13_decryptor,
    tls13_next_secret,
)
from analyzer.tls.handshake import ServerHello
from analyzer.tls.records import ALERT, HANDSHAKE, HEARTBEAT, RECORD_HEADER_BYTES, TLS1_1, add_span
from analyzer.tls.state import (
    APPLICATION_KEYS,
    CLIENT_EARLY,
    CLIENT_HANDSHAKE,
    CLIENT_TRAFFIC,
    EARLY,
    HANDSHAKE_KEYS,
    SERVER_HANDSHAKE,
    SERVER_TRAFFIC,
    ConnectionState,
    Handshake,
)


class RecordProtection(ConnectionState):
    """Keys per direction and the reading of protected records (a base of ``TlsDecoder``)."""

    # -- keys: which secret each direction reads with -------------------------------------------

    def _tls12_keys(self, hs: Handshake, hello: ServerHello, out: list[Event]) -> None:
        """Both sides switch to the new keys at their ChangeCipherSpec (RFC 5246 7.1)."""
        master = self._secret("CLIENT_RANDOM", hs)
        if master is None or hs.client is None:
            return
        try:
            to_server, to_client = tls12_decryptors(
                hello.version,
                hello.cipher_suite,
                master,
                hs.client.random,
                hello.random,
                encrypt_then_mac=hello.encrypt_then_mac,
            )
        except DecodeError as err:
            out.append(Anomaly(err.anomaly))
            return
        self._dirs[self._client].pending = to_server
        self._dirs[1 - self._client].pending = to_client
        hs.decrypted = True

    def _tls13_keys(self, hs: Handshake, hello: ServerHello) -> None:
        """RFC 8446 7.1: each side reads with its handshake secret after the ServerHello (the
        client with its early secret first when it offered 0-RTT)."""
        client, server = self._dirs[self._client], self._dirs[1 - self._client]
        server.phase = client.phase = HANDSHAKE_KEYS
        self._use_secret(1 - self._client, SERVER_HANDSHAKE, HANDSHAKE_KEYS)
        server.hs_parse = server.decryptor is not None
        server.hs_buf.clear()
        hs.decrypted = (
            self._secret(SERVER_TRAFFIC, hs) is not None
            or self._secret(CLIENT_TRAFFIC, hs) is not None
        ) and hello.cipher_suite in CIPHER_SUITES
        early = hs.client is not None and hs.client.early_data
        if early and self._secret(CLIENT_HANDSHAKE, hs) is not None:
            # Which records are 0-RTT shows only by which keys open them (RFC 8446 4.2.10).
            client.phase = EARLY
            client.early = self._decryptor(self._secret(CLIENT_EARLY, hs))
            client.early_trial = self._secret(CLIENT_HANDSHAKE, hs)
        else:
            self._use_secret(self._client, CLIENT_HANDSHAKE, HANDSHAKE_KEYS)
        if client.decryptor is None and client.phase != EARLY:
            # Without keys: its Finished (and EndOfEarlyData) are the first protected records.
            accepted = early and hello.psk
            client.guessed_handshake_records = 2 if accepted else 1

    def _decryptor(self, secret: bytes | None) -> RecordDecryptor | None:
        if secret is None or self._suite is None:
            return None
        try:
            return tls13_decryptor(self._suite, secret, version=self._version)
        except DecodeError:
            return None

    def _use_secret(self, d: int, label: str, phase: int) -> None:
        st = self._dirs[d]
        hs = self._hs
        secret = self._secret(label, hs) if hs is not None else None
        st.phase = phase
        st.secret = secret
        st.decryptor = self._decryptor(secret)
        st.early = None
        st.hs_parse = st.decryptor is not None

    def _tls13_finished(self, d: int, out: list[Event]) -> None:
        if d == self._client:
            self._client_finished = True
            self._use_secret(d, CLIENT_TRAFFIC, APPLICATION_KEYS)
        else:
            self._use_secret(d, SERVER_TRAFFIC, APPLICATION_KEYS)
            self._emit_handshake(out)

    def _key_update(self, d: int) -> None:
        """RFC 8446 4.6.3: the sender's next records use the next traffic secret."""
        st = self._dirs[d]
        if st.secret is None or self._suite is None:
            st.decryptor = None
            return
        st.secret = tls13_next_secret(self._suite, st.secret)
        st.decryptor = self._decryptor(st.secret)

    # -- protected records --------------------------------------------------------------------

    def _open_protected(
        self,
        d: int,
        start: int,
        ctype: int,
        version: int,
        fragment: bytes,
        ordinal: int,
        out: list[Event],
    ) -> tuple[int, bytes] | None:
        """(real content type, plaintext) of a protected record; None when it could not be
        read, and has been charged (or deferred, while 0-RTT may still run) here."""
        st = self._dirs[d]
        early = st.phase == EARLY and not self._replaying_early
        try:
            opened = self._open(d, ctype, version, fragment)
        except DecodeError as err:
            out.append(Anomaly(err.anomaly))
            st.decryptor = st.pending = st.early = None
            st.early_trial = None
            st.hs_parse = False
            st.phase = APPLICATION_KEYS
            opened = None
        if early and st.phase != EARLY:
            # The handshake keys opened this record: an unreadable one just before it was
            # EndOfEarlyData if the server took early data (RFC 8446 4.5), else 0-RTT data.
            self._flush_deferred(d, bool(self._hs and self._hs.early_accepted), out)
        if opened is None:
            if early and st.phase == EARLY:
                self._flush_deferred(d, False, out)
                st.deferred = (start, version, len(fragment), ordinal)
                return None
            self._unreadable(d, start, ctype, version, len(fragment), ordinal, out)
            return None
        return opened

    def _open(self, d: int, ctype: int, version: int, fragment: bytes) -> tuple[int, bytes] | None:
        """Decrypt with this side's keys: None when there are none, DecodeError on failure."""
        st = self._dirs[d]
        if st.phase == EARLY:
            return self._open_early(d, ctype, version, fragment)
        if st.decryptor is None or self._replaying_early:
            # 0-RTT records held for the ServerHello, with no early keys to read them.
            return None
        return st.decryptor.decrypt(ctype, version, fragment)

    def _open_early(
        self, d: int, ctype: int, version: int, fragment: bytes
    ) -> tuple[int, bytes] | None:
        """A 1.3 client record after 0-RTT was offered: early keys, else the handshake keys
        (the first record they open ends the early data), else undecryptable 0-RTT."""
        st = self._dirs[d]
        if self._hs is not None and self._hs.early_accepted is False:
            st.early = None  # rejected: the server skipped these records (RFC 8446 4.2.10)
        if st.early is not None:
            try:
                return st.early.decrypt(ctype, version, fragment)
            except DecodeError:
                st.early = None
        trial = self._decryptor(st.early_trial)
        if trial is None:
            return None
        try:
            opened = trial.decrypt(ctype, version, fragment)
        except DecodeError:
            return None
        st.phase, st.decryptor, st.secret = HANDSHAKE_KEYS, trial, st.early_trial
        st.early_trial = None
        st.hs_parse = True
        return opened

    def _unreadable(
        self,
        d: int,
        start: int,
        ctype: int,
        version: int,
        length: int,
        ordinal: int,
        out: list[Event],
    ) -> None:
        """A protected record without (working) keys."""
        end = start + RECORD_HEADER_BYTES + length
        if ctype == HANDSHAKE:
            add_span(out, d, start, end, SETUP, TLS)
            return
        if ctype == ALERT:
            add_span(out, d, start, end, TEARDOWN, TLS)  # taken as close_notify (docstring)
            return
        if ctype == HEARTBEAT:
            add_span(out, d, start, end, CONTROL, TLS)
            return
        if self._guess_tls13_handshake(d):
            add_span(out, d, start, end, SETUP, TLS)
            return
        self._opaque_application(d, start, version, length, ordinal, out)

    def _flush_deferred(self, d: int, setup: bool, out: list[Event]) -> None:
        st = self._dirs[d]
        if st.deferred is None:
            return
        start, version, length, ordinal = st.deferred
        st.deferred = None
        if setup:
            add_span(out, d, start, start + RECORD_HEADER_BYTES + length, SETUP, TLS)
        else:
            self._opaque_application(d, start, version, length, ordinal, out)

    def _opaque_application(
        self, d: int, start: int, version: int, length: int, ordinal: int, out: list[Event]
    ) -> None:
        """Application data nobody can read: the suite's known expansion is TLS, the rest opaque."""
        end = start + RECORD_HEADER_BYTES + length
        self._first_application(ordinal, out)
        info = CIPHER_SUITES.get(self._suite) if self._suite is not None else None
        expansion = fixed_expansion_bytes(info, self._version) if info is not None else 0
        prefix = self._explicit_nonce(version)
        suffix = min(max(expansion - prefix, 0), length - min(prefix, length))
        prefix = min(prefix, length)
        body_start = start + RECORD_HEADER_BYTES + prefix
        add_span(out, d, start, body_start, UNDECODED, TLS)
        add_span(out, d, body_start, end - suffix, UNDECODED, OPAQUE)
        add_span(out, d, end - suffix, end, UNDECODED, TLS)

    def _guess_tls13_handshake(self, d: int) -> bool:
        """TLS 1.3 without keys: is this protected record part of the handshake (docstring)?"""
        hs = self._hs
        if hs is None or not hs.tls13 or self._replaying_early:
            return False
        st = self._dirs[d]
        if st.phase == EARLY:
            return False  # the handshake keys could not open it: 0-RTT data
        if d == self._client:
            if st.guessed_handshake_records <= 0:
                return False
            st.guessed_handshake_records -= 1
            if st.guessed_handshake_records == 0:
                self._client_finished = True
            return True
        return not self._client_finished

    def _explicit_nonce(self, version: int) -> int:
        """Bytes before the plaintext in a protected record (RFC 5288 3, RFC 5246 6.2.3.2)."""
        info = CIPHER_SUITES.get(self._suite) if self._suite is not None else None
        if info is None or info.tls13:
            return 0
        if info.cipher == "aes-cbc" and self._version < TLS1_1:
            return 0
        return info.record_iv_len
