"""Verdicts on the usual claims about REST calls and message queues, from a run's numbers.

Each claim is a function of the measurements of one compare run: it picks the figures that bear
on the claim, states them, and applies a written rule to reach a verdict.  Nothing here is fixed
text: a run whose numbers differ (say, HTTP never reusing a connection) gets another verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from analyzer.compare.endtoend import PathFigures, overhead_bytes, path_figures
from analyzer.compare.matrix import Case, CompareResult, Measurement
from analyzer.compare.paths import PATTERNS

TRUE, FALSE, PARTLY, NOT_SHOWN = "true", "false", "partly true", "not shown"

#: Handshakes per message at or below this are "much less than one" (claim 1): a connection
#: carried ten messages or more.
REUSED_HANDSHAKES_PER_MESSAGE = 0.1
#: Handshakes per message at or above this mean every message opened its own connection.
PER_REQUEST_HANDSHAKES_PER_MESSAGE = 0.9
#: A protocol is "lighter" when its per-message overhead is at least 10 % below the other's:
#: smaller differences are within what header values (paths, content types) change.
LIGHTER_RATIO = 0.9
#: Round trips per message at or below this are not "a round trip per message" (claim 4):
#: at least two messages shared each wait.
ASYNC_ROUND_TRIPS = 0.5
#: At or above this every message waited for its answer.
SYNC_ROUND_TRIPS = 0.9

NAMES = {"http1": "HTTP/1.1", "http2": "HTTP/2", "amqp": "AMQP"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Figure:
    """One measured figure quoted in support of a verdict."""

    #: what was measured, on which case
    label: str
    #: the value as measured (bytes, round trips or handshakes per message)
    value: float
    #: the unit, for display
    unit: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """A claim, the figures that bear on it, and the verdict of this run."""

    #: short stable name, for scripts and tests
    key: str
    #: the claim as people make it
    text: str
    #: TRUE, FALSE, PARTLY or NOT_SHOWN
    verdict: str
    #: the rule that turned the figures into the verdict
    rule: str
    #: one sentence saying what the figures show
    explanation: str
    figures: tuple[Figure, ...]
    #: the measured case that would turn the verdict, with the figure it would need
    flips_if: str = ""


def claims(result: CompareResult) -> list[Claim]:
    """Every claim's verdict on this run."""
    return [judge(result) for judge in CLAIMS]


# -- helpers --------------------------------------------------------------------------------


def _of_protocol(
    result: CompareResult, cases: tuple[Case, ...], protocol: str
) -> list[Measurement]:
    return [result.of(c) for c in cases if c.protocol == protocol]


def _tcp_handshakes_per_message(m: Measurement) -> float:
    summary = m.summary
    return float(summary["tcp_handshakes"]) / max(1, int(summary["messages"]))


def _overhead_per_message(m: Measurement) -> float:
    """Marginal bytes that are not payload: what the protocol stack adds to each message."""
    return overhead_bytes(m.summary)


def _reference(
    result: CompareResult, protocol: str, tls: str, *, reused: bool
) -> Measurement | None:
    """The reuse-curve case of ``protocol`` at the fewest or most messages per connection
    (None when the run has none: a live run without that protocol or TLS setting)."""
    cases = [c for c in result.matrix.reuse if c.protocol == protocol and c.tls == tls]
    if not cases:
        return None
    pick = max if reused else min
    return result.of(pick(cases, key=lambda c: c.per_connection))


def _handshakes_per_message(m: Measurement) -> float:
    return float(m.summary["handshakes_per_message"])


def _case_name(m: Measurement) -> str:
    return f"{NAMES[m.case.protocol]} {_tls_name(m.case.tls)}, {m.case.per_connection} msg/conn"


def _fig(label: str, value: float, unit: str) -> Figure:
    return Figure(label=label, value=value, unit=unit)


