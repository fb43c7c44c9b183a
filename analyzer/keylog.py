"""TLS secrets from NSS key log text (SSLKEYLOGFILE) — the API ``analyzer/tls.py`` uses.

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

Secrets are never printed, logged, put in an exception message or shown by ``repr``: only
counts leave this object.
"""

from __future__ import annotations

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

#: Fields of an entry line: label, client random, secret.
FIELDS_PER_LINE = 3

#: Characters stripped around a line: whitespace, and the NUL padding a pcapng Decryption Secrets
#: Block may carry after its text when a reader hands over the padded block body.
LINE_STRIP = " \t\r\n\x00"


class KeyLog:
    """Secrets from NSS SSLKEYLOGFILE text; never printed, logged or put in an exception message."""

    __slots__ = ("_secrets", "ignored", "skipped")

    def __init__(self) -> None:
        self._secrets: dict[tuple[str, bytes], bytes] = {}
        #: lines with an unknown label or the legacy ``RSA`` form, left aside on purpose
        self.ignored = 0
        #: malformed lines: wrong field count, bad hex, wrong client random or secret length
        self.skipped = 0

    def load(self, path: str) -> int:
        """Add the entries of the key log file at ``path``; return how many lines were taken.

        Raises ``UsageError(f"{path}: cannot read key log")`` when the file cannot be read (the
        message names the path only, never any content).
        """
        try:
            with open(path, "rb") as stream:
                data = stream.read()
        except OSError as err:
            raise UsageError(f"{path}: cannot read key log") from err
        return self.add_text(data)

    def add_text(self, text: str | bytes) -> int:
        """Add the entries of key log ``text`` (a file's content or a pcapng DSB payload).

        Returns how many lines were taken; ignored and malformed lines are only counted.
        """
        if isinstance(text, bytes):
            # Key logs are ASCII; a byte that is not turns its line into a malformed one.
            text = text.decode("ascii", errors="replace")
        taken = 0
        for line in text.split("\n"):
            taken += self._add_line(line.strip(LINE_STRIP))
        return taken

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
        if fields[0] not in LABELS:
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
