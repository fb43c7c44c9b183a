"""The command line (typer): the only place that prints or exits.

Exit status 0 when the analysis ran (even with anomalies), 2 with a one-line message on stderr
for unusable input or arguments (DESIGN.md section 5).  Never a traceback for bad input.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, NoReturn

import typer

from analyzer.errors import UsageError, WireprobeError
from analyzer.options import AnalyzeOptions, DecodeOptions

if TYPE_CHECKING:
    from analyzer.filters import Filter
    from analyzer.pipeline import Analysis
    from analyzer.report import Collector
    from analyzer.shards import ShardProgress

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="What does one message really cost on the wire? Byte-exact accounting of HTTP/1.1, "
    "HTTP/2 and AMQP 0-9-1 traffic, with or without TLS.",
    pretty_exceptions_enable=False,
)

PROTOCOLS = ("http1", "http2", "amqp", "tls")


@app.callback()
def _root() -> None:
    """wireprobe: analyze captures, generate traffic with known cost, compare protocols."""


def fail(message: str) -> NoReturn:
    """One line on stderr, exit status 2."""
    typer.echo(f"wireprobe: {message}", err=True)
    raise typer.Exit(2)


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
    from analyzer.keylog import KeyLog

    keylog = KeyLog()
    for path in paths:
        keylog.load(str(path))
    return keylog


def _check_output(output: Path | None, inputs: list[str], force: bool) -> None:
    if output is None:
        return
    if output.is_dir():
        raise UsageError(f"--output {output} is a directory; name a file")
    resolved = output.resolve()
    if any(p != "-" and Path(p).resolve() == resolved for p in inputs):
        raise UsageError(f"--output {output} is one of the input captures")
    if output.exists() and not force:
        raise UsageError(f"{output} exists; add --force to overwrite it")
    if not output.parent.exists():
        raise UsageError(f"{output.parent} does not exist")


@app.command()
def analyze(
    captures: Annotated[
        list[str], typer.Argument(help="pcap or pcapng files (gzip too); '-' reads stdin.")
    ],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="table, json, csv, markdown or html.")
    ] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    keylog: Annotated[
        list[Path] | None,
        typer.Option("--keylog", "-k", help="TLS key log (SSLKEYLOGFILE format); repeatable."),
    ] = None,
    port: Annotated[
        list[str] | None,
        typer.Option("--port", help="PROTO=PORT: decode that port as PROTO; repeatable."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --output.")] = False,
    transport_only: Annotated[
        bool,
        typer.Option(
            "--transport-only", help="Link/IP/TCP figures only; skip application decoding."
        ),
    ] = False,
    messages: Annotated[
        bool,
        typer.Option("--messages", help="One row per message (docs/message-log.md), any format."),
    ] = False,
    connection: Annotated[
        str | None,
        typer.Option("--connection", help="Only this connection's messages (id or community id)."),
    ] = None,
    top: Annotated[
        int | None,
        typer.Option("--top", min=0, help="List the N costliest connections (or messages)."),
    ] = None,
    filter_expr: Annotated[
        str | None,
        typer.Option(
            "--filter", help="BPF-like: host, port, net, src/dst, and/or/not, time, protocol."
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs", "-j", help="Shards on N worker processes (0: every core); same figures."
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option("--cluster", help="Run the shards on a Dask scheduler, tcp://HOST:8786."),
    ] = None,
) -> None:
    """Charge every byte of a capture to a layer and a message, and summarise per protocol."""
    from analyzer.messagelog import log_collector
    from analyzer.report import FORMATS, Collector
    from analyzer.shards import analyze_inputs

    if output is not None and str(output) == "-":
        output = None  # tcpdump's and curl's convention: "-" is standard output
    try:
        if fmt not in (*FORMATS, "html", "jsonl"):
            formats = ", ".join((*FORMATS, "jsonl", "html"))
            raise UsageError(f"--format must be one of {formats}, not {fmt!r}")
        _check_output(output, captures, force)
        options = AnalyzeOptions(
            decode=DecodeOptions(
                keylog=_load_keylog(keylog or []),  # type: ignore[arg-type]
                port_overrides=parse_ports(port or []),
            ),
            transport_only=transport_only,
            select=_parse_filter(filter_expr),
        )
        log = log_collector(fmt, messages, connection, top, options.select)
        collector = log or Collector("json" if fmt == "html" else fmt, top=top)
        analysis = analyze_inputs(
            captures,
            options,
            jobs=jobs,
            cluster=cluster,
            on_record=collector.add,
            on_progress=_shard_progress() if sys.stderr.isatty() else None,
            on_warning=lambda text: typer.echo(f"wireprobe: warning: {text}", err=True),
        )
    except WireprobeError as err:
        fail(str(err))
    if analysis.dropped is not None:
        typer.echo(f"wireprobe: {analysis.dropped.sentence()}", err=True)
    render = _html_renderer(collector) if fmt == "html" else collector.render  # type: ignore[arg-type]
    if output is None:
        _to_stdout(lambda out: render(analysis, out))
        return
    tmp = output.with_name(output.name + ".partial")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as out:
            render(analysis, out)
        os.replace(tmp, output)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        fail(f"cannot write {output}: {err.strerror or err}")


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


def _to_stdout(write: Callable[[IO[str]], None]) -> None:
    """Write a report to stdout; a reader that left (``| head``) is no error, a full disk is."""
    try:
        write(sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would complain again while flushing at exit: point stdout at nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except OSError as err:
        fail(f"cannot write the report: {err.strerror or err}")


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


def _refuse_overwrite(paths: list[Path | None], force: bool) -> None:
    for path in paths:
        if path is None:
            continue
        if path.exists() and not force:
            raise UsageError(f"{path} exists; add --force to overwrite it")
        if not path.resolve().parent.exists():
            raise UsageError(f"{path.parent} does not exist")


@app.command()
def generate(
    output: Annotated[Path, typer.Option("--output", "-o", help="pcap to write.")],
    preset: Annotated[
        str | None, typer.Option(help="A named scenario; other options override its fields.")
    ] = None,
    protocol: Annotated[str | None, typer.Option(help="http1, http2 or amqp.")] = None,
    tls: Annotated[str | None, typer.Option(help="off, 1.2 or 1.3.")] = None,
    messages: Annotated[int | None, typer.Option(help="Messages in all.")] = None,
    per_connection: Annotated[
        int | None, typer.Option(help="A new connection every K messages (1 = no reuse).")
    ] = None,
    payload: Annotated[int | None, typer.Option(help="Body bytes per message.")] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Concurrent HTTP/2 streams or pipelined HTTP/1.1.")
    ] = None,
    amqp_mode: Annotated[
        str | None, typer.Option(help="publish, confirm, confirm-async or consume.")
    ] = None,
    resume: Annotated[
        bool | None, typer.Option("--resume", help="Reconnects resume the TLS session.")
    ] = None,
    mtu: Annotated[int | None, typer.Option(help="IP MTU of the path (default 1500).")] = None,
    rtt_ms: Annotated[float | None, typer.Option(help="Round-trip time (default 10).")] = None,
    loss: Annotated[
        float | None, typer.Option(help="Probability a data segment is lost (seeded).")
    ] = None,
    reorder: Annotated[
        float | None, typer.Option(help="Probability a data segment is reordered (seeded).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for loss and reordering.")] = None,
    keylog: Annotated[
        Path | None, typer.Option("--keylog", help="Write the TLS key log here.")
    ] = None,
    truth: Annotated[
        Path | None, typer.Option("--truth", help="Write the ground truth JSON here.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Synthetic traffic with known ground truth: real protocol bytes, a simulated network."""
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
        "resume": resume,
        "mtu": mtu,
        "rtt_ms": rtt_ms,
        "loss": loss,
        "reorder": reorder,
        "seed": seed,
    }
    fields = {k: v for k, v in given.items() if v is not None}
    try:
        _refuse_overwrite([output, keylog, truth], force)
        scenario = named(preset, **fields) if preset else Scenario(**fields)  # type: ignore[arg-type]
        if keylog is not None and scenario.tls == "off":
            raise UsageError("--keylog needs --tls 1.2 or 1.3")
        result = run_generate(scenario.validate())
    except WireprobeError as err:
        fail(str(err))
    result.write(output, keylog, truth)
    conns = result.truth.get("connections", [])
    typer.echo(
        f"wrote {output}: {len(result.frames)} packets, "
        f"{len(conns) if isinstance(conns, list) else '?'} connections, "
        f"{scenario.messages} messages"
    )


