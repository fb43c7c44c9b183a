"""Which protocol a connection speaks: one ordered decision list (DESIGN.md section 5).

``REGISTRY`` is the one table of protocols: name, decoder factory, content detectors and port
hints; the CLI's ``--port PROTO`` choices and the reports' protocol names come from it.  Content
decides; ports are only a fallback hint for captures that start mid-connection, and
``--port PROTO=PORT`` overrides both.  ``DetectingDecoder`` buffers the first bytes until the list
can decide, then builds the protocol's decoder and replays what it held.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from analyzer.decoding.events import (
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

#: Builds one protocol's decoder: ``(ids, options, **kwargs) -> StreamDecoder``.
DecoderFactory = Callable[..., StreamDecoder]

#: What a content detector says of a direction's first bytes: True (it is this protocol),
#: False (it is not) or None (too few bytes to tell).
Verdict = bool | None


def _opens_with(signature: bytes) -> Callable[[bytes], Verdict]:
    """A detector for a protocol whose client opens with a fixed ``signature``."""

    def opening(head: bytes) -> Verdict:
        if head.startswith(signature):
            return True
        return None if signature.startswith(head) else False

    return opening


def _http1_opening(head: bytes) -> Verdict:
    if _REQUEST_LINE.match(head) or _STATUS_LINE.match(head):
        return True
    return None if _REQUEST_START.match(head) is not None and b"\n" not in head else False


def _is_amqp_frame(head: bytes) -> bool:
    """A whole AMQP 0-9-1 frame header + body + frame-end 0xCE (section 4.2.3 of the spec)."""
    if len(head) < 8 or head[0] not in _AMQP_FRAME_TYPES:
        return False
    size = int.from_bytes(head[3:7], "big")
    return len(head) > 7 + size and head[7 + size] == 0xCE


def _is_tls_record(head: bytes) -> bool:
    return len(head) >= 5 and head[0] in _TLS_CONTENT_TYPES and head[1] == 3 and head[2] <= 4


def _tls_opening(head: bytes) -> Verdict:
    return _is_tls_record(head)


def _client_opens(opening: Callable[[bytes], Verdict]) -> Callable[[bytes, bytes], bool]:
    """Roles are swapped when only ``resp`` shows the client's opening bytes."""

    def swapped(orig: bytes, resp: bytes) -> bool:
        return opening(resp) is True and opening(orig) is not True

    return swapped