def _strongest_tls(result: CompareResult, protocols: tuple[str, ...] = ()) -> str:
    """The most expensive setting measured (TLS 1.3 over 1.2 over cleartext) shows most; with
    ``protocols``, the strongest one measured for all of them."""
    for tls in ("1.3", "1.2", "off"):
        measured = {c.protocol for c in result.matrix.reuse if c.tls == tls}
        if measured and set(protocols) <= measured:
            return tls
    return "off"


def _tls_name(tls: str) -> str:
    return "cleartext" if tls == "off" else f"TLS {tls}"


# -- claim 1 --------------------------------------------------------------------------------


def http_pays_handshakes_per_request(result: CompareResult) -> Claim:
    """ "HTTP cannot keep a connection open, so it pays TCP and TLS per request"."""
    http = [result.of(c) for c in result.matrix.reuse if c.protocol in ("http1", "http2")]
    figures: list[Figure] = []
    tls = _strongest_tls(result)
    for protocol in ("http1", "http2"):
        for reused in (False, True):
            m = _reference(result, protocol, tls, reused=reused)
            if m is None:
                continue
            name = _case_name(m)
            figures.append(_fig(f"{name}: handshakes", _handshakes_per_message(m), "/msg"))
            loaded = float(m.summary["loaded_bytes_per_message"])
            figures.append(_fig(f"{name}: loaded", loaded, "B/msg"))
    if not http:
        return _not_shown("http-per-request", CLAIM_TEXT["http-per-request"], RULE_1)
    # Rule: one HTTP connection that carried many messages refutes "cannot keep a connection
    # open"; the claim holds only if every HTTP connection measured carried a single message.
    best = min(_tcp_handshakes_per_message(m) for m in http)
    fresh = max(_tcp_handshakes_per_message(m) for m in http)
    flips = (
        "true if every HTTP client opened a connection per request, as the 1-message-per-"
        f"connection cases do ({fresh:.2f} TCP handshakes per message)"
    )
    if best <= REUSED_HANDSHAKES_PER_MESSAGE:
        verdict = FALSE
        why = (
            f"HTTP kept connections open: as few as {best:.3f} TCP handshakes per message "
            f"(one per {1 / best:.0f} messages); the per-request cost comes from opening a "
            "connection per call, not from HTTP."
        )
    elif best >= PER_REQUEST_HANDSHAKES_PER_MESSAGE:
        verdict = TRUE
        why = f"Every HTTP message measured paid {best:.2f} TCP handshakes: no connection reuse."
    else:
        verdict = PARTLY
        why = f"HTTP reused connections only a little ({best:.2f} TCP handshakes per message)."
    return Claim(
        key="http-per-request",
        text=CLAIM_TEXT["http-per-request"],
        verdict=verdict,
        rule=RULE_1,
        explanation=why,
        figures=tuple(figures),
        flips_if=flips if verdict != TRUE else "false once one HTTP client reuses a connection",
    )


RULE_1 = (
    f"false when some HTTP case shows <= {REUSED_HANDSHAKES_PER_MESSAGE} TCP handshakes per "
    f"message; true when all show >= {PER_REQUEST_HANDSHAKES_PER_MESSAGE}; partly otherwise"
)


# -- claim 2 --------------------------------------------------------------------------------


def _cheapest(paths: list[PathFigures]) -> PathFigures:
    return min(paths, key=lambda p: p.total["marginal_bytes"])


