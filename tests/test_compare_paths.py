"""``wireprobe compare`` (issue 14): the whole path of a message against the generator's ground
truth, latency from the counted figures, verdicts that flip with the numbers, figures that
agree wherever they are printed, the data files beside the report, and a live run that lists
what it could not run instead of crashing."""

from __future__ import annotations

import csv
import io
import json
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import check_conservation

from analyzer.compare.charts import CHART_NAMES, chart_data, draw
from analyzer.compare.claims import FALSE, TRUE, claims
from analyzer.compare.command import STAGING_PREFIX, compare_command, write_report
from analyzer.compare.endtoend import FIGURES, path_figures
from analyzer.compare.export import chart_csv
from analyzer.compare.matrix import (
    REPLY_PAYLOAD,
    CompareOptions,
    CompareResult,
    Matrix,
    run_compare,
)
from analyzer.compare.paths import NOTIFICATION, PATHS, REQUEST_REPLY
from analyzer.compare.render import render_html, render_markdown, run_note
from analyzer.compare.timing import NETWORKS, path_time_s, time_s

#: Ten messages per case: enough for every leg and both ends of the reuse curve, in seconds.
OPTIONS = CompareOptions(messages=10, payloads=(1024,), tls=("off", "1.3"), workers=2)


@pytest.fixture(scope="module")
def run() -> CompareResult:
    return run_compare(OPTIONS)


def _mean(analysis: dict[str, Any], field: str) -> float:
    return float(sum(m[field] for m in analysis["messages"])) / len(analysis["messages"])


# -- every leg, against the ground truth ---------------------------------------------------


def test_every_path_of_the_table_is_measured_in_clear_and_with_tls(run: CompareResult) -> None:
    measured = {(p.case.path.key, p.case.tls) for p in path_figures(run)}
    assert measured == {(p.key, tls) for p in PATHS for tls in ("off", "1.3")}


def test_each_leg_and_each_path_equals_the_generators_ground_truth(run: CompareResult) -> None:
    for p in path_figures(run):
        for leg in p.legs:
            assert leg.truth is not None
            assert leg.agrees_with_truth, (p.case.label, leg.leg.label)
            check_conservation(run.of(leg.case).analysis)
        truth = p.truth_total
        assert truth is not None
        for name, value in truth.items():
            assert p.total[name] == pytest.approx(value), (p.case.label, name)


def test_a_path_is_the_sum_of_its_legs_messages(run: CompareResult) -> None:
    for p in path_figures(run):
        analyses = [run.of(c).analysis for _, c in p.case.legs]
        marginal = sum(_mean(a, "marginal_bytes") for a in analyses)
        loaded = sum(_mean(a, "loaded_bytes") for a in analyses)
        assert p.total["marginal_bytes"] == pytest.approx(marginal)
        assert p.total["loaded_bytes"] == pytest.approx(loaded)
        assert p.connections == sum(len(a["connections"]) for a in analyses)


def test_the_legs_carry_what_the_pattern_says(run: CompareResult) -> None:
    by_key = {p.case.path.key: p for p in path_figures(run) if p.case.tls == "off"}
    kinds = {
        key: [run.of(leg.case).analysis["messages"][0]["kind"] for leg in p.legs]
        for key, p in by_key.items()
    }
    # A queued notification is published, then delivered to the consumer (and acknowledged).
    assert kinds["amqp-notify"] == ["publish", "deliver"]
    # An RPC: request published and delivered, reply published and delivered.
    assert kinds["amqp-rpc"] == ["publish", "deliver", "publish", "deliver"]
    rpc = by_key["amqp-rpc"]
    assert [leg.case.payload for leg in rpc.legs] == [1024, 1024, REPLY_PAYLOAD, REPLY_PAYLOAD]
    # Each leg of an RPC is one message each way through the broker: none counted twice.
    assert all(leg.figures["payload_bytes"] == leg.case.payload for leg in rpc.legs)
    # A proxy doubles the hops of the direct call it fronts.
    direct, proxied = by_key["http1-call"], by_key["http1-proxy-call"]
    assert proxied.total["marginal_bytes"] == pytest.approx(2 * direct.total["marginal_bytes"])
    # A 202 carries no response body: the notification is lighter than the call.
    assert by_key["http1-notify"].total["payload_bytes"] == 1024
    assert by_key["http1-call"].total["payload_bytes"] == 1024 + REPLY_PAYLOAD
    assert {p.case.path.pattern for p in by_key.values()} == {NOTIFICATION, REQUEST_REPLY}


