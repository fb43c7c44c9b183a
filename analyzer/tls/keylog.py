"""TLS secrets from NSS key log text (SSLKEYLOGFILE) — the API ``analyzer/tls/decoder.py`` uses.

The format is the one NSS, OpenSSL, BoringSSL, Firefox and Chrome write and Wireshark reads: one
entry per line, ``<LABEL> <client_random hex> <secret hex>``, where the client random (32 bytes,
the ClientHello random) names the connection.  Typical use::

    keys = KeyLog()
    keys.load("session.keys")              # --keylog FILE, several files accumulate
    keys.add_text(dsb_payload)             # pcapng Decryption Secrets Block, type 0x544c534b
    master = keys.secret("CLIENT_RANDOM", client_random)   # bytes | None

Labels kept (``LABELS``): ``CLIENT_RANDOM`` (the 48-byte TLS <= 1.2 master secret) and the TLS 1.3
secrets of RFC 8446 section 7.1 (32 or 48 bytes: the suite's hash length).  The parser is
tolerant, like Wireshark's: ``#`` comments, blank lines, CRLF, upper- or lower-case hex, no final
newline; unknown labels and the legacy ``RSA ...`` lines are ignored (``ignored``); lines that do
not parse are skipped and counted (``skipped``).  When a label and client random repeat, the
later line wins.

A key log is input like a capture (issue 15): a file is read as a stream in ``READ_CHUNK_BYTES``
reads, never whole, so a path that never ends (``/dev/zero``, ``/dev/urandom``, a FIFO fed
forever) costs bounded memory and stops with a ``KeyLogTooLarge`` one-line error once
``MAX_KEYLOG_BYTES`` have been read; a line longer than ``MAX_KEYLOG_LINE_BYTES`` is garbage,
skipped and counted without being held.

Secrets are never printed, logged, put in an exception message or shown by ``repr``: only
counts leave this object.
"""

from __future__ import annotations

from analyzer.capture.reader import SECRETS_TLS_KEY_LOG
from analyzer.errors import UsageError

#: Length of the ClientHello random that names a connection (RFC 5246 7.4.1.2, RFC 8446 4.1.2).
CLIENT_RANDOM_BYTES = 32

#: Secret lengths accepted for each label.  The TLS <= 1.2 master secret is always 48 bytes
#: (RFC 5246 8.1); TLS 1.3 secrets are Hash.length long: 32 (SHA-256) or 48 (SHA-384) for the
#: suites of RFC 8446 B.4.
LABELS: dict[str, frozenset[int]] = {
    "CLIENT_RANDOM": frozenset({48}),
    "CLIENT_EARLY_TRAFFIC_SECRET": frozenset({32, 48}),
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET": frozenset({32, 48}),
    "SERVER_HANDSHAKE_TRAFFIC_SECRET": frozenset({32, 48}),
    "CLIENT_TRAFFIC_SECRET_0": frozenset({32, 48}),
    "SERVER_TRAFFIC_SECRET_0": frozenset({32, 48}),
    "EXPORTER_SECRET": frozenset({32, 48}),
    "EARLY_EXPORTER_SECRET": frozenset({32, 48}),
}

# Anomalies of a Decryption Secrets Block's content, counted with the capture's anomalies.
BAD_SECRETS = "pcapng.bad_secrets"  # key log lines in the block that do not parse (skipped)
SECRETS_OVER_BUDGET = "pcapng.secrets_over_budget"  # past MAX_KEYLOG_BYTES: the block ignored
UNKNOWN_SECRETS = "pcapng.unknown_secrets"  # a secrets type other than TLSK (WireGuard, ...)

#: Fields of an entry line: label, client random, secret.
FIELDS_PER_LINE = 3

#: Characters stripped around a line: whitespace, and the NUL padding a pcapng Decryption Secrets
#: Block may carry after its text when a reader hands over the padded block body.
LINE_STRIP = " \t\r\n\x00"

#: Key log bytes accepted per ``KeyLog`` (files and Decryption Secrets Blocks together).  An
#: entry line is at most about 200 bytes (a 31-character label, 64 + 96 hex digits), so 256 MiB
#: holds 1.3 million entries: the secrets of some 270 000 TLS 1.3 connections, more than a
#: capture that fits on one machine carries; past it the input is no key log (a device or a
#: pipe that never ends) and reading stops with ``KeyLogTooLarge``.
MAX_KEYLOG_BYTES = 256 << 20
#: Longest line taken, in bytes.  Five times the longest entry line leaves room for comments
#: and odd spacing; anything longer is garbage (``/dev/zero`` has no line end at all) and is
#: skipped without being kept in memory.
MAX_KEYLOG_LINE_BYTES = 1024
#: Bytes per read of a key log file: large enough that the per-read cost vanishes, small enough
#: that a garbage stream never holds more than this plus one line.
READ_CHUNK_BYTES = 1 << 16


class KeyLogTooLarge(UsageError):
    """More than ``MAX_KEYLOG_BYTES`` of key log: the input is not a key log (no content quoted)."""


