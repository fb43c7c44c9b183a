"""AMQP RPC calls paired across connections by correlation id: the latency a caller feels.

An AMQP RPC (the RabbitMQ tutorial's pattern, and what Celery, nameko and most RPC-over-AMQP
libraries do) is four legs on at least two connections: the caller publishes a request carrying
``reply_to`` and ``correlation_id``; the broker delivers it to a worker; the worker publishes the
reply to the ``reply_to`` queue with the same ``correlation_id``; the broker delivers the reply to
the caller.  No single connection sees the call, so the pairing is done over the capture's
messages:

- a **call** is a ``publish`` with both properties set;
- its **reply** is the first ``deliver`` at or after the call's start carrying the same
  correlation id and no ``reply_to``.  Properties travel with a message through the broker, so
  the call's own delivery to the worker still names ``reply_to`` and is not taken for the reply;
  the reply names none (RabbitMQ's tutorial, pika, the Java client, Celery's RPC backend).  The
  reply queue's name is not compared: with RabbitMQ's direct reply-to the caller sends
  ``amq.rabbitmq.reply-to`` and the worker publishes to a name the broker made from it.

The latency is from the call's first byte to the reply's first byte (``latency``) and last byte
(``latency_last_byte``), as for the answers of one connection (``analyzer.accounting.latency``).
Connections finish in any order, so a reply may be seen before its call; both sides wait in
bounded tables (``MAX_WAITING``; the oldest are dropped and counted as ``evicted``).  Nothing here
changes a count of the ledger: RPC pairing is timing only (DESIGN.md section 4).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from analyzer.accounting.latency import LatencySketch

Record = dict[str, Any]

#: Calls, and replies, waiting for their other half.  A reply normally follows its call within a
#: few connections' records; a table this size is some 20 MB at most.
MAX_WAITING = 100_000


@dataclass(slots=True)
class _Call:
    start: float


@dataclass(slots=True)
class _Reply:
    start: float
    end: float


def _answers(call: _Call, reply: _Reply) -> bool:
    return reply.start >= call.start


@dataclass
class RpcPairs:
    """The capture's RPC calls and replies, paired as their messages are seen."""

    calls: int = 0
    answered: int = 0
    evicted: int = 0
    latency: LatencySketch = field(default_factory=LatencySketch)
    latency_last_byte: LatencySketch = field(default_factory=LatencySketch)
    _calls: OrderedDict[str, list[_Call]] = field(default_factory=OrderedDict)
    _replies: OrderedDict[str, list[_Reply]] = field(default_factory=OrderedDict)
    _waiting: int = 0

    def merge(self, other: RpcPairs) -> None:
        """Fold in another run's pairs; its waiting calls and replies may pair with ours."""
        self.calls += other.calls
        self.answered += other.answered
        self.evicted += other.evicted
        self.latency.merge(other.latency)
        self.latency_last_byte.merge(other.latency_last_byte)
        for correlation, calls in other._calls.items():
            for call in calls:
                self._call(correlation, call)
        for correlation, replies in other._replies.items():
            for reply in replies:
                self._reply(correlation, reply)

    def watch(self, messages: Iterator[Record]) -> Iterator[Record]:
        """``messages`` unchanged, each one looked at on its way through."""
        for message in messages:
            self.add(message)
            yield message

    def add(self, message: Record) -> None:
        """Fold one message record; only AMQP ones carrying a correlation id matter."""
        detail = message.get("detail")
        if not detail or message.get("protocol") != "amqp":
            return
        correlation = detail.get("correlation_id")
        if not correlation:
            return
        kind = message.get("kind")
        if kind == "publish" and detail.get("reply_to"):
            self.calls += 1
            self._call(correlation, _Call(message["start_ts"]))
        elif kind == "deliver" and not detail.get("reply_to") and message.get("end_ts"):
            self._reply(correlation, _Reply(message["start_ts"], message["end_ts"]))

    def _call(self, correlation: str, call: _Call) -> None:
        waiting = self._replies.get(correlation)
        for index, reply in enumerate(waiting or ()):
            if _answers(call, reply):
                self._pair(call, reply)
                self._take(self._replies, correlation, index)
                return
        self._wait(self._calls, correlation, call)

    def _reply(self, correlation: str, reply: _Reply) -> None:
        waiting = self._calls.get(correlation)
        for index, call in enumerate(waiting or ()):
            if _answers(call, reply):
                self._pair(call, reply)
                self._take(self._calls, correlation, index)
                return
        self._wait(self._replies, correlation, reply)

    def _pair(self, call: _Call, reply: _Reply) -> None:
        self.answered += 1
        self.latency.add(reply.start - call.start)
        self.latency_last_byte.add(reply.end - call.start)

    def _take(self, table: OrderedDict[str, list[Any]], key: str, index: int) -> None:
        entries = table[key]
        del entries[index]
        if not entries:
            del table[key]
        self._waiting -= 1

    def _wait(self, table: OrderedDict[str, list[Any]], key: str, entry: Any) -> None:
        table.setdefault(key, []).append(entry)
        self._waiting += 1
        while self._waiting > MAX_WAITING:
            # Drop from the larger table's oldest key: the side that is not being answered.
            victim = self._calls if len(self._calls) >= len(self._replies) else self._replies
            oldest = next(iter(victim))
            self._take(victim, oldest, 0)
            self.evicted += 1

    def as_dict(self) -> Record | None:
        """The JSON summary's ``rpc`` block; None when the capture had no RPC traffic."""
        replies_waiting = sum(len(v) for v in self._replies.values())
        if not self.calls and not replies_waiting:
            return None
        return {
            "calls": self.calls,
            "answered": self.answered,
            "unanswered": sum(len(v) for v in self._calls.values()),
            "replies_without_call": replies_waiting,
            "evicted": self.evicted,
            "latency": self.latency.stats() if self.answered else None,
            "latency_last_byte": self.latency_last_byte.stats() if self.answered else None,
        }
