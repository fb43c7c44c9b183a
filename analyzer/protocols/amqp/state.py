"""The AMQP decoder's state: messages being decoded, lanes (sender direction, channel), pending
Basic.Get calls and each direction's framing state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from analyzer.protocols.amqp.wire import (
    _START,
)


@dataclass(slots=True, eq=False)
class _Message:
    """One content-carrying method being decoded (mutable: it fills in as frames arrive)."""

    id: int
    kind: str
    channel: int
    #: ts of the message's latest byte so far (MessageEnded uses it when no ack comes)
    last_ts: float
    delivery_tag: int | None = None
    #: None until the content header arrives
    body_size: int | None = None
    body_seen: int = 0
    content_done: bool = False
    #: an acknowledgement may still come (confirm mode, consumer not known to be no_ack)
    awaiting_ack: bool = False
    answered: bool = False
    ack: str | None = None
    ended: bool = False


@dataclass(slots=True, eq=False)
class _Lane:
    """What one direction sends on one channel: its content in progress and its unacked messages."""

    content: _Message | None = None
    #: Confirm.Select was seen for this sender: its publishes are numbered from 1
    confirm: bool = False
    next_seq: int = 1
    #: the lane's beginning (Channel.Open) was seen, so "no Confirm.Select" means no confirms
    known: bool = False
    #: delivery tag (or publish sequence number) -> message waiting for its acknowledgement
    unacked: dict[int, _Message] = field(default_factory=dict)
    #: the tags of ``unacked`` were added in ascending order (brokers number them so), which
    #: lets a multiple ack take the ones it covers from the front instead of scanning them all
    ordered: bool = True
    #: publishes seen without Confirm.Select on a lane whose beginning was not captured
    unnumbered: list[_Message] = field(default_factory=list)

    def wait_for_ack(self, tag: int, message: _Message) -> None:
        """``message`` waits for an acknowledgement of ``tag``."""
        unacked = self.unacked
        if not unacked:
            self.ordered = True
        elif self.ordered and tag <= next(reversed(unacked)):
            self.ordered = False
        unacked[tag] = message


@dataclass(slots=True, eq=False)
class _PendingGet:
    """A Basic.Get waiting for GetOk (a message) or GetEmpty (control): its bytes wait too."""

    direction: int
    start: int
    end: int
    ordinal: int
    ts: float
    no_ack: bool


@dataclass(slots=True, eq=False)
class _Direction:
    """Framing state of one direction's byte stream."""

    offset: int
    #: bytes not yet charged, starting at stream offset ``offset``
    buf: bytearray = field(default_factory=bytearray)
    mode: int = _START
    #: (stream offset, ordinal, ts) of each feed whose bytes are in ``buf``
    feeds: list[tuple[int, int, float]] = field(default_factory=list)
    # A body frame charged as it streams past (_STREAM): bytes left including the frame-end.
    stream_left: int = 0
    stream_message: _Message | None = None
