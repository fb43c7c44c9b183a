"""The rows and sentences of the report's newer sections (issue 14): the whole path of a
message, the latency at stated networks, the cases not run, the glossary.  Pure: values in,
strings out; ``render`` lays them out as Markdown and HTML.
"""

from __future__ import annotations

from typing import Any

from analyzer.compare.charts import PROTOCOL_NAMES, TLS_NAMES
from analyzer.compare.endtoend import PathFigures, path_figures, summary_figures
from analyzer.compare.matrix import CompareResult, Measurement
from analyzer.compare.timing import (
    DOMINATES_SHARE,
    NEGLIGIBLE_SHARE,
    NETWORKS,
    Network,
    path_round_trips,
    path_time_s,
    per_second,
    time_s,
)

PATH_COLUMNS = (
    "path",
    "leg",
    "TLS",
    "conns",
    "marginal B/msg",
    "loaded B/msg",
    "payload B/msg",
    "overhead B/msg",
    "RT/msg (with setup)",
    "handshakes/msg",
)
TIMING_COLUMNS = (
    "path",
    "TLS",
    "critical RT",
    *(f"{n.name} ({n.rtt_ms:g} ms): ms/msg" for n in NETWORKS),
    *(f"{n.name}: msg/s" for n in NETWORKS),
)
NOT_RUN_COLUMNS = ("case", "why it did not run")

#: The words of the tables, defined once (rendered near the top of the report).
GLOSSARY = (
    (
        "marginal",
        "a message's own bytes on the wire: what one more message costs on an open "
        "connection (taken from the longest connection of the same protocol, TLS and body)",
    ),
    (
        "loaded",
        "marginal plus an equal share of its connection's setup, teardown and control "
        "bytes: what a message costs when its connection is counted too",
    ),
    ("overhead", "marginal minus payload: what the protocol stack adds to the body"),
    ("payload", "body bytes as the analyzer counted them, request and response together"),
    (
        "RT/msg (with setup)",
        "round trips on the critical path per message, each connection's "
        "setup round trips (TCP, TLS, application) spread over its messages",
    ),
    ("RT/msg (messages only)", "the round trips the messages themselves wait, setup left out"),
    ("handshakes/msg", "TCP plus TLS handshakes per message"),
    ("leg", "one connection a message crosses; a path's figures are its legs' added up"),
)

HOW_TO_READ = (
    "Each case is one capture: synthetic traffic whose every byte the generator knows, or a "
    "recording of real peers with --live, analysed by wireprobe exactly as "
    "'wireprobe analyze --format json' would. The claims come first, each with the figures it "
    "rests on and the case that would turn it. 'Protocol against protocol' compares one hop; "
    "'The whole path of a message' adds every hop a message takes (a broker is two, an RPC "
    "four), which is the fair comparison. 'Latency' turns the counted round trips and bytes "
    "into milliseconds at three network distances with the model written under it. Every "
    "table and chart has its numbers in compare.json and a CSV beside this page."
)


#: Under the case tables: why a case's marginal cost may differ from its own analysis summary.
MARGINAL_NOTE = (
    "Marginal is what one more message costs on an open connection, so each row quotes the "
    "marginal of its protocol, TLS setting and body measured on the longest connection. On a "
    "one-message TLS connection the request rides in the segment that ends the handshake, and "
    "that segment's header bytes are split between setup and message, so the message's own "
    "bytes read lower than in clear; quoting one marginal per configuration charges every "
    "length alike. Loaded bytes (all bytes over all messages) are unaffected."
)
PATHS_NOTE = (
    "Every leg carries all the run's messages on one connection (persistent connections, as "
    "brokers and proxies keep them; the reuse curve above shows new connections). Legs are "
    "paired by the generator's topology: each leg is its own capture, and a path's figures are "
    "its legs' added up. Payload counts the body each time it crosses the wire."
)


def _f(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f}"


def path_rows(result: CompareResult, *, legs: bool) -> list[list[str]]:
    """Every path measured: its end-to-end figures (``legs`` False), or one row per leg."""
    rows = []
    for p in path_figures(result):
        tls = TLS_NAMES[p.case.tls]
        if not legs:
            label = f"end to end, {len(p.legs)} leg{'s' if len(p.legs) > 1 else ''}"
            rows.append(_path_row(p.case.path.name, label, tls, p.connections, p.total))
            continue
        for leg in p.legs:
            rows.append(
                _path_row(p.case.path.name, leg.leg.label, tls, leg.connections, leg.figures)
            )
    return rows


