"""``wireprobe compare``: the figures behind every chart and verdict are the analyzer's JSON of
the same run, verdicts follow the numbers, and the HTML report draws in a real browser."""

from __future__ import annotations

import copy
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import analyze_json, check_conservation

from analyzer.compare.charts import CHART_NAMES, chart_data, layer_shares
from analyzer.compare.claims import FALSE, NOT_SHOWN, TRUE, claims, headlines
from analyzer.compare.command import compare_command
from analyzer.compare.matrix import (
    REPLY_PAYLOAD,
    CompareOptions,
    CompareResult,
    Measurement,
    build_matrix,
    live_matrix,
    run_compare,
)
from analyzer.compare.render import render_capture_html, render_html, render_markdown
from analyzer.compare.sections import live_differences, live_reason
from analyzer.errors import UsageError
from analyzer.synth import Scenario, generate

#: A run small enough for the tests (20 messages: curve points 1, 10 and 20 per connection).
SMALL = CompareOptions(messages=20, payloads=(16, 1024), workers=2)


@pytest.fixture(scope="module")
def run() -> CompareResult:
    return run_compare(SMALL)


def _messages_mean(analysis: dict[str, Any], field: str) -> float:
    messages = analysis["messages"]
    return float(sum(m[field] for m in messages)) / len(messages)


def _by_label(run: CompareResult) -> dict[tuple[str, str, int, int], Measurement]:
    return {(c.mode, c.tls, c.per_connection, c.payload): m for c, m in run.measurements.items()}


# -- the matrix ----------------------------------------------------------------------------


def test_matrix_covers_protocols_tls_reuse_payloads_and_modes() -> None:
    matrix = build_matrix(CompareOptions())
    assert {c.protocol for c in matrix.reuse} == {"http1", "http2", "amqp"}
    assert {c.tls for c in matrix.reuse} == {"off", "1.2", "1.3"}
    assert {c.per_connection for c in matrix.reuse} == {1, 10, 100, 200}  # 1000 capped by 200
    assert {c.payload for c in matrix.payload} == {16, 1024, 65536}
    assert {c.mode for c in matrix.modes} >= {"amqp publish", "amqp confirm", "amqp confirm-async"}
    # TLS only at one payload (and an RPC's reply) keeps the default run short.
    assert {c.payload for c in matrix.cases if c.tls != "off"} == {1024, REPLY_PAYLOAD}


def test_each_case_is_a_conserving_analysis_that_matches_the_generators_truth(
    run: CompareResult,
) -> None:
    for measurement in run.measurements.values():
        analysis = measurement.analysis
        assert analysis["schema"] == "wireprobe.analysis/1"
        check_conservation(analysis)
        assert analysis["summary"][measurement.case.protocol]["messages"] == SMALL.messages
        assert measurement.agrees_with_truth, measurement.case


def test_a_case_equals_wireprobe_analyze_of_the_same_capture(tmp_path: Path) -> None:
    options = CompareOptions(messages=5, payloads=(64,), protocols=("http2",), tls=("1.3",))
    result = run_compare(replace(options, workers=1))
    case = next(c for c in result.matrix.reuse if c.per_connection == 1)
    generated = generate(
        Scenario(
            protocol="http2", tls="1.3", messages=5, per_connection=1, payload=64, concurrency=1
        )
    )
    generated.write(tmp_path / "c.pcap", tmp_path / "c.keys")
    from analyzer.tls.keylog import KeyLog

    keylog = KeyLog()
    keylog.load(str(tmp_path / "c.keys"))
    expected = analyze_json([tmp_path / "c.pcap"], keylog=keylog)
    got = result.of(case).analysis
    assert got["summary"] == expected["summary"]
    assert got["connections"] == expected["connections"]
    assert got["messages"] == expected["messages"]


# -- the figures behind each chart ---------------------------------------------------------