@app.command()
def capture(
    output: Annotated[Path, typer.Option("--output", "-o", help="pcap to write.")],
    protocol: Annotated[str, typer.Option(help="http1, http2 or amqp.")] = "http1",
    tls: Annotated[str, typer.Option(help="off, 1.2 or 1.3 (HTTP only).")] = "off",
    messages: Annotated[int, typer.Option(help="Messages in all.")] = 10,
    per_connection: Annotated[
        int | None, typer.Option(help="A new connection every K messages (1 = no reuse).")
    ] = None,
    payload: Annotated[int, typer.Option(help="Body bytes per message.")] = 100,
    concurrency: Annotated[
        int, typer.Option(help="HTTP requests in flight (HTTP/2 streams, HTTP/1.1 connections).")
    ] = 1,
    amqp_mode: Annotated[
        str | None, typer.Option(help="publish, confirm (default) or consume.")
    ] = None,
    amqp_url: Annotated[
        str, typer.Option(help="The broker.")
    ] = "amqp://guest:guest@127.0.0.1:5672/",
    mtu: Annotated[
        int | None,
        typer.Option(help="1500: the client in a network namespace behind a veth pair (root)."),
    ] = None,
    keylog: Annotated[
        Path | None, typer.Option("--keylog", help="TLS key log (default: OUTPUT.keys).")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="table, json, csv or markdown.")
    ] = "table",
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Real peers (hypercorn + httpx, pika + RabbitMQ) on loopback, recorded, then analysed."""
    from analyzer.keylog import KeyLog
    from analyzer.live import LiveOptions, run_capture
    from analyzer.pipeline import analyze as run_analysis
    from analyzer.report import FORMATS, Collector

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
        f"recorded {result.pcap}: {result.packets} packets, {len(result.clients)} connections, "
        f"{len(result.sent)} messages",
        err=True,
    )
    if result.dropped_packets or result.unclosed:
        typer.echo(
            f"wireprobe: warning: {result.dropped_packets} packets dropped, "
            f"{len(result.unclosed)} connections not seen closing",
            err=True,
        )
    collector.render(analysis, sys.stdout)


@app.command()
def compare(
    messages: Annotated[
        int, typer.Option(help="Messages in each scenario (caps messages per connection).")
    ] = 200,
    payload: Annotated[
        list[int] | None, typer.Option(help="Payload size in bytes; repeat for several.")
    ] = None,
    live: Annotated[
        bool, typer.Option("--live", help="Record real peers instead of generating.")
    ] = False,
    output_dir: Annotated[Path, typer.Option("--output-dir", help="Where the report goes.")] = Path(
        "wireprobe-report"
    ),
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a non-empty output directory.")
    ] = False,
) -> None:
    """REST calls against a message queue, measured: tables, charts and claims."""
    from rich.console import Console

    from analyzer.compare.command import compare_command
    from analyzer.compare.matrix import DEFAULT_PAYLOADS

    try:
        compare_command(
            messages=messages,
            payloads=tuple(payload) if payload else DEFAULT_PAYLOADS,
            live=live,
            output_dir=output_dir,
            force=force,
            console=Console(),
        )
    except WireprobeError as err:
        fail(str(err))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("wireprobe: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        # `wireprobe analyze x.pcap | head`: the reader left; nothing to report.
        sys.stderr.close()
        sys.exit(0)


if __name__ == "__main__":
    main()
