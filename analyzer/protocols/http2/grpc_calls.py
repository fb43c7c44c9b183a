"""gRPC calls on HTTP/2 streams (issue #16): each length-prefixed message is a message.

A stream whose request headers carry content-type application/grpc (or application/grpc+proto
etc.) is a call.  Its DATA payload is cut by ``protocols.grpc.framer``: each message is protocol
``grpc``, kind ``request`` (orig) or ``response`` (resp), its 5-octet prefix framing and its data
payload.  The HTTP/2 frames stay charged to the stream's own ``http2`` message, as for any
stream.  A request is answered by its call's first later response message, or by the trailers
(resp's header block with END_STREAM) when there is none.
"""

from __future__ import annotations

from analyzer.decoding.events import (
    OPAQUE,
    ORIG,
    RESP,
    UNDECODED,
    MessageAnswered,
    MessageEnded,
    MessageNote,
    MessageStarted,
)
from analyzer.protocols.grpc.framer import Framer
from analyzer.protocols.http2.frames import _Buffer
from analyzer.protocols.http2.messages import _Messages
from analyzer.protocols.http2.state import _Decoded, _Stream, _When

GRPC_PROTOCOL = "grpc"
_KINDS = ("request", "response")


class Call:
    """One gRPC call: a framer and the message being assembled per direction."""

    __slots__ = ("framers", "named", "open", "path", "pending", "stream")

    def __init__(self, stream: int, path: str | None) -> None:
        #: the message of the HTTP/2 stream that carries the call (its frames are charged there)
        self.stream = stream
        self.path = path
        self.framers = (Framer(), Framer())
        #: the message id being assembled, per direction
        self.open: list[int | None] = [None, None]
        #: request messages not answered yet
        self.pending: list[int] = []
        #: the framer's anomaly was recorded, per direction
        self.named = [False, False]


class _Grpc(_Messages):
    """Turns the DATA payload of gRPC streams into gRPC messages."""

    def _open_call(self, stream: _Stream, fields: _Decoded) -> None:
        path = dict(fields.request_notes).get("path")
        stream.grpc = Call(stream.message, path if isinstance(path, str) else None)
        # Its whole DATA frames take the streamed path, which sees their payload octets.
        self._grpc_streams.add(stream.stream_id)

    def _grpc_payload(
        self,
        direction: int,
        call: Call,
        data: _Buffer | None,
        at: int,
        n: int,
        offset: int,
        when: _When,
    ) -> None:
        """Charge ``n`` DATA payload octets at stream ``offset`` (``data[at:at+n]``; None: a
        gap, which is cut but not charged) to the call's messages."""
        framer = call.framers[direction]
        for piece in framer.feed(data, at, n):
            if piece.first:
                self._grpc_start(direction, call, when)
            owner = call.open[direction]
            if data is not None:
                if piece.layer == OPAQUE or owner is None:
                    owner = UNDECODED
                self._span(direction, offset + piece.start, offset + piece.end, owner, piece.layer)
            if piece.last and call.open[direction] is not None:
                self._grpc_end(direction, call)
        if framer.anomaly is not None and not call.named[direction]:
            call.named[direction] = True
            self._anomaly(framer.anomaly)

    def _grpc_start(self, direction: int, call: Call, when: _When) -> None:
        message = self._ids.next()
        call.open[direction] = message
        self._out.append(
            MessageStarted(message, GRPC_PROTOCOL, _KINDS[direction], direction, *when)
        )
        if call.path is not None:
            self._out.append(MessageNote(message, "path", call.path))
        self._out.append(MessageNote(message, "call", call.stream))
        if direction == ORIG:
            call.pending.append(message)
        else:
            self._grpc_answer(call, when)

    def _grpc_answer(self, call: Call, when: _When) -> None:
        for request in call.pending:
            self._out.append(MessageAnswered(request, when[0], when[1]))
        call.pending.clear()

    def _grpc_end(self, direction: int, call: Call) -> None:
        message = call.open[direction]
        call.open[direction] = None
        if message is not None:
            self._flush_both()  # the ledger retires a message by the spans before its end
            self._out.append(MessageEnded(message, self._now[1]))

    def _grpc_side_ended(self, stream: _Stream, direction: int, when: _When) -> None:
        """END_STREAM from ``direction``: a message still open there was cut off; resp's end
        (the trailers) answers requests no response message answered."""
        call = stream.grpc
        if call is None:
            return
        problem = call.framers[direction].finish()
        if problem is not None and not call.named[direction]:
            call.named[direction] = True
            self._anomaly(problem)
        if direction == RESP:
            self._grpc_answer(call, when)

    def _grpc_finish(self, stream: _Stream) -> None:
        """The capture ended with the stream open: a message still open was cut off."""
        call = stream.grpc
        if call is None:
            return
        for direction in (ORIG, RESP):
            problem = call.framers[direction].finish()
            if problem is not None and not call.named[direction]:
                call.named[direction] = True
                self._anomaly(problem)

    def _end_side(self, stream: _Stream, direction: int) -> None:
        if stream.grpc is not None:
            self._grpc_side_ended(stream, direction, self._now)
        super()._end_side(stream, direction)