def test_loaded_bytes_chart_is_the_mean_loaded_cost_of_the_messages(run: CompareResult) -> None:
    chart = chart_data(run)["loaded-bytes"]
    by_label = _by_label(run)
    lines = [s for s in chart.series if s.style == "line"]
    assert len(lines) == 9  # three protocols, three TLS settings
    for series in chart.series:
        tls = {"cleartext": "off", "TLS 1.2": "1.2", "TLS 1.3": "1.3"}[series.panel]
        mode = next(
            c.mode
            for c in run.matrix.reuse
            if series.label.startswith(
                {"http1": "HTTP/1.1", "http2": "HTTP/2", "amqp": "AMQP"}[c.protocol]
            )
        )
        if series.style == "line":
            assert series.x == (1, 10, 20)
            for k, y in zip(series.x, series.y, strict=True):
                analysis = by_label[mode, tls, k, 1024].analysis
                assert y == pytest.approx(_messages_mean(analysis, "loaded_bytes"))
        else:
            # The asymptote is the marginal cost on the longest connection.
            analysis = by_label[mode, tls, 20, 1024].analysis
            assert series.y[0] == series.y[1]
            assert series.y[0] == pytest.approx(_messages_mean(analysis, "marginal_bytes"))
    # The curve falls as the connection is reused, towards the marginal cost.
    for line in lines:
        assert line.y[0] > line.y[1] > line.y[2]


def test_round_trip_chart_is_the_messages_round_trips(run: CompareResult) -> None:
    chart = chart_data(run)["round-trips"]
    own, with_setup = chart.series
    for case, y_own, y_setup in zip(run.matrix.modes, own.y, with_setup.y, strict=True):
        analysis = run.of(case).analysis
        assert y_own == pytest.approx(_messages_mean(analysis, "round_trips"))
        per_connection = sum(c["round_trips"] for c in analysis["connections"])
        assert y_setup == pytest.approx(per_connection / len(analysis["messages"]))
    rt = dict(zip(own.x, own.y, strict=True))
    # DESIGN.md section 4's examples, as measured.
    assert rt["http1 request/response"] == 1
    assert rt["amqp confirm"] == 1
    assert rt["amqp publish"] == 0
    assert rt["http2 multiplexed x8"] == pytest.approx(1 / 8, abs=0.03)


def test_layer_share_chart_adds_up_to_the_wire_bytes(run: CompareResult) -> None:
    chart = chart_data(run)["layer-shares"]
    picked = [c for c in run.matrix.reuse if c.per_connection in (1, 20)]
    for i, case in enumerate(picked):
        analysis = run.of(case).analysis
        wire = sum(c["wire_bytes"] for c in analysis["connections"])
        shares = {s.key: s.y[i] for s in chart.series}
        assert sum(shares.values()) == pytest.approx(1.0)
        payload = sum(m["layers"]["payload"] for m in analysis["messages"])
        assert shares["payload"] == pytest.approx(payload / wire)
        setup = sum(c["setup_bytes"] for c in analysis["connections"])
        assert shares["connection"] >= setup / wire
        assert (shares["tls"] > 0) == (case.tls != "off")


def test_payload_efficiency_chart_is_payload_over_wire_bytes(run: CompareResult) -> None:
    chart = chart_data(run)["payload-efficiency"]
    by_label = _by_label(run)
    for series, protocol in zip(chart.series, ("http1", "http2", "amqp"), strict=True):
        mode = next(c.mode for c in run.matrix.payload if c.protocol == protocol)
        assert series.x == (16, 1024)
        for size, y in zip(series.x, series.y, strict=True):
            analysis = by_label[mode, "off", 20, size].analysis
            payload = sum(c["layers"]["payload"] for c in analysis["connections"])
            wire = sum(c["wire_bytes"] for c in analysis["connections"])
            assert y == pytest.approx(payload / wire)
        assert series.y[0] < series.y[1]  # bigger bodies carry their framing better


# -- the verdicts --------------------------------------------------------------------------


