"""Latency the reader feels: counted round trips and bytes turned into time at stated networks.

The model (``MODEL``, printed under the charts) is deliberately plain, so that a reader can redo
it by hand from the figures in the tables:

    time per message = round trips on the critical path x RTT + wire bytes x 8 / bandwidth
    messages per second (one sender, one message at a time) = 1 / time per message

Round trips are the analyzer's counts (DESIGN.md section 4), with each connection's setup round
trips spread over its messages; wire bytes are the loaded bytes (setup share included).  For a
whole path (``analyzer.compare.paths``) the critical path is the path's one-way trips at RTT/2
each, plus every leg's share of its connection setup, plus every leg's bytes at the bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.compare.endtoend import PathFigures


@dataclass(frozen=True, slots=True, kw_only=True)
class Network:
    """A network a message crosses: its round-trip time and bandwidth."""

    #: where such an RTT is found
    name: str
    rtt_ms: float
    bandwidth_bits_per_s: float


#: 1 Gbit/s: a common server NIC and a cloud instance's typical share; at this rate a 1 KiB
#: message takes 8 microseconds to send, so the RTT dominates except for large bodies.
BANDWIDTH_BITS_PER_S = 1e9
#: RTTs of issue 14: within a rack, within a cloud region (between zones), across regions.
NETWORKS = (
    Network(name="rack", rtt_ms=0.1, bandwidth_bits_per_s=BANDWIDTH_BITS_PER_S),
    Network(name="region", rtt_ms=2.0, bandwidth_bits_per_s=BANDWIDTH_BITS_PER_S),
    Network(name="cross-region", rtt_ms=40.0, bandwidth_bits_per_s=BANDWIDTH_BITS_PER_S),
)
#: Connection reuse "dominates" while setup is at least half of a message's time, and "stops
#: mattering" once it is under a tenth of it (the chart marks both).
DOMINATES_SHARE = 0.5
NEGLIGIBLE_SHARE = 0.1

MODEL = (
    "Model: time per message = round trips x RTT + wire bytes x 8 / bandwidth; messages per "
    "second = 1 / time per message, for one sender waiting on each message as the measured mode "
    "does. Round trips and bytes are the analyzer's counts per message with each connection's "
    "setup spread over its messages (loaded bytes). For a whole path: its one-way trips x RTT/2 "
    "plus every leg's setup round trips and bytes, every hop at the same RTT. Left out: server "
    "and broker processing time, queueing, TCP slow start and loss."
)


def time_s(round_trips: float, wire_bytes: float, network: Network) -> float:
    """Seconds one message takes on ``network``: its round trips and its bytes in series."""
    return round_trips * network.rtt_ms / 1000 + wire_bytes * 8 / network.bandwidth_bits_per_s


def per_second(seconds: float) -> float:
    """Messages per second of one sender at ``seconds`` per message."""
    return 1 / seconds if seconds > 0 else float("inf")


def setup_share(round_trips: float, message_round_trips: float) -> float:
    """The share of a message's round trips that is connection setup (0 on a long connection)."""
    return (round_trips - message_round_trips) / round_trips if round_trips > 0 else 0.0


def path_round_trips(p: PathFigures) -> float:
    """Round trips on a path's critical path: its one-way trips, and each leg's setup share."""
    setup = sum(leg.figures["round_trips"] - leg.figures["message_round_trips"] for leg in p.legs)
    return p.case.path.one_way_trips / 2 + setup


def path_time_s(p: PathFigures, network: Network) -> float:
    """Seconds from the sender's first byte until receiver and sender both have what they
    wait for, on ``network``."""
    return time_s(path_round_trips(p), p.total["loaded_bytes"], network)