def queue_protocol_is_lighter(result: CompareResult) -> Claim:
    """ "Message queues use a lighter protocol than HTTP", end to end."""
    key = "queue-lighter"
    # Rule: compare what the network carries for one message from sender to receiver, every leg
    # added (a queued message crosses producer->broker and broker->consumer), in clear on open
    # connections, each pattern against the direct HTTP paths of the same pattern.
    measured = [p for p in path_figures(result) if p.case.tls == "off"]
    figures: list[Figure] = []
    lighter: list[str] = []
    heavier: list[str] = []
    flips: list[str] = []
    for pattern in PATTERNS:
        queue = [
            p for p in measured if p.case.path.pattern == pattern and p.case.path.family == "queue"
        ]
        http = [
            p for p in measured if p.case.path.pattern == pattern and p.case.path.family == "http"
        ]
        if not queue or not http:
            continue
        amqp = _cheapest(queue)
        cost = amqp.total["marginal_bytes"]
        figures.append(_fig(f"{amqp.case.path.name}, {len(amqp.legs)} legs", cost, "B/msg"))
        first = amqp.legs[0]
        figures.append(
            _fig(
                f"  its first leg alone ({first.leg.label})",
                first.figures["marginal_bytes"],
                "B/msg",
            )
        )
        for p in http:
            other = p.total["marginal_bytes"]
            figures.append(_fig(f"{p.case.path.name}, {len(p.legs)} leg(s)", other, "B/msg"))
            if len(p.legs) > 1:
                continue  # the proxied paths are shown for balance, not judged on
            versus = f"{p.case.path.name} ({pattern})"
            if cost <= LIGHTER_RATIO * other:
                lighter.append(versus)
            elif other <= LIGHTER_RATIO * cost:
                heavier.append(versus)
            flips.append(
                f"{versus}: AMQP would need <= {LIGHTER_RATIO * other:.0f} B/msg "
                f"(now {cost:.0f}) to be lighter"
            )
    if not flips:
        return _not_shown(key, CLAIM_TEXT[key], RULE_2)
    if len(lighter) == len(flips):  # ``flips`` has one entry per direct HTTP path judged
        verdict = TRUE
    elif not lighter:
        verdict = FALSE
    else:
        verdict = PARTLY
    why = (
        "End to end, the queued message crosses the network twice (four times for an RPC), its "
        f"body each time; lighter than {', '.join(lighter) or 'no direct HTTP path'}"
        + (f"; heavier than {', '.join(heavier)}" if heavier else "")
        + ". Per leg the framing is close (compare the first leg alone)."
    )
    return Claim(
        key=key,
        text=CLAIM_TEXT[key],
        verdict=verdict,
        rule=RULE_2,
        explanation=why,
        figures=tuple(figures),
        flips_if="; ".join(flips),
    )


RULE_2 = (
    "wire bytes per message from sender to receiver, every leg added (marginal cost, cleartext, "
    "open connections): the cheapest AMQP path of each pattern (one-way notification, "
    "request/reply) against each direct HTTP path of the same pattern; lighter means <= "
    f"{LIGHTER_RATIO:g}x the other's: true when lighter than every one, false when lighter "
    "than none, partly otherwise"
)


# -- claim 3 --------------------------------------------------------------------------------


def queue_pays_handshakes_once(result: CompareResult) -> Claim:
    """ "A queue's persistent connection pays TCP and TLS only once"."""
    key = "queue-once"
    reused = [
        m for m in _of_protocol(result, result.matrix.reuse, "amqp") if m.case.per_connection > 1
    ]
    if not reused:
        return _not_shown(key, CLAIM_TEXT[key], RULE_3)
    # Rule: read the connection records: every AMQP connection that carried more than one
    # message shows exactly one TCP handshake and, with TLS, exactly one TLS handshake.
    once = all(
        m.handshakes_per_connection == (1.0, 0.0 if m.case.tls == "off" else 1.0) for m in reused
    )
    longest = max(reused, key=lambda m: (m.case.per_connection, m.case.tls != "off", m.case.tls))
    tcp, tls = longest.handshakes_per_connection
    name = f"AMQP {_tls_name(longest.case.tls)}"
    figures = [
        _fig(f"{name}: TCP handshakes per connection", tcp, "/conn"),
        _fig(f"{name}: TLS handshakes per connection", tls, "/conn"),
        _fig(f"{_case_name(longest)}: handshakes", _handshakes_per_message(longest), "/msg"),
    ]
    # The same connection length over HTTP: is paying once the queue's merit or the connection's?
    http = [
        result.of(c)
        for c in result.matrix.reuse
        if c.protocol != "amqp"
        and (c.tls, c.per_connection) == (longest.case.tls, longest.case.per_connection)
    ]
    figures += [
        _fig(f"{_case_name(m)}: handshakes", _handshakes_per_message(m), "/msg") for m in http
    ]
    same = [
        NAMES[m.case.protocol]
        for m in http
        if m.handshakes_per_connection == longest.handshakes_per_connection
    ]
    verdict = TRUE if once else FALSE
    what = "one TCP handshake" if longest.case.tls == "off" else "one TCP and one TLS handshake"
    why = (
        f"Each AMQP connection paid {what} for all its messages"
        if once
        else "Some AMQP connection paid more than one handshake"
    )
    if same:
        why += f"; so did {' and '.join(same)} with keep-alive: the saving is the connection's."
    else:
        why += "."
    return Claim(
        key=key,
        text=CLAIM_TEXT[key],
        verdict=verdict,
        rule=RULE_3,
        explanation=why,
        figures=tuple(figures),
        flips_if=(
            "false if an AMQP connection paid a second handshake (a reconnect, TLS "
            "renegotiation); the AMQP connections measured paid "
            f"{tcp:g} TCP and {tls:g} TLS handshakes each"
        ),
    )


