"""The charts of a compare run: first the numbers behind each chart, then the drawing.

``chart_data`` is pure and is what the tests check against the analysis JSON; ``draw`` only
plots those numbers with matplotlib (Agg canvas, no pyplot state, so worker threads and test
runs never open a window).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from analyzer.compare.endtoend import path_figures
from analyzer.compare.matrix import BASE_MODE, CompareResult, Measurement
from analyzer.compare.timing import NETWORKS, time_s
from analyzer.report.page import LayerSums

PROTOCOL_NAMES = {"http1": "HTTP/1.1", "http2": "HTTP/2", "amqp": "AMQP 0-9-1"}
#: One colour per protocol on every chart (matplotlib's default cycle, colour-blind safe order).
PROTOCOL_COLOURS = {"http1": "#1f77b4", "http2": "#ff7f0e", "amqp": "#2ca02c"}
TLS_NAMES = {"off": "cleartext", "1.2": "TLS 1.2", "1.3": "TLS 1.3"}
#: The stacked layers of the share chart, bottom to top; "connection" is what the connection
#: spends outside any message (setup, teardown, control: DESIGN.md section 2), all layers.
SHARE_LAYERS = ("headers", "tls", "framing", "payload", "connection", "undecoded")
SHARE_NAMES = {
    "headers": "link/IP/TCP",
    "tls": "TLS",
    "framing": "framing",
    "payload": "payload",
    "connection": "setup/teardown/control",
    "undecoded": "undecoded",
}
SHARE_COLOURS = {
    "headers": "#7f7f7f",
    "tls": "#9467bd",
    "framing": "#d62728",
    "payload": "#2ca02c",
    "connection": "#ff7f0e",
    "undecoded": "#000000",
}
#: Pixels per inch of the PNGs: 100 keeps each chart around 100 KB and sharp on a slide.
PNG_DPI = 100
SVG_HASH_SALT = "wireprobe"
CHART_NAMES = (
    "loaded-bytes",
    "latency",
    "paths",
    "round-trips",
    "layer-shares",
    "payload-efficiency",
)
#: Colours of a path's legs, first to fourth (a message crosses at most four here).
LEG_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")


@dataclass(frozen=True, slots=True, kw_only=True)
class Series:
    """One line or one set of bars."""

    #: legend text
    label: str
    #: x values (messages per connection, payload bytes) or category names
    x: tuple[Any, ...]
    y: tuple[float, ...]
    #: sub-plot the series belongs to ("" for single-panel charts)
    panel: str = ""
    #: "line", "asymptote" (dashed), "bar", "stack" (shares) or "legs" (a path's legs, bytes)
    style: str = "line"
    #: protocol or layer the colour comes from
    key: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChartData:
    """The numbers of one chart and how to label it."""

    name: str
    title: str
    xlabel: str
    ylabel: str
    series: tuple[Series, ...]
    log_x: bool = False
    #: panels share the y axis (off where each panel has its own scale: one per network)
    share_y: bool = True
    #: a logarithmic y axis (times that span three orders of magnitude)
    log_y: bool = False


def chart_data(result: CompareResult) -> dict[str, ChartData]:
    """The figures behind every chart of the run, read from the analyses."""
    return {
        "loaded-bytes": loaded_bytes_chart(result),
        "latency": latency_chart(result),
        "paths": paths_chart(result),
        "round-trips": round_trips_chart(result),
        "layer-shares": layer_shares_chart(result),
        "payload-efficiency": payload_efficiency_chart(result),
    }


def loaded_bytes_chart(result: CompareResult) -> ChartData:
    """Loaded bytes per message against messages per connection, marginal cost dashed."""
    series: list[Series] = []
    for tls in dict.fromkeys(c.tls for c in result.matrix.reuse):
        for protocol in dict.fromkeys(c.protocol for c in result.matrix.reuse):
            points = sorted(
                (c.per_connection, result.of(c))
                for c in result.matrix.reuse
                if c.tls == tls and c.protocol == protocol
            )
            if not points:
                continue  # a live run cannot offer every protocol every TLS setting
            xs = tuple(k for k, _ in points)
            loaded = tuple(float(m.summary["loaded_bytes_per_message"]) for _, m in points)
            # The asymptote: the marginal cost on the longest connection, where setup is spread
            # thinnest; the loaded curve falls towards it as connections are reused.
            marginal = float(points[-1][1].summary["marginal_bytes_per_message"])
            name = PROTOCOL_NAMES[protocol]
            panel = TLS_NAMES[tls]
            series.append(Series(label=name, x=xs, y=loaded, panel=panel, key=protocol))
            series.append(
                Series(
                    label=f"{name} marginal",
                    x=(xs[0], xs[-1]),
                    y=(marginal, marginal),
                    panel=panel,
                    style="asymptote",
                    key=protocol,
                )
            )
    return ChartData(
        name="loaded-bytes",
        title="Bytes per message as connections are reused "
        f"({result.options.reference_payload} B payload)",
        xlabel="messages per connection",
        ylabel="loaded bytes per message",
        series=tuple(series),
        log_x=True,
    )


def latency_chart(result: CompareResult) -> ChartData:
    """Time per message against messages per connection, one panel per stated network
    (``analyzer.compare.timing``): where connection reuse dominates and where it stops mattering.
    """
    series: list[Series] = []
    tls_settings = [
        t for t in ("1.3", "1.2", "off") if any(c.tls == t for c in result.matrix.reuse)
    ]
    shown = tls_settings[:1] + (["off"] if tls_settings[:1] != ["off"] else [])
    for network in NETWORKS:
        panel = f"{network.name}: RTT {network.rtt_ms:g} ms"
        for tls in shown:
            for protocol in dict.fromkeys(c.protocol for c in result.matrix.reuse):
                points = sorted(
                    (c.per_connection, result.of(c))
                    for c in result.matrix.reuse
                    if c.tls == tls and c.protocol == protocol
                )
                if not points:
                    continue
                times = tuple(
                    1000
                    * time_s(
                        float(m.summary["round_trips_per_message"]),
                        float(m.summary["loaded_bytes_per_message"]),
                        network,
                    )
                    for _, m in points
                )
                series.append(
                    Series(
                        label=f"{PROTOCOL_NAMES[protocol]} {TLS_NAMES[tls]}",
                        x=tuple(k for k, _ in points),
                        y=times,
                        panel=panel,
                        style="line" if tls == shown[0] else "asymptote",
                        key=protocol,
                    )
                )
    return ChartData(
        name="latency",
        title="Time per message as connections are reused, at three network RTTs "
        f"({NETWORKS[0].bandwidth_bits_per_s / 1e9:g} Gbit/s)",
        xlabel="messages per connection",
        ylabel="ms per message (one sender)",
        series=tuple(series),
        log_x=True,
        share_y=False,
    )


def paths_chart(result: CompareResult) -> ChartData:
    """Wire bytes of one message from sender to receiver, leg by leg (cleartext, open
    connections): the whole path, not the first hop."""
    paths = [p for p in path_figures(result) if p.case.tls == "off"]
    names = tuple(p.case.path.name for p in paths)
    most = max((len(p.legs) for p in paths), default=0)
    series = tuple(
        Series(
            label=f"leg {i + 1}",
            x=names,
            y=tuple(p.legs[i].figures["marginal_bytes"] if i < len(p.legs) else 0.0 for p in paths),
            style="legs",
            key=str(i),
        )
        for i in range(most)
    )
    payload = paths[0].case.payload if paths else result.options.reference_payload
    return ChartData(
        name="paths",
        title=f"Bytes per message, every leg of its path ({payload} B body, cleartext)",
        xlabel="marginal wire bytes per message, legs added",
        ylabel="",
        series=series,
    )


def round_trips_chart(result: CompareResult) -> ChartData:
    """Round trips per message of each mode: the messages' own, and with setup spread over."""
    modes = [result.of(c) for c in result.matrix.modes]
    names = tuple(m.case.mode for m in modes)
    own = Series(
        label="message round trips",
        x=names,
        y=tuple(m.message_round_trips for m in modes),
        style="bar",
        key="message",
    )
    with_setup = Series(
        label="with connection setup spread over the messages",
        x=names,
        y=tuple(float(m.summary["round_trips_per_message"]) for m in modes),
        style="bar",
        key="setup",
    )
    return ChartData(
        name="round-trips",
        title=f"Round trips per message ({result.options.messages} messages, one connection)",
        xlabel="protocol and mode",
        ylabel="round trips per message",
        series=(own, with_setup),
    )


