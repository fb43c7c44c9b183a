"""Progress on stderr for long work, drawn by rich, only when stderr is a terminal.

Like curl and pip: a person watching a terminal sees how far the work has got; a pipe, a log file
or a test sees nothing, so output stays byte-for-byte the same whether or not anyone watched.

Reading a capture is measured without a hook in the packet loop (DESIGN.md section 7 budgets it
to microseconds per packet): a thread looks, a few times a second, at the file offsets of the
process's open descriptors (``/proc/self/fdinfo``) that point at the input files.  Where ``/proc``
does not exist the bar shows elapsed time only.  ``generate`` and ``compare`` have no measure of
how far they are, so they show a spinner with the elapsed time.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress, ProgressColumn

#: Seconds between looks at the input files' offsets: fast enough to move smoothly, slow enough
#: to cost nothing measurable against the analysis (four reads of /proc a second).
POLL_S = 0.25

#: Redraws a second: rich's default 10 cost 3-4% of the CPU time of analyze on a terminal
#: (measured with wait4); 4 still moves smoothly for a person and costs half as much.
REFRESH_PER_S = 4

#: Where Linux lists a process's descriptors and their offsets (proc(5)).
PROC_FD = "/proc/self/fd"
PROC_FDINFO = "/proc/self/fdinfo"


def stderr_is_terminal() -> bool:
    """True when a person may be watching stderr (not a pipe, a file or a test's capture)."""
    stream = sys.stderr
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def _regular_sizes(paths: Sequence[str]) -> dict[str, int]:
    """Real path -> size of each input that is a regular file (not stdin, pipes or devices)."""
    sizes: dict[str, int] = {}
    for path in paths:
        if path == "-" or not os.path.isfile(path):
            continue
        try:
            sizes[os.path.realpath(path)] = os.path.getsize(path)
        except OSError:
            continue
    return sizes


def _open_offsets(targets: dict[str, int]) -> dict[str, int] | None:
    """Offset of each input file open now; None where /proc cannot tell."""
    try:
        descriptors = os.listdir(PROC_FD)
    except OSError:
        return None
    offsets: dict[str, int] = {}
    for fd in descriptors:
        try:
            target = os.readlink(f"{PROC_FD}/{fd}")
            if target not in targets:
                continue
            with open(f"{PROC_FDINFO}/{fd}", encoding="ascii") as info:
                first = info.readline()  # "pos:\t<offset>"
        except OSError:
            continue  # closed between the listing and the look
        _, _, value = first.partition(":")
        if value.strip().isdigit():
            offsets[target] = int(value)
    return offsets


class _ReadWatch:
    """Bytes read so far of the input files, over every pass: an open file by its offset, a
    file seen open and then closed by its whole size (a reopened file starts its next pass)."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = sizes
        self.open_before: set[str] = set()
        self.passes_done = 0  # bytes of the passes over files that have closed

    def bytes_read(self) -> int | None:
        offsets = _open_offsets(self.sizes)
        if offsets is None:
            return None
        self.passes_done += sum(self.sizes[p] for p in self.open_before - offsets.keys())
        self.open_before = set(offsets)
        return self.passes_done + sum(min(pos, self.sizes[p]) for p, pos in offsets.items())


def _progress(columns: tuple[ProgressColumn, ...]) -> Progress:
    """A transient display on stderr that leaves stdout alone: rich would otherwise route stdout
    through the stderr console while it runs, and a report piped to a file would land on the
    terminal."""
    from rich.console import Console
    from rich.progress import Progress

    return Progress(
        *columns,
        console=Console(stderr=True),
        transient=True,
        refresh_per_second=REFRESH_PER_S,
        redirect_stdout=False,
        redirect_stderr=False,
    )


@contextmanager
def reading(
    paths: Sequence[str], description: str = "reading", *, passes: int = 1
) -> Iterator[None]:
    """A bar of the bytes read of ``paths`` while the body runs, each file read ``passes``
    times (nothing when not a terminal, or without paths)."""
    if not paths or not stderr_is_terminal():
        yield
        return
    from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeElapsedColumn

    sizes = _regular_sizes(paths)
    watch = _ReadWatch(sizes)
    total = passes * sum(sizes.values()) or None
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn())
    stop = threading.Event()
    with _progress(columns) as bar:
        task = bar.add_task(description, total=total)

        def poll() -> None:
            while not stop.wait(POLL_S):
                done = watch.bytes_read()
                if done is not None:
                    bar.update(task, completed=min(done, total or done))

        poller = threading.Thread(target=poll, name="wireprobe-progress", daemon=True)
        poller.start()
        try:
            yield
        finally:
            stop.set()
            poller.join()


@contextmanager
def working(description: str) -> Iterator[None]:
    """A spinner with the elapsed time while the body runs (nothing when not a terminal)."""
    if not stderr_is_terminal():
        yield
        return
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with _progress(columns) as bar:
        bar.add_task(description, total=None)
        yield
