"""The commands (typer): analyze, generate, capture, compare.

Each turns its options into values (analyzer/cli/arguments.py), runs a stage, and says what
happened through analyzer/cli/console.py.  Exit status 0 when the analysis ran (even with
anomalies), 2 with a one-line message on stderr for unusable input or arguments (DESIGN.md
section 5).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from analyzer.cli.arguments import (
    PresetsHelp,
    check_output,
    distinct_inputs,
    load_keylog,
    parse_filter,
    parse_ports,
    reading_passes,
    refuse_overwrite,
    require_live_extra,
)
from analyzer.cli.console import (
    deferred_console,
    fail,
    print_findings,
    say,
    shard_progress,
    warn,
    write_generated,
    write_report,
)
from analyzer.errors import UsageError, WireprobeError
from analyzer.options import AnalyzeOptions, DecodeOptions

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="What does one message really cost on the wire? Byte-exact accounting of HTTP/1.1, "
    "HTTP/2 and AMQP 0-9-1 traffic, with or without TLS.",
    pretty_exceptions_enable=False,
)


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
        target = check_output(output, captures, force)
        overrides = parse_ports(port or [])
        # Before expanding (which drops a repeated name in silence) and after (a file named and
        # also inside a directory given).
        named, repeated = distinct_inputs(captures)
        inputs, contained = distinct_inputs(expand(named))
        duplicates = repeated + contained
        options = AnalyzeOptions(
            decode=DecodeOptions(
                keylog=load_keylog(keylog or []),  # type: ignore[arg-type]
                port_overrides=overrides,
            ),
            transport_only=transport_only,
            select=parse_filter(filter_expr),
        )
        log = log_collector(fmt, messages, connection, top, options.select)
        collector = log or Collector(
            fmt,
            top=top,
            port_overrides=overrides,
            extra_findings=duplicates,
            transport_only=transport_only,
        )
        sharded = jobs is not None or cluster is not None
        # One progress display at a time: the shards' own line, else the bar of bytes read.
        with reading([] if sharded else inputs, passes=reading_passes(inputs)):
            analysis = analyze_inputs(
                inputs,
                options,
                jobs=jobs,
                cluster=cluster,
                on_record=collector.add,
                on_progress=shard_progress() if sharded and sys.stderr.isatty() else None,
                on_warning=lambda text: warn(text),
            )
    except WireprobeError as err:
        fail(str(err))
    if analysis.dropped is not None:
        say(analysis.dropped.sentence())
    if isinstance(collector, Collector):  # the message log (--messages) lists no findings
        print_findings(collector.findings(analysis), notes_too=fmt == "csv")
    render = collector.render
    write_report(target, lambda out: render(analysis, out))


@app.command(cls=PresetsHelp)
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
        targets = refuse_overwrite([output, keylog, truth], force)
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
    write_generated(targets, files)
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

    require_live_extra()
    from analyzer.live import LiveOptions, run_capture
    from analyzer.pipeline import analyze as run_analysis
    from analyzer.report.render import FORMATS, Collector

    try:
        if fmt not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        default_keys = output.with_suffix(".keys") if tls != "off" else None
        refuse_overwrite([output, keylog or default_keys], force)
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

    print_findings(collector.findings(analysis), notes_too=fmt == "csv")
    write_report(plan(None), lambda out: collector.render(analysis, out))


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
        require_live_extra()
    console, flush = deferred_console()
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
