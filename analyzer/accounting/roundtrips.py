"""Round trips on the critical path (DESIGN.md section 4), counted from event order alone.

Counts never depend on timing: only on the order of packets (their capture ordinals).  Both the
ledger (from decoded messages) and the generator (from what it sent) call these functions, so
"round trips" means one thing everywhere.

Message round trips.  For each sender direction, a *gap* is the stretch between two consecutive
message starts of that sender (or after its last one).  A message is *outstanding* from its start
until its answer if it is ever answered; messages never answered (fire-and-forget publishes, lost
responses) are never outstanding and cost nothing.  When answers arrive in a gap, the sender was
waiting on the ``k`` messages outstanding at the gap's start, so each answer in that gap is one
``k``-th of a round trip.  This gives the figures DESIGN.md asks for:

- HTTP/1.1 keep-alive, AMQP synchronous confirms: k = 1, one round trip per message;
- k requests sent together and then waited on (HTTP/2 streams, pipelining): 1/k each;
- a sliding window of k (a new request as each answer arrives): still 1/k each;
- fire-and-forget: 0; asynchronous confirms: 1/(messages in flight), close to 0.

Setup round trips: 1 for a TCP handshake seen, plus each *turn* before the first message's first
byte: ``orig`` sent data, then ``resp`` sent data, then ``orig`` sends again (TLS flights,
HTTP/2 and AMQP negotiation).  Data that answers nothing (``events.Unsolicited``: TLS 1.3
session tickets, HTTP/2 SETTINGS, their ACKs, WINDOW_UPDATE and PING, AMQP heartbeats) ends no
wait: ``solicited_turns`` drops the runs of packets that carried only such data, so a ticket
that happens to arrive a few microseconds before the client's request is not a turn, and the
same client run twice gets the same count.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from analyzer.decoding.events import ORIG, RESP

#: (sender direction, ordinal of the message's first byte, ordinal of its answer or None)
MessageTiming = tuple[int, int, int | None]


def message_round_trips(
    messages: Sequence[MessageTiming], waits: Mapping[int, int] | None = None
) -> list[float]:
    """Round trips charged to each message, in the order given.

    ``waits`` maps a message's index to the waits its answer ends when that is not one: an MQTT
    QoS 2 flow waits for PUBREC and then, after PUBREL, for PUBCOMP, so its answer counts two;
    an HTTP/1.1 request whose body waited for ``100 Continue`` counts two the same way.
    """
    result = [0.0] * len(messages)
    for sender in (ORIG, RESP):
        _charge_sender(messages, sender, result, waits or {})
    return result


def _charge_sender(
    messages: Sequence[MessageTiming],
    sender: int,
    result: list[float],
    waits: Mapping[int, int],
) -> None:
    # Sends sort before answers at the same ordinal: a response seen without its request
    # (mid-connection) is started and answered by the same packet.
    events: list[tuple[int, int, int]] = []
    for index, (direction, started, answered) in enumerate(messages):
        if direction != sender:
            continue
        events.append((started, 0, index))
        if answered is not None:
            events.append((max(answered, started), 1, index))
    events.sort()
    outstanding: set[int] = set()
    waited_on = 0  # k: outstanding when the current gap began
    for _, kind, index in events:
        if kind == 0:
            if messages[index][2] is not None:
                outstanding.add(index)
            waited_on = len(outstanding)
        elif index in outstanding:
            outstanding.discard(index)
            result[index] = waits.get(index, 1) / max(waited_on, 1)


def solicited_turns(
    turns: Sequence[tuple[int, int]],
    packets: Sequence[int],
    unsolicited: Collection[tuple[int, int]],
    answering: Collection[tuple[int, int]] = (),
) -> list[tuple[int, int]]:
    """``turns`` (ordinal, direction of each run of data packets) without the runs whose every
    packet delivered only unsolicited data, runs of one direction that then touch merged.

    ``packets[i]`` is how many data packets run ``i`` had; ``unsolicited`` holds (direction,
    ordinal) of the packets that carried unsolicited data, ``answering`` of those that carried
    data the peer may wait for as well (they stay).
    """
    unsolicited = set(unsolicited) - set(answering)
    if not unsolicited:
        return list(turns)
    out: list[tuple[int, int]] = []
    for i, (ordinal, direction) in enumerate(turns):
        end = turns[i + 1][0] if i + 1 < len(turns) else None
        marked = sum(
            1
            for d, o in unsolicited
            if d == direction and o >= ordinal and (end is None or o < end)
        )
        if i < len(packets) and marked >= packets[i]:
            continue  # nothing in this run answered anything
        if out and out[-1][1] == direction:
            continue  # the run before it was dropped: one run of this direction goes on
        out.append((ordinal, direction))
    return out


def setup_round_trips(
    tcp_handshake: bool, data_directions: Sequence[tuple[int, int]], bound: int | None
) -> int:
    """1 for the TCP handshake, plus the turns in ``data_directions`` up to ``bound``.

    ``data_directions`` lists (ordinal, direction) of packets that carried new stream data, in
    ordinal order; ``bound`` is the ordinal of the first message's first byte (None: no message,
    so no turns are known to belong to setup).
    """
    turns = 0
    if bound is not None:
        previous = None
        for ordinal, direction in data_directions:
            if ordinal > bound:
                break
            if direction == ORIG and previous == RESP:
                turns += 1
            previous = direction
    return int(tcp_handshake) + turns
