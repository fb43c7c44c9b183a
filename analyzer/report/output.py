"""The one output writer: reports, generated pcaps, key logs, truth files, compare reports.

Where the bytes go decides how they are written (issue 15):

- a regular file (new, or existing with ``--force``) is written to a temporary file in the same
  directory and renamed into place only when every byte reached it, so a full disk, Ctrl-C,
  SIGTERM or a bug never leaves a cut file; the temporary file is removed on every exit path;
- a character device (``/dev/null``), a FIFO, a socket or ``-`` (standard output) is written
  directly: never renamed over (as root, a rename would replace ``/dev/null``), no ``--force``;
- a block device is a disk: streamed like a device, but only with ``--force``;
- an existing regular file needs ``--force``; without it the final step is ``os.link``, which
  refuses atomically when the name appeared meanwhile.

Every failure is an ``OutputError`` with one line naming the path and the reason; a reader that
left a pipe (``| head``) is ``ReaderGone``, which the CLI treats as success.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, Any, Literal, overload

from analyzer.errors import UsageError, WireprobeError

#: The name users give for standard output (tcpdump's and curl's convention).
STDOUT_NAME = "-"
#: Names of a descriptor this process already has open (/dev/stdout, /dev/fd/3): whatever
#: they point at is written through, never replaced.
OPEN_FILE_PATHS = ("/dev/stdout", "/dev/stderr", "/dev/fd/", "/proc/self/fd/")
#: Mode of a new regular file before the umask, as ``open(path, "w")`` would create it.
NEW_FILE_MODE = 0o666


class OutputError(WireprobeError):
    """An output cannot be written: full disk, no such directory, closed standard output."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot write {path}: {reason}")
        self.path = path
        self.reason = reason


class ReaderGone(WireprobeError):
    """The reader of a pipe went away (``wireprobe analyze x.pcap | head``): nothing to report."""


