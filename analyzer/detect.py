"""Which protocol a connection speaks: one ordered decision list (DESIGN.md section 5).

Content decides; ports are only a fallback hint for captures that start mid-connection, and
``--port PROTO=PORT`` overrides both.  ``DetectingDecoder`` buffers the first bytes until the list
can decide, then builds the protocol's decoder and replays what it held.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from analyzer.events import (
    OPAQUE,
    ORIG,
    RESP,
    UNDECODED,
    Event,
    MessageIds,
    MessageStarted,
    ProtocolIdentified,
    Span,
    StreamDecoder,
)
from analyzer.options import DecodeOptions

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
#: RFC 9110 section 9 methods plus WebDAV's; a token followed by one space and a target.
_REQUEST_LINE = re.compile(rb"[A-Z][A-Z-]{1,19} [^ \r\n]+ HTTP/1\.[01]\r?\n")
_REQUEST_START = re.compile(rb"[A-Z][A-Z-]{1,19} ")
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] [1-5][0-9][0-9]")
_AMQP_FRAME_TYPES = frozenset({1, 2, 3, 8})
_TLS_CONTENT_TYPES = frozenset({20, 21, 22, 23})

#: Bytes per direction held while deciding.  The longest thing the list looks at is a request
#: line or an AMQP frame found mid-connection; past this, the port hint or "unknown" decides.
MAX_DETECT_BYTES = 16 * 1024

#: Ports that hint at a protocol when content cannot decide (IANA registrations and habits).
PORT_HINTS: Mapping[int, str] = {
    80: "http1",
    8080: "http1",
    8000: "http1",
    443: "tls",
    8443: "tls",
    5671: "tls",
    5672: "amqp",
}

#: protocol -> "module:Class" of its decoder; imported on first use.
DECODERS: Mapping[str, str] = {
    "http1": "analyzer.protocols.http1:Http1Decoder",
    "http2": "analyzer.protocols.http2:Http2Decoder",
    "amqp": "analyzer.protocols.amqp:AmqpDecoder",
    "tls": "analyzer.tls:TlsDecoder",
}


def _is_amqp_frame(head: bytes) -> bool:
    """A whole AMQP 0-9-1 frame header + body + frame-end 0xCE (section 4.2.3 of the spec)."""
    if len(head) < 8 or head[0] not in _AMQP_FRAME_TYPES:
        return False
    size = int.from_bytes(head[3:7], "big")
    return len(head) > 7 + size and head[7 + size] == 0xCE


def _is_tls_record(head: bytes) -> bool:
    return len(head) >= 5 and head[0] in _TLS_CONTENT_TYPES and head[1] == 3 and head[2] <= 4


def _classify(head: bytes, *, first: bool) -> str | None:
    """The protocol ``head`` (a direction's first bytes) shows; "" if none, None if unsure."""
    if head.startswith(HTTP2_PREFACE):
        return "http2"
    if head.startswith(AMQP_HEADER):
        return "amqp"
    if _REQUEST_LINE.match(head) or _STATUS_LINE.match(head):
        return "http1"
    if _is_tls_record(head):
        return "tls"
    if _is_amqp_frame(head):
        return "amqp"
    unsure = (
        HTTP2_PREFACE.startswith(head[:24])
        or AMQP_HEADER.startswith(head[:8])
        or (_REQUEST_START.match(head) is not None and b"\n" not in head)
        or (first and len(head) < 8)
    )
    return None if unsure and len(head) < MAX_DETECT_BYTES else ""


def detect(
    orig: bytes,
    resp: bytes,
    ports: tuple[int, int],
    options: DecodeOptions,
    *,
    final: bool = False,
) -> str | None:
    """Decide the protocol from the first bytes of each direction.

    Returns None while more bytes could change the answer (unless ``final``), else one of
    "http1", "http2", "amqp", "tls", "unknown".
    """
    # 1. The user's word beats everything.
    for port in ports:
        if port in options.port_overrides:
            return options.port_overrides[port]
    # 2. Content: the originator's first bytes, then the responder's (mid-connection captures).
    verdicts = []
    for head in (orig, resp):
        verdict = _classify(head, first=True) if head else None
        if verdict:
            return verdict
        verdicts.append(verdict)
    if not final and None in verdicts:
        return None
    # 3. Ports only as a hint.
    for port in sorted(ports):
        if port in PORT_HINTS:
            return PORT_HINTS[port]
    return "unknown"


def _roles_swapped(protocol: str, orig: bytes, resp: bytes) -> bool:
    """The connection's ``resp`` is the client: a capture joined mid-connection whose first
    packet came from the server, on a port that does not say which side serves."""
    if protocol == "http1":
        return bool(
            (_REQUEST_LINE.match(resp) and not _REQUEST_LINE.match(orig))
            or (_STATUS_LINE.match(orig) and not _STATUS_LINE.match(resp))
        )
    if protocol == "http2":
        return resp.startswith(HTTP2_PREFACE) and not orig.startswith(HTTP2_PREFACE)
    if protocol == "amqp":
        return resp.startswith(AMQP_HEADER) and not orig.startswith(AMQP_HEADER)
    return False


class _Swapped:
    """Presents a connection to a decoder with its directions exchanged, so the decoder sees
    the client as ``orig``; its events are mapped back to the connection's directions."""

    def __init__(self, inner: StreamDecoder) -> None:
        self._inner = inner

    @staticmethod
    def _back(events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            if isinstance(event, Span):
                event = Span(1 - event.direction, event.start, event.end, event.owner, event.layer)
            elif isinstance(event, MessageStarted):
                event = replace(event, sender=1 - event.sender)
            out.append(event)
        return out

    def feed(self, direction: int, data: bytes, ordinal: int, ts: float) -> list[Event]:
        return self._back(self._inner.feed(1 - direction, data, ordinal, ts))

    def gap(self, direction: int, length: int, ordinal: int, ts: float) -> list[Event]:
        return self._back(self._inner.gap(1 - direction, length, ordinal, ts))

    def eof(self, direction: int, ordinal: int, ts: float) -> list[Event]:
        return self._back(self._inner.eof(1 - direction, ordinal, ts))

    def finish(self, ts: float) -> list[Event]:
        return self._back(self._inner.finish(ts))


def _load(protocol: str) -> Callable[..., StreamDecoder] | None:
    target = DECODERS.get(protocol)
    if target is None:
        return None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        return None
    factory: Callable[..., StreamDecoder] = getattr(module, attr)
    return factory


def make_decoder(
    protocol: str, ids: MessageIds, options: DecodeOptions, **kwargs: Any
) -> StreamDecoder:
    """The decoder for ``protocol``; the opaque one when there is none."""
    factory = _load(protocol)
    if factory is None:
        return OpaqueDecoder(protocol, kwargs.get("base", (0, 0)))
    return factory(ids, options, **kwargs)


class OpaqueDecoder:
    """Charges every byte to ``undecoded`` as ``opaque``: an unknown protocol."""

    def __init__(self, protocol: str = "unknown", base: tuple[int, int] = (0, 0)) -> None:
        self._protocol = protocol
        self._offset = list(base)
        self._announced = False

    def _announce(self) -> list[Event]:
        if self._announced:
            return []
        self._announced = True
        return [ProtocolIdentified(self._protocol)]

    def feed(self, direction: int, data: bytes, ordinal: int, ts: float) -> list[Event]:
        start = self._offset[direction]
        self._offset[direction] = start + len(data)
        events = self._announce()
        events.append(Span(direction, start, start + len(data), UNDECODED, OPAQUE))
        return events

    def gap(self, direction: int, length: int, ordinal: int, ts: float) -> list[Event]:
        self._offset[direction] += length
        return self._announce()

    def eof(self, direction: int, ordinal: int, ts: float) -> list[Event]:
        return []

    def finish(self, ts: float) -> list[Event]:
        return self._announce()


_Held = tuple[str, int, bytes | int, int, float]  # (call, direction, data or length, ordinal, ts)


class DetectingDecoder:
    """Holds the first bytes of a connection until ``detect`` decides, then replays them."""

    def __init__(
        self,
        ids: MessageIds,
        options: DecodeOptions,
        ports: tuple[int, int],
        *,
        protocol: str | None = None,
    ) -> None:
        self._ids = ids
        self._options = options
        self._ports = ports
        self._held: list[_Held] = []
        #: bytes held in ``_held`` (a running sum: summing the list each time is quadratic)
        self._held_bytes = 0
        self._heads = [b"", b""]
        self._gapped = False
        self._inner: StreamDecoder | None = None
        if protocol is not None:
            self._inner = self._build(protocol)

    def _build(self, protocol: str) -> StreamDecoder:
        # TLS hands its plaintext to another DetectingDecoder, which wants the ports as hints.
        if protocol == "tls":
            return make_decoder(protocol, self._ids, self._options, ports=self._ports)
        return make_decoder(protocol, self._ids, self._options)

    @property
    def inner(self) -> StreamDecoder | None:
        """The protocol's decoder once detection has decided."""
        return self._inner

    def _decide(self, final: bool) -> list[Event]:
        protocol = detect(
            self._heads[ORIG], self._heads[RESP], self._ports, self._options, final=final
        )
        if protocol is None:
            return []
        self._inner = self._build(protocol)
        if _roles_swapped(protocol, self._heads[ORIG], self._heads[RESP]):
            self._inner = _Swapped(self._inner)
        events: list[Event] = []
        for call, direction, value, ordinal, ts in self._held:
            if call == "feed":
                assert isinstance(value, bytes)
                events += self._inner.feed(direction, value, ordinal, ts)
            elif call == "gap":
                assert isinstance(value, int)
                events += self._inner.gap(direction, value, ordinal, ts)
            else:
                events += self._inner.eof(direction, ordinal, ts)
        self._held = []
        self._heads = [b"", b""]
        return events

    def feed(self, direction: int, data: bytes, ordinal: int, ts: float) -> list[Event]:
        if self._inner is not None:
            return self._inner.feed(direction, data, ordinal, ts)
        self._held.append(("feed", direction, data, ordinal, ts))
        self._held_bytes += len(data)
        if len(self._heads[direction]) < MAX_DETECT_BYTES and not self._gapped:
            self._heads[direction] += data[: MAX_DETECT_BYTES - len(self._heads[direction])]
        return self._decide(final=self._gapped or self._held_bytes >= 2 * MAX_DETECT_BYTES)

    def gap(self, direction: int, length: int, ordinal: int, ts: float) -> list[Event]:
        if self._inner is not None:
            return self._inner.gap(direction, length, ordinal, ts)
        self._held.append(("gap", direction, length, ordinal, ts))
        # What follows a gap is no longer the start of the stream: decide on what we have.
        self._gapped = True
        return self._decide(final=True)

    def eof(self, direction: int, ordinal: int, ts: float) -> list[Event]:
        if self._inner is not None:
            return self._inner.eof(direction, ordinal, ts)
        self._held.append(("eof", direction, 0, ordinal, ts))
        return []

    def finish(self, ts: float) -> list[Event]:
        events: list[Event] = []
        if self._inner is None:
            events += self._decide(final=True)
        assert self._inner is not None
        return events + self._inner.finish(ts)