def _http1_swapped(orig: bytes, resp: bytes) -> bool:
    return bool(
        (_REQUEST_LINE.match(resp) and not _REQUEST_LINE.match(orig))
        or (_STATUS_LINE.match(orig) and not _STATUS_LINE.match(resp))
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtocolSpec:
    """Everything the analyzer needs to know to detect and decode one protocol."""

    #: the name in the JSON contract ("mqtt"), in ``--port PROTO=PORT`` and the summary
    name: str
    #: how reports print it ("MQTT")
    title: str
    #: builds the protocol's decoder; its module is imported on first use, so that a run pays
    #: only for the protocols it meets (and mypy checks the call, which a string would hide)
    decoder: DecoderFactory | None = None
    #: recognises the start of a direction's stream (None: no opening signature)
    opening: Callable[[bytes], Verdict] | None = None
    #: recognises bytes from the middle of a stream; consulted only after every ``opening``
    #: said no, since it is the weaker evidence
    midstream: Callable[[bytes], bool] | None = None
    #: ports that hint at the protocol when content cannot decide (IANA and habit)
    ports: tuple[int, ...] = ()
    #: its connections carry messages once decoded (TLS's are its plaintext protocol's)
    messages: bool = True
    #: True when ``resp`` is the client (a capture joined mid-connection), from both heads
    swapped: Callable[[bytes, bytes], bool] | None = None


class Registry:
    """The protocols wireprobe knows, in the order their openings are tried."""

    def __init__(self, specs: Sequence[ProtocolSpec]) -> None:
        self.specs: tuple[ProtocolSpec, ...] = tuple(specs)
        self._by_name = {spec.name: spec for spec in self.specs}
        #: port -> protocol; the first registration of a port wins
        self.port_hints: Mapping[int, str] = _port_hints(self.specs)

    @property
    def names(self) -> tuple[str, ...]:
        """Protocol names, in registration order (``--port PROTO=PORT`` accepts these)."""
        return tuple(self._by_name)

    @property
    def message_protocols(self) -> tuple[str, ...]:
        """Protocols whose connections carry messages once decoded."""
        return tuple(spec.name for spec in self.specs if spec.messages)

    @property
    def titles(self) -> dict[str, str]:
        """name -> how reports print it."""
        return {spec.name: spec.title for spec in self.specs}

    def get(self, name: str) -> ProtocolSpec | None:
        return self._by_name.get(name)

    def classify(self, head: bytes, *, first: bool) -> str | None:
        """The protocol ``head`` (a direction's first bytes) shows; "" if none, None if unsure."""
        unsure = first and len(head) < 8
        for spec in self.specs:
            if spec.opening is None:
                continue
            verdict = spec.opening(head)
            if verdict:
                return spec.name
            unsure = unsure or verdict is None
        for spec in self.specs:
            if spec.midstream is not None and spec.midstream(head):
                return spec.name
        return None if unsure and len(head) < MAX_DETECT_BYTES else ""


def _port_hints(specs: Sequence[ProtocolSpec]) -> dict[int, str]:
    hints: dict[int, str] = {}
    for spec in specs:
        for port in spec.ports:
            hints.setdefault(port, spec.name)
    return hints


# Decoders and the detectors that live beside them are imported on first use: detection need
# not import every decoder, and decoders import this module (a cycle at import time otherwise).


def _http2(ids: MessageIds, options: DecodeOptions, **kwargs: Any) -> StreamDecoder:
    from analyzer.protocols.http2.decoder import Http2Decoder

    return Http2Decoder(ids, options, **kwargs)


def _amqp(ids: MessageIds, options: DecodeOptions, **kwargs: Any) -> StreamDecoder:
    from analyzer.protocols.amqp.decoder import AmqpDecoder

    return AmqpDecoder(ids, options, **kwargs)


def _http1(ids: MessageIds, options: DecodeOptions, **kwargs: Any) -> StreamDecoder:
    from analyzer.protocols.http1.decoder import Http1Decoder

    return Http1Decoder(ids, options, **kwargs)


def _tls(ids: MessageIds, options: DecodeOptions, **kwargs: Any) -> StreamDecoder:
    from analyzer.tls.decoder import TlsDecoder

    return TlsDecoder(ids, options, **kwargs)


def _mqtt(ids: MessageIds, options: DecodeOptions, **kwargs: Any) -> StreamDecoder:
    from analyzer.protocols.mqtt import MqttDecoder

    return MqttDecoder(ids, options, **kwargs)


def _nats(ids: MessageIds, options: DecodeOptions, **kwargs: Any) -> StreamDecoder:
    from analyzer.protocols.nats import NatsDecoder

    return NatsDecoder(ids, options, **kwargs)


def _websocket(ids: MessageIds, options: DecodeOptions, **kwargs: Any) -> StreamDecoder:
    from analyzer.protocols.websocket import WebSocketDecoder

    return WebSocketDecoder(ids, options, **kwargs)


def _mqtt_connect(head: bytes) -> Verdict:
    from analyzer.protocols.mqtt import detect_connect

    return detect_connect(head)


def _nats_opening(head: bytes) -> Verdict:
    from analyzer.protocols.nats import detect_opening

    return detect_opening(head)


#: The protocols, one registration each; the order is the decision list of content detection
#: (DESIGN.md section 6).  Adding a protocol: its package under analyzer/protocols/ and a line here.
REGISTRY = Registry(
    (
        ProtocolSpec(
            name="http2",
            title="HTTP/2",
            decoder=_http2,
            opening=_opens_with(HTTP2_PREFACE),
            swapped=_client_opens(_opens_with(HTTP2_PREFACE)),
        ),
        ProtocolSpec(
            name="amqp",
            title="AMQP 0-9-1",
            decoder=_amqp,
            opening=_opens_with(AMQP_HEADER),
            midstream=_is_amqp_frame,
            ports=(5672,),
            swapped=_client_opens(_opens_with(AMQP_HEADER)),
        ),
        ProtocolSpec(
            name="http1",
            title="HTTP/1.1",
            decoder=_http1,
            opening=_http1_opening,
            ports=(80, 8080, 8000),
            swapped=_http1_swapped,
        ),
        ProtocolSpec(
            name="tls",
            title="TLS (undecrypted)",
            decoder=_tls,
            opening=_tls_opening,
            ports=(443, 8443, 5671, 8883),
            messages=False,
        ),
        ProtocolSpec(
            name="mqtt",
            title="MQTT",
            decoder=_mqtt,
            opening=_mqtt_connect,
            ports=(1883,),
            swapped=_client_opens(_mqtt_connect),
        ),
        ProtocolSpec(
            name="nats",
            title="NATS",
            decoder=_nats,
            opening=_nats_opening,
            ports=(4222,),
        ),
        # Reached only through an HTTP/1.1 Upgrade (protocols/http1/upgrade.py): no opening.
        ProtocolSpec(
            name="websocket",
            title="WebSocket",
            decoder=_websocket,
        ),
    )
)

#: Ports that hint at a protocol when content cannot decide (IANA registrations and habits).
PORT_HINTS: Mapping[int, str] = REGISTRY.port_hints


def detect(
    orig: bytes,
    resp: bytes,
    ports: tuple[int, int],
    options: DecodeOptions,
    *,
    final: bool = False,
    registry: Registry = REGISTRY,
) -> str | None:
    """Decide the protocol from the first bytes of each direction.

    Returns None while more bytes could change the answer (unless ``final``), else one of
    ``registry.names`` or "unknown".
    """
    # 1. The user's word beats everything.
    for port in ports:
        if port in options.port_overrides:
            return options.port_overrides[port]
    # 2. Content: the originator's first bytes, then the responder's (mid-connection captures).
    verdicts = []
    for head in (orig, resp):
        verdict = registry.classify(head, first=True) if head else None
        if verdict:
            return verdict
        verdicts.append(verdict)
    if not final and None in verdicts:
        return None
    # 3. Ports only as a hint.
    for port in sorted(ports):
        if port in registry.port_hints:
            return registry.port_hints[port]
    return "unknown"


def _roles_swapped(protocol: str, orig: bytes, resp: bytes, registry: Registry) -> bool:
    """The connection's ``resp`` is the client: a capture joined mid-connection whose first
    packet came from the server, on a port that does not say which side serves."""
    spec = registry.get(protocol)
    return spec is not None and spec.swapped is not None and spec.swapped(orig, resp)


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


def make_decoder(
    protocol: str,
    ids: MessageIds,
    options: DecodeOptions,
    registry: Registry | None = None,
    **kwargs: Any,
) -> StreamDecoder:
    """The decoder ``registry`` (by default ``REGISTRY``) builds for ``protocol``; the opaque
    one when it builds none."""
    spec = (registry or REGISTRY).get(protocol)
    if spec is None or spec.decoder is None:
        return OpaqueDecoder(protocol, kwargs.get("base", (0, 0)))
    return spec.decoder(ids, options, **kwargs)


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
        registry: Registry | None = None,
    ) -> None:
        self._ids = ids
        # Read at construction, not at import: a caller (or a test) may install another table.
        self._registry = registry or REGISTRY
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
            return make_decoder(
                protocol, self._ids, self._options, self._registry, ports=self._ports
            )
        return make_decoder(protocol, self._ids, self._options, self._registry)

    @property
    def inner(self) -> StreamDecoder | None:
        """The protocol's decoder once detection has decided."""
        return self._inner

    def _decide(self, final: bool) -> list[Event]:
        protocol = detect(
            self._heads[ORIG],
            self._heads[RESP],
            self._ports,
            self._options,
            final=final,
            registry=self._registry,
        )
        if protocol is None:
            return []
        self._inner = self._build(protocol)
        if _roles_swapped(protocol, self._heads[ORIG], self._heads[RESP], self._registry):
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