def layer_shares_chart(result: CompareResult) -> ChartData:
    """Where the bytes go, as shares of the wire bytes, a new connection each against one."""
    picked = [
        result.of(c)
        for c in result.matrix.reuse
        if c.per_connection in (min(result.options.curve_points), max(result.options.curve_points))
    ]
    names = tuple(short_name(m) for m in picked)
    shares = [layer_shares(m.analysis) for m in picked]
    series = tuple(
        Series(
            label=SHARE_NAMES[layer],
            x=names,
            y=tuple(s[layer] for s in shares),
            style="stack",
            key=layer,
        )
        for layer in SHARE_LAYERS
    )
    return ChartData(
        name="layer-shares",
        title="Share of the wire bytes by layer",
        xlabel="protocol, TLS, messages per connection",
        ylabel="share of wire bytes",
        series=series,
    )


def layer_shares(analysis: dict[str, Any]) -> dict[str, float]:
    """Shares of the wire bytes: messages' direct bytes by layer, then the connection's own
    (the one formula, analyzer/report/page.py, that a capture's HTML report folds too)."""
    sums = LayerSums()
    for message in analysis["messages"]:
        sums.add_message(message)
    for record in analysis["connections"]:
        sums.add_connection(record)
    return sums.shares()


def payload_efficiency_chart(result: CompareResult) -> ChartData:
    """Payload bytes over wire bytes against the payload size, one connection each."""
    series = []
    for protocol in dict.fromkeys(c.protocol for c in result.matrix.payload):
        points = sorted(
            (c.payload, result.of(c)) for c in result.matrix.payload if c.protocol == protocol
        )
        series.append(
            Series(
                label=f"{PROTOCOL_NAMES[protocol]} ({BASE_MODE[protocol].split(' ', 1)[1]})",
                x=tuple(p for p, _ in points),
                y=tuple(float(m.summary["payload_efficiency"]) for _, m in points),
                key=protocol,
            )
        )
    return ChartData(
        name="payload-efficiency",
        title="Payload efficiency against payload size (cleartext, one connection)",
        xlabel="payload bytes per message",
        ylabel="payload bytes / wire bytes",
        series=tuple(series),
        log_x=True,
    )


