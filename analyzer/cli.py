"""The command line (typer): the only place that prints or exits.

Exit status 0 when the analysis ran (even with anomalies), 2 with a one-line message on stderr
for unusable input or arguments (DESIGN.md section 5).  Never a traceback for bad input.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand

from analyzer.errors import UsageError, WireprobeError
from analyzer.options import AnalyzeOptions, DecodeOptions

if TYPE_CHECKING:
    from rich.console import Console

    from analyzer.findings import Finding
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
    typer.echo(f"wireprobe: {kind}: {message}", err=True)


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
    from analyzer.inputs import expand
    from analyzer.progress import reading
    from analyzer.report import FORMATS, Collector
    from analyzer.shards import analyze_inputs

    if output is not None and str(output) == "-":
        output = None  # tcpdump's and curl's convention: "-" is standard output
    try:
        if fmt not in (*FORMATS, "html"):
            formats = ", ".join((*FORMATS, "html"))
            raise UsageError(f"--format must be one of {formats}, not {fmt!r}")
        _check_output(output, captures, force)
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
        )
        collector = Collector(
            "json" if fmt == "html" else fmt,
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
    _print_findings(collector.findings(analysis), notes_too=fmt == "csv")
    render = _html_renderer(collector) if fmt == "html" else collector.render
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


def _distinct_inputs(captures: list[str]) -> tuple[list[str], list[Finding]]:
    """The inputs to read, and a warning for each one dropped as a repeat of an earlier one."""
    from analyzer.duplicates import distinct
    from analyzer.findings import WARNING, Finding

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
    from analyzer.findings import WARNING

    for finding in findings:
        if finding.severity == WARNING or notes_too:
            warn(finding.message, finding.severity)


def _reading_passes(inputs: list[str]) -> int:
    """Times the inputs are read in one process: several files are surveyed (read through once
    to order them in time, analyzer/inputs.py) before they are analysed."""
    return 2 if len(inputs) > 1 and "-" not in inputs else 1


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
        str | None, typer.Option(help="http1, http2 or amqp. (default: http1)")
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
    from analyzer.progress import working
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
        with working(f"generating {scenario.messages:,} messages"):
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
    output: Annotated[Path, typer.Option("--output", "-o", help="pcap file to write.")],
    protocol: Annotated[str, typer.Option(help="http1, http2 or amqp.")] = "http1",
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
    amqp_url: Annotated[str, typer.Option(help="The broker's URL.")] = (
        "amqp://guest:guest@127.0.0.1:5672/"
    ),
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
    from analyzer.keylog import KeyLog

    _require_live_extra()
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
    _print_findings(collector.findings(analysis), notes_too=fmt == "csv")
    collector.render(analysis, sys.stdout)


#: The modules of the ``live`` extra (pyproject.toml) that ``wireprobe capture`` runs.
LIVE_MODULES = ("hypercorn", "httpx", "pika")


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
    from analyzer.progress import working

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

    from analyzer.progress import stderr_is_terminal

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
        _to_stdout(lambda out: print(buffer.getvalue(), end="", file=out))

    return held, flush


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