class KeyLog:
    """Secrets from NSS SSLKEYLOGFILE text; never printed, logged or put in an exception message."""

    __slots__ = ("_pending", "_pending_long", "_secrets", "bytes_read", "ignored", "skipped")

    def __init__(self) -> None:
        self._secrets: dict[tuple[str, bytes], bytes] = {}
        #: lines with an unknown label or the legacy ``RSA`` form, left aside on purpose
        self.ignored = 0
        #: malformed lines: wrong field count, bad hex, wrong client random or secret length,
        #: control characters, longer than ``MAX_KEYLOG_LINE_BYTES``
        self.skipped = 0
        #: key log bytes taken so far, against ``MAX_KEYLOG_BYTES``
        self.bytes_read = 0
        # The unfinished last line of the stream being read, and whether it is already too
        # long (then only its end is looked for, its bytes are dropped).
        self._pending = b""
        self._pending_long = False

    def load(self, path: str) -> int:
        """Add the entries of the key log file at ``path``; return how many lines were taken.

        Reads ``path`` as a stream: a device or pipe works, and one that never ends stops with
        ``KeyLogTooLarge`` after ``MAX_KEYLOG_BYTES``.  Raises ``UsageError(f"{path}: cannot
        read key log")`` when the file cannot be read (the message names the path only, never
        any content).
        """
        taken = 0
        try:
            with open(path, "rb") as stream:
                while chunk := stream.read(READ_CHUNK_BYTES):
                    taken += self._take(chunk, path)
        except OSError as err:
            raise UsageError(f"{path}: cannot read key log") from err
        finally:
            taken += self._end_of_stream()
        return taken

    def add_text(self, text: str | bytes) -> int:
        """Add the entries of key log ``text`` (a file's content or a pcapng DSB payload).

        Returns how many lines were taken; ignored and malformed lines are only counted.
        Raises ``KeyLogTooLarge`` once this key log has taken ``MAX_KEYLOG_BYTES`` in all.
        """
        if isinstance(text, str):
            text = text.encode("utf-8", errors="replace")
        return self._take(text, "key log") + self._end_of_stream()

    def _take(self, chunk: bytes, name: str) -> int:
        """Add the complete lines of ``chunk``; keep its unfinished last line for the next."""
        self.bytes_read += len(chunk)
        if self.bytes_read > MAX_KEYLOG_BYTES:
            self._pending, self._pending_long = b"", False
            raise KeyLogTooLarge(
                f"{name}: more than {MAX_KEYLOG_BYTES >> 20} MiB of key log; "
                "not a key log (a device or a pipe that never ends?)"
            )
        lines = chunk.split(b"\n")
        lines[0] = self._pending + lines[0]
        last = lines.pop()
        taken = 0
        for line in lines:
            if self._pending_long:
                self._pending_long = False  # the end of an over-long line: it was counted
                continue
            taken += self._add_raw(line)
        if self._pending_long or len(last) > MAX_KEYLOG_LINE_BYTES:
            if not self._pending_long:
                self.skipped += 1
            self._pending, self._pending_long = b"", True
        else:
            self._pending = last
        return taken

    def _end_of_stream(self) -> int:
        """The stream ended: its last line needs no newline (Wireshark takes it too)."""
        last, long_line = self._pending, self._pending_long
        self._pending, self._pending_long = b"", False
        return 0 if long_line else self._add_raw(last)

    def _add_raw(self, raw: bytes) -> int:
        if len(raw) > MAX_KEYLOG_LINE_BYTES:
            self.skipped += 1
            return 0
        # Key logs are ASCII; a byte that is not turns its line into a malformed one.
        return self._add_line(raw.decode("ascii", errors="replace").strip(LINE_STRIP))

    def secret(self, label: str, client_random: bytes) -> bytes | None:
        """The secret logged as ``label`` for the connection whose ClientHello had that random."""
        return self._secrets.get((label, bytes(client_random)))

    def __len__(self) -> int:
        return len(self._secrets)

    def __repr__(self) -> str:
        return f"<KeyLog {len(self._secrets)} entries>"

    def _add_line(self, line: str) -> int:
        """Take one stripped line; return 1 when it added (or replaced) an entry, else 0."""
        if not line or line.startswith("#"):
            return 0
        fields = line.split()
        if not fields or not line.replace("\t", " ").isprintable():
            # Control characters (str.split takes some as spaces, leaving no field at all):
            # garbage, never an entry.
            self.skipped += 1
            return 0
        label = fields[0]
        if not (label.isascii() and label.replace("_", "").isalnum()):
            # Not even shaped like a label (NSS labels are upper-case words and underscores).
            self.skipped += 1
            return 0
        if label not in LABELS:
            # Unknown labels (newer libraries add some) and ``RSA <encrypted pms> <pms>`` /
            # ``RSA Session-ID:... Master-Key:...`` lines carry nothing this module uses.
            self.ignored += 1
            return 0
        entry = parse_entry(fields)
        if entry is None:
            self.skipped += 1
            return 0
        label, client_random, secret = entry
        self._secrets[(label, client_random)] = secret
        return 1


def parse_entry(fields: list[str]) -> tuple[str, bytes, bytes] | None:
    """``(label, client_random, secret)`` from a known-label line's fields, or None if malformed."""
    if len(fields) != FIELDS_PER_LINE:
        return None
    label, random_hex, secret_hex = fields
    client_random = hex_bytes(random_hex)
    secret = hex_bytes(secret_hex)
    if client_random is None or len(client_random) != CLIENT_RANDOM_BYTES:
        return None
    if secret is None or len(secret) not in LABELS[label]:
        return None
    return label, client_random, secret


def hex_bytes(text: str) -> bytes | None:
    """Bytes of a hex string in either case, or None (the error would quote the text: a secret)."""
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def secrets_block(keylog: KeyLog | None, secrets_type: int, data: bytes) -> str | None:
    """Take a pcapng Decryption Secrets Block into ``keylog``; the anomaly it shows, if any.

    A block is part of the capture, so what is wrong with it is an anomaly of the capture,
    never an error that ends the run."""
    if secrets_type != SECRETS_TLS_KEY_LOG:
        return UNKNOWN_SECRETS
    if keylog is None:
        return None
    skipped = keylog.skipped
    try:
        keylog.add_text(data)
    except KeyLogTooLarge:
        return SECRETS_OVER_BUDGET
    return BAD_SECRETS if keylog.skipped > skipped else None