def short_name(m: Measurement) -> str:
    """ "HTTP/1.1 TLS1.3 x10": protocol, TLS and messages per connection in a few characters."""
    tls = {"off": "", "1.2": " TLS1.2", "1.3": " TLS1.3"}[m.case.tls]
    return f"{PROTOCOL_NAMES[m.case.protocol]}{tls} x{m.case.per_connection}"


# -- drawing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendered:
    """One chart as image files."""

    name: str
    png: bytes
    svg: str


def draw(data: ChartData) -> Rendered:
    """The chart as PNG bytes and SVG text, the same bytes on every run (no dates in the
    metadata; a fixed salt for the SVG's element ids, which are otherwise random)."""
    with matplotlib.rc_context({"svg.hashsalt": SVG_HASH_SALT}):
        figure = DRAWERS[_kind(data)](data)
        FigureCanvasAgg(figure)
        png, svg = io.BytesIO(), io.StringIO()
        figure.savefig(png, format="png", dpi=PNG_DPI, metadata={"Software": None})
        figure.savefig(svg, format="svg", metadata={"Date": None})
    return Rendered(name=data.name, png=png.getvalue(), svg=svg.getvalue())


def _kind(data: ChartData) -> str:
    styles = {s.style for s in data.series}
    if not data.series:
        return "empty"
    if "legs" in styles:
        return "legs"
    if "stack" in styles:
        return "stack"
    if "bar" in styles:
        return "bar"
    return "panels" if any(s.panel for s in data.series) else "lines"


def _plain_numbers(axis: Any) -> None:
    """Ticks of a log axis as plain numbers (1, 10, 100), not powers of ten."""
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _draw_panels(data: ChartData) -> Figure:
    panels = list(dict.fromkeys(s.panel for s in data.series))
    figure = Figure(figsize=(4.2 * len(panels) + 1, 5.4), layout="constrained")
    axes = figure.subplots(1, len(panels), sharey=data.share_y, squeeze=False)[0]
    for ax, panel in zip(axes, panels, strict=True):
        for s in (s for s in data.series if s.panel == panel):
            _plot_line(ax, s)
        ax.set_title(panel)
        ax.set_xscale("log")
        _plain_numbers(ax.xaxis)
        if data.log_y:
            ax.set_yscale("log")
            _plain_numbers(ax.yaxis)
        ax.set_xlabel(data.xlabel)
        ax.grid(True, which="both", alpha=0.3)
        if not data.share_y:
            ax.set_ylabel(data.ylabel)
    axes[0].set_ylabel(data.ylabel)
    if not data.log_y:
        axes[0].set_ylim(bottom=0)
    # One legend for all panels, below them: every panel has the same series, and a legend
    # inside one panel would cover its lines.
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(
        handles, labels, loc="outside lower center", ncols=min(len(labels), 6), fontsize="small"
    )
    figure.suptitle(data.title)
    return figure