def test_verdicts_and_their_figures_come_from_the_analyses(run: CompareResult) -> None:
    verdicts = {c.key: c for c in claims(run)}
    by_label = _by_label(run)

    reuse = verdicts["http-per-request"]
    assert reuse.verdict == FALSE  # HTTP carried 20 messages on one connection
    h1 = by_label["http1 request/response", "1.3", 20, 1024].analysis
    quoted = {f.label: f.value for f in reuse.figures}
    conns = h1["connections"]
    handshakes = sum(c["tcp_handshake"] + (c["tls"] or {})["handshakes"] for c in conns)
    assert quoted["HTTP/1.1 TLS 1.3, 20 msg/conn: handshakes"] == handshakes / 20
    assert quoted["HTTP/1.1 TLS 1.3, 20 msg/conn: loaded"] == pytest.approx(
        _messages_mean(h1, "loaded_bytes")
    )

    lighter = verdicts["queue-lighter"]
    quoted = {f.label: f.value for f in lighter.figures}
    # End to end: the AMQP notification is its publish leg plus its deliver leg.
    publish = by_label["amqp confirm", "off", 20, 1024].analysis
    deliver = by_label["amqp consume", "off", 20, 1024].analysis
    amqp_total = _messages_mean(publish, "marginal_bytes") + _messages_mean(
        deliver, "marginal_bytes"
    )
    assert quoted["AMQP publish (confirmed) -> deliver -> ack, 2 legs"] == pytest.approx(amqp_total)
    http202 = by_label["http1 POST 202", "off", 20, 1024].analysis
    assert quoted["HTTP/1.1 POST answered 202, 1 leg(s)"] == pytest.approx(
        _messages_mean(http202, "marginal_bytes")
    )

    assert amqp_total > _messages_mean(http202, "marginal_bytes")  # the body travels twice
    assert lighter.verdict == FALSE

    assert verdicts["queue-once"].verdict == TRUE
    assert verdicts["http-sync"].verdict == FALSE  # HTTP/2 multiplexing shares round trips


def test_headlines_quote_the_loaded_cost_before_and_after_reuse(run: CompareResult) -> None:
    lines = headlines(run)
    by_label = _by_label(run)
    for protocol, mode, name in (
        ("http1", "http1 request/response", "HTTP/1.1"),
        ("amqp", "amqp confirm", "AMQP"),
    ):
        line = next(x for x in lines if x.startswith(f"{name} (TLS 1.3)"))
        fresh = by_label[mode, "1.3", 1, 1024].analysis["summary"][protocol]
        reused = by_label[mode, "1.3", 20, 1024].analysis["summary"][protocol]
        assert f"{fresh['loaded_bytes_per_message']:.0f} B and" in line
        assert f"; {reused['loaded_bytes_per_message']:.0f} B (" in line


def _with_summary(m: Measurement, **changes: float) -> Measurement:
    analysis = copy.deepcopy(m.analysis)
    analysis["summary"][m.case.protocol].update(changes)
    return replace(m, analysis=analysis)


def test_http_verdict_flips_when_http_never_reuses_a_connection() -> None:
    # One message per case: every HTTP connection carries one request.
    only_one = CompareOptions(
        messages=1, payloads=(64,), protocols=("http1", "amqp"), tls=("1.3",), workers=2
    )
    result = run_compare(only_one)
    verdicts = {c.key: c.verdict for c in claims(result)}
    assert verdicts["http-per-request"] == TRUE
    assert verdicts["queue-once"] == NOT_SHOWN  # no AMQP connection carried two messages
    # One message cannot share a round trip with another, pipelined or not.
    assert verdicts["http-sync"] == TRUE


