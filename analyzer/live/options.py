"""What ``wireprobe capture`` runs: one frozen value, checked before anything starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analyzer.errors import UsageError

PROTOCOLS = ("http1", "http2", "amqp")
TLS_MODES = ("off", "1.2", "1.3")
AMQP_MODES = ("publish", "confirm", "consume")
#: RabbitMQ's guest user may only log in over loopback, which is where the default broker is.
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
#: A live run keeps every captured frame in memory until it writes the pcap; 100 000 messages
#: of small payloads is a few hundred MB of frames at most.
MAX_MESSAGES = 100_000
#: One body is held in memory by both peers; 16 MiB is far past any REST or queue message.
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
#: Open connections at once; each is a socket on both ends of loopback.
MAX_CONCURRENCY = 256
#: Only an Ethernet-sized path is offered (a network namespace behind a veth pair, issue 6).
SUPPORTED_MTUS = (1500,)


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveOptions:
    """One live scenario (the options of ``wireprobe capture``)."""

    #: "http1", "http2" or "amqp"
    protocol: str = "http1"
    #: "off", "1.2" or "1.3" (AMQP: through a TLS terminator in front of the broker)
    tls: str = "off"
    #: messages in all connections together
    messages: int = 10
    #: messages per connection (a new connection every K); None: all on one connection
    per_connection: int | None = None
    #: body bytes of each message (HTTP request body, AMQP message body)
    payload: int = 100
    #: HTTP requests in flight at once (HTTP/2 streams on one connection, HTTP/1.1 connections)
    concurrency: int = 1
    #: AMQP only: "publish", "confirm" or "consume" (None: "confirm")
    amqp_mode: str | None = None
    #: the broker to talk to (AMQP only)
    amqp_url: str = DEFAULT_AMQP_URL
    #: IP MTU of the client's path; None: loopback (64 KiB segments)
    mtu: int | None = None
    #: where the recording goes
    output: Path = Path("capture.pcap")
    #: where the client's TLS key log goes (None: next to the output, ``.keys``, when TLS is on)
    keylog: Path | None = None

    @property
    def mode(self) -> str:
        """The AMQP mode in effect."""
        return self.amqp_mode or "confirm"

    @property
    def messages_per_connection(self) -> int:
        """K, with "all on one connection" resolved."""
        return self.per_connection or self.messages

    @property
    def keylog_path(self) -> Path | None:
        """The key log the client writes (None without TLS)."""
        if self.tls == "off":
            return None
        return self.keylog or self.output.with_suffix(".keys")

    def validate(self) -> LiveOptions:
        """Raise ``UsageError`` (one line) for a bad value or combination; return self."""
        for problem in _problems(self):
            raise UsageError(problem)
        return self


def _problems(o: LiveOptions) -> list[str]:
    checks: list[tuple[bool, str]] = [
        (o.protocol in PROTOCOLS, f"--protocol must be one of {', '.join(PROTOCOLS)}"),
        (o.tls in TLS_MODES, f"--tls must be one of {', '.join(TLS_MODES)}"),
        (1 <= o.messages <= MAX_MESSAGES, f"--messages must be between 1 and {MAX_MESSAGES}"),
        (o.per_connection is None or o.per_connection >= 1, "--per-connection must be >= 1"),
        (0 <= o.payload <= MAX_PAYLOAD_BYTES, f"--payload must be 0..{MAX_PAYLOAD_BYTES} bytes"),
        (
            1 <= o.concurrency <= MAX_CONCURRENCY,
            f"--concurrency must be between 1 and {MAX_CONCURRENCY}",
        ),
        (
            o.concurrency == 1 or o.protocol != "amqp",
            "--concurrency applies to HTTP only (AMQP has --amqp-mode)",
        ),
        (
            o.amqp_mode is None or o.protocol == "amqp",
            "--amqp-mode applies to --protocol amqp only",
        ),
        (o.amqp_mode is None or o.amqp_mode in AMQP_MODES, f"--amqp-mode: {'|'.join(AMQP_MODES)}"),
        (
            o.tls == "off" or o.protocol != "amqp" or o.mtu is None,
            "--tls with --protocol amqp runs on loopback only (its TLS terminator is not "
            "relayed into the --mtu namespace): drop --mtu",
        ),
        (
            o.amqp_url.startswith("amqp://") or o.protocol != "amqp",
            "--amqp-url must start with amqp://",
        ),
        (
            o.mtu is None or o.mtu in SUPPORTED_MTUS,
            f"--mtu must be one of {', '.join(map(str, SUPPORTED_MTUS))} (or absent: loopback)",
        ),
        (o.keylog is None or o.tls != "off", "--keylog needs --tls 1.2 or 1.3"),
        (o.keylog is None or o.keylog != o.output, "--keylog and -o must be different files"),
    ]
    return [message for ok, message in checks if not ok]
