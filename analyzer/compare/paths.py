"""The whole path of a message (issue 14): which connections a message crosses, as a table.

An HTTP call is one hop; a queued message travels twice (producer to broker, broker to
consumer), and an RPC over a broker four times.  Comparing like with like means adding up every
leg.  Each path is a row of ``PATHS``: its pattern, and its legs in the order the message takes
them, each leg naming a mode of ``analyzer.compare.matrix`` (one connection's traffic the
generator can produce with its ground truth) and whether it carries the message or its reply.

Legs are paired by the generator's known topology, not by ids read off the wire: each leg is
generated and analysed as its own capture, and a path's figures are the sum of its legs'
(``analyzer.compare.endtoend``).  Legs that share a real connection (an RPC client publishes
its requests and receives its replies on one) are separate captures here; on the persistent
connections paths are measured on, that changes the setup share by a fraction of a byte.

A protocol added later (MQTT, NATS) adds rows here and modes in the matrix, no code.
"""

from __future__ import annotations

from dataclasses import dataclass

NOTIFICATION = "one-way notification"
REQUEST_REPLY = "request/reply"
PATTERNS = (NOTIFICATION, REQUEST_REPLY)


@dataclass(frozen=True, slots=True, kw_only=True)
class Leg:
    """One connection a message crosses."""

    #: who talks to whom, and what goes over it
    label: str
    #: a key of ``analyzer.compare.matrix.ALL_MODES``
    mode: str
    #: True when the leg carries the reply (its body is the reply's, not the request's)
    reply: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Path:
    """One way of getting a message (and maybe its answer) from sender to receiver."""

    #: stable short name, for scripts and tests
    key: str
    #: how the report names it
    name: str
    #: NOTIFICATION or REQUEST_REPLY
    pattern: str
    #: "http" or "queue": which side of the comparison the path stands on
    family: str
    legs: tuple[Leg, ...]
    #: one-way network trips on the critical path of one message: until the receiver has it
    #: and the sender has its answer (the reply, or the 202 or confirm that it was accepted),
    #: every hop at the same RTT.  A call is 2; a proxied call or an RPC through a broker 4; a
    #: notification 2, since a confirm (or a 202) travels back while the broker forwards.
    one_way_trips: int


PATHS: tuple[Path, ...] = (
    Path(
        key="http1-notify",
        one_way_trips=2,
        name="HTTP/1.1 POST answered 202",
        pattern=NOTIFICATION,
        family="http",
        legs=(Leg(label="client -> server: POST, 202 Accepted", mode="http1 POST 202"),),
    ),
    Path(
        key="http2-notify",
        one_way_trips=2,
        name="HTTP/2 POST answered 202",
        pattern=NOTIFICATION,
        family="http",
        legs=(Leg(label="client -> server: POST, 202 Accepted", mode="http2 POST 202"),),
    ),
    Path(
        key="amqp-notify",
        one_way_trips=2,
        name="AMQP publish (confirmed) -> deliver -> ack",
        pattern=NOTIFICATION,
        family="queue",
        legs=(
            Leg(label="producer -> broker: publish, confirm", mode="amqp confirm"),
            Leg(label="broker -> consumer: deliver, ack", mode="amqp consume"),
        ),
    ),
    Path(
        key="http1-call",
        one_way_trips=2,
        name="HTTP/1.1 request/response, direct",
        pattern=REQUEST_REPLY,
        family="http",
        legs=(Leg(label="client -> server: request, response", mode="http1 request/response"),),
    ),
    Path(
        key="http2-call",
        one_way_trips=2,
        name="HTTP/2 request/response, direct",
        pattern=REQUEST_REPLY,
        family="http",
        legs=(Leg(label="client -> server: request, response", mode="http2 request/response"),),
    ),
    Path(
        key="http1-proxy-call",
        one_way_trips=4,
        name="HTTP/1.1 through a reverse proxy",
        pattern=REQUEST_REPLY,
        family="http",
        legs=(
            Leg(label="client -> proxy: request, response", mode="http1 request/response"),
            Leg(label="proxy -> upstream: request, response", mode="http1 request/response"),
        ),
    ),
    Path(
        key="http2-proxy-call",
        one_way_trips=4,
        name="HTTP/2 to a reverse proxy, HTTP/1.1 upstream",
        pattern=REQUEST_REPLY,
        family="http",
        legs=(
            Leg(label="client -> proxy: request, response", mode="http2 request/response"),
            Leg(label="proxy -> upstream: request, response", mode="http1 request/response"),
        ),
    ),
    Path(
        key="amqp-rpc",
        one_way_trips=4,
        name="AMQP RPC (reply_to, correlation_id)",
        pattern=REQUEST_REPLY,
        family="queue",
        legs=(
            Leg(label="client -> broker: publish request", mode="amqp rpc request publish"),
            Leg(label="broker -> server: deliver request, ack", mode="amqp rpc request deliver"),
            Leg(label="server -> broker: publish reply", mode="amqp rpc reply publish", reply=True),
            Leg(
                label="broker -> client: deliver reply, ack",
                mode="amqp rpc reply deliver",
                reply=True,
            ),
        ),
    ),
)
