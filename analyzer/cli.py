"""The command line (typer): the only place that prints or exits.

Exit status 0 when the analysis ran (even with anomalies), 2 with a one-line message on stderr
for unusable input or arguments (DESIGN.md section 5).  Never a traceback for bad input.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand

from analyzer.decoding.detect import REGISTRY
from analyzer.errors import UsageError, WireprobeError
from analyzer.options import AnalyzeOptions, DecodeOptions

if TYPE_CHECKING:
    from rich.console import Console

    from analyzer.filters import Filter
    from analyzer.pipeline import Analysis
    from analyzer.report.findings import Finding
    from analyzer.report.output import Target
    from analyzer.report.render import Collector
    from analyzer.shards import ShardProgress

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="What does one message really cost on the wire? Byte-exact accounting of HTTP/1.1, "
    "HTTP/2 and AMQP 0-9-1 traffic, with or without TLS.",
    pretty_exceptions_enable=False,
)

#: ``--port PROTO=PORT`` choices: every registered protocol (analyzer/decoding/detect.py).
PROTOCOLS = REGISTRY.names


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"wireprobe {version('wireprobe')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            from analyzer import __version__

            typer.echo(f"wireprobe {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """wireprobe: analyze captures, generate traffic with known cost, compare protocols."""


def warn(message: str, kind: str = "warning") -> None:
    """One line on stderr that does not end the run (the analysis ran: exit 0)."""
    say(f"{kind}: {message}")


def fail(message: str) -> NoReturn:
    """One line on stderr, exit status 2."""
    say(message)
    raise typer.Exit(2)


def say(message: str) -> None:
    """One line on stderr; file names and capture strings in it cannot drive the terminal."""
    from analyzer.report.escape import terminal

    typer.echo(f"wireprobe: {terminal(message)}", err=True)


def parse_ports(values: list[str]) -> dict[int, str]:
    """``--port PROTO=PORT`` values into port -> protocol."""
    out: dict[int, str] = {}
    for value in values:
        proto, sep, port = value.partition("=")
        if not sep or proto not in PROTOCOLS or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(
                f"--port wants PROTO=PORT with PROTO one of {', '.join(PROTOCOLS)}, got {value!r}"
            )
        out[int(port)] = proto
    return out


def _load_keylog(paths: list[Path]) -> object:
    from analyzer.tls.keylog import KeyLog

    keylog = KeyLog()
    for path in paths:
        skipped = keylog.skipped
        keylog.load(str(path))
        if keylog.skipped > skipped:
            # A count only: a malformed line may still hold a secret, so none is quoted.
            n = keylog.skipped - skipped
            say(f"warning: {path}: {n} malformed key log lines skipped")
    return keylog


def _check_output(output: Path | None, inputs: list[str], force: bool) -> Target:
    """Where the report goes, checked before the analysis runs (analyzer/report/output.py)."""
    from analyzer.report.output import plan

    target = plan(output, force=force)
    if target.path is not None and any(
        p != "-" and Path(p).resolve() == target.path for p in inputs
    ):
        raise UsageError(f"--output {target.name} is one of the input captures")
    return target


def _write_report(target: Target, write: Callable[[IO[str]], None]) -> None:
    """Write a report through the one output writer; a reader that left (``| head``) is no
    error, a full disk or a closed standard output is one line and exit 2."""
    from analyzer.report.output import ReaderGone, open_target

    try:
        with open_target(target, "w") as out:
            write(out)
    except ReaderGone:
        raise typer.Exit(0) from None
    except WireprobeError as err:
        fail(str(err))


@app.command()
def analyze(
    captures: Annotated[
        list[str],
        typer.Argument(
            help="pcap or pcapng files, gzip-compressed or not, analysed as one; '-' reads "
            "standard input. A file given twice is read once."
        ),
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="table, json, csv, markdown or html. CSV: one row per connection; its "
            "findings go to stderr.",
        ),
    ] = "table",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write the report to this file ('-': stdout). (default: stdout)"
        ),
    ] = None,
    keylog: Annotated[
        list[Path] | None,
        typer.Option(
            "--keylog",
            "-k",
            help="TLS key log (SSLKEYLOGFILE format); repeatable. (default: none; keys "
            "embedded in a pcapng are used anyway)",
        ),
    ] = None,
    port: Annotated[
        list[str] | None,
        typer.Option(
            "--port",
            help="PROTO=PORT: decode TCP port PORT as PROTO (http1, http2, amqp, tls); "
            "repeatable. (default: detect from content)",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite --output if it exists.")
    ] = False,
    transport_only: Annotated[
        bool,
        typer.Option(
            "--transport-only",
            help="Link/IP/TCP figures only (packets, bytes, retransmissions, gaps); skip "
            "application decoding.",
        ),
    ] = False,
    messages: Annotated[
        bool,
        typer.Option("--messages", help="One row per message (docs/message-log.md), any format."),
    ] = False,
    connection: Annotated[
        str | None,
        typer.Option(
            "--connection",
            help="Only this connection's messages (id or Community ID). (default: all)",
        ),
    ] = None,
    top: Annotated[
        int | None,
        typer.Option(
            "--top",
            min=0,
            help="List the N costliest connections (or messages). (default: 10 connections)",
        ),
    ] = None,
    filter_expr: Annotated[
        str | None,
        typer.Option(
            "--filter",
            help="BPF-like: host, port, net, src/dst, and/or/not, time, protocol. "
            "(default: everything)",
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            help="Shards on N worker processes (0: every core); same figures. "
            "(default: one process, no shards)",
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="Run the shards on a Dask scheduler, tcp://HOST:8786. (default: local)",
        ),
    ] = None,
) -> None:
    """Charge every byte of a capture to a layer and a message, and summarise per protocol.

    Warnings go to stderr, one line each; the exit status is 0 whenever the analysis ran.
    """
    from analyzer.capture.inputs import expand
    from analyzer.report.messagelog import log_collector
    from analyzer.report.progress import reading
    from analyzer.report.render import FORMATS, Collector
    from analyzer.shards import analyze_inputs

    try:
        if fmt not in (*FORMATS, "html", "jsonl"):
            formats = ", ".join((*FORMATS, "jsonl", "html"))
            raise UsageError(f"--format must be one of {formats}, not {fmt!r}")
        target = _check_output(output, captures, force)
        overrides = parse_ports(port or [])
        # Before expanding (which drops a repeated name in silence) and after (a file named and
        # also inside a directory given).
        named, repeated = _distinct_inputs(captures)
        inputs, contained = _distinct_inputs(expand(named))
        duplicates = repeated + contained
        options = AnalyzeOptions(
            decode=DecodeOptions(
                keylog=_load_keylog(keylog or []),  # type: ignore[arg-type]
                port_overrides=overrides,
            ),
            transport_only=transport_only,
            select=_parse_filter(filter_expr),
        )
        log = log_collector(fmt, messages, connection, top, options.select)
        collector = log or Collector(
            "json" if fmt == "html" else fmt,
            top=top,
            port_overrides=overrides,
            extra_findings=duplicates,
            transport_only=transport_only,
        )
        sharded = jobs is not None or cluster is not None
        # One progress display at a time: the shards' own line, else the bar of bytes read.
        with reading([] if sharded else inputs, passes=_reading_passes(inputs)):
            analysis = analyze_inputs(
                inputs,
                options,
                jobs=jobs,
                cluster=cluster,
                on_record=collector.add,
                on_progress=_shard_progress() if sharded and sys.stderr.isatty() else None,
                on_warning=lambda text: warn(text),
            )
    except WireprobeError as err:
        fail(str(err))
    if analysis.dropped is not None:
        say(analysis.dropped.sentence())
    if isinstance(collector, Collector):  # the message log (--messages) lists no findings
        _print_findings(collector.findings(analysis), notes_too=fmt == "csv")
    render = _html_renderer(collector) if fmt == "html" else collector.render  # type: ignore[arg-type]
    _write_report(target, lambda out: render(analysis, out))


def _distinct_inputs(captures: list[str]) -> tuple[list[str], list[Finding]]:
    """The inputs to read, and a warning for each one dropped as a repeat of an earlier one."""
    from analyzer.capture.duplicates import distinct
    from analyzer.report.findings import WARNING, Finding

    kept, dropped = distinct(captures)
    return kept, [
        Finding(
            name="input.duplicate",
            severity=WARNING,
            count=1,
            message=(
                f"{d.path} was given twice"
                if d.path == d.same_as
                else f"{d.path} is {d.how} as {d.same_as}"
            )
            + ": read once (read twice, every packet would count as a retransmission)",
        )
        for d in dropped
    ]


def _print_findings(findings: list[Finding], *, notes_too: bool) -> None:
    """Warnings on stderr, one line each (every format); notes too where the report has no
    place for them (CSV: a row per connection)."""
    from analyzer.report.findings import WARNING

    for finding in findings:
        if finding.severity == WARNING or notes_too:
            warn(finding.message, finding.severity)


def _reading_passes(inputs: list[str]) -> int:
    """Times the inputs are read in one process: several files are surveyed (read through once
    to order them in time, analyzer/capture/inputs.py) before they are analysed."""
    return 2 if len(inputs) > 1 and "-" not in inputs else 1


def _parse_filter(expression: str | None) -> Filter | None:
    from analyzer.filters import parse_filter

    return None if expression is None else parse_filter(expression)


def _shard_progress() -> Callable[[ShardProgress], None]:
    """A progress line on stderr (a terminal only), rewritten as each shard finishes."""

    def show(p: ShardProgress) -> None:
        mib = 1 << 20
        end = "\n" if p.shards_done == p.shards else ""
        sys.stderr.write(
            f"\rwireprobe: {p.fraction:4.0%}: {p.bytes_read / mib:,.0f} of "
            f"{p.input_bytes / mib:,.0f} MiB read by {p.shards} shards, {p.shards_done} done "
            f"({p.packets_done:,} packets){end}"
        )
        sys.stderr.flush()

    return show


def _html_renderer(collector: Collector) -> Callable[[Analysis, IO[str]], None]:
    """The HTML report of a capture: the analysis JSON, drawn by the comparison's renderer."""

    def render(analysis: Analysis, out: IO[str]) -> None:
        import io
        import json

        from analyzer.compare import render_capture_html

        buffer = io.StringIO()
        collector.render(analysis, buffer)
        out.write(render_capture_html(json.loads(buffer.getvalue())))

    return render


