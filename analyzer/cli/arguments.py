"""The command line's arguments turned into values: ports, filters, key logs, inputs and outputs
checked before any work starts.  Raises ``UsageError`` (exit 2, analyzer/cli/exits.py); speaks
only through analyzer/cli/console.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from typer.core import TyperCommand

from analyzer.cli.console import fail, say
from analyzer.decoding.detect import REGISTRY
from analyzer.errors import UsageError

if TYPE_CHECKING:
    from analyzer.filters import Filter
    from analyzer.report.findings import Finding
    from analyzer.report.output import Target


#: ``--port PROTO=PORT`` choices: every registered protocol (analyzer/decoding/detect.py).
PROTOCOLS = REGISTRY.names


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


def load_keylog(paths: list[Path]) -> object:
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


def check_output(output: Path | None, inputs: list[str], force: bool) -> Target:
    """Where the report goes, checked before the analysis runs (analyzer/report/output.py)."""
    from analyzer.report.output import plan

    target = plan(output, force=force)
    if target.path is not None and any(
        p != "-" and Path(p).resolve() == target.path for p in inputs
    ):
        raise UsageError(f"--output {target.name} is one of the input captures")
    return target


def distinct_inputs(captures: list[str]) -> tuple[list[str], list[Finding]]:
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


def reading_passes(inputs: list[str]) -> int:
    """Times the inputs are read in one process: several files are surveyed (read through once
    to order them in time, analyzer/capture/inputs.py) before they are analysed."""
    return 2 if len(inputs) > 1 and "-" not in inputs else 1


def parse_filter(expression: str | None) -> Filter | None:
    from analyzer.filters import parse_filter

    return None if expression is None else parse_filter(expression)


def refuse_overwrite(paths: list[Path | None], force: bool) -> list[Target]:
    """Each output checked before the work starts (analyzer/report/output.py: devices and FIFOs need
    no --force, an existing regular file does)."""
    from analyzer.report.output import plan

    targets = [plan(path, force=force) for path in paths if path is not None]
    files = [t.path for t in targets if t.path is not None]
    if len(set(files)) < len(files):
        raise UsageError("two outputs name the same file")
    return targets


class PresetsHelp(TyperCommand):
    """``generate --help`` lists the presets, read when help is asked for: importing the
    generator costs 0.2 s that every other command would otherwise pay at start-up."""

    def format_help(self, ctx: Any, formatter: Any) -> None:  # click's types, vendored by typer
        from analyzer.synth import PRESETS

        lines = [f"{name}: {describe(scenario)}" for name, scenario in sorted(PRESETS.items())]
        self.epilog = "Presets (--preset NAME):\n\n" + "\n\n".join(lines)
        super().format_help(ctx, formatter)


def describe(scenario: object) -> str:
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


#: The modules of the ``live`` extra (pyproject.toml) that ``wireprobe capture`` runs.
LIVE_MODULES = ("hypercorn", "httpx", "pika", "paho.mqtt", "nats", "websockets")


def require_live_extra() -> None:
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
