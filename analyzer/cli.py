"""The command line (typer): the only place that prints or exits.

Exit status 0 when the analysis ran (even with anomalies), 2 with a one-line message on stderr
for unusable input or arguments (DESIGN.md section 5).  Never a traceback for bad input.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from analyzer.errors import UsageError, WireprobeError
from analyzer.options import AnalyzeOptions, DecodeOptions

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
        str, typer.Option("--format", "-f", help="table, json, csv or markdown.")
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
) -> None:
    """Charge every byte of a capture to a layer and a message, and summarise per protocol."""
    from analyzer.pipeline import analyze as run_analysis
    from analyzer.report import FORMATS, Collector

    try:
        if fmt not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        _check_output(output, captures, force)
        options = AnalyzeOptions(
            decode=DecodeOptions(
                keylog=_load_keylog(keylog or []),  # type: ignore[arg-type]
                port_overrides=parse_ports(port or []),
            )
        )
        collector = Collector(fmt)
        analysis = run_analysis(captures, options, on_record=collector.add)
    except WireprobeError as err:
        fail(str(err))
    if output is None:
        collector.render(analysis, sys.stdout)
        return
    tmp = output.with_name(output.name + ".partial")
    with open(tmp, "w", encoding="utf-8", newline="") as out:
        collector.render(analysis, out)
    os.replace(tmp, output)


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