def _plot_line(ax: Any, s: Series) -> None:
    colour = PROTOCOL_COLOURS.get(s.key, "#333333")
    if s.style == "asymptote":
        ax.plot(s.x, s.y, linestyle="--", linewidth=1, color=colour, label=s.label)
    else:
        ax.plot(s.x, s.y, marker="o", color=colour, label=s.label)


def _draw_lines(data: ChartData) -> Figure:
    figure = Figure(figsize=(8, 4.8), layout="constrained")
    ax = figure.subplots()
    for s in data.series:
        _plot_line(ax, s)
    if data.log_x:
        # A 0-byte payload has no place on a log axis; symlog keeps it at the origin.
        positive = all(x > 0 for s in data.series for x in s.x)
        ax.set_xscale("log" if positive else "symlog")
        _plain_numbers(ax.xaxis)
    ax.set_ylim(0, 1)
    _label(ax, figure, data)
    return figure


def _draw_bars(data: ChartData) -> Figure:
    figure = Figure(figsize=(10, 4.8), layout="constrained")
    ax = figure.subplots()
    categories = data.series[0].x
    width = 0.8 / len(data.series)
    for i, s in enumerate(data.series):
        xs = [j + (i - (len(data.series) - 1) / 2) * width for j in range(len(categories))]
        bars = ax.bar(xs, s.y, width=width, label=s.label)
        ax.bar_label(bars, fmt="%.3g", fontsize="x-small")
    ax.set_xticks(range(len(categories)), categories, rotation=20, ha="right")
    _label(ax, figure, data)
    return figure


def _draw_stack(data: ChartData) -> Figure:
    categories = data.series[0].x
    figure = Figure(figsize=(max(8.0, 0.55 * len(categories) + 2), 5.5), layout="constrained")
    ax = figure.subplots()
    bottoms = [0.0] * len(categories)
    for s in data.series:
        ax.bar(categories, s.y, bottom=bottoms, label=s.label, color=SHARE_COLOURS[s.key])
        bottoms = [b + y for b, y in zip(bottoms, s.y, strict=True)]
    ax.set_ylim(0, 1)
    ax.set_xticks(range(len(categories)), categories, rotation=45, ha="right", fontsize="small")
    _label(ax, figure, data)
    # The bars fill the plot to 1.0: the legend goes beside it, not over the bars.
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def _draw_legs(data: ChartData) -> Figure:
    """Horizontal bars, one per path, its legs stacked left to right with the total at the end."""
    categories = data.series[0].x
    figure = Figure(figsize=(10, 0.55 * len(categories) + 2), layout="constrained")
    ax = figure.subplots()
    lefts = [0.0] * len(categories)
    for s in data.series:
        colour = LEG_COLOURS[int(s.key) % len(LEG_COLOURS)]
        ax.barh(categories, s.y, left=lefts, label=s.label, color=colour)
        lefts = [left + y for left, y in zip(lefts, s.y, strict=True)]
    for i, total in enumerate(lefts):
        ax.annotate(
            f"{total:.0f} B",
            (total, i),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize="small",
        )
    ax.invert_yaxis()  # the table's order, top to bottom
    ax.set_xlim(0, max(lefts, default=1) * 1.15)
    ax.set_xlabel(data.xlabel)
    # Beside the bars: inside, it would cover the longest path's total.
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(True, axis="x", alpha=0.3)
    figure.suptitle(data.title)
    return figure


def _draw_empty(data: ChartData) -> Figure:
    """A chart with no case measured (a live run without them) says so instead of failing."""
    figure = Figure(figsize=(8, 2), layout="constrained")
    ax = figure.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, "no case of this chart was measured in this run", ha="center", va="center")
    figure.suptitle(data.title)
    return figure


def _label(ax: Any, figure: Figure, data: ChartData) -> None:
    ax.set_xlabel(data.xlabel)
    ax.set_ylabel(data.ylabel)
    ax.legend(fontsize="small")
    ax.grid(True, axis="y", alpha=0.3)
    figure.suptitle(data.title)


DRAWERS = {
    "empty": _draw_empty,
    "legs": _draw_legs,
    "panels": _draw_panels,
    "lines": _draw_lines,
    "bar": _draw_bars,
    "stack": _draw_stack,
}
