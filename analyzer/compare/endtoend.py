"""Per-leg and end-to-end figures of the paths of ``analyzer.compare.paths``.

A leg's figures are its case's analysis summary, per message; a path's are the sums over its
legs (a message crosses every leg once, so its costs add).  Legs are paired by the generator's
topology: leg k of a path is the capture of its k-th mode (see ``paths``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analyzer.compare.matrix import Case, CompareResult, Measurement, PathCase
from analyzer.compare.paths import Leg

#: The per-message figures of a leg and of a path, in the order tables and exports list them.
FIGURES = (
    "marginal_bytes",
    "loaded_bytes",
    "payload_bytes",
    "overhead_bytes",
    "round_trips",
    "message_round_trips",
    "handshakes",
)


def overhead_bytes(summary: dict[str, Any]) -> float:
    """Marginal bytes per message that are not payload: what the protocol stack adds.

    Payload is what the analyzer counted as payload in both directions (a request's body and
    its response's), so the one definition holds for every protocol and every place it is
    printed."""
    messages = max(1, int(summary["messages"]))
    return float(summary["marginal_bytes_per_message"]) - float(summary["payload_bytes"]) / messages


def summary_figures(summary: dict[str, Any]) -> dict[str, float]:
    """The per-message figures of one analysis (or ground-truth) summary row."""
    messages = max(1, int(summary["messages"]))
    tls = int(summary.get("tls_full_handshakes", 0)) + int(summary.get("tls_resumed_handshakes", 0))
    return {
        "marginal_bytes": float(summary["marginal_bytes_per_message"]),
        "loaded_bytes": float(summary["loaded_bytes_per_message"]),
        "payload_bytes": float(summary["payload_bytes"]) / messages,
        "overhead_bytes": overhead_bytes(summary),
        "round_trips": float(summary["round_trips_per_message"]),
        "handshakes": (int(summary["tcp_handshakes"]) + tls) / messages,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class LegFigures:
    """One leg of a path, per message, as the analyzer measured it."""

    leg: Leg
    case: Case
    #: ``FIGURES`` by name
    figures: dict[str, float]
    #: the generator's ground truth of the same figures (None for live captures)
    truth: dict[str, float] | None
    #: TCP connections the leg's capture holds
    connections: int

    @property
    def agrees_with_truth(self) -> bool:
        if self.truth is None:
            return True
        return all(
            abs(self.truth[name] - self.figures[name]) <= TOLERANCE * max(1.0, abs(value))
            for name, value in self.truth.items()
        )


#: The truth file rounds averages to a few decimals; the analyzer does not.
TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True, kw_only=True)
class PathFigures:
    """A path's legs and their sum: what one message costs from sender to receiver."""

    case: PathCase
    legs: tuple[LegFigures, ...]

    @property
    def total(self) -> dict[str, float]:
        """``FIGURES`` summed over the legs."""
        return {name: sum(leg.figures[name] for leg in self.legs) for name in FIGURES}

    @property
    def truth_total(self) -> dict[str, float] | None:
        """The ground truth summed over the legs (None when a leg has none)."""
        if any(leg.truth is None for leg in self.legs):
            return None
        return {
            name: sum(leg.truth[name] for leg in self.legs if leg.truth is not None)
            for name in self.legs[0].truth or {}
        }

    @property
    def connections(self) -> int:
        return sum(leg.connections for leg in self.legs)


def leg_figures(leg: Leg, m: Measurement) -> LegFigures:
    figures = summary_figures(m.summary) | {"message_round_trips": m.message_round_trips}
    truth_row = (m.truth_summary or {}).get(m.case.protocol)
    truth = summary_figures(truth_row) if isinstance(truth_row, dict) else None
    return LegFigures(
        leg=leg,
        case=m.case,
        figures=figures,
        truth=truth,
        connections=int(m.summary["connections"]),
    )


def path_figures(result: CompareResult) -> list[PathFigures]:
    """Every path of the run that has all its legs measured."""
    return [
        PathFigures(case=p, legs=tuple(leg_figures(leg, result.of(c)) for leg, c in p.legs))
        for p in result.matrix.paths
    ]