class Kind(Enum):
    """How a target is written."""

    STDOUT = "stdout"
    STREAM = "stream"  # a device, FIFO or socket: written in place
    ATOMIC = "atomic"  # a regular file: temporary file, then rename


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A checked output destination (``plan``), written later with ``open_target``."""

    #: what the user typed, for messages
    name: str
    kind: Kind
    #: the file the bytes end in (symbolic links resolved); None for standard output
    path: Path | None
    #: an existing regular file may be replaced
    force: bool


def _reason(err: OSError) -> str:
    return err.strerror or str(err)


def plan(path: str | os.PathLike[str] | None, *, force: bool = False) -> Target:
    """Check ``path`` can be written before any work is done; ``UsageError`` when it cannot.

    ``None`` and ``"-"`` are standard output.  The checks are repeated when the file is opened:
    this one only saves a long analysis whose result would have nowhere to go.
    """
    if path is None or str(path) == STDOUT_NAME:
        return Target(name=STDOUT_NAME, kind=Kind.STDOUT, path=None, force=force)
    name = str(path)
    if not name:
        raise UsageError("an output path is empty")
    try:
        mode = os.stat(name).st_mode
    except FileNotFoundError:
        mode = None
    except NotADirectoryError:
        raise UsageError(
            f"cannot write {name}: a part of the path is a file, not a directory"
        ) from None
    except OSError as err:
        raise UsageError(f"cannot write {name}: {_reason(err)}") from err
    if mode is not None and not stat.S_ISREG(mode):
        return _plan_special(name, mode, force)
    if mode is not None and name.startswith(OPEN_FILE_PATHS):
        # /dev/stdout onto the shell's "> out.txt": write through the descriptor; renaming a
        # new file over the shell's would be a surprise, and it needs no --force.
        return Target(name=name, kind=Kind.STREAM, path=Path(name), force=force)
    if mode is None and os.path.islink(name):
        # Following it would create a file wherever the link points (a planted link in a shared
        # directory, written as root); replacing it would surprise whoever made it.
        raise UsageError(f"cannot write {name}: it is a symbolic link to nothing")
    if mode is not None and not force:
        raise UsageError(f"{name} exists; add --force to overwrite it")
    final = Path(os.path.realpath(name))
    _check_directory(name, final.parent)
    return Target(name=name, kind=Kind.ATOMIC, path=final, force=force)


def _plan_special(name: str, mode: int, force: bool) -> Target:
    if stat.S_ISDIR(mode):
        raise UsageError(f"{name} is a directory; name a file")
    if stat.S_ISBLK(mode) and not force:
        raise UsageError(f"{name} is a block device; add --force to write over it")
    return Target(name=name, kind=Kind.STREAM, path=Path(name), force=force)


def _check_directory(name: str, directory: Path) -> None:
    try:
        mode = os.stat(directory).st_mode
    except FileNotFoundError:
        raise UsageError(f"cannot write {name}: directory {directory} does not exist") from None
    except OSError as err:
        raise UsageError(f"cannot write {name}: {_reason(err)}") from err
    if not stat.S_ISDIR(mode):
        raise UsageError(f"cannot write {name}: {directory} is not a directory")


# -- writing ----------------------------------------------------------------------------------


@overload
def open_target(
    target: Target, mode: Literal["w"]
) -> contextlib.AbstractContextManager[IO[str]]: ...


@overload
def open_target(
    target: Target, mode: Literal["wb"]
) -> contextlib.AbstractContextManager[IO[bytes]]: ...


def open_target(
    target: Target, mode: Literal["w", "wb"]
) -> contextlib.AbstractContextManager[IO[Any]]:
    """A file to write ``target`` through; on leaving the block the bytes are in place, or
    (on any exception, Ctrl-C included) nothing was renamed and no temporary file is left."""
    if target.kind is Kind.STDOUT:
        return _stdout(target, binary=mode == "wb")
    if target.kind is Kind.STREAM:
        return _stream(target, mode)
    return _atomic(target, mode)


def write_all(items: Sequence[tuple[Target, bytes]]) -> None:
    """Several outputs all or nothing (``generate``'s pcap, key log and truth): every regular
    file is complete in its temporary file before the first is renamed into place, so a full
    disk half-way leaves none of them, not a pcap without its key log."""
    pending: list[tuple[Target, Path]] = []
    try:
        for target, data in items:
            if target.kind is Kind.ATOMIC:
                pending.append((target, _temporary_with(target, data)))
        for target, data in items:
            if target.kind is not Kind.ATOMIC:
                with open_target(target, "wb") as out:
                    out.write(data)
        while pending:
            target, tmp = pending[0]
            assert target.path is not None
            try:
                _place(tmp, target.path, target)
            except OSError as err:
                raise OutputError(target.name, _reason(err)) from err
            pending.pop(0)
    finally:
        for _, tmp in pending:
            with contextlib.suppress(OSError):
                tmp.unlink()


def _temporary_with(target: Target, data: bytes) -> Path:
    """``data`` in a complete, synced temporary file beside ``target``, or nothing."""
    assert target.path is not None
    fd, name = _make_temporary(target)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        _set_mode(tmp, target.path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError):
            raise OutputError(target.name, _reason(err)) from err
        raise
    return tmp


@contextlib.contextmanager
def _stdout(target: Target, *, binary: bool) -> Iterator[IO[Any]]:
    stream = sys.stdout
    if stream is None or (_is_fd_1(stream) and not _fd_open(1)):
        raise OutputError("standard output", "it is closed")
    if not _is_fd_1(stream):
        # Replaced by a caller (typer's CliRunner, an embedding program): write where it says.
        out: IO[Any] = stream.buffer if binary else stream
    else:
        out = _stdout_writer(stream.encoding or "utf-8", binary=binary)
    try:
        stream.flush()  # whatever was printed before the report comes before it
        yield out
        out.flush()
    except BrokenPipeError:
        silence_stdout()
        raise ReaderGone() from None
    except OSError as err:
        silence_stdout()
        raise OutputError("standard output", _reason(err)) from err
    finally:
        if out is not stream and out is not getattr(stream, "buffer", None):
            with contextlib.suppress(OSError):
                out.close()  # fd 1 itself stays open (closefd=False)


def _is_fd_1(stream: IO[str]) -> bool:
    try:
        return stream.fileno() == 1
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
        return False


def _stdout_writer(encoding: str, *, binary: bool) -> IO[Any]:
    """A buffered writer of our own on fd 1.  A write-through ``sys.stdout`` (PYTHONUNBUFFERED,
    ``python -u``) drops the rest of a short write without a word, so a disk filling up behind
    ``> out.txt`` would cut the report and exit 0; a BufferedWriter retries the rest and the
    next write fails loudly (EFBIG, ENOSPC)."""
    buffered = io.BufferedWriter(io.FileIO(1, "w", closefd=False))
    if binary:
        return buffered
    # backslashreplace: a terminal in an ASCII locale gets "\u2192", not a UnicodeEncodeError.
    return io.TextIOWrapper(buffered, encoding=encoding, errors="backslashreplace")


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def silence_stdout() -> None:
    """Point fd 1 at /dev/null: Python would otherwise flush the unwritten rest again at exit
    and print 'Exception ignored ... BrokenPipeError' after we reported."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)


@contextlib.contextmanager
def _stream(target: Target, mode: str) -> Iterator[IO[Any]]:
    assert target.path is not None
    try:
        # No O_TRUNC or O_CREAT games: a device or FIFO is opened as it is; "w" on one truncates
        # nothing.  Opening a FIFO waits for its reader, as any writer would.
        out = open(target.path, mode, encoding=None if "b" in mode else "utf-8")  # noqa: SIM115
    except OSError as err:
        raise OutputError(target.name, _reason(err)) from err
    try:
        with out:
            yield out
    except BrokenPipeError:
        raise ReaderGone() from None
    except OSError as err:
        raise OutputError(target.name, _reason(err)) from err


@contextlib.contextmanager
def _atomic(target: Target, mode: str) -> Iterator[IO[Any]]:
    assert target.path is not None
    final = target.path
    fd, tmp_name = _make_temporary(target)
    tmp = Path(tmp_name)
    done = False
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())  # the rename must not land before the bytes do
        _set_mode(tmp, final)
        _place(tmp, final, target)
        done = True
    except OSError as err:
        raise OutputError(target.name, _reason(err)) from err
    finally:
        if not done:
            with contextlib.suppress(OSError):
                tmp.unlink()