def test_rpc_messages_carry_reply_to_and_correlation_id() -> None:
    from analyzer.synth import Scenario, generate
    from analyzer.synth.amqp import REPLY_QUEUE, correlation_id

    request = generate(Scenario(protocol="amqp", amqp_mode="publish", amqp_properties="request"))
    reply = generate(Scenario(protocol="amqp", amqp_mode="publish", amqp_properties="reply"))
    plain = generate(Scenario(protocol="amqp", amqp_mode="publish"))
    wire = [b"".join(f for _, f in g.frames) for g in (request, reply, plain)]
    assert REPLY_QUEUE.encode() in wire[0] and correlation_id(3, 0).encode() in wire[0]
    assert REPLY_QUEUE.encode() not in wire[1] and correlation_id(3, 0).encode() in wire[1]
    assert correlation_id(3, 0).encode() not in wire[2]


# -- latency -------------------------------------------------------------------------------


def test_time_per_message_is_round_trips_times_rtt_plus_bytes_over_bandwidth(
    run: CompareResult,
) -> None:
    chart = chart_data(run)["latency"]
    rack, far = NETWORKS[0], NETWORKS[-1]
    for series in chart.series:
        network = next(n for n in NETWORKS if series.panel.startswith(n.name))
        for k, y in zip(series.x, series.y, strict=True):
            case = next(
                c
                for c in run.matrix.reuse
                if c.per_connection == k
                and series.label.startswith(
                    {"http1": "HTTP/1.1", "http2": "HTTP/2"}.get(c.protocol, "AMQP")
                )
                and series.label.endswith("cleartext" if c.tls == "off" else f"TLS {c.tls}")
            )
            a = run.of(case).analysis
            rts = sum(c["round_trips"] for c in a["connections"]) / len(a["messages"])
            expected = rts * network.rtt_ms + _mean(a, "loaded_bytes") * 8 / 1e9 * 1000
            assert y == pytest.approx(expected)
    # Reuse matters more the farther the peers: the saving scales with the RTT.
    case_1 = next(c for c in run.matrix.reuse if c.tls == "1.3" and c.per_connection == 1)
    case_k = replace(case_1, per_connection=OPTIONS.messages)
    saved = [
        time_s(float(run.of(c).summary["round_trips_per_message"]), 0, n)
        for n in (rack, far)
        for c in (case_1, case_k)
    ]
    assert saved[2] - saved[3] == pytest.approx((saved[0] - saved[1]) * far.rtt_ms / rack.rtt_ms)


def test_a_path_takes_its_one_way_trips_and_its_legs_setup(run: CompareResult) -> None:
    for p in path_figures(run):
        setup = sum(
            leg.figures["round_trips"] - leg.figures["message_round_trips"] for leg in p.legs
        )
        for n in NETWORKS:
            expected = (p.case.path.one_way_trips / 2 + setup) * n.rtt_ms / 1000
            expected += p.total["loaded_bytes"] * 8 / n.bandwidth_bits_per_s
            assert path_time_s(p, n) == pytest.approx(expected)
    by_key = {p.case.path.key: p for p in path_figures(run) if p.case.tls == "off"}
    far = NETWORKS[-1]
    # Through a broker, an RPC waits twice as many one-way trips as a direct call.
    assert path_time_s(by_key["amqp-rpc"], far) > 1.9 * path_time_s(by_key["http1-call"], far)


# -- verdicts ------------------------------------------------------------------------------