def test_lighter_verdict_flips_when_the_queue_overhead_grows(run: CompareResult) -> None:
    amqp_legs = {c for c in run.measurements if c.protocol == "amqp" and c.per_connection == 20}

    def scaled(marginal: float) -> CompareResult:
        changed = dict(run.measurements)
        for case in amqp_legs:
            changed[case] = _with_summary(run.of(case), marginal_bytes_per_message=marginal)
        return replace(run, measurements=changed)

    verdicts = {c.key: c.verdict for c in claims(scaled(10_000))}
    assert verdicts["queue-lighter"] == FALSE
    # A few bytes per leg: even four legs cost less than one HTTP exchange.
    verdicts = {c.key: c.verdict for c in claims(scaled(50))}
    assert verdicts["queue-lighter"] == TRUE


# -- reports -------------------------------------------------------------------------------


def test_markdown_report_quotes_every_chart_and_claim(run: CompareResult) -> None:
    verdicts = claims(run)
    text = render_markdown(run, verdicts)
    for name in CHART_NAMES:
        assert f"({name}.png)" in text
    for claim in verdicts:
        assert claim.text in text
        assert f"**{claim.verdict}**" in text
    assert f"on {len(run.measurements)} of {len(run.measurements)} cases" in text


def test_html_report_is_self_contained(run: CompareResult) -> None:
    from analyzer.compare.render import render_charts

    page = render_html(run, claims(run), render_charts(run))
    assert page.count('class="chart"') == len(CHART_NAMES)
    assert page.count("data:image/png;base64,") == len(CHART_NAMES)
    assert "http://" not in page and "https://" not in page  # nothing fetched from outside


def test_compare_command_writes_the_report_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "report"
    tiny = CompareOptions(messages=2, payloads=(16,), protocols=("http1",), tls=("off",), workers=1)
    report = compare_command(output_dir=out, options=tiny)
    names = {p.name for p in report.files}
    assert {"report.md", "report.html", "claims.md"} <= names
    for chart in CHART_NAMES:
        png = (out / f"{chart}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5_000
        assert (out / f"{chart}.svg").read_text().lstrip().startswith("<?xml")
    first_svg = (out / "loaded-bytes.svg").read_text()
    with pytest.raises(UsageError, match="not empty"):
        compare_command(output_dir=out, options=tiny)
    assert compare_command(output_dir=out, options=tiny, force=True).files
    # The same run draws the same bytes: the README's example can be checked by re-running it.
    assert (out / "loaded-bytes.svg").read_text() == first_svg


def test_bad_options_are_usage_errors() -> None:
    for bad in (
        CompareOptions(messages=0),
        CompareOptions(payloads=()),
        CompareOptions(payloads=(-1,)),
        CompareOptions(protocols=("smtp",)),
    ):
        with pytest.raises(UsageError):
            run_compare(bad)


def test_live_matrix_leaves_out_what_real_peers_cannot_do() -> None:
    matrix = live_matrix(build_matrix(CompareOptions()))
    # AMQP over TLS runs live, through the TLS terminator in front of the broker.
    assert {c.tls for c in matrix.cases if c.protocol == "amqp"} == {"off", "1.2", "1.3"}
    assert "amqp confirm-async" not in {c.mode for c in matrix.modes}
    assert {c.protocol for c in matrix.reuse} == {"http1", "http2", "amqp"}


# -- in a real browser ---------------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-logging=stderr",
    "--v=0",
)
#: Chromium's start-up and a page with four 100 KB images take a few seconds; a minute is a hang.
CHROMIUM_TIMEOUT_S = 60


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is needed for the browser test: apt-get install -y chromium")
    return found