RULE_3 = (
    "true when every AMQP connection with more than one message shows one TCP handshake and, "
    "with TLS, one TLS handshake; false otherwise; not shown without such a connection"
)


# -- claim 4 --------------------------------------------------------------------------------

#: Which HTTP/1.1 clients pipeline: the reason the verdict does not rest on pipelining.
PIPELINING_NOTE = (
    "HTTP/1.1 pipelining also shares waits, but clients rarely use it: browsers ship it "
    "disabled or removed (Chrome, Firefox since 54), curl removed it in 7.65, and Python's "
    "requests and httpx, Go's net/http and Java's HttpClient never pipeline"
)


def _mode(modes: list[Measurement], name: str) -> Measurement | None:
    return next((m for m in modes if m.case.mode.startswith(name)), None)


def http_costs_round_trip_each(result: CompareResult) -> Claim:
    """ "HTTP is synchronous, so each message costs a round trip"."""
    key = "http-sync"
    modes = [result.of(c) for c in result.matrix.modes]
    http = [m for m in modes if m.case.protocol != "amqp"]
    if not http:
        return _not_shown(key, CLAIM_TEXT[key], RULE_4)
    # Lead with HTTP/2: its streams are concurrent by design and every HTTP/2 client uses them;
    # pipelining is quoted after it, as the weaker case.
    order = [_mode(http, "http2 multiplexed"), _mode(http, "http1 pipelined")]
    order += [m for m in http if m not in order]
    ranked = [m for m in order if m is not None]
    figures = [
        _fig(f"{m.case.mode}: round trips (setup excluded)", m.message_round_trips, "/msg")
        for m in ranked + [m for m in modes if m.case.protocol == "amqp"]
    ]
    # Rule: the round trips the messages themselves cost (setup left out).  One HTTP mode that
    # shares its waits among several messages refutes "each message costs a round trip".
    fastest = min(ranked, key=lambda m: (m.message_round_trips, m.case.protocol != "http2"))
    low = fastest.message_round_trips
    waiting = [m.case.mode for m in http if m.message_round_trips >= SYNC_ROUND_TRIPS]
    multiplexed = _mode(http, "http2 multiplexed")
    if low <= ASYNC_ROUND_TRIPS:
        verdict = FALSE
        lead = (
            multiplexed
            if multiplexed and multiplexed.message_round_trips <= ASYNC_ROUND_TRIPS
            else fastest
        )
        why = (
            f"{lead.case.mode} costs {lead.message_round_trips:.3f} round trips per message: "
            "HTTP/2 keeps several requests in flight on one connection. HTTP waits a round "
            "trip per message only when the client waits for each answer"
            + (f" ({', '.join(waiting)})" if waiting else "")
            + f". {PIPELINING_NOTE}."
        )
        flips = (
            "true if no client kept two requests in flight: every HTTP mode would then cost "
            f">= {SYNC_ROUND_TRIPS} round trips per message, as request/response does"
        )
        if lead.case.protocol != "http2":
            why += " This run has no HTTP/2 multiplexing case: the verdict rests on pipelining."
    elif low >= SYNC_ROUND_TRIPS:
        verdict = TRUE
        why = f"Every HTTP mode measured waited {low:.2f} round trips or more per message."
        flips = (
            f"false with a case keeping several HTTP/2 streams in flight (<= {ASYNC_ROUND_TRIPS})"
        )
    else:
        verdict = PARTLY
        why = f"HTTP shared some waits: {low:.2f} round trips per message at best."
        flips = f"false at <= {ASYNC_ROUND_TRIPS} round trips per message"
    return Claim(
        key=key,
        text=CLAIM_TEXT[key],
        verdict=verdict,
        rule=RULE_4,
        explanation=why,
        figures=tuple(figures),
        flips_if=flips,
    )


