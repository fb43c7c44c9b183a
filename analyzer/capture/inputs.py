"""What the capture arguments name: files, directories and globs, grouped into captures.

``wireprobe analyze DIR/`` or ``'rot-*.pcap'`` names a rotation set (tcpdump ``-C``/``-G``, editcap
``-c``): files that continue one another and are read as one capture in time order, so a
connection that crosses a file boundary stays one connection.  Files that cannot be parts of one
capture (their packets overlap in time, or their link types differ: another interface, another
capture) are kept apart in groups, each analysed as a capture of its own, and said so (a warning
and the capture-level anomaly ``input.separate_capture`` on the group's first file), never
silently merged.

Deciding needs each file's time range, which only a full read gives (a pcap has no index), so the
survey reads every file once with the capture reader; ``--jobs`` runs the surveys in parallel.  A
single file needs no survey.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass

from analyzer.capture.reader import STDIN_PATH, CaptureSet
from analyzer.errors import UsageError

#: Capture-level anomaly on the first file of every group after the first.
SEPARATE_CAPTURE = "input.separate_capture"
#: First bytes of the files a directory is taken to hold: pcap (micro-, nanosecond, Kuznetzov's
#: modified, both byte orders), pcapng's Section Header Block, gzip (RFC 1952 ID1 ID2).
CAPTURE_MAGICS = (
    b"\xa1\xb2\xc3\xd4",
    b"\xd4\xc3\xb2\xa1",
    b"\xa1\xb2\x3c\x4d",
    b"\x4d\x3c\xb2\xa1",
    b"\xa1\xb2\xcd\x34",
    b"\x34\xcd\xb2\xa1",
    b"\x0a\x0d\x0d\x0a",
    b"\x1f\x8b",
)
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True, kw_only=True)
class FileSurvey:
    """One capture file read through once: what grouping needs."""

    path: str
    packets: int
    first_ts: float | None  # None: the file holds no packet
    last_ts: float | None
    link_types: tuple[int, ...]  # declared link types, first-seen order


@dataclass(frozen=True, slots=True, kw_only=True)
class InputGroup:
    """Files read as one capture, in time order."""

    paths: tuple[str, ...]
    #: why this group is not part of the one before it; None for the first group
    apart: str | None = None


def _is_capture(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return any(head.startswith(magic) for magic in CAPTURE_MAGICS)


def _directory(path: str) -> list[str]:
    names = sorted(n for n in os.listdir(path) if not n.startswith("."))
    files = [os.path.join(path, n) for n in names if os.path.isfile(os.path.join(path, n))]
    found = [f for f in files if _is_capture(f)]
    if not found:
        raise UsageError(f"{path} holds no capture files (pcap, pcapng or gzip)")
    return found


def expand(args: Sequence[str]) -> list[str]:
    """The capture files ``args`` name: a directory's captures, a glob's matches, else the path
    itself (a missing one is the capture reader's to report)."""
    out: list[str] = []
    for arg in args:
        if arg != STDIN_PATH and os.path.isdir(arg):
            out += _directory(arg)
        elif _GLOB_CHARS & set(arg) and not os.path.exists(arg):
            matches = sorted(glob.glob(arg))
            if not matches:
                raise UsageError(f"no file matches {arg}")
            out += matches
        else:
            out.append(arg)
    return list(dict.fromkeys(out))  # a file named twice is read once


def survey(path: str) -> FileSurvey:
    """Read ``path`` through once (a ``CaptureError`` if it cannot be read at all)."""
    with CaptureSet([path]) as capture:
        for _ in capture:
            pass
        stats = capture.stats[0]
    return FileSurvey(
        path=path,
        packets=stats.packets,
        first_ts=stats.first_ts,
        last_ts=stats.last_ts,
        link_types=tuple(stats.link_types),
    )


@dataclass(slots=True)
class _Chain:
    files: list[FileSurvey]
    apart: str | None

    @property
    def last(self) -> FileSurvey:
        return self.files[-1]

    def continued_by(self, s: FileSurvey) -> bool:
        last = self.last
        if s.link_types != last.link_types and s.first_ts is not None:
            return False
        return last.last_ts is None or s.first_ts is None or s.first_ts >= last.last_ts


def group(surveys: Sequence[FileSurvey]) -> list[InputGroup]:
    """Files into captures: sorted by first packet, each file continues the first chain whose
    last file ended before it began on the same link type, else starts a chain of its own.
    Empty files join the first chain (they add a capture record with no packets)."""
    ordered = sorted(surveys, key=lambda s: (s.first_ts is None, s.first_ts or 0.0, s.path))
    chains: list[_Chain] = []
    for s in ordered:
        chain = next((c for c in chains if c.continued_by(s)), None)
        if chain is not None:
            chain.files.append(s)
        elif not chains:
            chains.append(_Chain([s], None))
        else:
            chains.append(_Chain([s], _why_apart(s, chains[0].last)))
    return [InputGroup(paths=tuple(f.path for f in c.files), apart=c.apart) for c in chains]


def _why_apart(s: FileSurvey, other: FileSurvey) -> str:
    if s.link_types != other.link_types:
        return f"{s.path} has link type {_types(s)}, {other.path} {_types(other)}"
    return f"{s.path} overlaps in time a capture read before it ({other.path})"


def _types(s: FileSurvey) -> str:
    return "/".join(str(t) for t in s.link_types) or "none"


def single(paths: Sequence[str]) -> list[InputGroup]:
    """The paths as one group, in the order given (one file, or standard input among them)."""
    return [InputGroup(paths=tuple(paths))]
