"""AMQP RPC calls assembled across connections by correlation id: what one call costs, end to end.

An AMQP RPC (the pattern of RabbitMQ's tutorial 6; tests/test_rpc_live.py runs it with pika,
with a reply queue and with direct reply-to) is four legs on at least two connections, each leg
one message of the analysis:

1. ``call``: the caller publishes the request, naming ``reply_to`` and a ``correlation_id``;
2. ``request_delivery``: the broker delivers it to a worker (the properties travel with it, so
   it still names ``reply_to``);
3. ``reply``: the worker publishes the answer with the same ``correlation_id`` and no
   ``reply_to``;
4. ``reply_delivery``: the broker delivers the answer to the caller.

No single connection sees the call, so its legs are gathered over the capture's messages by
correlation id and role (publish or deliver, ``reply_to`` named or not).  The reply queue's name
is not compared: with RabbitMQ's direct reply-to the caller names ``amq.rabbitmq.reply-to`` and
the worker publishes to a name the broker made from it.  A leg joins the oldest open call of its
id that lacks its role and whose legs it does not contradict in time (legs 1 to 4 start in that
order); otherwise it opens a new call, so an id reused for a later call starts afresh.

- A call is **answered** once legs 1 and 4 are both seen: its latency runs from the call's first
  byte to the reply delivery's first byte (``latency``) and last byte (``latency_last_byte``), as
  for the answers of one connection (``analyzer.accounting.latency``).
- A call is **complete** once all four legs are seen: its legs' bytes add up to the end-to-end
  cost of the call (``legs`` and ``end_to_end``), the figure the comparison sets against one
  HTTP request and response.

Connections finish in any order, so legs arrive in any order; open calls wait in a bounded table
(``MAX_WAITING``; the oldest are dropped and counted as ``evicted``).  Nothing here changes a count
of the ledger: the legs stay the messages they are (DESIGN.md section 4).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from analyzer.accounting.latency import LatencySketch

Record = dict[str, Any]

#: Open calls waiting for their other legs.  A call's legs normally finish within a few
#: connections' records of each other; a table this size is some 30 MB at most.
MAX_WAITING = 100_000

#: The legs of a call, in the order they start.
ROLES = ("call", "request_delivery", "reply", "reply_delivery")
CALL, REQUEST_DELIVERY, REPLY, REPLY_DELIVERY = range(4)


@dataclass(slots=True)
class _Leg:
    start: float
    end: float
    marginal: int
    loaded: float


def _role(kind: Any, names_reply_to: bool) -> int | None:
    if kind == "publish":
        return CALL if names_reply_to else REPLY
    if kind == "deliver":
        return REQUEST_DELIVERY if names_reply_to else REPLY_DELIVERY
    return None


def _answered(legs: list[_Leg | None]) -> bool:
    return legs[CALL] is not None and legs[REPLY_DELIVERY] is not None


def _fits(legs: list[_Leg | None], role: int, leg: _Leg) -> bool:
    """``leg`` may be ``role`` of the call whose legs so far are ``legs``: the role is free and
    the legs before it started no later, the legs after it no earlier."""
    if legs[role] is not None:
        return False
    before = all(other is None or other.start <= leg.start for other in legs[:role])
    return before and all(other is None or other.start >= leg.start for other in legs[role + 1 :])


@dataclass(slots=True)
class _Totals:
    """The legs of complete calls, summed."""

    calls: int = 0
    marginal: list[int] = field(default_factory=lambda: [0] * len(ROLES))
    loaded: list[float] = field(default_factory=lambda: [0.0] * len(ROLES))

    def add(self, legs: list[_Leg | None]) -> None:
        self.calls += 1
        for role, leg in enumerate(legs):
            assert leg is not None
            self.marginal[role] += leg.marginal
            self.loaded[role] += leg.loaded

    def merge(self, other: _Totals) -> None:
        self.calls += other.calls
        for role in range(len(ROLES)):
            self.marginal[role] += other.marginal[role]
            self.loaded[role] += other.loaded[role]

    def as_dict(self) -> Record:
        n = self.calls
        legs = {
            name: {
                "marginal_bytes_per_call": self.marginal[role] / n if n else None,
                "loaded_bytes_per_call": self.loaded[role] / n if n else None,
            }
            for role, name in enumerate(ROLES)
        }
        end_to_end = {
            "marginal_bytes_per_call": sum(self.marginal) / n if n else None,
            "loaded_bytes_per_call": sum(self.loaded) / n if n else None,
        }
        return {"complete": n, "legs": legs, "end_to_end": end_to_end}


@dataclass
class RpcPairs:
    """The capture's RPC calls, assembled leg by leg as their messages are seen."""

    #: call legs seen (role 1), answered calls (roles 1 and 4), open calls dropped by the bound
    calls: int = 0
    answered: int = 0
    evicted: int = 0
    latency: LatencySketch = field(default_factory=LatencySketch)
    latency_last_byte: LatencySketch = field(default_factory=LatencySketch)
    complete: _Totals = field(default_factory=_Totals)
    #: correlation id -> its open calls, oldest first; the dict is in order of first opening
    _open: OrderedDict[str, list[list[_Leg | None]]] = field(default_factory=OrderedDict)
    _waiting: int = 0

    def merge(self, other: RpcPairs) -> None:
        """Fold in another run's calls; its open calls' legs may complete ours."""
        self.calls += other.calls
        self.answered += other.answered
        self.evicted += other.evicted
        self.latency.merge(other.latency)
        self.latency_last_byte.merge(other.latency_last_byte)
        self.complete.merge(other.complete)
        for correlation, calls in other._open.items():
            for legs in calls:
                self._place_open(correlation, legs)

    def _place_open(self, correlation: str, theirs: list[_Leg | None]) -> None:
        """Join another run's open call to one of ours it completes, else keep it open here."""
        for index, mine in enumerate(self._open.get(correlation, ())):
            if all(leg is None or _fits(mine, role, leg) for role, leg in enumerate(theirs)):
                before = _answered(mine) or _answered(theirs)  # already in a latency sketch
                for role, leg in enumerate(theirs):
                    if leg is not None:
                        mine[role] = leg
                if not before and _answered(mine):
                    self._joined(mine, CALL)
                if all(leg is not None for leg in mine):
                    self.complete.add(mine)
                    self._close(correlation, index)
                return
        self._open_call(correlation, list(theirs))

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
        role = _role(message.get("kind"), bool(detail.get("reply_to")))
        if not correlation or role is None or message.get("end_ts") is None:
            return
        self.calls += role == CALL
        leg = _Leg(
            message["start_ts"],
            message["end_ts"],
            message.get("marginal_bytes") or 0,
            message.get("loaded_bytes") or 0.0,
        )
        self._place(correlation, role, leg)

    def _place(self, correlation: str, role: int, leg: _Leg) -> None:
        calls = self._open.get(correlation)
        for index, legs in enumerate(calls or ()):
            if _fits(legs, role, leg):
                legs[role] = leg
                self._joined(legs, role)
                if all(other is not None for other in legs):
                    self.complete.add(legs)
                    self._close(correlation, index)
                return
        fresh: list[_Leg | None] = [None] * len(ROLES)
        fresh[role] = leg
        self._open_call(correlation, fresh)

    def _open_call(self, correlation: str, legs: list[_Leg | None]) -> None:
        self._open.setdefault(correlation, []).append(legs)
        self._waiting += 1
        while self._waiting > MAX_WAITING:
            self._close(next(iter(self._open)), 0)
            self.evicted += 1

    def _joined(self, legs: list[_Leg | None], role: int) -> None:
        call, reply = legs[CALL], legs[REPLY_DELIVERY]
        if role in (CALL, REPLY_DELIVERY) and call is not None and reply is not None:
            self.answered += 1
            self.latency.add(reply.start - call.start)
            self.latency_last_byte.add(reply.end - call.start)

    def _close(self, correlation: str, index: int) -> None:
        calls = self._open[correlation]
        del calls[index]
        if not calls:
            del self._open[correlation]
        self._waiting -= 1

    def _still_open(self, role: int, missing: int) -> int:
        return sum(
            1
            for calls in self._open.values()
            for legs in calls
            if legs[role] is not None and legs[missing] is None
        )

    def as_dict(self) -> Record | None:
        """The JSON summary's ``rpc`` block; None when the capture had no RPC traffic."""
        if not self.calls and not self._waiting and not self.complete.calls:
            return None
        return {
            "calls": self.calls,
            "answered": self.answered,
            "unanswered": self._still_open(CALL, REPLY_DELIVERY),
            "replies_without_call": self._still_open(REPLY_DELIVERY, CALL),
            "evicted": self.evicted,
            "latency": self.latency.stats() if self.answered else None,
            "latency_last_byte": self.latency_last_byte.stats() if self.answered else None,
            **self.complete.as_dict(),
        }