def test_queue_verdict_compares_the_whole_path_and_flips_on_one_leg(run: CompareResult) -> None:
    verdict = next(c for c in claims(run) if c.key == "queue-lighter")
    assert verdict.verdict == FALSE  # the body crosses the network twice
    assert "AMQP would need <=" in verdict.flips_if
    # The matrix the issue calls unfair: the queue's publisher leg alone, and only 16-byte
    # events beside it, where the per-leg framing is all there is to compare.
    one_leg = tuple(
        replace(p, path=replace(p.path, legs=p.path.legs[:1])) if p.path.family == "queue" else p
        for p in run.matrix.paths
    )
    publisher_only = replace(run, matrix=replace(run.matrix, paths=one_leg))
    flipped = next(c for c in claims(publisher_only) if c.key == "queue-lighter")
    assert flipped.verdict != FALSE


def test_sync_verdict_leads_with_http2_and_flips_without_concurrency(run: CompareResult) -> None:
    verdict = next(c for c in claims(run) if c.key == "http-sync")
    assert verdict.verdict == FALSE
    assert verdict.explanation.startswith("http2 multiplexed")
    assert verdict.figures[0].label.startswith("http2 multiplexed")
    assert "rarely use it" in verdict.explanation and "curl" in verdict.explanation
    serial = tuple(
        c for c in run.matrix.modes if "multiplexed" not in c.mode and "pipelined" not in c.mode
    )
    flipped = claims(replace(run, matrix=replace(run.matrix, modes=serial)))
    assert next(c for c in flipped if c.key == "http-sync").verdict == TRUE
    assert all(c.flips_if for c in claims(run))


# -- figures that agree --------------------------------------------------------------------


def test_tls_marginal_cost_is_never_below_cleartext(run: CompareResult) -> None:
    for case in run.matrix.reuse:
        if case.tls == "off":
            continue
        clear = replace(case, tls="off")
        assert run.marginal_bytes(case) > run.marginal_bytes(clear), case.label
    # One value per configuration, whatever the connection length.
    for case in run.matrix.reuse:
        longest = replace(case, per_connection=OPTIONS.messages)
        assert run.marginal_bytes(case) == run.of(longest).summary["marginal_bytes_per_message"]


def test_overhead_printed_in_the_claims_equals_the_case_table(run: CompareResult) -> None:
    from analyzer.compare.endtoend import overhead_bytes
    from analyzer.compare.render import case_row

    text = render_markdown(run, claims(run))
    for case in run.matrix.payload:
        m = run.of(case)
        row = case_row(run, m)
        assert row[6] == f"{overhead_bytes(m.summary):.1f}"
        assert f"| {' | '.join(row)} |" in text


def test_synthetic_runs_are_not_called_recorded(run: CompareResult) -> None:
    assert "recorded" not in run_note(run)
    assert "generated and analysed" in run_note(run)
    assert "recorded" in run_note(replace(run, options=replace(run.options, live=True)))


# -- the data behind the report ------------------------------------------------------------