def _make_temporary(target: Target) -> tuple[int, str]:
    assert target.path is not None
    try:
        # A hidden, unique name beside the final one (same file system, so the rename is
        # atomic); O_EXCL, so a file, directory or link already there is never written through.
        return tempfile.mkstemp(
            prefix=f".{target.path.name}.", suffix=".partial", dir=target.path.parent
        )
    except OSError as err:
        raise OutputError(target.name, _reason(err)) from err


def _set_mode(tmp: Path, final: Path) -> None:
    """mkstemp makes 0600; give the file the mode the file it replaces had, or a new file's."""
    try:
        mode = stat.S_IMODE(os.stat(final).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = NEW_FILE_MODE & ~umask
    os.chmod(tmp, mode)


def _place(tmp: Path, final: Path, target: Target) -> None:
    if target.force:
        _refuse_non_regular(final, target)
        os.replace(tmp, final)
        return
    try:
        os.link(tmp, final)  # fails with EEXIST if the name appeared since plan()
    except FileExistsError:
        raise OutputError(target.name, "it appeared while writing; add --force") from None
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # A file system without hard links (vfat, some FUSE): check, then rename.
        if os.path.lexists(final):
            raise OutputError(target.name, "it appeared while writing; add --force") from None
        os.replace(tmp, final)
        return
    tmp.unlink()


def _refuse_non_regular(final: Path, target: Target) -> None:
    # plan() saw a regular file or nothing; if a device, FIFO or directory took its place
    # meanwhile, renaming over it is exactly what this module exists to prevent.
    try:
        mode = os.lstat(final).st_mode
    except FileNotFoundError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise OutputError(target.name, "it is no longer a regular file")