def _path_row(
    name: str, leg: str, tls: str, connections: int, figures: dict[str, float]
) -> list[str]:
    return [
        name,
        leg,
        tls,
        str(connections),
        _f(figures["marginal_bytes"]),
        _f(figures["loaded_bytes"]),
        _f(figures["payload_bytes"]),
        _f(figures["overhead_bytes"]),
        _f(figures["round_trips"], 3),
        _f(figures["handshakes"], 3),
    ]


def timing_rows(result: CompareResult) -> list[list[str]]:
    """Each path's time per message and messages per second at every stated network."""
    rows = []
    for p in path_figures(result):
        times = [path_time_s(p, n) for n in NETWORKS]
        rows.append(
            [
                p.case.path.name,
                TLS_NAMES[p.case.tls],
                _f(path_round_trips(p), 3),
                *(f"{1000 * t:.3g}" for t in times),
                *(f"{per_second(t):,.0f}" for t in times),
            ]
        )
    return rows


def not_run_rows(result: CompareResult) -> list[list[str]]:
    return [[n.case.label, n.reason] for n in result.not_run]


def _time_ms(result: CompareResult, m: Measurement, network: Network) -> tuple[float, float]:
    """(time per message, the part of it that is connection setup), milliseconds."""
    s = m.summary
    total = time_s(
        float(s["round_trips_per_message"]), float(s["loaded_bytes_per_message"]), network
    )
    own = time_s(m.message_round_trips, result.marginal_bytes(m.case), network)
    return 1000 * total, 1000 * max(0.0, total - own)


def reuse_lines(result: CompareResult) -> list[str]:
    """Where connection reuse dominates a message's time and where it stops mattering, per
    protocol at the strongest TLS setting measured, from the reuse curve."""
    lines = []
    for tls in [t for t in ("1.3", "1.2", "off") if any(c.tls == t for c in result.matrix.reuse)][
        :1
    ]:
        for protocol in dict.fromkeys(c.protocol for c in result.matrix.reuse):
            curve = sorted(
                (c for c in result.matrix.reuse if c.tls == tls and c.protocol == protocol),
                key=lambda c: c.per_connection,
            )
            if len(curve) < 2:
                continue
            lines.append(_reuse_line(result, protocol, tls, [result.of(c) for c in curve]))
    return lines


def _reuse_line(result: CompareResult, protocol: str, tls: str, curve: list[Measurement]) -> str:
    first, last = curve[0], curve[-1]
    parts = []
    for network in (NETWORKS[0], NETWORKS[-1]):
        fresh, _ = _time_ms(result, first, network)
        reused, _ = _time_ms(result, last, network)
        parts.append(
            f"{network.name} ({network.rtt_ms:g} ms RTT): {fresh:.3g} ms per message with "
            f"{first.case.per_connection}/connection, {reused:.3g} ms with "
            f"{last.case.per_connection} (saves {fresh - reused:.3g} ms)"
        )
    shares = []
    for m in curve:
        total, setup = _time_ms(result, m, NETWORKS[-1])
        shares.append((m.case.per_connection, setup / total if total else 0.0))
    dominates = [k for k, share in shares if share >= DOMINATES_SHARE]
    negligible = next((k for k, share in shares if share < NEGLIGIBLE_SHARE), None)
    verdict = "setup is " + ", ".join(f"{100 * share:.0f}% at {k}" for k, share in shares)
    verdict += (
        f"; it dominates (>= {100 * DOMINATES_SHARE:.0f}%) up to {max(dominates)} per connection"
        if dominates
        else ""
    )
    verdict += (
        f"; under {100 * NEGLIGIBLE_SHARE:.0f}% from {negligible} per connection on"
        if negligible is not None
        else ""
    )
    name = f"{PROTOCOL_NAMES[protocol]} {TLS_NAMES[tls]}"
    return f"{name}: " + "; ".join(parts) + f". Of the time, {verdict}."


def path_headline(result: CompareResult) -> list[str]:
    """One sentence per pattern: the whole path's cost of the queue against direct HTTP."""
    lines = []
    paths = [p for p in path_figures(result) if p.case.tls == "off"]
    for pattern in dict.fromkeys(p.case.path.pattern for p in paths):
        of = [p for p in paths if p.case.path.pattern == pattern]
        lines.append(
            f"{pattern.capitalize()}, whole path: "
            + ", ".join(_path_cost(p) for p in sorted(of, key=lambda p: p.total["marginal_bytes"]))
            + "."
        )
    return lines


