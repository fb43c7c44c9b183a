"""What the command line says: one line on stderr per warning or error, the report through the one
output writer, progress on a terminal.  Only the cli package prints or exits (DESIGN.md section 6).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, NoReturn

import typer

from analyzer.errors import WireprobeError

if TYPE_CHECKING:
    from rich.console import Console

    from analyzer.report.findings import Finding
    from analyzer.report.output import Target
    from analyzer.shards import ShardProgress


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


def write_report(target: Target, write: Callable[[IO[str]], None]) -> None:
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


def print_findings(findings: list[Finding], *, notes_too: bool) -> None:
    """Warnings on stderr, one line each (every format); notes too where the report has no
    place for them (CSV: a row per connection)."""
    from analyzer.report.findings import WARNING

    for finding in findings:
        if finding.severity == WARNING or notes_too:
            warn(finding.message, finding.severity)


def shard_progress() -> Callable[[ShardProgress], None]:
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


def write_generated(targets: list[Target], files: list[bytes]) -> None:
    """The pcap, key log and truth complete in place, or none of them cut (issue 15)."""
    from analyzer.report.output import ReaderGone, write_all

    try:
        write_all(list(zip(targets, files, strict=True)))
    except ReaderGone:
        raise typer.Exit(0) from None
    except WireprobeError as err:
        fail(str(err))


def deferred_console() -> tuple[Console, Callable[[], None]]:
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

        write_report(plan(None), lambda out: print(buffer.getvalue(), end="", file=out))

    return held, flush
