"""The compare report as rich tables, Markdown and one self-contained HTML page.  Pure: returns
values and text; the command writes the files and prints.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from analyzer.compare.charts import (
    CHART_NAMES,
    PROTOCOL_NAMES,
    TLS_NAMES,
    Rendered,
    chart_data,
    draw,
    short_name,
)
from analyzer.compare.claims import Claim, headlines
from analyzer.compare.endtoend import path_figures
from analyzer.compare.matrix import CompareResult, Measurement
from analyzer.compare.sections import (
    GLOSSARY,
    HOW_TO_READ,
    LIVE_COLUMNS,
    MARGINAL_NOTE,
    NOT_RUN_COLUMNS,
    PATH_COLUMNS,
    PATHS_NOTE,
    TIMING_COLUMNS,
    live_rows,
    not_run_rows,
    path_headline,
    path_rows,
    reuse_lines,
    timing_rows,
)
from analyzer.compare.timing import MODEL
from analyzer.report import escape
from analyzer.report.page import CapturePage, PageTally

CHART_CAPTIONS = {
    "loaded-bytes": "Loaded bytes per message (a message's own bytes plus its share of its "
    "connection's setup, teardown and control) against messages per connection; the dashed line "
    "is the marginal cost, what one more message costs on an open connection.",
    "latency": "Time per message for one sender, from the counted round trips and loaded bytes, "
    "at a rack's, a region's and a cross-region RTT (each panel its own scale). Solid: the "
    "strongest TLS setting measured; dashed: cleartext.",
    "paths": "Marginal wire bytes of one message along its whole path, each leg in its own "
    "colour: a queued message is published and then delivered; an RPC over a broker crosses "
    "four legs; a reverse proxy adds a second hop to an HTTP call.",
    "round-trips": "Round trips on the critical path per message, by protocol and mode.",
    "layer-shares": "Where the wire bytes go: a new connection per message (x1) against one "
    "connection for all messages.",
    "payload-efficiency": "Payload bytes over wire bytes as the payload grows.",
}

CASE_COLUMNS = (
    "case",
    "TLS",
    "msgs/conn",
    "payload B",
    "marginal B/msg",
    "loaded B/msg",
    "overhead B/msg",
    "payload eff.",
    "RT/msg (with setup)",
    "RT/msg (messages only)",
    "handshakes/msg",
)
VERDICT_STYLES = {"true": "green", "false": "red", "partly true": "yellow", "not shown": "dim"}


# -- rows -------------------------------------------------------------------------------------


def case_row(result: CompareResult, m: Measurement) -> list[str]:
    """One case's figures as the analyzer reported them (summary of the case's protocol); the
    marginal cost is the configuration's (``CompareResult.marginal_bytes``), so a TLS case never
    reads cheaper than the same case in clear because its first message shared a segment."""
    s = m.summary
    marginal = result.marginal_bytes(m.case)
    payload = float(s["payload_bytes"]) / max(1, int(s["messages"]))
    return [
        m.case.mode,
        TLS_NAMES[m.case.tls],
        f"{s['messages_per_connection']:g}",
        str(m.case.payload),
        f"{marginal:.1f}",
        f"{s['loaded_bytes_per_message']:.1f}",
        f"{marginal - payload:.1f}",
        f"{s['payload_efficiency']:.3f}",
        f"{s['round_trips_per_message']:.3f}",
        f"{m.message_round_trips:.3f}",
        f"{s['handshakes_per_message']:.3f}",
    ]


def headline_rows(result: CompareResult) -> list[list[str]]:
    """Protocol against protocol: each protocol and TLS setting, new connection against reused."""
    fewest, most = min(result.options.curve_points), max(result.options.curve_points)
    return [
        case_row(result, result.of(case))
        for case in result.matrix.reuse
        if case.per_connection in (fewest, most)
    ]


def claim_figures(claim: Claim) -> str:
    return "; ".join(f"{f.label} {f.value:.4g} {f.unit}" for f in claim.figures)


def consistency_note(result: CompareResult) -> str:
    """Whether the analyzer's figures equal the generator's ground truth, case by case."""
    measured = [m for m in result.measurements.values() if m.truth_summary is not None]
    if not measured:
        return "Live captures: there is no ground truth to compare the analyzer's figures with."
    agree = sum(1 for m in measured if m.agrees_with_truth)
    note = (
        f"The analyzer's summary equals the generator's ground truth on {agree} of "
        f"{len(measured)} cases"
    )
    differ = [m.case.label for m in measured if not m.agrees_with_truth]
    return note + (f" (differs on: {'; '.join(differ)})." if differ else ".")


def run_note(result: CompareResult) -> str:
    o = result.options
    if o.live:
        source, done = "live captures between real peers", "recorded and analysed"
    else:
        source, done = "synthetic captures (analyzer.synth)", "generated and analysed"
    missing = (
        f" {len(result.not_run)} case(s) did not run (listed below)." if result.not_run else ""
    )
    return (
        f"{len(result.measurements)} {source}, {o.messages} messages each, payloads "
        f"{', '.join(str(p) for p in sorted(set(o.payloads)))} B, seed {o.seed}; {done} "
        f"in {result.elapsed_s:.1f} s. Every figure is the analyzer's measurement of a "
        f"capture (wireprobe analyze --format json).{missing}"
    )


LIVE_NOTE = (
    "Each live case beside the same case generated (analyzer.synth), figure by figure, and "
    "each message's bytes split into what the protocol writes (message_bytes: framing and "
    "payload), TLS records and TCP/IP headers, so like is compared with like. 'NO' marks a "
    "difference beyond the stated tolerance (bytes: a share of the synthetic figure; counts: an "
    "absolute bound), with why where the real stacks are entitled to it: the generator sends "
    "the real peers' HTTP/1.1 header set, but Linux adds TCP timestamps (12 bytes a segment), "
    "httpx and hypercorn write a message's head and body in two segments, each acknowledged on "
    "its own on loopback, and seal them in separate TLS records; with TLS 1.3 the server's "
    "session tickets arrive before the client's first request, which the analyzer counts as "
    "one more setup round trip."
)


# -- terminal -------------------------------------------------------------------------------


TERMINAL_COLUMNS = ("case", "marginal B", "loaded B", "payload eff.", "RT", "handshakes")


def terminal_row(m: Measurement, name: str, marginal: float | None = None) -> list[str]:
    """A narrow row (fits 80 columns): figures per message."""
    s = m.summary
    return [
        name,
        f"{s['marginal_bytes_per_message'] if marginal is None else marginal:.0f}",
        f"{s['loaded_bytes_per_message']:.0f}",
        f"{s['payload_efficiency']:.3f}",
        f"{s['round_trips_per_message']:.3f}",
        f"{s['handshakes_per_message']:.3f}",
    ]


def _terminal_table(title: str, rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for column in TERMINAL_COLUMNS:
        table.add_column(column, justify="left" if column == "case" else "right")
    for row in rows:
        table.add_row(*map(escape.terminal_text, row))
    return table


def terminal_tables(result: CompareResult, claims: Sequence[Claim]) -> list[Table]:
    """The tables ``wireprobe compare`` prints: per message, protocol against protocol."""
    fewest, most = min(result.options.curve_points), max(result.options.curve_points)
    headline = _terminal_table(
        f"Per message, {result.options.reference_payload} B payload: "
        f"a connection per {fewest} message(s) against one per {most}",
        [
            terminal_row(result.of(c), short_name(result.of(c)), result.marginal_bytes(c))
            for c in result.matrix.reuse
            if c.per_connection in (fewest, most)
        ],
    )
    modes = _terminal_table(
        "Per message by mode (cleartext, one connection)",
        [terminal_row(result.of(c), c.mode) for c in result.matrix.modes],
    )
    paths = Table(title="The whole path of a message (cleartext, open connections)")
    for column in ("path", "legs", "marginal B", "loaded B", "RT"):
        paths.add_column(column, justify="left" if column == "path" else "right")
    for p in path_figures(result):
        if p.case.tls == "off":
            t = p.total
            cells = (
                p.case.path.name,
                str(len(p.legs)),
                f"{t['marginal_bytes']:.0f}",
                f"{t['loaded_bytes']:.0f}",
                f"{t['round_trips']:.3f}",
            )
            paths.add_row(*map(escape.terminal_text, cells))
    verdicts = Table(title="Claims, judged on this run's numbers", show_lines=True)
    verdicts.add_column("claim", ratio=2)
    verdicts.add_column("verdict")
    verdicts.add_column("why", ratio=3)
    for claim in claims:
        style = VERDICT_STYLES.get(claim.verdict, "")
        verdicts.add_row(
            escape.terminal_text(claim.text),
            escape.terminal_text(claim.verdict, style=style),
            escape.terminal_text(claim.explanation),
        )
    tables = [headline, modes, paths, verdicts]
    if result.not_run:
        skipped = Table(title="Cases not run")
        for column in NOT_RUN_COLUMNS:
            skipped.add_column(column)
        for row in not_run_rows(result):
            skipped.add_row(*map(escape.terminal_text, row))
        tables.append(skipped)
    return tables


# -- markdown -------------------------------------------------------------------------------


def _md_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], bold: Sequence[int] = ()
) -> str:
    """A GFM table; every cell is escaped text (report/escape.py), columns in ``bold`` bold."""

    def cell(i: int, value: str) -> str:
        text = escape.markdown(value)
        return f"**{text}**" if i in bold and text else text

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell(i, c) for i, c in enumerate(cells)) + " |"

    rule = "| " + " | ".join(["---"] * len(headers)) + " |"
    return "\n".join([line(headers), rule, *map(line, rows)])


def claims_markdown(claims: Sequence[Claim]) -> str:
    """The claims table on its own (the README's example)."""
    rows = [[c.text, c.verdict, claim_figures(c), c.explanation, c.flips_if] for c in claims]
    table = _md_table(("claim", "verdict", "measured", "why", "would flip if"), rows, bold=(1,))
    md = escape.markdown
    rules = "\n".join(f"- *{md(c.text)}*: {md(c.rule)}." for c in claims)
    return f"{table}\n\nRules behind the verdicts:\n\n{rules}\n"


def glossary_markdown() -> str:
    return "\n".join(f"- **{term}**: {text}" for term, text in GLOSSARY)


def render_markdown(result: CompareResult, claims: Sequence[Claim]) -> str:
    """``report.md``; the charts are the PNG files written beside it."""
    # The latency chart's model is written under it (issue 14), as in the HTML page.
    captions = CHART_CAPTIONS | {"latency": f"{CHART_CAPTIONS['latency']} {MODEL}"}
    charts = "\n\n".join(
        f"![{escape.markdown(name)}]({name}.png)\n\n*{escape.markdown(captions[name])}*"
        for name in CHART_NAMES
    )
    all_rows = [case_row(result, m) for m in result.measurements.values()]
    not_run = (
        f"## Cases not run\n\n{_md_table(NOT_RUN_COLUMNS, not_run_rows(result))}\n\n"
        if result.not_run
        else ""
    )
    if result.synthetic:
        not_run += (
            f"## Live against synthetic\n\n{LIVE_NOTE}\n\n"
            f"{_md_table(LIVE_COLUMNS, live_rows(result))}\n\n"
        )
    return (
        "# wireprobe compare: REST calls against a message queue, measured\n\n"
        f"{escape.markdown(run_note(result))}\n\n"
        + "".join(
            f"- {escape.markdown(line)}\n" for line in headlines(result) + path_headline(result)
        )
        + f"\n## How to read this\n\n{HOW_TO_READ}\n\n{glossary_markdown()}\n"
        + "\n## Claims\n\n"
        f"{claims_markdown(claims)}\n"
        "## Protocol against protocol\n\n"
        f"{_md_table(CASE_COLUMNS, headline_rows(result))}\n\n"
        f"{MARGINAL_NOTE}\n\n"
        "## The whole path of a message\n\n"
        f"{PATHS_NOTE}\n\n"
        f"{_md_table(PATH_COLUMNS, path_rows(result, legs=False))}\n\n"
        "Leg by leg:\n\n"
        f"{_md_table(PATH_COLUMNS, path_rows(result, legs=True))}\n\n"
        "## Latency\n\n"
        f"{_md_table(TIMING_COLUMNS, timing_rows(result))}\n\n"
        + "".join(f"- {escape.markdown(line)}\n" for line in reuse_lines(result))
        + f"\n{MODEL}\n\n"
        "## Charts\n\n"
        f"{charts}\n\n"
        f"{not_run}"
        "## Every case\n\n"
        f"{_md_table(CASE_COLUMNS, all_rows)}\n\n"
        f"{escape.markdown(consistency_note(result))}\n"
    )


# -- html -----------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; vertical-align: top; }
th { background: #f3f3f3; }
td.text, th.text { text-align: left; }
.verdict-true { color: #1a7f37; font-weight: bold; }
.verdict-false { color: #cf222e; font-weight: bold; }
.verdict-partly-true { color: #9a6700; font-weight: bold; }
.verdict-not-shown { color: #777; }
#claims td:nth-child(1) { width: 20%; }
#claims td:nth-child(3) { width: 38%; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
#glossary { display: grid; grid-template-columns: max-content 1fr; gap: 0.2em 1em; }
#glossary dt { font-weight: bold; }
#glossary dd { margin: 0; }
"""

#: Marks the page with the number of charts the browser decoded and drew, and reports any
#: that failed as a console error, so a headless browser can check the page.
CHECK_SCRIPT = """
window.addEventListener("load", function () {
  var charts = Array.prototype.slice.call(document.querySelectorAll("img.chart"));
  var drawn = charts.filter(function (img) { return img.complete && img.naturalWidth > 0; });
  document.body.setAttribute("data-charts", String(charts.length));
  document.body.setAttribute("data-charts-drawn", String(drawn.length));
  if (drawn.length !== charts.length) {
    console.error("wireprobe: " + (charts.length - drawn.length) + " chart(s) not drawn");
  }
});
"""


#: Every value interpolated into the page goes through this (report/escape.py): text and
#: quoted attributes alike, constants included, so no string is ever raw HTML.
_e = escape.html


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1) -> str:
    """An HTML table; the first ``text_columns`` columns are left-aligned text."""

    def cell(tag: str, i: int, value: str) -> str:
        cls = ' class="text"' if i < text_columns else ""
        return f"<{tag}{cls}>{value}</{tag}>"

    head = "".join(cell("th", i, _e(h)) for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(cell("td", i, _e(v)) for i, v in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def chart_html(rendered: Rendered, caption: str) -> str:
    """The chart as an embedded PNG: the page needs no other file."""
    data = base64.b64encode(rendered.png).decode("ascii")
    return (
        f'<figure><img class="chart" id="chart-{_e(rendered.name)}" alt="{_e(caption)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{_e(caption)}</figcaption></figure>'
    )


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{STYLE}</style>"
        f"<script>{CHECK_SCRIPT}</script></head>\n<body>\n{body}\n</body></html>\n"
    )


def claims_html(claims: Sequence[Claim]) -> str:
    rows = []
    for c in claims:
        figures = "<br>".join(
            f"{_e(f.label)}: <b>{_e(f'{f.value:.4g}')}</b> {_e(f.unit)}" for f in c.figures
        )
        cls = _e("verdict-" + c.verdict.replace(" ", "-"))
        rows.append(
            f'<tr><td class="text">{_e(c.text)}</td><td class="text {cls}">{_e(c.verdict)}</td>'
            f'<td class="text">{figures}</td><td class="text">{_e(c.explanation)}'
            f"<br><small>Rule: {_e(c.rule)}.</small>"
            f"<br><small><b>Would flip if</b> {_e(c.flips_if)}.</small></td></tr>"
        )
    head = "".join(
        f'<th class="text">{_e(h)}</th>' for h in ("claim", "verdict", "measured", "why")
    )
    return (
        f'<table id="claims"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def render_html(
    result: CompareResult, claims: Sequence[Claim], rendered: dict[str, Rendered]
) -> str:
    """``report.html``: one file with the charts embedded."""
    charts = {name: chart_html(rendered[name], CHART_CAPTIONS[name]) for name in CHART_NAMES}
    all_rows = [case_row(result, m) for m in result.measurements.values()]
    glossary = "".join(f"<dt>{_e(term)}</dt><dd>{_e(text)}</dd>" for term, text in GLOSSARY)
    not_run = (
        f"<h2>Cases not run</h2>{html_table(NOT_RUN_COLUMNS, not_run_rows(result), 2)}"
        if result.not_run
        else ""
    )
    if result.synthetic:
        not_run += (
            f"<h2>Live against synthetic</h2><p>{_e(LIVE_NOTE)}</p>"
            f"{html_table(LIVE_COLUMNS, live_rows(result), 2)}"
        )
    body = (
        "<h1>wireprobe compare: REST calls against a message queue, measured</h1>"
        f"<p>{_e(run_note(result))}</p>"
        + "<ul>"
        + "".join(f"<li>{_e(line)}</li>" for line in headlines(result) + path_headline(result))
        + "</ul>"
        f'<section id="how-to-read"><h2>How to read this</h2><p>{_e(HOW_TO_READ)}</p>'
        f'<dl id="glossary">{glossary}</dl></section>'
        f"<h2>Claims</h2>{claims_html(claims)}"
        f"<h2>Protocol against protocol</h2>{html_table(CASE_COLUMNS, headline_rows(result), 2)}"
        f"<p><small>{_e(MARGINAL_NOTE)}</small></p>"
        f"{charts['loaded-bytes']}"
        f"<h2>The whole path of a message</h2><p>{_e(PATHS_NOTE)}</p>"
        f"{html_table(PATH_COLUMNS, path_rows(result, legs=False), 3)}"
        f"{charts['paths']}<h3>Leg by leg</h3>"
        f"{html_table(PATH_COLUMNS, path_rows(result, legs=True), 3)}"
        f"<h2>Latency</h2>{html_table(TIMING_COLUMNS, timing_rows(result), 2)}"
        + "<ul>"
        + "".join(f"<li>{_e(line)}</li>" for line in reuse_lines(result))
        + "</ul>"
        f"{charts['latency']}<p><small>{_e(MODEL)}</small></p>"
        "<h2>More charts</h2>"
        + "".join(charts[n] for n in CHART_NAMES if n not in ("loaded-bytes", "paths", "latency"))
        + f"{not_run}"
        f"<h2>Every case</h2>{html_table(CASE_COLUMNS, all_rows, 2)}"
        f"<p><small>{_e(consistency_note(result))}</small></p>"
    )
    return page("wireprobe compare", body)


def render_charts(result: CompareResult) -> dict[str, Rendered]:
    """Every chart of the run drawn."""
    return {name: draw(data) for name, data in chart_data(result).items()}


# -- any capture (wireprobe analyze --format html) ------------------------------------------

SUMMARY_COLUMNS = (
    "protocol",
    "connections",
    "messages",
    "msgs/conn",
    "marginal B/msg",
    "loaded B/msg",
    "payload eff.",
    "RT/msg",
    "handshakes/msg",
    "wire bytes",
)
CONNECTION_COLUMNS = (
    "connection",
    "protocol",
    "TLS",
    "messages",
    "wire bytes",
    "setup B",
    "control B",
    "undecoded B",
    "round trips",
    "anomalies",
)


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _summary_row(protocol: str, s: dict[str, Any]) -> list[str]:
    return [
        PROTOCOL_NAMES.get(protocol, protocol),
        _num(s.get("connections")),
        _num(s.get("messages")),
        _num(s.get("messages_per_connection"), 1),
        _num(s.get("marginal_bytes_per_message"), 1),
        _num(s.get("loaded_bytes_per_message"), 1),
        _num(s.get("payload_efficiency"), 3),
        _num(s.get("round_trips_per_message"), 3),
        _num(s.get("handshakes_per_message"), 3),
        _num(s.get("wire_bytes")),
    ]


def _connection_row(c: dict[str, Any]) -> list[str]:
    tls = c.get("tls") or {}
    anomalies = ", ".join(f"{a['name']}×{a['count']}" for a in c.get("anomalies", []))
    return [
        f"{c['orig']} → {c['resp']}",
        PROTOCOL_NAMES.get(c["protocol"], c["protocol"]),
        tls.get("version") or "–",
        _num(c.get("messages")),
        _num(c["wire_bytes"]),
        _num(c["setup_bytes"]),
        _num(c["control_bytes"]),
        _num(c["undecoded_bytes"]),
        _num(c.get("round_trips"), 1),
        anomalies or "–",
    ]


def capture_findings(analysis: dict[str, Any]) -> list[str]:
    """What a reader should act on, each from a rule over the capture's numbers."""
    lines = []
    for protocol, s in sorted(analysis.get("summary", {}).items()):
        name = PROTOCOL_NAMES.get(protocol, protocol)
        per_conn = s.get("messages_per_connection") or 0
        # A connection per message pays its setup every time (DESIGN.md section 3, loaded cost).
        if s.get("connections", 0) >= 2 and 0 < per_conn <= 1.5:
            lines.append(
                f"{name}: {per_conn:.2f} messages per connection; each message pays a connection "
                f"setup ({s.get('handshakes_per_message', 0):.2f} handshakes per message). "
                "Reusing connections would cut the loaded cost towards the marginal one."
            )
        marginal, loaded = s.get("marginal_bytes_per_message"), s.get("loaded_bytes_per_message")
        if marginal and loaded and loaded >= 1.5 * marginal:
            lines.append(
                f"{name}: loaded cost {loaded:.0f} B/message is {loaded / marginal:.1f}x the "
                f"marginal {marginal:.0f} B: connection overhead dominates."
            )
    conns = analysis["connections"]
    wire = sum(c["wire_bytes"] for c in conns)
    undecoded = sum(c["undecoded_bytes"] for c in conns)
    if wire and undecoded * 10 >= wire:
        lines.append(
            f"{100 * undecoded / wire:.0f}% of the bytes could not be decoded (encrypted without "
            "keys, unknown protocol or gaps): a key log (--keylog) would add their figures."
        )
    retransmitted = sum(c.get("retransmitted_bytes", 0) for c in conns)
    if wire and retransmitted * 100 >= wire:
        lines.append(f"Retransmissions are {100 * retransmitted / wire:.1f}% of the bytes.")
    anomalies: dict[str, int] = {}
    for c in conns:
        for a in c.get("anomalies", []):
            anomalies[a["name"]] = anomalies.get(a["name"], 0) + a["count"]
    if anomalies:
        lines.append(
            "Anomalies: " + ", ".join(f"{n} ×{k}" for n, k in sorted(anomalies.items())) + "."
        )
    return lines


def _capture_chart(shares: Mapping[str, Mapping[str, float]]) -> Rendered | None:
    from analyzer.compare.charts import SHARE_LAYERS, SHARE_NAMES, ChartData, Series

    if not shares:
        return None
    names = tuple(PROTOCOL_NAMES.get(p, p) for p in shares)
    series = tuple(
        Series(
            label=SHARE_NAMES[layer],
            x=names,
            y=tuple(s[layer] for s in shares.values()),
            style="stack",
            key=layer,
        )
        for layer in SHARE_LAYERS
    )
    data = ChartData(
        name="layer-shares",
        title="Share of the wire bytes by layer",
        xlabel="protocol",
        ylabel="share of wire bytes",
        series=series,
    )
    return draw(data)


def render_capture_html(analysis_json: dict[str, Any]) -> str:
    """The report of any capture from its whole analysis JSON (``render_capture_page`` is what
    ``wireprobe analyze --format html`` uses: it never holds the JSON)."""
    tally = PageTally()
    by_id = {}
    for record in analysis_json["connections"]:
        tally.add(record)
        by_id[record["id"]] = record["protocol"]
    for message in analysis_json["messages"]:
        tally.add_message(by_id.get(message["connection"], "unknown"), message)
    # The analysis's own list (analyzer/report/findings.py), so HTML and the other formats agree.
    listed = analysis_json.get("findings")
    findings = (
        [f"{f['severity']}: {f['message']}" for f in listed]
        if listed is not None
        else capture_findings(analysis_json)
    )
    return render_capture_page(
        tally.page(analysis_json, analysis_json.get("summary", {}), findings)
    )


def render_capture_page(capture: CapturePage) -> str:
    """The report of any capture (``wireprobe analyze --format html``)."""
    captures = ", ".join(capture.captures)
    summary = [_summary_row(p, s) for p, s in sorted(capture.summary.items())]
    chart = _capture_chart(capture.shares)
    findings = capture.findings
    body = (
        f"<h1>wireprobe: {_e(captures or 'capture')}</h1>"
        f"<p>{_e(_num(capture.packets))} packets, "
        f"{capture.connections} connections, "
        f"{capture.messages} messages.</p>"
        f"<h2>Summary</h2>{html_table(SUMMARY_COLUMNS, summary)}"
        + (chart_html(chart, "Share of the wire bytes by layer, per protocol.") if chart else "")
        + "<h2>Findings</h2>"
        + (
            "<ul>" + "".join(f"<li>{_e(f)}</li>" for f in findings) + "</ul>"
            if findings
            else "<p>Nothing to act on.</p>"
        )
        + "<h2>Costliest connections</h2>"
        + html_table(CONNECTION_COLUMNS, [_connection_row(c) for c in capture.top], 3)
    )
    return page("wireprobe analysis", body)
