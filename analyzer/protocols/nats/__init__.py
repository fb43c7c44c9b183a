"""NATS, the client protocol (text over TCP): the decoder and its content detector."""

from analyzer.protocols.nats.decoder import NatsDecoder
from analyzer.protocols.nats.wire import detect_opening

__all__ = ["NatsDecoder", "detect_opening"]