def _refuse_overwrite(paths: list[Path | None], force: bool) -> list[Target]:
    """Each output checked before the work starts (analyzer/report/output.py: devices and FIFOs need
    no --force, an existing regular file does)."""
    from analyzer.report.output import plan

    targets = [plan(path, force=force) for path in paths if path is not None]
    files = [t.path for t in targets if t.path is not None]
    if len(set(files)) < len(files):
        raise UsageError("two outputs name the same file")
    return targets


def _write_generated(targets: list[Target], files: list[bytes]) -> None:
    """The pcap, key log and truth complete in place, or none of them cut (issue 15)."""
    from analyzer.report.output import ReaderGone, write_all

    try:
        write_all(list(zip(targets, files, strict=True)))
    except ReaderGone:
        raise typer.Exit(0) from None
    except WireprobeError as err:
        fail(str(err))


class _PresetsHelp(TyperCommand):
    """``generate --help`` lists the presets, read when help is asked for: importing the
    generator costs 0.2 s that every other command would otherwise pay at start-up."""

    def format_help(self, ctx: Any, formatter: Any) -> None:  # click's types, vendored by typer
        from analyzer.synth import PRESETS

        lines = [f"{name}: {_describe(scenario)}" for name, scenario in sorted(PRESETS.items())]
        self.epilog = "Presets (--preset NAME):\n\n" + "\n\n".join(lines)
        super().format_help(ctx, formatter)