def test_report_writes_the_matrix_json_and_a_csv_per_chart(
    run: CompareResult, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    files = {p.name for p in write_report(run, tuple(claims(run)), out)}
    assert {"compare.json", *(f"{n}.csv" for n in CHART_NAMES)} <= files
    document = json.loads((out / "compare.json").read_text())
    assert document["schema"] == "wireprobe.compare/1"
    assert document["source"] == "synthetic"
    assert len(document["cases"]) == len(run.measurements)
    assert {p["key"] for p in document["paths"]} == {p.key for p in PATHS}
    for record, p in zip(document["paths"], path_figures(run), strict=True):
        assert record["total"] == pytest.approx(p.total)
        assert [leg["figures"] for leg in record["legs"]] == [leg.figures for leg in p.legs]
        assert set(record["total"]) == set(FIGURES)
    assert [c["verdict"] for c in document["claims"]] == [c.verdict for c in claims(run)]
    data = chart_data(run)
    for name in CHART_NAMES:
        rows = list(csv.DictReader(io.StringIO((out / f"{name}.csv").read_text())))
        points = [(s.label, y) for s in data[name].series for y in s.y]
        assert [(r["series"], float(r["y"])) for r in rows] == points
    assert not list(tmp_path.glob(f"{STAGING_PREFIX}*"))  # nothing half-written left behind


def test_a_failed_write_leaves_no_report_folder(
    run: CompareResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import analyzer.compare.command as command

    def broken(*_: object) -> str:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(command, "render_html", broken)
    with pytest.raises(RuntimeError):
        write_report(run, tuple(claims(run)), tmp_path / "report")
    assert list(tmp_path.iterdir()) == []


# -- a report that reads well --------------------------------------------------------------


def test_glossary_is_rendered_near_the_top_with_how_to_read(run: CompareResult) -> None:
    from analyzer.compare.render import render_charts

    page = render_html(run, claims(run), render_charts(run))
    assert page.index('id="how-to-read"') < page.index("<h2>Claims</h2>")
    assert '<dl id="glossary"><dt>marginal</dt>' in page
    assert "*marginal*" not in page
    text = render_markdown(run, claims(run))
    assert text.index("## How to read this") < text.index("## Claims")
    assert "- **marginal**: " in text


def test_log_axes_read_as_plain_numbers(run: CompareResult) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from analyzer.compare.charts import DRAWERS, _kind

    data = chart_data(run)["loaded-bytes"]
    figure = DRAWERS[_kind(data)](data)
    FigureCanvasAgg(figure).draw()
    labels = [t.get_text() for ax in figure.axes for t in ax.get_xticklabels() if t.get_text()]
    assert {"1", "10"} <= set(labels)
    assert not [label for label in labels if "^" in label]
    # One legend for the whole figure, below the panels: none inside a panel.
    assert len(figure.legends) == 1 and all(ax.get_legend() is None for ax in figure.axes)
    assert draw(data).png.startswith(b"\x89PNG")


# -- live, without crashing ----------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_live_run_lists_what_it_could_not_run_and_still_reports(tmp_path: Path) -> None:
    # No broker at this URL: every AMQP case fails, the HTTP ones run; pipelining cannot run
    # live at all.  The run must report, not raise.
    live = CompareOptions(
        messages=2,
        payloads=(16,),
        protocols=("http1", "amqp"),
        tls=("off", "1.3"),
        live=True,
        amqp_url=f"amqp://guest:guest@127.0.0.1:{_closed_port()}/",
    )
    out = tmp_path / "live"
    report = compare_command(output_dir=out, options=live)
    result = report.result
    assert {c.protocol for c in result.measurements} == {"http1"}
    reasons = {(n.case.mode, n.case.tls): n.reason for n in result.not_run}
    assert "live run failed" in reasons["amqp confirm", "off"]
    assert "live run failed" in reasons["amqp confirm", "1.3"]
    assert "does not pipeline" in reasons["http1 pipelined x8", "off"]
    assert {n.case.tls for n in result.not_run if n.case.protocol == "amqp"} == {"off", "1.3"}
    assert all(c.protocol == "http1" for c in result.matrix.cases)
    assert {c.key for c in report.claims} >= {"http-per-request", "queue-lighter"}
    text = (out / "report.md").read_text()
    assert "## Cases not run" in text and "does not pipeline" in text
    document = json.loads((out / "compare.json").read_text())
    assert document["source"] == "live"
    assert len(document["not_run"]) == len(result.not_run)


def test_matrix_restricted_keeps_a_path_only_with_all_its_legs(run: CompareResult) -> None:
    without = {c for c in run.matrix.cases if c.mode != "amqp consume"}
    restricted = run.matrix.restricted(without)
    assert isinstance(restricted, Matrix)
    assert "amqp-notify" not in {p.path.key for p in restricted.paths}
    assert "amqp-rpc" in {p.path.key for p in restricted.paths}


def test_chart_csv_rows_are_the_chart_points(run: CompareResult) -> None:
    data = chart_data(run)["paths"]
    rows = list(csv.reader(io.StringIO(chart_csv(data))))
    assert rows[0] == ["chart", "panel", "series", "x", "y"]
    assert len(rows) - 1 == sum(len(s.y) for s in data.series)


def test_live_run_has_every_case_tls_included_beside_the_synthetic_one(tmp_path: Path) -> None:
    from analyzer.compare.matrix import LIVE_UNSUPPORTED_REASONS
    from analyzer.compare.sections import live_differences

    live = CompareOptions(messages=3, payloads=(1024,), tls=("off", "1.3"), live=True)
    report = compare_command(output_dir=tmp_path / "live", options=live)
    result = report.result
    # Only what the real peers cannot do is left out, each with its reason.
    assert {n.case.mode for n in result.not_run} <= set(LIVE_UNSUPPORTED_REASONS)
    assert all(n.reason == LIVE_UNSUPPORTED_REASONS[n.case.mode] for n in result.not_run)
    assert {(c.protocol, c.tls) for c in result.measurements} == {
        (p, t) for p in ("http1", "http2", "amqp") for t in ("off", "1.3")
    }
    # Every path, every leg, live too: the 202 notifications and the RPC's four legs.
    assert {(p.path.key, p.tls) for p in result.matrix.paths} == {
        (p.key, t) for p in PATHS for t in ("off", "1.3")
    }
    for case, m in result.measurements.items():
        check_conservation(m.analysis)
        assert m.summary["messages"] == live.messages
        if case.tls != "off":
            assert all(c["tls"]["decrypted"] for c in m.analysis["connections"])
    # Side by side: every live case has its synthetic twin, and the handshakes agree exactly.
    assert set(result.synthetic) == set(result.measurements)
    rows = live_differences(result)
    assert {(label, name) for label, name, *_ in rows} == {
        (c.label, name)
        for c in result.measurements
        for name in (
            "marginal_bytes",
            "loaded_bytes",
            "message_bytes",
            "tls_bytes",
            "tcp_ip_bytes",
            "round_trips",
            "handshakes",
        )
    }
    assert all(ok for _, name, _, _, ok in rows if name == "handshakes")
    text = (tmp_path / "live" / "report.md").read_text()
    assert "## Live against synthetic" in text


# -- the generator's new knobs -------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["http1", "http2"])
@pytest.mark.parametrize("status", [202, 204])
def test_notification_answers_carry_no_body_and_match_the_truth(
    tmp_path: Path, protocol: str, status: int
) -> None:
    from conftest import analyze_json

    from analyzer.synth import Scenario, generate

    generated = generate(Scenario(protocol=protocol, http_status=status, messages=3, payload=64))
    generated.write(tmp_path / "n.pcap")
    analysis = analyze_json([tmp_path / "n.pcap"])
    check_conservation(analysis)
    truth = generated.truth["summary"]
    assert isinstance(truth, dict)
    summary = analysis["summary"][protocol]
    assert summary["payload_bytes"] == truth[protocol]["payload_bytes"] == 3 * 64
    assert summary["marginal_bytes_per_message"] == truth[protocol]["marginal_bytes_per_message"]
    wire = b"".join(f for _, f in generated.frames)
    if protocol == "http1":
        assert f"HTTP/1.1 {status} ".encode() in wire
        assert (b"content-length: 0" in wire) == (status == 202)


@pytest.mark.parametrize(
    "fields",
    [
        {"http_status": 500},
        {"protocol": "amqp", "http_status": 202},
        {"amqp_properties": "request"},
        {"protocol": "amqp", "amqp_properties": "bogus"},
    ],
)
def test_bad_notification_or_rpc_options_are_usage_errors(fields: dict[str, Any]) -> None:
    from analyzer.errors import UsageError
    from analyzer.synth import Scenario

    with pytest.raises(UsageError):
        Scenario(**fields).validate()
