"""How a run ends: every error one line on stderr, never a traceback for bad input; signals stop
it as Ctrl-C does; the exit status says which (DESIGN.md section 5).
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import sys

import typer

from analyzer.cli.commands import app
from analyzer.cli.console import say
from analyzer.errors import WireprobeError

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
