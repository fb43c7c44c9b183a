"""The catalogue of anomaly names: every name wireprobe reports, documented once.

An anomaly is named ``layer.condition`` (DESIGN.md habit 4) and is part of the JSON contract:
baselines, users' scripts and dashboards read the names, so a name, once shipped, keeps its
meaning.  Each entry says where the name is counted (``scope``):

- ``capture``: in the capture's ``anomalies`` (the file, its blocks, the inputs);
- ``connection``: in a connection record's ``anomalies`` (TCP, TLS, a protocol's decoder);
- ``message``: in the message log's ``anomalies`` column (``--messages``).

``tests/test_anomalies.py`` fails when the code names an anomaly that is not here, and when
``docs/anomalies.md`` is not what ``python -m analyzer.anomalies`` prints.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Literal

Scope = Literal["capture", "connection", "message"]


@dataclass(frozen=True, slots=True)
class AnomalyInfo:
    """One catalogued name: where it is counted and what it means to the reader."""

    name: str
    scope: Scope
    meaning: str


def _entries(scope: Scope, rows: Mapping[str, str]) -> Iterator[tuple[str, AnomalyInfo]]:
    for name, meaning in rows.items():
        yield name, AnomalyInfo(name, scope, meaning)


_CAPTURE: Final[Mapping[str, str]] = {
    "capture.bad_record": "a record's captured length exceeds its original length or is absurd",
    "capture.truncated": "a record or block was cut by the end of the data (a capture still "
    "being written, or copied short)",
    "capture.read_error": "the operating system failed a read in the middle of the file; "
    "reading stopped there",
    "capture.bad_gzip": "corrupt compressed data after a good start; reading stopped there",
    "capture.gzip_bomb": "decompression passed the bounded expansion ratio; reading stopped",
    "capture.gzip_trailing_garbage": "bytes after the last gzip member (ignored)",
    "pcapng.bad_block": "a pcapng block's framing, or a length inside it, is wrong",
    "pcapng.unknown_block": "a pcapng block type this reader does not know (skipped)",
    "pcapng.bad_interface": "a packet names an interface that no Interface Description Block "
    "described (skipped)",
    "pcapng.bad_option": "interface options overrun their block (defaults kept)",
    "pcapng.unsupported_version": "a section's major version is not 1 (section skipped)",
    "pcapng.bad_secrets": "key log lines in a Decryption Secrets Block that do not parse (skipped)",
    "pcapng.secrets_over_budget": "a Decryption Secrets Block past the key log bound (ignored)",
    "pcapng.unknown_secrets": "a Decryption Secrets Block of a type other than TLS key log "
    "(WireGuard, ...; ignored)",
    "link.unsupported": "a packet of a link type wireprobe does not decode (skipped)",
    "ip.fragment": "an IP fragment: not reassembled, so its bytes are in no connection",
    "ip.bad_header": "an IP header that cannot be decoded (skipped)",
    "tcp.bad_header": "a TCP header that cannot be decoded (skipped)",
    "input.separate_capture": "a later input file could not be merged with the earlier ones "
    "(a different capture): its connections start afresh",
}

_CONNECTION: Final[Mapping[str, str]] = {
    # IP and TCP
    "ip.bad_length": "the IP length field claims more than the frame holds; the frame's "
    "length was used",
    "tcp.bad_flags": "a contradictory flag combination (SYN+FIN, RST+FIN, ...); the segment is "
    "still charged and read for its other flags",
    "tcp.rst_out_of_window": "a reset whose sequence number is outside the window (ignored as "
    "a close, charged to control)",
    "tcp.evicted": "the connection was retired early because the state budget was full "
    "(too many open connections)",
    "tcp.gap": "bytes missing from the stream (the capture dropped segments)",
    "tcp.overlap_mismatch": "a retransmission whose bytes differ from the bytes first seen "
    "(the first copy is kept)",
    # wireprobe's own contract checks: never expected, reported so nothing is hidden
    "wireprobe.decoder_error": "a decoder failed; the connection's remaining bytes are "
    "undecoded (a wireprobe bug worth reporting)",
    "wireprobe.pending_overflow": "more packets waited for a decision than the ledger holds; "
    "the oldest were charged to control",
    "wireprobe.span_overlap": "a decoder described bytes twice; the second description was ignored",
    "wireprobe.charge_after_retire": "bytes arrived for a message already written out (a late "
    "retransmission or duplicate ACK); charged to control",
    "wireprobe.unspanned_bytes": "a decoder left bytes undescribed; they are undecoded",
    # TLS
    "tls.not_tls": "the connection's first bytes are not a TLS record",
    "tls.bad_record": "a record header that cannot be a TLS record; the rest is undecoded",
    "tls.truncated_record": "the capture ended inside a TLS record",
    "tls.gap": "a gap inside a TLS stream: record boundaries and sequence numbers are lost",
    "tls.bad_handshake": "a malformed handshake message (ClientHello, ServerHello, "
    "EncryptedExtensions)",
    "tls.handshake_too_long": "a handshake message longer than the bound",
    "tls.fatal_alert": "a fatal alert was seen",
    "tls.decrypt_failed": "a record would not decrypt with the keys of the key log (bad tag, "
    "MAC or padding)",
    "tls.unsupported_cipher": "the negotiated suite or version cannot be decrypted by wireprobe",
    # HTTP/1.1
    "http1.bad_message": "a start line or header block that does not parse",
    "http1.header_too_large": "a header block longer than the bound",
    "http1.bad_content_length": "a Content-Length that is not one number",
    "http1.bad_transfer_encoding": "a Transfer-Encoding whose last coding is not chunked on a "
    "request",
    "http1.bad_chunk": "a malformed chunk size line or chunk end",
    "http1.truncated": "the connection ended inside a message (its body cut short)",
    "http1.resync": "framing was lost and found again at a later start line",
    "http1.gap": "a gap where the framing cannot follow; resynchronised at the next start line",
    "http1.too_many_pending": "more unanswered requests than the bound; the oldest dropped",
    "http1.orphan_response": "a response whose request was not captured",
    "http1.lost_response": "responses skipped by a gap: their requests stay unanswered",
    "http1.unexpected_switch": "a 101 Switching Protocols that answered no Upgrade request",
    "http1.upgrade_request_unfinished": "the capture ended while an Upgrade request was still "
    "being sent",
    "http1.upgrade_unanswered": "the capture ended before an Upgrade request was answered",
    "http1.tunnel": "the connection became a tunnel (CONNECT, an Upgrade wireprobe does not "
    "decode): its bytes after that are undecoded",
    # HTTP/2
    "http2.no_preface": "the client preface is missing (a capture joined mid-connection)",
    "http2.mid_connection": "frames found in the middle of a connection without its start",
    "http2.bad_frame": "a frame header that cannot be valid; framing resynchronised",
    "http2.resync": "framing was lost and found again",
    "http2.bad_frame_body": "a frame body that does not parse",
    "http2.frame_too_large": "a frame longer than the bound",
    "http2.bad_padding": "padding longer than the frame",
    "http2.unknown_frame": "a frame of an unknown type (charged as framing)",
    "http2.bad_continuation": "a CONTINUATION that follows no open header block",
    "http2.header_block_too_large": "a header block longer than the bound",
    "http2.truncated_frame": "the connection ended inside a frame",
    "http2.truncated_header_block": "the connection ended inside a header block",
    "http2.hpack_error": "a header block HPACK cannot decode: later headers in that direction "
    "are not read",
    "http2.hpack_after_gap": "a gap lost the HPACK state: later headers in that direction are "
    "not read",
    "http2.frame_on_forgotten_stream": "a frame on a stream closed and forgotten long ago",
    "http2.too_many_open_streams": "more open streams than the bound; the oldest was written out "
    "as it stood",
    # gRPC (on HTTP/2)
    "grpc.bad_prefix": "a length prefix whose compressed flag is neither 0 nor 1: the rest of the "
    "stream is not cut into messages",
    "grpc.prefix_lost": "a gap fell inside a length prefix: the stream's later messages cannot "
    "be found",
    "grpc.truncated_message": "the stream ended inside a message",
    # AMQP 0-9-1
    "amqp.protocol_version": "a protocol header other than AMQP 0-9-1",
    "amqp.unsynced_start": "the capture starts mid-connection out of frame step; resynchronised",
    "amqp.gap": "a gap in the stream; framing resynchronised after it",
    "amqp.bad_frame_type": "a frame of an unknown type",
    "amqp.frame_too_large": "a frame header claiming more than the bound",
    "amqp.bad_frame_end": "a frame not closed by 0xCE: out of step, resynchronised",
    "amqp.bad_method": "a method frame that does not parse",
    "amqp.bad_content_header": "a content header frame too short to parse",
    "amqp.orphan_content": "content frames that follow no content-bearing method",
    "amqp.content_interrupted": "a method arrived on a channel before its content was complete",
    "amqp.truncated_frame": "the connection ended inside a frame",
    "amqp.truncated_content": "a message's content ended before its announced size",
    "amqp.too_many_unacked": "more unacknowledged messages on a channel than the bound",
    "amqp.unmatched_ack": "an ack or nack for a tag no publish or delivery carried",
    "amqp.unanswered_get": "a Basic.Get never answered by GetOk or GetEmpty",
    "amqp.confirm_inferred": "publisher confirms whose Confirm.Select was not captured: the "
    "confirm numbering was inferred from the first ack",
    # MQTT
    "mqtt.bad_remaining_length": "a remaining length longer than four bytes",
    "mqtt.bad_packet_type": "the reserved packet type 0",
    "mqtt.bad_packet": "a field that runs past its packet",
    "mqtt.bad_properties": "MQTT 5 properties that do not parse",
    "mqtt.bad_connect": "a CONNECT that does not parse (protocol name, will)",
    "mqtt.bad_qos": "the reserved QoS 3",
    "mqtt.oversized_packet": "a packet other than PUBLISH longer than the bound (charged unread)",
    "mqtt.level_assumed": "no CONNECT was captured: protocol level 3.1.1 assumed",
    "mqtt.packet_id_reused": "a packet identifier reused while its message was in flight",
    "mqtt.unknown_topic_alias": "a topic alias no earlier PUBLISH defined",
    "mqtt.unmatched_ack": "an acknowledgement that matches no message in flight",
    "mqtt.truncated_packet": "the connection ended inside a packet",
    "mqtt.gap": "a gap in the stream; framing resynchronised after it",
    # NATS
    "nats.unknown_op": "a protocol line with an unknown verb",
    "nats.bad_args": "a protocol line with wrong or out-of-range arguments",
    "nats.line_too_long": "a protocol line longer than the bound",
    "nats.bad_message_end": "a message payload not closed by CRLF",
    "nats.truncated": "the connection ended inside a line or a payload",
    "nats.gap": "a gap in the stream; framing resynchronised after it",
    # WebSocket
    "websocket.bad_opcode": "a reserved opcode",
    "websocket.bad_length": "a 64-bit payload length with its top bit set",
    "websocket.bad_control_frame": "a control frame that is fragmented or longer than 125 bytes",
    "websocket.orphan_continuation": "a continuation frame that continues no message",
    "websocket.unfinished_message": "a data message never finished (a new one began, or the "
    "connection ended)",
    "websocket.truncated_frame": "the connection ended inside a frame",
    "websocket.gap": "a gap in the stream; framing resynchronised after it",
}

_MESSAGE: Final[Mapping[str, str]] = {
    "message.unfinished": "the capture ended (or a gap fell) inside the message",
    "http.no_response": "an HTTP request with no response in the capture",
    "http.no_request": "an HTTP/1.1 response whose request was not captured",
    "amqp.published_while_blocked": "published while the broker had blocked the connection "
    "(Connection.Blocked)",
}

#: Every name, in the order the documentation lists them.
CATALOGUE: Final[Mapping[str, AnomalyInfo]] = dict(
    [
        *_entries("capture", _CAPTURE),
        *_entries("connection", _CONNECTION),
        *_entries("message", _MESSAGE),
    ]
)

_HEADINGS: Final[Mapping[Scope, str]] = {
    "capture": "Capture (the capture's `anomalies`)",
    "connection": "Connection (a connection record's `anomalies`)",
    "message": "Message (the message log's `anomalies` column)",
}


def markdown() -> str:
    """The catalogue as the page ``docs/anomalies.md``."""
    lines = [
        "# Anomaly names",
        "",
        "Every name wireprobe reports, generated from `analyzer/anomalies.py` by",
        "`python -m analyzer.anomalies > docs/anomalies.md`. A count never changes a figure's",
        "meaning: bytes an anomaly concerns are still charged (DESIGN.md section 3).",
    ]
    for scope, heading in _HEADINGS.items():
        lines += ["", f"## {heading}", "", "| name | meaning |", "| --- | --- |"]
        lines += [
            f"| `{info.name}` | {info.meaning} |"
            for info in CATALOGUE.values()
            if info.scope == scope
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
