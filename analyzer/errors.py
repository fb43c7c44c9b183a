"""The one small exception family (STYLE.md habit 3).

``CaptureError`` ends a run (the CLI prints its one-line message and exits 2); ``DecodeError``
inside one connection stops that connection's decoder and becomes an anomaly.
"""

from __future__ import annotations


class WireprobeError(Exception):
    """Base of every error wireprobe raises on purpose."""


class CaptureError(WireprobeError):
    """A capture file cannot be read at all (missing, empty, not a capture, header cut)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class DecodeError(WireprobeError):
    """Bytes of a connection cannot be decoded; ``anomaly`` names the condition."""

    def __init__(self, anomaly: str, detail: str = "") -> None:
        super().__init__(f"{anomaly}: {detail}" if detail else anomaly)
        self.anomaly = anomaly
        self.detail = detail


class UsageError(WireprobeError):
    """Arguments that cannot work together (exit 2 with this message)."""
