"""``wireprobe compare``: run the matrix, print the tables, write the report directory.

The edge of the compare package: the only module here that writes files or prints.  The CLI
(analyzer/cli/commands.py) calls ``compare_command``; ``UsageError`` means exit 2 with its message.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from analyzer.compare.charts import chart_data
from analyzer.compare.claims import Claim, claims, headlines
from analyzer.compare.export import chart_csv, matrix_json
from analyzer.compare.matrix import (
    DEFAULT_MESSAGES,
    DEFAULT_PAYLOADS,
    CompareOptions,
    CompareResult,
    run_compare,
)
from analyzer.compare.render import (
    claims_markdown,
    render_charts,
    render_html,
    render_markdown,
    terminal_tables,
)
from analyzer.errors import UsageError
from analyzer.report.escape import terminal_text
from analyzer.report.output import plan, write_all

DEFAULT_OUTPUT_DIR = Path("wireprobe-report")


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """What a compare run left behind."""

    result: CompareResult
    claims: tuple[Claim, ...]
    #: every file written, in writing order
    files: tuple[Path, ...]


def compare_command(
    *,
    messages: int = DEFAULT_MESSAGES,
    payloads: tuple[int, ...] = DEFAULT_PAYLOADS,
    live: bool = False,
    output_dir: Path = DEFAULT_OUTPUT_DIR,
    force: bool = False,
    console: Console | None = None,
    options: CompareOptions | None = None,
) -> Report:
    """Run, print the tables to ``console`` and write ``output_dir``; ``UsageError`` when the
    arguments cannot work (a non-empty output directory without ``force``, bad numbers)."""
    check_output_dir(output_dir, force)
    options = options or CompareOptions(messages=messages, payloads=payloads, live=live)
    result = run_compare(options)
    verdicts = tuple(claims(result))
    files = write_report(result, verdicts, output_dir)
    if console is not None:
        for table in terminal_tables(result, verdicts):
            console.print(table)
        for line in headlines(result):
            console.print(terminal_text(f"- {line}"))
        console.print(
            terminal_text(
                f"Report written to {output_dir}/ (report.html, report.md, charts) "
                f"in {result.elapsed_s:.1f} s."
            )
        )
    return Report(result=result, claims=verdicts, files=files)


def check_output_dir(output_dir: Path, force: bool) -> None:
    """Refuse to overwrite a non-empty directory (or a file) unless forced."""
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"{output_dir} exists and is not a directory")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not force:
        raise UsageError(f"{output_dir} is not empty (use --force to overwrite)")


#: Prefix of the folder a report is written into before it is moved into place; one left
#: behind means a run was killed while writing (it never shadows a finished report).
STAGING_PREFIX = ".wireprobe-report-partial-"


def write_report(
    result: CompareResult, verdicts: tuple[Claim, ...], output_dir: Path
) -> tuple[Path, ...]:
    """Charts as PNG, SVG and CSV, report.md, report.html, claims.md and compare.json in
    ``output_dir``.

    Everything is written into a fresh folder beside ``output_dir`` first and moved into place
    at the end (one rename when ``output_dir`` is new or empty), so a run that fails or is
    interrupted leaves no half-written report for the next run to trip over."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=output_dir.parent))
    try:
        names = _write_files(result, verdicts, staging)
        _move_into_place(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already after a rename
    return tuple(output_dir / name for name in names)


def _write_files(result: CompareResult, verdicts: tuple[Claim, ...], folder: Path) -> list[str]:
    data = chart_data(result)
    rendered = render_charts(result)
    files: list[Path] = []
    for name, chart in rendered.items():
        files.append(_write(folder / f"{name}.png", chart.png))
        files.append(_write(folder / f"{name}.svg", chart.svg.encode()))
        files.append(_write(folder / f"{name}.csv", chart_csv(data[name]).encode()))
    files.append(_write(folder / "compare.json", matrix_json(result, verdicts, data).encode()))
    files.append(_write(folder / "report.md", render_markdown(result, verdicts).encode()))
    files.append(_write(folder / "claims.md", claims_markdown(verdicts).encode()))
    files.append(_write(folder / "report.html", render_html(result, verdicts, rendered).encode()))
    return [f.name for f in files]


def _move_into_place(staging: Path, output_dir: Path) -> None:
    """A new or empty ``output_dir`` becomes ``staging`` in one rename; a non-empty one (the
    run was forced) gets each file replaced, keeping files the report does not write."""
    if output_dir.is_dir() and not any(output_dir.iterdir()):
        output_dir.rmdir()
    if not output_dir.exists():
        staging.rename(output_dir)
        return
    for path in sorted(staging.iterdir()):
        os.replace(path, output_dir / path.name)


def _write(path: Path, data: bytes) -> Path:
    # The one output writer (analyzer/report/output.py): a file is complete or absent, never cut.
    write_all([(plan(path, force=True), data)])
    return path
