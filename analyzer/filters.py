"""``--filter EXPR``: select connections (and log rows) with the words BPF and tshark users know.

    expr    := term { ("or" | "||") term }
    term    := factor { ("and" | "&&") factor }
    factor  := ("not" | "!") factor | "(" expr ")" | primitive
    primitive := [ "src" | "dst" ] ( "host" ADDR | "port" PORT | "net" CIDR )
              | "time" ( ">=" | ">" | "<=" | "<" ) WHEN
              | PROTOCOL                      tcp, http, http1, http2, amqp, tls, unknown
              | VALUE                         tcpdump's shorthand: "port 80 or 443", "host a or b"

A TCP connection's packets all share its two endpoints, so a host, port or net test gives the
same answer for every packet of it: the filter selects whole connections, and says how many it
dropped (with their packets and bytes).  ``src`` is the connection's ``orig`` (the side that sent
the SYN) and ``dst`` its ``resp``, as Zeek's ``id.orig_h`` and ``id.resp_h``.  ``http`` means
HTTP/1.x, as in tshark.  ``time`` compares with the connection's span (a connection is kept if
some instant of it satisfies the comparison) and, in the message log, with each message's first
byte; ``WHEN`` is epoch seconds or an ISO 8601 time (UTC unless it names an offset).

Hand-written recursive descent, so every error is one line that names the word it stopped at.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from analyzer.errors import UsageError

Record = dict[str, Any]
#: What a compiled filter tests: (the connection record, the span of time to test against).
Predicate = Callable[[Record, tuple[float, float]], bool]

#: Protocol words and the connection records they select.
PROTOCOL_WORDS: dict[str, Callable[[Record], bool]] = {
    "tcp": lambda r: True,
    "http": lambda r: r["protocol"] == "http1",
    "http1": lambda r: r["protocol"] == "http1",
    "http2": lambda r: r["protocol"] == "http2",
    "amqp": lambda r: r["protocol"] == "amqp",
    "tls": lambda r: r.get("tls") is not None,
    "unknown": lambda r: r["protocol"] == "unknown",
}
_QUALIFIERS = ("host", "port", "net")
_COMPARISONS: dict[str, Callable[[tuple[float, float], float], bool]] = {
    ">=": lambda span, t: span[1] >= t,
    ">": lambda span, t: span[1] > t,
    "<=": lambda span, t: span[0] <= t,
    "<": lambda span, t: span[0] < t,
}
_TOKEN = re.compile(r"\s*(\(|\)|&&|\|\||!|>=|<=|>|<|[^\s()!<>]+)")


class FilterError(UsageError):
    """The filter expression cannot be parsed; the message says where."""

    def __init__(self, expression: str, reason: str) -> None:
        super().__init__(f"--filter {expression!r}: {reason}")
        self.reason = reason


def _tokens(expression: str) -> list[str]:
    out: list[str] = []
    position = 0
    text = expression.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:  # pragma: no cover - the pattern matches any non-space run
            raise FilterError(expression, f"cannot read {text[position:]!r}")
        out.append(match.group(1))
        position = match.end()
    return out


def _endpoint(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    host, _, port = text.rpartition(":")
    return ipaddress.ip_address(host.strip("[]")), int(port)


@dataclass(slots=True)
class _Parser:
    expression: str
    words: list[str]
    at: int = 0
    #: the last qualifier seen, for tcpdump's "port 80 or 443"
    last: tuple[str | None, str] | None = None

    def fail(self, reason: str) -> FilterError:
        if self.at < len(self.words):
            where = f"at word {self.at + 1} ({self.words[self.at]!r})"
        else:
            where = "at the end"
        return FilterError(self.expression, f"{reason} {where}")

    def peek(self) -> str | None:
        return self.words[self.at].lower() if self.at < len(self.words) else None

    def take(self) -> str:
        if self.at >= len(self.words):
            raise self.fail(f"expected a value after {self.words[self.at - 1]!r}")
        word = self.words[self.at]
        self.at += 1
        return word

    def parse(self) -> Predicate:
        if not self.words:
            raise FilterError(self.expression, "empty expression")
        predicate = self.expr()
        if self.at < len(self.words):
            raise self.fail("expected 'and', 'or' or the end")
        return predicate

    def expr(self) -> Predicate:
        left = self.term()
        while self.peek() in ("or", "||"):
            self.at += 1
            right = self.term()
            left = _or(left, right)
        return left

    def term(self) -> Predicate:
        left = self.factor()
        while self.peek() in ("and", "&&"):
            self.at += 1
            right = self.factor()
            left = _and(left, right)
        return left

    def factor(self) -> Predicate:
        word = self.peek()
        if word in ("not", "!"):
            self.at += 1
            inner = self.factor()
            return lambda r, span: not inner(r, span)
        if word == "(":
            self.at += 1
            inner = self.expr()
            if self.peek() != ")":
                raise self.fail("expected ')'")
            self.at += 1
            return inner
        return self.primitive()

    def primitive(self) -> Predicate:
        word = self.peek()
        if word is None:
            raise self.fail("expected a test (host, port, net, time or a protocol)")
        if word in PROTOCOL_WORDS:
            self.at += 1
            select = PROTOCOL_WORDS[word]
            return lambda r, span: select(r)
        if word == "time":
            self.at += 1
            return self.time()
        direction: str | None = None
        if word in ("src", "dst"):
            direction = word
            self.at += 1
            word = self.peek()
        if word in _QUALIFIERS:
            self.at += 1
            self.last = (direction, word)
            return self.endpoint_test(direction, word)
        if direction is None and self.last is not None and word not in (")", "and", "or"):
            return self.endpoint_test(*self.last)  # "port 80 or 443"
        raise self.fail("expected host, port, net, time or a protocol")

    def endpoint_test(self, direction: str | None, kind: str) -> Predicate:
        value = self.take()
        sides = {"src": ("orig",), "dst": ("resp",), None: ("orig", "resp")}[direction]
        match: Callable[[tuple[Any, int]], bool]
        if kind == "port":
            if not value.isdigit() or not 0 <= int(value) < 65536:
                self.at -= 1
                raise self.fail("expected a port number 0-65535")
            port = int(value)
            match = lambda ep: ep[1] == port  # noqa: E731
        elif kind == "host":
            try:
                address = ipaddress.ip_address(value)
            except ValueError:
                self.at -= 1
                raise self.fail("expected an IPv4 or IPv6 address") from None
            match = lambda ep: ep[0] == address  # noqa: E731
        else:
            try:
                network = ipaddress.ip_network(value, strict=False)
            except ValueError:
                self.at -= 1
                raise self.fail("expected a network like 10.0.0.0/8") from None
            match = lambda ep: ep[0].version == network.version and ep[0] in network  # noqa: E731

        def test(record: Record, span: tuple[float, float]) -> bool:
            return any(match(_endpoint(record[side])) for side in sides)

        return test

    def time(self) -> Predicate:
        operator = self.peek()
        if operator not in _COMPARISONS:
            raise self.fail("expected >=, >, <= or < after 'time'")
        self.at += 1
        when = _when(self.take())
        if when is None:
            self.at -= 1
            raise self.fail("expected epoch seconds or an ISO 8601 time")
        compare = _COMPARISONS[operator]
        return lambda r, span: compare(span, when)


def _or(a: Predicate, b: Predicate) -> Predicate:
    return lambda r, span: a(r, span) or b(r, span)


def _and(a: Predicate, b: Predicate) -> Predicate:
    return lambda r, span: a(r, span) and b(r, span)


def _when(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class Filter:
    """A compiled ``--filter`` expression."""

    #: the expression as given
    expression: str
    predicate: Predicate

    def __reduce__(self) -> tuple[Callable[[str], Filter], tuple[str]]:
        # The compiled closures cannot be pickled; a shard's worker compiles the text again.
        return parse_filter, (self.expression,)

    def keeps_connection(self, record: Record) -> bool:
        return self.predicate(record, (record["first_ts"], record["last_ts"]))

    def keeps_message(self, connection: Record, message: Record) -> bool:
        start = message["start_ts"]
        return self.predicate(connection, (start, start))


@dataclass(slots=True)
class Dropped:
    """What a filter left out of the analysis, said in the run's output."""

    expression: str
    connections: int = 0
    packets: int = 0
    wire_bytes: int = 0
    messages: int = 0

    def add(self, record: Record) -> None:
        self.connections += 1
        self.packets += record["packets"]
        self.wire_bytes += record["wire_bytes"]
        self.messages += record["messages"] or 0

    def merge(self, other: Dropped) -> None:
        """Add another shard's drops (``--jobs``)."""
        self.connections += other.connections
        self.packets += other.packets
        self.wire_bytes += other.wire_bytes
        self.messages += other.messages

    def sentence(self) -> str:
        return (
            f"--filter {self.expression!r} dropped {self.connections:,} connections "
            f"({self.packets:,} packets, {self.wire_bytes:,} wire bytes, "
            f"{self.messages:,} messages)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "expression": self.expression,
            "dropped_connections": self.connections,
            "dropped_packets": self.packets,
            "dropped_wire_bytes": self.wire_bytes,
            "dropped_messages": self.messages,
        }


def parse_filter(expression: str) -> Filter:
    """Compile ``expression``; a ``FilterError`` (one line, naming the word) when it is wrong."""
    return Filter(expression, _Parser(expression, _tokens(expression)).parse())


__all__ = ["PROTOCOL_WORDS", "Dropped", "Filter", "FilterError", "parse_filter"]
