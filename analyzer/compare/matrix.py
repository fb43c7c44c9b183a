"""The scenarios of ``wireprobe compare`` and their measurement by the analyzer (issue 7).

Every figure in the report is what the analyzer measured on a capture the generator wrote
(``analyzer.synth``): the generator's own ground truth is kept only to say whether both agree.
Each case is generated and analysed in a worker process, so two cores halve the wall time.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer.compare.paths import PATHS, Leg
from analyzer.compare.paths import Path as MessagePath
from analyzer.errors import UsageError, WireprobeError
from analyzer.live.options import DEFAULT_AMQP_URL
from analyzer.synth.http1 import RESPONSE_BODY
from analyzer.synth.scenario import MAX_PAYLOAD_BYTES, Scenario

PROTOCOLS = ("http1", "http2", "amqp")
TLS_MODES = ("off", "1.2", "1.3")
#: Messages per connection of the connection-reuse curve; capped by ``--messages``.
PER_CONNECTION = (1, 10, 100, 1000)
#: Default message count of each case: 200 keeps the default run under 30 s on two cores and
#: still shows the curve within 1 % of its asymptote.
DEFAULT_MESSAGES = 200
#: Default body sizes: a tiny event, a typical JSON document, a large document.
DEFAULT_PAYLOADS = (16, 1024, 65536)
#: The payload of the connection-reuse curve and of the mode comparison when it was asked for.
REFERENCE_PAYLOAD = 1024
#: A compare run holds every case's analysis in memory; 10 000 messages per case is plenty to
#: see any asymptote and keeps one run in the hundreds of MB at most.
MAX_MESSAGES = 10_000
#: Concurrency of the "several in flight" HTTP modes: HTTP/2 streams or pipelined requests.
IN_FLIGHT = 8

#: mode name -> (protocol, Scenario fields). "request/response" is HTTP's usual call; the AMQP
#: modes are the publisher's choices (DESIGN.md section 4 gives their expected round trips).
MODES: dict[str, tuple[str, dict[str, Any]]] = {
    "http1 request/response": ("http1", {"concurrency": 1}),
    f"http1 pipelined x{IN_FLIGHT}": ("http1", {"concurrency": IN_FLIGHT}),
    "http2 request/response": ("http2", {"concurrency": 1}),
    f"http2 multiplexed x{IN_FLIGHT}": ("http2", {"concurrency": IN_FLIGHT}),
    "amqp publish": ("amqp", {"amqp_mode": "publish"}),
    "amqp confirm": ("amqp", {"amqp_mode": "confirm"}),
    "amqp confirm-async": ("amqp", {"amqp_mode": "confirm-async"}),
}
#: Modes that exist only as legs of a message's whole path (``analyzer.compare.paths``): the
#: one-way notification over HTTP, the consumer's side of a queue, the four legs of an RPC.
LEG_MODES: dict[str, tuple[str, dict[str, Any]]] = {
    "http1 POST 202": ("http1", {"concurrency": 1, "http_status": 202}),
    "http2 POST 202": ("http2", {"concurrency": 1, "http_status": 202}),
    "amqp consume": ("amqp", {"amqp_mode": "consume"}),
    "amqp rpc request publish": ("amqp", {"amqp_mode": "publish", "amqp_properties": "request"}),
    "amqp rpc request deliver": ("amqp", {"amqp_mode": "consume", "amqp_properties": "request"}),
    "amqp rpc reply publish": ("amqp", {"amqp_mode": "publish", "amqp_properties": "reply"}),
    "amqp rpc reply deliver": ("amqp", {"amqp_mode": "consume", "amqp_properties": "reply"}),
}
ALL_MODES = MODES | LEG_MODES
#: A reply carries what the HTTP server answers a call with (the generator's JSON body), so
#: that an RPC's reply and an HTTP response are the same size.
REPLY_PAYLOAD = len(RESPONSE_BODY)
#: The mode of each protocol on the reuse curve and the payload sweep: HTTP's plain call against
#: a publish the broker confirms, the like-for-like reliable delivery.
BASE_MODE = {
    "http1": "http1 request/response",
    "http2": "http2 request/response",
    "amqp": "amqp confirm",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CompareOptions:
    """What one ``wireprobe compare`` run measures."""

    #: messages in each case (all connections together)
    messages: int = DEFAULT_MESSAGES
    #: body sizes of the payload sweep, bytes
    payloads: tuple[int, ...] = DEFAULT_PAYLOADS
    #: protocols to compare
    protocols: tuple[str, ...] = PROTOCOLS
    #: TLS settings of the connection-reuse curve
    tls: tuple[str, ...] = TLS_MODES
    #: messages per connection of the curve, capped by ``messages``
    per_connection: tuple[int, ...] = PER_CONNECTION
    #: record real peers with ``analyzer.live`` instead of generating
    live: bool = False
    #: worker processes; None: one per core
    workers: int | None = None
    #: measure the whole path of a message (every leg of ``analyzer.compare.paths``)
    paths: bool = True
    #: the broker of a live run's AMQP cases
    amqp_url: str = DEFAULT_AMQP_URL
    seed: int = 0

    def validate(self) -> CompareOptions:
        """Raise ``UsageError`` (one line) for a bad value; return self."""
        checks = [
            (1 <= self.messages <= MAX_MESSAGES, f"--messages must be 1..{MAX_MESSAGES}"),
            (bool(self.payloads), "--payload needs at least one size"),
            (
                all(0 <= p <= MAX_PAYLOAD_BYTES for p in self.payloads),
                f"--payload must be 0..{MAX_PAYLOAD_BYTES} bytes",
            ),
            (bool(self.protocols) and set(self.protocols) <= set(PROTOCOLS), "bad protocol"),
            (bool(self.tls) and set(self.tls) <= set(TLS_MODES), "bad TLS setting"),
            (bool(self.per_connection) and min(self.per_connection) >= 1, "bad per-connection"),
            (self.workers is None or self.workers >= 1, "--workers must be >= 1"),
        ]
        for ok, problem in checks:
            if not ok:
                raise UsageError(problem)
        return self

    @property
    def reference_payload(self) -> int:
        """The curve's payload: 1 KiB when asked for, else the median size asked for."""
        if REFERENCE_PAYLOAD in self.payloads:
            return REFERENCE_PAYLOAD
        return sorted(self.payloads)[len(self.payloads) // 2]

    @property
    def curve_points(self) -> tuple[int, ...]:
        """Messages per connection on the curve: the table capped by ``messages``."""
        return tuple(sorted({min(k, self.messages) for k in self.per_connection}))


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One cell of the matrix."""

    #: a key of ``MODES``; names the protocol too
    mode: str
    #: "off", "1.2" or "1.3"
    tls: str
    #: messages per connection
    per_connection: int
    #: body bytes of each message
    payload: int

    @property
    def protocol(self) -> str:
        return ALL_MODES[self.mode][0]

    @property
    def label(self) -> str:
        tls = "" if self.tls == "off" else f" TLS {self.tls}"
        return f"{self.mode}{tls}, {self.per_connection}/conn, {self.payload} B"

    def scenario(self, messages: int, seed: int) -> Scenario:
        protocol, fields = ALL_MODES[self.mode]
        return Scenario(
            protocol=protocol,
            tls=self.tls,
            messages=messages,
            per_connection=self.per_connection,
            payload=self.payload,
            seed=seed,
            **fields,
        ).validate()


@dataclass(frozen=True, slots=True, kw_only=True)
class PathCase:
    """One path of ``analyzer.compare.paths`` at one TLS setting, body size and connection
    length: its legs as cases of the matrix."""

    path: MessagePath
    tls: str
    #: body bytes of the message (its reply carries ``REPLY_PAYLOAD``)
    payload: int
    #: messages per connection on every leg
    per_connection: int

    @property
    def legs(self) -> tuple[tuple[Leg, Case], ...]:
        return tuple(
            (
                leg,
                Case(
                    mode=leg.mode,
                    tls=self.tls,
                    per_connection=self.per_connection,
                    payload=REPLY_PAYLOAD if leg.reply else self.payload,
                ),
            )
            for leg in self.path.legs
        )

    @property
    def label(self) -> str:
        tls = "" if self.tls == "off" else f" TLS {self.tls}"
        return f"{self.path.name}{tls}, {self.per_connection}/conn, {self.payload} B"


@dataclass(frozen=True, slots=True, kw_only=True)
class Matrix:
    """The cases of each chart; a case shared by several charts is measured once."""

    #: loaded bytes against messages per connection, every protocol and TLS setting
    reuse: tuple[Case, ...]
    #: payload efficiency against payload size, cleartext, one connection
    payload: tuple[Case, ...]
    #: round trips per message of every mode, cleartext, one connection
    modes: tuple[Case, ...]
    #: the whole path of a message, every leg, on persistent connections
    paths: tuple[PathCase, ...] = ()

    @property
    def cases(self) -> tuple[Case, ...]:
        legs = tuple(case for p in self.paths for _, case in p.legs)
        return tuple(dict.fromkeys(self.reuse + self.payload + self.modes + legs))

    def restricted(self, present: Iterable[Case]) -> Matrix:
        """The matrix of the cases ``present`` only: a path needs every one of its legs."""
        keep = set(present)
        return Matrix(
            reuse=tuple(c for c in self.reuse if c in keep),
            payload=tuple(c for c in self.payload if c in keep),
            modes=tuple(c for c in self.modes if c in keep),
            paths=tuple(p for p in self.paths if all(c in keep for _, c in p.legs)),
        )


def build_matrix(options: CompareOptions) -> Matrix:
    """The cases of a run; TLS appears only on the reuse curve, at the reference payload."""
    protocols = [p for p in PROTOCOLS if p in options.protocols]
    reference, whole = options.reference_payload, options.messages
    reuse = tuple(
        Case(mode=BASE_MODE[p], tls=tls, per_connection=k, payload=reference)
        for p in protocols
        for tls in (t for t in TLS_MODES if t in options.tls)
        for k in options.curve_points
    )
    payload = tuple(
        Case(mode=BASE_MODE[p], tls="off", per_connection=whole, payload=size)
        for p in protocols
        for size in sorted(set(options.payloads))
    )
    modes = tuple(
        Case(mode=mode, tls="off", per_connection=whole, payload=reference)
        for mode, (protocol, _) in MODES.items()
        if protocol in protocols
    )
    return Matrix(reuse=reuse, payload=payload, modes=modes, paths=_paths(options, protocols))


def _paths(options: CompareOptions, protocols: list[str]) -> tuple[PathCase, ...]:
    """Every path whose legs use only the protocols asked for, in clear and at the strongest
    TLS setting asked for, on persistent connections (the reuse curve shows new ones)."""
    if not options.paths:
        return ()
    strongest = [t for t in ("1.3", "1.2") if t in options.tls][:1]
    settings = [t for t in ("off", *strongest) if t == "off" or t in options.tls]
    return tuple(
        PathCase(
            path=path,
            tls=tls,
            payload=options.reference_payload,
            per_connection=options.messages,
        )
        for tls in settings
        for path in PATHS
        if all(ALL_MODES[leg.mode][0] in protocols for leg in path.legs)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    """What the analyzer reported for one case."""

    case: Case
    #: the analysis JSON of the case's capture (``wireprobe analyze --format json``)
    analysis: dict[str, Any]
    #: the generator's ground-truth summary of the same capture (None for live captures)
    truth_summary: dict[str, Any] | None

    @property
    def summary(self) -> dict[str, Any]:
        """The analyzer's summary row of the case's protocol."""
        row: dict[str, Any] = self.analysis["summary"][self.case.protocol]
        return row

    @property
    def message_round_trips(self) -> float:
        """Mean round trips the messages themselves cost (connection setup left out)."""
        messages = self.analysis["messages"]
        return sum(m["round_trips"] for m in messages) / len(messages) if messages else 0.0

    @property
    def handshakes_per_connection(self) -> tuple[float, float]:
        """(TCP, TLS) handshakes per connection, from the connection records."""
        conns = self.analysis["connections"]
        tcp = sum(1 for c in conns if c["tcp_handshake"])
        tls = sum((c["tls"] or {}).get("handshakes", 0) for c in conns)
        return tcp / len(conns), tls / len(conns)

    @property
    def agrees_with_truth(self) -> bool:
        """The analyzer's summary equals the generator's on every figure both report."""
        if self.truth_summary is None:
            return True
        truth = self.truth_summary.get(self.case.protocol, {})
        return all(
            abs(float(value) - float(self.summary[name])) <= TRUTH_TOLERANCE * max(1, abs(value))
            for name, value in truth.items()
            if name in self.summary and isinstance(value, int | float)
        )


#: The truth file rounds averages to a few decimals; the analyzer does not.
TRUTH_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True, kw_only=True)
class NotRun:
    """A case of the matrix this run could not measure, and why."""

    case: Case
    #: one sentence: what is missing or what failed
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CompareResult:
    """A finished run: its options, the matrix of the cases measured, their measurements, the
    cases not run and the wall time.  Claims, charts and tables read only ``matrix``, so a case
    that did not run is never looked for."""

    options: CompareOptions
    matrix: Matrix
    measurements: dict[Case, Measurement] = field(default_factory=dict)
    #: wall time of the run, seconds
    elapsed_s: float = 0.0
    #: cases of the full matrix that were not measured, in matrix order
    not_run: tuple[NotRun, ...] = ()
    #: a live run's cases generated too, to put live and synthetic side by side (empty for a
    #: synthetic run)
    synthetic: dict[Case, Measurement] = field(default_factory=dict)

    def of(self, case: Case) -> Measurement:
        return self.measurements[case]

    def marginal_bytes(self, case: Case) -> float:
        """The marginal cost of ``case``'s configuration: measured on its longest connection.

        Marginal is what one more message costs on an open connection, a property of protocol,
        TLS and payload, not of connection length.  On a one-message TLS connection the
        request rides in the segment that ends the handshake, whose header bytes are split
        between setup and message, so its own bytes read lower than in clear; taking every
        length's marginal from the longest measured connection charges all of them alike (the
        loaded cost, all bytes over all messages, is the same either way).
        """
        same = [
            c
            for c in self.measurements
            if (c.mode, c.tls, c.payload) == (case.mode, case.tls, case.payload)
        ]
        longest = max(same, key=lambda c: c.per_connection)
        return float(self.of(longest).summary["marginal_bytes_per_message"])


def run_compare(options: CompareOptions) -> CompareResult:
    """Generate and analyse every case of the matrix (temp files only); claims come later."""
    options.validate()
    start = time.perf_counter()
    matrix = build_matrix(options)
    not_run: list[NotRun] = []
    synthetic: dict[Case, Measurement] = {}
    if options.live:
        measured = _measure_live(matrix.cases, options, not_run)
        # The same cases generated: the generator's model held against real peers.
        ran = [case for case in matrix.cases if case in measured]
        synthetic = _measure_all(sorted(ran, key=_estimated_cost, reverse=True), options)
    else:
        cases = sorted(matrix.cases, key=_estimated_cost, reverse=True)
        measured = _measure_all(cases, options)
    ordered = {case: measured[case] for case in matrix.cases if case in measured}
    elapsed = time.perf_counter() - start
    return CompareResult(
        options=options,
        matrix=matrix.restricted(ordered),
        measurements=ordered,
        elapsed_s=elapsed,
        not_run=tuple(not_run),
        synthetic={case: synthetic[case] for case in ordered if case in synthetic},
    )


#: ``--live`` drives ``wireprobe capture`` (analyzer.live); a build without it says so.
LIVE_UNAVAILABLE = (
    "--live needs the live recorder (wireprobe capture, analyzer.live), which this build "
    "does not provide; run without --live for the synthetic comparison"
)
#: What the live peers cannot do (issue 6): pika has no asynchronous confirms, and httpx does
#: not pipeline HTTP/1.1.
LIVE_UNSUPPORTED_MODES = ("amqp confirm-async", f"http1 pipelined x{IN_FLIGHT}")


#: Why the live peers cannot run a mode, mode by mode.
LIVE_UNSUPPORTED_REASONS = {
    "amqp confirm-async": "pika's blocking client has no asynchronous confirms",
    f"http1 pipelined x{IN_FLIGHT}": "httpx does not pipeline HTTP/1.1",
}


def live_unsupported_reason(case: Case) -> str | None:
    """Why ``wireprobe capture`` cannot run the case between real peers (None: it can).
    AMQP over TLS runs through the live TLS terminator (``analyzer.live.tlsrelay``)."""
    return LIVE_UNSUPPORTED_REASONS.get(case.mode)


def live_supported(case: Case) -> bool:
    """Whether ``wireprobe capture`` can run the case between real peers."""
    return live_unsupported_reason(case) is None


def live_matrix(matrix: Matrix) -> Matrix:
    """The matrix without the cases the live peers cannot run."""
    return matrix.restricted(filter(live_supported, matrix.cases))


def _measure_live(
    cases: tuple[Case, ...], options: CompareOptions, not_run: list[NotRun]
) -> dict[Case, Measurement]:
    """One case after another, each in a fresh process: the live peers share the loopback and
    the broker, and a live run's asyncio loop and sockets stay out of the caller's process.

    A case the peers cannot run, or whose run fails, is appended to ``not_run`` with why; the
    others go on (a missing broker should not cost the HTTP figures)."""
    try:
        import analyzer.live  # noqa: F401  (only to tell "not built" from a failed run)
    except ImportError as err:
        raise UsageError(LIVE_UNAVAILABLE) from err
    measured = {}
    with ProcessPoolExecutor(max_workers=1) as pool:
        for case in cases:
            reason = live_unsupported_reason(case)
            if reason is None:
                job = pool.submit(measure_live, case, options.messages, options.amqp_url)
                try:
                    measured[case] = job.result()
                    continue
                except WireprobeError as err:
                    reason = f"the live run failed: {err}"
                except Exception as err:  # a peer's or the analyzer's bug: report, go on
                    reason = f"the live run failed: {type(err).__name__}: {err}"
            not_run.append(NotRun(case=case, reason=reason))
    return measured


def measure_live(case: Case, messages: int, amqp_url: str = DEFAULT_AMQP_URL) -> Measurement:
    """Record the case between real peers (``wireprobe capture``) and analyse the recording."""
    from analyzer.live import LiveOptions, run_capture

    protocol, fields = ALL_MODES[case.mode]
    with tempfile.TemporaryDirectory(prefix="wireprobe-compare-live-") as workdir:
        recorded = run_capture(
            LiveOptions(
                protocol=protocol,
                tls=case.tls,
                messages=messages,
                per_connection=case.per_connection,
                payload=case.payload,
                amqp_url=amqp_url,
                output=Path(workdir) / "case.pcap",
                **fields,
            )
        )
        keys = recorded.keylog.read_text() if recorded.keylog else None
        analysis = analyze_capture([recorded.pcap], keys)
    for capture in analysis["captures"]:
        capture["path"] = f"live: {case.label}"
    return Measurement(case=case, analysis=analysis, truth_summary=None)


def _measure_all(cases: list[Case], options: CompareOptions) -> dict[Case, Measurement]:
    jobs = [(case, options.messages, options.seed) for case in cases]
    workers = min(options.workers or os.cpu_count() or 1, len(jobs))
    if workers <= 1:
        return dict(zip(cases, (measure(*job) for job in jobs), strict=True))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_measure_job, jobs))
    return dict(zip(cases, results, strict=True))


def _measure_job(job: tuple[Case, int, int]) -> Measurement:
    return measure(*job)


def _estimated_cost(case: Case) -> float:
    """Longest first keeps both workers busy to the end: TLS handshakes and big bodies cost."""
    connections = DEFAULT_MESSAGES / case.per_connection
    return connections * (5 if case.tls != "off" else 1) + case.payload / 1024


def measure(case: Case, messages: int, seed: int) -> Measurement:
    """Generate the case's capture, analyse it like ``wireprobe analyze --format json``."""
    from analyzer.synth import generate

    generated = generate(case.scenario(messages, seed))
    with tempfile.TemporaryDirectory(prefix="wireprobe-compare-") as workdir:
        path = Path(workdir) / "case.pcap"
        path.write_bytes(generated.pcap())
        analysis = analyze_capture([path], generated.keylog)
    for capture in analysis["captures"]:
        capture["path"] = case.label
    truth = generated.truth.get("summary")
    return Measurement(
        case=case,
        analysis=analysis,
        truth_summary=truth if isinstance(truth, dict) else None,
    )


def analyze_capture(paths: Iterable[Path], keylog_text: str | None) -> dict[str, Any]:
    """The analysis JSON of ``paths``, exactly as ``wireprobe analyze --format json`` has it."""
    from analyzer.options import AnalyzeOptions, DecodeOptions
    from analyzer.pipeline import analyze
    from analyzer.report.render import Collector
    from analyzer.tls.keylog import KeyLog

    keylog = KeyLog()
    if keylog_text:
        keylog.add_text(keylog_text)
    collector = Collector("json")
    options = AnalyzeOptions(decode=DecodeOptions(keylog=keylog))
    analysis = analyze([str(p) for p in paths], options, on_record=collector.add)
    out = io.StringIO()
    collector.render(analysis, out)
    result: dict[str, Any] = json.loads(out.getvalue())
    return result
