"""The command line (typer): the only place that prints or exits.

``commands`` holds the commands, ``arguments`` turns their options into values, ``console``
writes what the user reads, ``exits`` turns every way a run ends into one line and a status.
The names other code and the console script use are re-exported here.
"""

from analyzer.cli.arguments import LIVE_MODULES, PROTOCOLS, parse_ports
from analyzer.cli.commands import app
from analyzer.cli.console import fail, say, warn
from analyzer.cli.exits import (
    DEBUG_ENV,
    INTERNAL_ERROR_EXIT,
    INTERRUPTED_EXIT,
    STOP_SIGNALS,
    main,
    run,
)

__all__ = [
    "DEBUG_ENV",
    "INTERNAL_ERROR_EXIT",
    "INTERRUPTED_EXIT",
    "LIVE_MODULES",
    "PROTOCOLS",
    "STOP_SIGNALS",
    "app",
    "fail",
    "main",
    "parse_ports",
    "run",
    "say",
    "warn",
]