RULE_4 = (
    f"false when some HTTP mode costs <= {ASYNC_ROUND_TRIPS} round trips per message (setup "
    f"excluded), HTTP/2 multiplexing quoted first; true when every HTTP mode costs >= "
    f"{SYNC_ROUND_TRIPS}; partly otherwise"
)


def _not_shown(key: str, text: str, rule: str) -> Claim:
    return Claim(
        key=key,
        text=text,
        verdict=NOT_SHOWN,
        rule=rule,
        explanation="This run's matrix has no case that bears on the claim.",
        figures=(),
    )


CLAIM_TEXT = {
    "http-per-request": "HTTP cannot keep a connection open, so it pays TCP and TLS per request",
    "queue-lighter": "Message queues use a lighter protocol than HTTP",
    "queue-once": "A queue's persistent connection pays TCP and TLS only once",
    "http-sync": "HTTP is synchronous, so each message costs a round trip",
}

CLAIMS: tuple[Callable[[CompareResult], Claim], ...] = (
    http_pays_handshakes_per_request,
    queue_protocol_is_lighter,
    queue_pays_handshakes_once,
    http_costs_round_trip_each,
)


# -- headlines ------------------------------------------------------------------------------


def headlines(result: CompareResult) -> list[str]:
    """The run in a few sentences, each from its figures: what reuse saves, who is cheapest."""
    lines = []
    # The strongest setting every protocol of the run has (a live run may lack AMQP over TLS).
    tls = _strongest_tls(result, tuple(dict.fromkeys(c.protocol for c in result.matrix.reuse)))
    for protocol in dict.fromkeys(c.protocol for c in result.matrix.reuse):
        fresh = _reference(result, protocol, tls, reused=False)
        reused = _reference(result, protocol, tls, reused=True)
        if fresh is None or reused is None or fresh.case == reused.case:
            continue
        before = float(fresh.summary["loaded_bytes_per_message"])
        after = float(reused.summary["loaded_bytes_per_message"])
        lines.append(
            f"{NAMES[protocol]} ({_tls_name(tls)}): {before:.0f} B and "
            f"{fresh.summary['round_trips_per_message']:.2f} round trips per message with "
            f"{fresh.case.per_connection} message(s) per connection; {after:.0f} B "
            f"({100 * (after - before) / before:+.0f}%) and "
            f"{reused.summary['round_trips_per_message']:.2f} with {reused.case.per_connection}."
        )
    reference = result.options.reference_payload
    open_conn = [result.of(c) for c in result.matrix.payload if c.payload == reference]
    if len(open_conn) > 1:
        ranked = sorted(open_conn, key=lambda m: float(m.summary["marginal_bytes_per_message"]))
        lines.append(
            f"One hop only (an open cleartext connection, {reference} B bodies): a message costs "
            + ", ".join(
                f"{m.summary['marginal_bytes_per_message']:.0f} B over {NAMES[m.case.protocol]}"
                for m in ranked
            )
            + "."
        )
    return lines
