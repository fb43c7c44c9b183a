"""Byte sources under the capture reader: a file, standard input or gzip, read in bounded chunks.

``Source`` holds one buffer that ``fill`` extends by at least ``CHUNK_BYTES`` at a time;
``analyzer/capture/reader.py`` parses records out of it.  A read that fails in the middle (the OS, a
truncated or corrupt gzip stream, bytes after the last gzip member, a gzip bomb) does not
raise: it keeps what came before, sets ``Source.error`` to the anomaly's name and ends the data.
Compressed input is bounded (issue 15): gzip is read in ``GZIP_READ_BYTES`` steps with
``read1``, and stops once it gave ``MAX_GZIP_RATIO`` times the compressed bytes read.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from typing import Final, Protocol

#: Bytes asked of the file (or of gzip) per read.  1 MiB makes the per-read cost (syscall, splice
#: of the unparsed tail) negligible per packet while keeping each open file's buffer small.
CHUNK_BYTES: Final = 1 << 20

#: Most bytes gzip may give per compressed byte read, beyond ``GZIP_SLACK_BYTES``.  Deflate
#: cannot exceed about 1032:1 (RFC 1951: 258-byte matches coded in 2 bits), which a bomb of
#: zeros reaches; the most compressible capture measured, a bulk transfer of zero-filled
#: segments, gives 144:1 and ordinary ones 3-8:1.  500 stops a bomb after it gave 500 times its
#: size, so time and memory stay proportional to the file, not to what it claims to hold.
MAX_GZIP_RATIO: Final = 500
#: Decompressed bytes always allowed, whatever the ratio so far (a small file's header).
GZIP_SLACK_BYTES: Final = 4 << 20
#: Bytes asked of gzip per read: an error mid-read loses what that read decompressed, so reads
#: stay small enough that a truncated or trailing-garbage file keeps nearly all its packets.
GZIP_READ_BYTES: Final = 64 << 10

# Anomaly names of a read that ended early (re-exported by analyzer/capture/reader.py).
TRUNCATED: Final = "capture.truncated"  # a record or block cut by the end of the data
READ_ERROR: Final = "capture.read_error"  # the OS failed a read in the middle of the file
BAD_GZIP: Final = "capture.bad_gzip"  # corrupt compressed data after a good start
GZIP_BOMB: Final = "capture.gzip_bomb"  # decompressed past MAX_GZIP_RATIO (reading stopped)
GZIP_TRAILING: Final = "capture.gzip_trailing_garbage"  # bytes after the last gzip member


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class Closable(Protocol):
    def close(self) -> None: ...


def read_up_to(stream: Readable, size: int) -> bytes:
    """``size`` bytes, fewer only at the end of the data (pipes may return short reads)."""
    data = stream.read(size)
    if len(data) >= size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = stream.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class Counted:
    """Counts the compressed bytes gzip reads, for the ratio bound (``MAX_GZIP_RATIO``)."""

    __slots__ = ("_stream", "count")

    def __init__(self, stream: Readable) -> None:
        self._stream = stream
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._stream.read(size)
        self.count += len(data)
        return data

    def seek(self, offset: int, /) -> int:
        raise OSError("cannot seek a compressed input")  # gzip seeks only to rewind


class Replay:
    """Gives back bytes already read, then the rest of a stream that cannot seek (stdin)."""

    __slots__ = ("_prefix", "_stream")

    def __init__(self, prefix: bytes, stream: Readable) -> None:
        self._prefix = prefix
        self._stream = stream

    def read(self, size: int = -1, /) -> bytes:
        if not self._prefix:
            return self._stream.read(size)
        if size < 0:
            data = self._prefix + self._stream.read(size)
            self._prefix = b""
            return data
        data, self._prefix = self._prefix[:size], self._prefix[size:]
        return data

    def seek(self, offset: int, /) -> int:
        # gzip only seeks to rewind, which reading forward never does.
        raise OSError("cannot seek a replayed stream")


class Source:
    """A stream read in chunks into one buffer; ``buf[pos:]`` is the part not yet parsed."""

    __slots__ = (
        "_closers",
        "_compressed",
        "_inflated",
        "_read1",
        "_stream",
        "buf",
        "error",
        "pos",
    )

    def __init__(
        self,
        stream: Readable,
        buf: bytes,
        pos: int,
        closers: list[Closable],
        compressed: Counted | None = None,
    ) -> None:
        self._stream = stream
        self._closers = closers
        #: the compressed bytes under a gzip stream (None when the file is not compressed)
        self._compressed = compressed
        self._inflated = len(buf)
        self._read1: Callable[[int], bytes] = getattr(stream, "read1", stream.read)
        self.buf = buf
        self.pos = pos
        self.error: str | None = None  # anomaly that ended the data early, if any

    def fill(self, need: int) -> bool:
        """Make ``buf[pos:pos + need]`` available; False when the data ends first."""
        have = len(self.buf) - self.pos
        if have >= need:
            return True
        if self.error is not None:
            return False
        data = self._read(max(need - have, CHUNK_BYTES))
        self.buf = self.buf[self.pos :] + data
        self.pos = 0
        return len(self.buf) >= need

    def _read(self, size: int) -> bytes:
        """Up to ``size`` bytes; on an error, what was read before it (and ``error`` set)."""
        if self._compressed is None:
            try:
                return read_up_to(self._stream, size)
            except OSError:
                self.error = READ_ERROR
                return b""
        parts: list[bytes] = []
        got = 0
        while got < size:
            try:
                # read1: one decompression step per call, so an error in the next step does
                # not take this one's bytes with it (read loops and loses them all).
                part = self._read1(min(GZIP_READ_BYTES, size - got))
            except EOFError:  # compressed data cut before its end-of-stream marker
                self.error = TRUNCATED
                break
            except gzip.BadGzipFile as err:
                # Python reads on after a member for the next one (RFC 1952 2.2): bytes that
                # do not start one are garbage after complete data.
                trailing = str(err).startswith("Not a gzipped file")
                self.error = GZIP_TRAILING if trailing else BAD_GZIP
                break
            except zlib.error:
                self.error = BAD_GZIP
                break
            except OSError:
                self.error = READ_ERROR
                break
            if not part:
                break
            parts.append(part)
            got += len(part)
            self._inflated += len(part)
            if self._inflated > MAX_GZIP_RATIO * self._compressed.count + GZIP_SLACK_BYTES:
                self.error = GZIP_BOMB
                break
        return b"".join(parts)

    def leftover(self) -> int:
        return len(self.buf) - self.pos

    def close(self) -> None:
        closers, self._closers = self._closers, []
        for stream in closers:
            stream.close()
