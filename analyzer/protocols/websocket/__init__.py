"""WebSocket (RFC 6455), reached through an HTTP/1.1 Upgrade: the frame decoder."""

from analyzer.protocols.websocket.decoder import WebSocketDecoder

__all__ = ["WebSocketDecoder"]