def _describe(scenario: object) -> str:
    """The fields of a preset that differ from the defaults, as the options that set them."""
    from dataclasses import fields

    from analyzer.synth import Scenario

    default = Scenario()
    given = [
        f"--{f.name.replace('_', '-')} {getattr(scenario, f.name)}"
        for f in fields(Scenario)
        if f.name == "protocol" or getattr(scenario, f.name) != getattr(default, f.name)
    ]
    return " ".join(given).replace("--resume True", "--resume")


@app.command(cls=_PresetsHelp)
def generate(
    output: Annotated[Path, typer.Option("--output", "-o", help="pcap file to write.")],
    preset: Annotated[
        str | None,
        typer.Option(
            help="A named scenario (listed below); the other options override its fields. "
            "(default: none, each option's own default)"
        ),
    ] = None,
    protocol: Annotated[
        str | None,
        typer.Option(help="http1, http2, amqp, mqtt or websocket. (default: http1)"),
    ] = None,
    tls: Annotated[str | None, typer.Option(help="off, 1.2 or 1.3. (default: off)")] = None,
    messages: Annotated[
        int | None, typer.Option(help="Messages in all connections together. (default: 10)")
    ] = None,
    per_connection: Annotated[
        int | None,
        typer.Option(
            help="A new connection every K messages (1 = no reuse). (default: all on one)"
        ),
    ] = None,
    payload: Annotated[
        int | None, typer.Option(help="Body bytes per message. (default: 100)")
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(help="Concurrent HTTP/2 streams or pipelined HTTP/1.1 requests. (default: 1)"),
    ] = None,
    amqp_mode: Annotated[
        str | None,
        typer.Option(help="publish, confirm, confirm-async or consume. (default: confirm)"),
    ] = None,
    mqtt_qos: Annotated[
        int | None, typer.Option(help="MQTT QoS of each PUBLISH: 0, 1, 2. (default: 1)")
    ] = None,
    resume: Annotated[
        bool | None,
        typer.Option("--resume", help="Reconnects resume the TLS session. (default: off)"),
    ] = None,
    mtu: Annotated[
        int | None, typer.Option(help="IP MTU of the path, in bytes. (default: 1500)")
    ] = None,
    rtt_ms: Annotated[
        float | None, typer.Option(help="Round-trip time, in milliseconds. (default: 10)")
    ] = None,
    loss: Annotated[
        float | None,
        typer.Option(help="Probability (0 to 0.5) a data segment is lost (seeded). (default: 0)"),
    ] = None,
    reorder: Annotated[
        float | None,
        typer.Option(
            help="Probability (0 to 0.5) a data segment is reordered (seeded). (default: 0)"
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed for payloads, loss and reordering. (default: 0)")
    ] = None,
    keylog: Annotated[
        Path | None,
        typer.Option("--keylog", help="Write the TLS key log here. (default: not written)"),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option("--truth", help="Write the ground truth JSON here. (default: not written)"),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Synthetic traffic with known ground truth: real protocol bytes, a simulated network."""
    from analyzer.report.escape import terminal
    from analyzer.report.progress import working
    from analyzer.synth import Scenario
    from analyzer.synth import generate as run_generate
    from analyzer.synth import preset as named

    given = {
        "protocol": protocol,
        "tls": tls,
        "messages": messages,
        "per_connection": per_connection,
        "payload": payload,
        "concurrency": concurrency,
        "amqp_mode": amqp_mode,
        "mqtt_qos": mqtt_qos,
        "resume": resume,
        "mtu": mtu,
        "rtt_ms": rtt_ms,
        "loss": loss,
        "reorder": reorder,
        "seed": seed,
    }
    fields = {k: v for k, v in given.items() if v is not None}
    try:
        targets = _refuse_overwrite([output, keylog, truth], force)
        scenario = named(preset, **fields) if preset else Scenario(**fields)  # type: ignore[arg-type]
        if keylog is not None and scenario.tls == "off":
            raise UsageError("--keylog needs --tls 1.2 or 1.3")
        with working(f"generating {scenario.messages:,} messages"):
            result = run_generate(scenario.validate())
    except WireprobeError as err:
        fail(str(err))
    files = [result.pcap()]
    if keylog is not None:
        files.append((result.keylog or "").encode())
    if truth is not None:
        # The same text as Generated.write (analyzer/synth), through the one output writer.
        files.append((json.dumps(result.truth, indent=2, sort_keys=True) + "\n").encode())
    _write_generated(targets, files)
    conns = result.truth.get("connections", [])
    typer.echo(
        f"wrote {terminal(output)}: {len(result.frames)} packets, "
        f"{len(conns) if isinstance(conns, list) else '?'} connections, "
        f"{scenario.messages} messages",
        err=str(output) == "-",  # the pcap itself went to stdout: keep the stream clean
    )


@app.command()
def capture(
    output: Annotated[Path, typer.Option("--output", "-o", help="pcap file to write.")],
    protocol: Annotated[
        str, typer.Option(help="http1, http2, amqp, mqtt, nats or websocket.")
    ] = "http1",
    tls: Annotated[str, typer.Option(help="off, 1.2 or 1.3 (HTTP only).")] = "off",
    messages: Annotated[int, typer.Option(help="Messages in all connections together.")] = 10,
    per_connection: Annotated[
        int | None,
        typer.Option(
            help="A new connection every K messages (1 = no reuse). (default: all on one)"
        ),
    ] = None,
    payload: Annotated[int, typer.Option(help="Body bytes per message.")] = 100,
    concurrency: Annotated[
        int, typer.Option(help="HTTP requests in flight (HTTP/2 streams, HTTP/1.1 connections).")
    ] = 1,
    amqp_mode: Annotated[
        str | None, typer.Option(help="publish, confirm or consume. (default: confirm)")
    ] = None,
    amqp_url: Annotated[str, typer.Option(help="The AMQP broker's URL.")] = (
        "amqp://guest:guest@127.0.0.1:5672/"
    ),
    mqtt_qos: Annotated[
        int | None, typer.Option(help="MQTT QoS of each PUBLISH: 0, 1, 2. (default: 1)")
    ] = None,
    mqtt_version: Annotated[
        int, typer.Option(help="MQTT 4 (3.1.1) or 5 (subscribes to its own topic, aliases it).")
    ] = 4,
    mqtt_broker: Annotated[str, typer.Option(help="The MQTT broker, HOST:PORT.")] = (
        "127.0.0.1:1883"
    ),
    nats_server: Annotated[str, typer.Option(help="nats-server, HOST:PORT.")] = "127.0.0.1:4222",
    mtu: Annotated[
        int | None,
        typer.Option(
            help="IP MTU in bytes, e.g. 1500: the client in a network namespace behind a veth "
            "pair (root). (default: loopback's 65536)"
        ),
    ] = None,
    keylog: Annotated[
        Path | None, typer.Option("--keylog", help="TLS key log to write. (default: OUTPUT.keys)")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="table, json, csv or markdown.")
    ] = "table",
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Real peers (hypercorn + httpx, pika + RabbitMQ) on loopback, recorded, then analysed."""
    from analyzer.report.escape import terminal
    from analyzer.tls.keylog import KeyLog

    _require_live_extra()
    from analyzer.live import LiveOptions, run_capture
    from analyzer.pipeline import analyze as run_analysis
    from analyzer.report.render import FORMATS, Collector

    try:
        if fmt not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        default_keys = output.with_suffix(".keys") if tls != "off" else None
        _refuse_overwrite([output, keylog or default_keys], force)
        options = LiveOptions(
            protocol=protocol,
            tls=tls,
            messages=messages,
            per_connection=per_connection,
            payload=payload,
            concurrency=concurrency,
            amqp_mode=amqp_mode,
            amqp_url=amqp_url,
            mqtt_qos=mqtt_qos,
            mqtt_version=mqtt_version,
            mqtt_broker=mqtt_broker,
            nats_server=nats_server,
            mtu=mtu,
            output=output,
            keylog=keylog,
        )
        result = run_capture(options)
        keys = KeyLog()
        if result.keylog is not None:
            keys.load(str(result.keylog))
        collector = Collector(fmt)
        analysis = run_analysis(
            [str(result.pcap)],
            AnalyzeOptions(decode=DecodeOptions(keylog=keys)),
            on_record=collector.add,
        )
    except WireprobeError as err:
        fail(str(err))
    typer.echo(
        f"recorded {terminal(result.pcap)}: {result.packets} packets, "
        f"{len(result.clients)} connections, {len(result.sent)} messages",
        err=True,
    )
    if result.dropped_packets or result.unclosed:
        typer.echo(
            f"wireprobe: warning: {result.dropped_packets} packets dropped, "
            f"{len(result.unclosed)} connections not seen closing",
            err=True,
        )
    from analyzer.report.output import plan

    _print_findings(collector.findings(analysis), notes_too=fmt == "csv")
    _write_report(plan(None), lambda out: collector.render(analysis, out))


#: The modules of the ``live`` extra (pyproject.toml) that ``wireprobe capture`` runs.
LIVE_MODULES = ("hypercorn", "httpx", "pika", "paho.mqtt", "nats", "websockets")


def _require_live_extra() -> None:
    """One line saying what to install, instead of a ModuleNotFoundError from deep inside."""
    import importlib

    for name in LIVE_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            fail(
                f"wireprobe capture needs the live extra ({name} is missing): "
                "pip install 'wireprobe[live]'"
            )


@app.command()
def compare(
    messages: Annotated[
        int, typer.Option(help="Messages in each scenario (caps messages per connection).")
    ] = 200,
    payload: Annotated[
        list[int] | None,
        typer.Option(
            help="Payload size in bytes; repeat for several. (default: 16, 1024 and 65536)"
        ),
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live", help="Record real peers instead of generating (needs the live extra)."
        ),
    ] = False,
    output_dir: Annotated[
        Path, typer.Option("--output-dir", help="Directory the report is written to.")
    ] = Path("wireprobe-report"),
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a non-empty output directory.")
    ] = False,
) -> None:
    """REST calls against a message queue, measured: tables, charts and claims."""
    from analyzer.compare.command import compare_command
    from analyzer.compare.matrix import DEFAULT_PAYLOADS
    from analyzer.report.progress import working

    if live:
        _require_live_extra()
    console, flush = _deferred_console()
    try:
        with working("comparing: generating and analysing the scenarios"):
            compare_command(
                messages=messages,
                payloads=tuple(payload) if payload else DEFAULT_PAYLOADS,
                live=live,
                output_dir=output_dir,
                force=force,
                console=console,
            )
    except WireprobeError as err:
        fail(str(err))
    flush()


def _deferred_console() -> tuple[Console, Callable[[], None]]:
    """A console for compare's tables, and how to show them: held back while a progress
    display runs on the same terminal (the two would overwrite each other), printed after."""
    import io

    from rich.console import Console

    from analyzer.report.progress import stderr_is_terminal

    if not stderr_is_terminal():
        return Console(), lambda: None
    buffer = io.StringIO()
    terminal = Console()
    held = Console(
        file=buffer,
        width=terminal.width,
        force_terminal=terminal.is_terminal,
        color_system=terminal.color_system,  # type: ignore[arg-type]
    )

    def flush() -> None:
        from analyzer.report.output import plan

        _write_report(plan(None), lambda out: print(buffer.getvalue(), end="", file=out))

    return held, flush


#: Signals that end a run like Ctrl-C does: partial files removed, exit 128 + the signal's
#: number (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP), as a shell reports a killed job.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
#: Exit status of a run stopped by SIGINT (Ctrl-C): 128 + 2.
INTERRUPTED_EXIT = 128 + signal.SIGINT
#: Exit status when wireprobe itself is wrong (sysexits.h EX_SOFTWARE): not 2, so a test that
#: accepts "bad input" (2) still catches a crash, and still no traceback for the user.
INTERNAL_ERROR_EXIT = 70
#: Set to show the traceback of an internal error instead of its one line.
DEBUG_ENV = "WIREPROBE_DEBUG"


class _Stopped(BaseException):
    """Raised by the handler of a stop signal, so every ``finally`` and ``with`` unwinds (the
    output writer removes its temporary file) exactly as for KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_stop_signal(cli_pid: int, signum: int, _frame: object) -> None:
    if os.getpid() != cli_pid:
        # A forked --jobs worker inherited this handler: die of the signal as it would have,
        # silently, instead of unwinding a shard (its pool stops it with SIGTERM on a failure).
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise _Stopped(signum)


def _install_stop_handlers() -> None:
    # The handler knows which process is the CLI's own, so a forked worker can tell it is not.
    handler = functools.partial(_on_stop_signal, os.getpid())
    for signum in STOP_SIGNALS:
        # A signal the caller ignores stays ignored (``nohup wireprobe ...`` keeps SIGHUP off).
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, handler)


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


def run(argv: list[str] | None = None) -> int:
    """The command line with every error as one line on stderr; returns the exit status."""
    _install_stop_handlers()
    try:
        status = app(args=argv, standalone_mode=False)
    except KeyboardInterrupt:
        status = INTERRUPTED_EXIT
    except _Stopped as stop:
        say(f"stopped by {signal.Signals(stop.signum).name}")
        return 128 + stop.signum
    except typer.TyperException as err:
        return _usage_error(err)
    except typer.Abort:
        status = INTERRUPTED_EXIT
    except BrokenPipeError:
        from analyzer.report.output import silence_stdout

        silence_stdout()  # `wireprobe ... | head`: the reader left; nothing to report
        return 0
    except WireprobeError as err:
        say(str(err))
        return 2
    except MemoryError:
        say("out of memory")
        return 2
    except OSError as err:
        # An I/O failure no stage turned into a WireprobeError: a full disk under a temporary
        # spool, a vanished file.  The operator's problem, not a bug: one line, exit 2.
        say(_os_error_line(err))
        return 2
    except Exception as err:
        if os.environ.get(DEBUG_ENV):
            raise
        say(
            f"internal error: {type(err).__name__}: {err} (a bug in wireprobe; "
            f"{DEBUG_ENV}=1 shows the traceback)"
        )
        return INTERNAL_ERROR_EXIT
    if status == INTERRUPTED_EXIT:
        say("interrupted")
    return status if isinstance(status, int) else 0


#: errno values that mean "the disk (or the file size limit) is full".
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def _os_error_line(err: OSError) -> str:
    where = f"{err.filename}: " if err.filename else ""
    if err.errno in DISK_FULL_ERRNOS and not err.filename:
        # An anonymous file: the JSON/CSV spool (tempfile, under TMPDIR) is the only one.
        where = "cannot write the temporary spool (TMPDIR): "
    return f"{where}{err.strerror or err}"


def _usage_error(err: typer.TyperException) -> int:
    """A typer/click usage error as one line, not the boxed panel."""
    from typer._click.exceptions import NoArgsIsHelpError

    if isinstance(err, NoArgsIsHelpError):
        err.show()  # bare `wireprobe`: the help, as before
        return 2
    message = " ".join(err.format_message().split())
    ctx = getattr(err, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    say(f"{message}{hint}")
    return 2


if __name__ == "__main__":
    main()
