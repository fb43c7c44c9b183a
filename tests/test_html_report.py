"""``wireprobe analyze --format html``: the page from records folded as they stream in.

Issue 15: the HTML report used to build the whole analysis JSON in memory (every connection
and message record) although the page shows a summary.  ``Collector("html")`` now keeps what the
page shows (analyzer/report/page.py); these tests check that the page is unchanged and that its
memory does not follow the number of connections.
"""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

from analyzer.compare.render import render_capture_html
from analyzer.pipeline import analyze
from analyzer.report.page import TOP_CONNECTIONS
from analyzer.report.render import Collector
from analyzer.synth import Scenario, generate

#: Connections of the smaller capture of the memory test; the larger has ten times as many.
FEW = 50
#: A round trip long enough that a connection is over before the next few start: the flow table
#: then holds a handful at once (closed ones linger 60 s of capture time), so what grows with
#: the capture is only what a report keeps.
SLOW_RTT_MS = 2000.0
#: What the HTML report may keep beyond the table format's own peak, in bytes: its heap of
#: ``TOP_CONNECTIONS`` records (a few KiB each) and sums per protocol.  Holding every record of
#: the larger capture would cost some 10 KiB per connection, far above it.
PAGE_BOUND_BYTES = 512 * 1024


def _capture(tmp_path: Path, name: str, connections: int, **fields: object) -> Path:
    given: dict[str, object] = {"payload": 10, **fields}
    scenario = Scenario(messages=2 * connections, per_connection=2, **given)  # type: ignore[arg-type]
    path = tmp_path / f"{name}.pcap"
    generate(scenario.validate()).write(path)
    return path


def _report(paths: list[Path], fmt: str) -> str:
    """The report in ``fmt``; ``"whole-json-html"`` is the old page, drawn from the whole JSON."""
    collector = Collector("json" if fmt == "whole-json-html" else fmt)
    analysis = analyze([str(p) for p in paths], on_record=collector.add)
    out = io.StringIO()
    collector.render(analysis, out)
    if fmt == "whole-json-html":
        return render_capture_html(json.loads(out.getvalue()))
    return out.getvalue()


def _peak_bytes(path: Path, fmt: str) -> int:
    tracemalloc.start()
    try:
        _report([path], fmt)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_streamed_page_is_the_page_of_the_whole_analysis(tmp_path: Path) -> None:
    # More connections than the page lists, of two protocols, the HTTP ones of two sizes.
    paths = [
        _capture(tmp_path, "small", TOP_CONNECTIONS, protocol="http1"),
        _capture(tmp_path, "large", 8, protocol="http1", payload=3000),
        _capture(tmp_path, "amqp", 3, protocol="amqp"),
    ]
    whole = json.loads(_report(paths, "json"))
    assert len(whole["connections"]) > TOP_CONNECTIONS
    streamed = _report(paths, "html")
    assert streamed == render_capture_html(whole)
    assert f"{len(whole['messages'])} messages" in streamed
    assert "AMQP" in streamed


def test_the_html_report_keeps_no_record_per_connection(tmp_path: Path) -> None:
    few = _capture(tmp_path, "few", FEW, rtt_ms=SLOW_RTT_MS)
    many = _capture(tmp_path, "many", 10 * FEW, rtt_ms=SLOW_RTT_MS)
    _report([few], "html")  # imports and caches warmed, so they count in neither run
    table = {path.stem: _peak_bytes(path, "table") for path in (few, many)}
    extra = {path.stem: _peak_bytes(path, "html") - table[path.stem] for path in (few, many)}
    assert extra["many"] <= PAGE_BOUND_BYTES, extra
    assert extra["many"] <= extra["few"] + PAGE_BOUND_BYTES // 4, extra
    # The measure can tell: the old page, drawn from the whole JSON, is far past the bound.
    whole = _peak_bytes(many, "whole-json-html") - table["many"]
    assert whole > 4 * PAGE_BOUND_BYTES, (whole, extra)