def _path_cost(p: PathFigures) -> str:
    legs = f"{len(p.legs)} legs" if len(p.legs) > 1 else "1 leg"
    return f"{p.case.path.name} {p.total['marginal_bytes']:.0f} B ({legs})"


#: How far a live figure may be from the synthetic one before the report flags it.  Bytes: a
#: quarter of the figure still catches a wrong model (a missing leg, a second handshake).  Round
#: trips and handshakes are counts: they must agree to a twentieth of one per message.  Besides
#: the whole message's bytes, each group of layers is compared on its own, so a difference the
#: live stacks are entitled to (below) is not mistaken for one in what the protocol sends.
LIVE_TOLERANCE = {
    "marginal_bytes": ("relative", 0.25),
    "loaded_bytes": ("relative", 0.25),
    "message_bytes": ("relative", 0.25),
    "tls_bytes": ("relative", 0.25),
    "tcp_ip_bytes": ("relative", 0.25),
    "round_trips": ("absolute", 0.05),
    "handshakes": ("absolute", 0.05),
}
#: The layers of each group of ``LIVE_TOLERANCE`` (per message, from the analysis's messages).
LIVE_LAYERS = {
    "message_bytes": ("framing", "payload"),
    "tls_bytes": ("tls",),
    "tcp_ip_bytes": ("link", "ip", "tcp"),
}
#: Why a flagged figure may legitimately differ: what real stacks do that the generator does not
#: model.  A flagged ``message_bytes`` has no such excuse: the generator should send what the
#: real peers send, and the difference is printed as it is.
LIVE_REASONS = {
    "tcp_ip_bytes": (
        "real stacks: Linux puts the 12-byte timestamp option in every segment, the peers write "
        "a message's head and body separately, and loopback ACKs every segment (quick-ack) where "
        "the generator models delayed ACKs"
    ),
    "tls_bytes": "real stacks seal a message's head, body and each HTTP/2 frame in its own record",
    "marginal_bytes": "the sum of the layer groups: see message_bytes, tls_bytes, tcp_ip_bytes",
    "loaded_bytes": "the sum of the layer groups: see message_bytes, tls_bytes, tcp_ip_bytes",
}
LIVE_COLUMNS = ("case", "figure", "live", "synthetic", "difference", "tolerance", "within", "why")


def layer_figures(analysis: dict[str, Any]) -> dict[str, float]:
    """Bytes per message of each layer group of ``LIVE_LAYERS``."""
    messages = analysis["messages"]
    count = max(1, len(messages))
    return {
        name: sum(m["layers"].get(layer, 0) for m in messages for layer in layers) / count
        for name, layers in LIVE_LAYERS.items()
    }


def live_differences(result: CompareResult) -> list[tuple[str, str, float, float, bool]]:
    """(case, figure, live, synthetic, within tolerance) for every live case and figure."""
    out = []
    for case, generated in result.synthetic.items():
        measured = result.of(case)
        live = summary_figures(measured.summary) | layer_figures(measured.analysis)
        model = summary_figures(generated.summary) | layer_figures(generated.analysis)
        for name, (kind, bound) in LIVE_TOLERANCE.items():
            gap = abs(live[name] - model[name])
            limit = bound * abs(model[name]) if kind == "relative" else bound
            out.append((case.label, name, live[name], model[name], gap <= limit))
    return out


def live_reason(name: str, within: bool) -> str:
    """Why a flagged figure differs, when the difference is the real stacks' right."""
    return "" if within else LIVE_REASONS.get(name, "")


def live_rows(result: CompareResult) -> list[list[str]]:
    rows = []
    for label, name, live, model, within in live_differences(result):
        kind, bound = LIVE_TOLERANCE[name]
        tolerance = f"{100 * bound:.0f}%" if kind == "relative" else f"{bound:g}"
        diff = f"{100 * (live - model) / model:+.1f}%" if model else f"{live - model:+.3g}"
        rows.append(
            [
                label,
                name,
                f"{live:.3f}",
                f"{model:.3f}",
                diff,
                tolerance,
                "yes" if within else "NO",
                live_reason(name, within),
            ]
        )
    return rows
