"""gRPC length-prefixed messages (gRPC over HTTP/2, "Length-Prefixed-Message").

Each message in one direction of a call is a 1-octet compressed flag (0 or 1), a 4-octet
big-endian length and that many octets of data; a DATA frame may hold several messages or part
of one, so the framer cuts one direction's DATA payload as it arrives, without holding it (only
the 5-octet prefix is kept while it is split).  The prefix is framing, the data payload.

A gap inside a message's data keeps the framer in step (the length says where the next message
starts); a gap inside a prefix, or a flag other than 0 or 1, does not: the rest of that
direction is out of step and charged opaque.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from analyzer.decoding.events import FRAMING, OPAQUE, PAYLOAD

#: 1-octet compressed flag, 4-octet big-endian message length.
PREFIX_BYTES: Final = 5
_PREFIX = struct.Struct(">BL")
#: Compressed-Flag values the specification defines.
_FLAGS: Final = frozenset({0, 1})

_Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class Piece:
    """Octets [start, end) of one fed chunk, charged to ``layer`` of message ``index``."""

    start: int
    end: int
    #: FRAMING (prefix), PAYLOAD (message data) or OPAQUE (out of step)
    layer: int
    #: the message's index in this direction of the call, from 0; -1 for opaque octets
    index: int
    #: this piece holds the message's first octet / last octet
    first: bool
    last: bool


class Framer:
    """Cuts one direction of a gRPC call's DATA payload into length-prefixed messages."""

    __slots__ = ("_left", "_prefix", "anomaly", "count", "lengths")

    def __init__(self) -> None:
        #: octets of the current prefix seen so far (a prefix may be split across frames)
        self._prefix = bytearray()
        #: data octets of the current message still to come; None between messages
        self._left: int | None = None
        #: messages started so far
        self.count = 0
        #: the data length each started message announced, by index
        self.lengths: list[int] = []
        #: why the framer is out of step (a stable anomaly name), None while in step
        self.anomaly: str | None = None

    @property
    def open(self) -> bool:
        """A message was started and its last octet has not come yet."""
        return bool(self._prefix) or self._left is not None

    def feed(self, data: _Buffer | None, at: int, n: int) -> list[Piece]:
        """Cut ``n`` payload octets, ``data[at:at+n]`` (None: a gap, which cuts nothing).

        Pieces are given relative to the chunk: 0 is ``data[at]``."""
        pieces: list[Piece] = []
        i = 0
        while i < n:
            if self.anomaly is not None:
                pieces.append(Piece(i, n, OPAQUE, -1, False, False))
                break
            left = self._left
            if left is None:
                i = self._take_prefix(data, at, i, n, pieces)
            else:
                i = self._take_data(left, i, n, pieces)
        return pieces

    def finish(self) -> str | None:
        """The anomaly of a message cut off by the end of its stream, if one is."""
        if self.anomaly is None and self.open:
            return "grpc.truncated_message"
        return None

    def _take_prefix(
        self, data: _Buffer | None, at: int, i: int, n: int, pieces: list[Piece]
    ) -> int:
        if data is None:
            # The prefix says where the next message starts: without it we are out of step.
            self.anomaly = "grpc.prefix_lost"
            return i
        take = min(PREFIX_BYTES - len(self._prefix), n - i)
        first = not self._prefix
        self._prefix += data[at + i : at + i + take]
        index = self.count if first else self.count - 1
        if first:
            self.count += 1
        if len(self._prefix) < PREFIX_BYTES:
            pieces.append(Piece(i, i + take, FRAMING, index, first, False))
            return i + take
        flag, length = _PREFIX.unpack(self._prefix)
        self._prefix.clear()
        if flag not in _FLAGS:
            self.anomaly = "grpc.bad_prefix"
            pieces.append(Piece(i, i + take, FRAMING, index, first, True))
            return i + take
        self.lengths.append(length)
        self._left = length or None
        pieces.append(Piece(i, i + take, FRAMING, index, first, length == 0))
        return i + take

    def _take_data(self, left: int, i: int, n: int, pieces: list[Piece]) -> int:
        take = min(left, n - i)
        self._left = left - take or None
        pieces.append(Piece(i, i + take, PAYLOAD, self.count - 1, False, self._left is None))
        return i + take