def _browse(page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="wireprobe-chromium-") as profile:
        return subprocess.run(
            [
                _chromium(),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                *extra,
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=CHROMIUM_TIMEOUT_S,
            env={**os.environ, "HOME": profile},
            check=False,
        )


def _console_errors(stderr: str) -> list[str]:
    # Chromium logs every console message and uncaught exception as "...:CONSOLE(...)".
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def _assert_drawn(page: Path, charts: int, screenshot: Path) -> None:
    dom = _browse(page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert f'data-charts="{charts}"' in dom.stdout
    assert f'data-charts-drawn="{charts}"' in dom.stdout, "a chart did not draw"
    assert _console_errors(dom.stderr) == []
    shot = _browse(page, f"--screenshot={screenshot}", "--window-size=1280,2000")
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert _console_errors(shot.stderr) == []
    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1280, 2000)
    assert len(png) > 50_000  # tables and charts, not a blank page


def test_compare_report_draws_in_headless_chromium(run: CompareResult, tmp_path: Path) -> None:
    from analyzer.compare.command import write_report

    write_report(run, tuple(claims(run)), tmp_path / "report")
    _assert_drawn(tmp_path / "report" / "report.html", len(CHART_NAMES), tmp_path / "shot.png")


def test_capture_report_draws_in_headless_chromium(tmp_path: Path) -> None:
    generated = generate(Scenario(protocol="http1", messages=6, per_connection=1, payload=200))
    generated.write(tmp_path / "c.pcap")
    analysis = analyze_json([tmp_path / "c.pcap"])
    page = render_capture_html(analysis)
    assert "HTTP/1.1" in page
    # the finding on connection churn, from the analysis's one list (analyzer/report/findings.py)
    assert "connections carried 1 message each" in page
    (tmp_path / "capture.html").write_text(page)
    _assert_drawn(tmp_path / "capture.html", 1, tmp_path / "shot.png")


def test_capture_report_of_a_public_capture_shows_its_numbers(public_dir: Path) -> None:
    path = next(p for p in sorted(public_dir.rglob("*.pcap*")) if p.is_file())
    analysis = analyze_json([path])
    page = render_capture_html(analysis)
    assert page.startswith("<!DOCTYPE html>")
    assert f"{len(analysis['connections'])} connections" in page
    for row in analysis["summary"].values():
        assert f"<td>{row['wire_bytes']}</td>" in page
    assert sum(layer_shares(analysis).values()) == pytest.approx(1.0)


def test_live_compare_measures_real_peers() -> None:
    # --live: real hypercorn and httpx on loopback, recorded, then analysed like any capture.
    live = CompareOptions(messages=3, payloads=(16,), protocols=("http1",), tls=("off",), live=True)
    result = run_compare(live)
    # The reuse curve's call, and the 202 notification of the whole-path cases.
    assert {c.mode for c in result.measurements} == {"http1 request/response", "http1 POST 202"}
    for case, measurement in result.measurements.items():
        check_conservation(measurement.analysis)
        summary = measurement.summary
        assert summary["messages"] == 3
        assert summary["connections"] == 3 // case.per_connection
        assert measurement.truth_summary is None
    verdicts = {c.key: c.verdict for c in claims(result)}
    assert verdicts["queue-lighter"] == NOT_SHOWN  # no AMQP in this run
    # Like with like: the generator sends the real peers' header set, so what HTTP writes agrees
    # within the stated tolerance; the TCP/IP bytes differ (timestamps, quick ACKs, head and body
    # in two segments) and are flagged with that reason, never silently passed.
    rows = {
        (label, name): (ok, live_reason(name, ok))
        for label, name, *_, ok in live_differences(result)
    }
    for case in result.measurements:
        for name in ("message_bytes", "round_trips", "handshakes"):
            assert rows[case.label, name] == (True, ""), (case.label, name)
        within, why = rows[case.label, "tcp_ip_bytes"]
        assert within or "timestamp" in why


def test_live_without_the_recorder_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "analyzer.live", None)  # import now raises ImportError
    with pytest.raises(UsageError, match="--live needs the live recorder"):
        run_compare(CompareOptions(messages=1, protocols=("http1",), tls=("off",), live=True))


def test_command_line_refuses_a_non_empty_directory_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    done = subprocess.run(
        [sys.executable, "-m", "analyzer.compare", "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "not empty" in done.stderr and "--force" in done.stderr
    assert "Traceback" not in done.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"
