"""Reading capture files: the only module of wireprobe that opens one (DESIGN.md section 6).

Formats: classic pcap (both byte orders, micro- and nanosecond magics, Kuznetzov's "modified"
variant), pcapng (several sections and interfaces; Enhanced, Simple and obsolete Packet Blocks;
Decryption Secrets Blocks), either of them gzip-compressed, from a path or from standard input
(``"-"``).  References: draft-ietf-opsawg-pcap ("File Header", "Packet Record") and
draft-ietf-opsawg-pcapng (section 4, "Block Definition"; Appendix A, the obsolete Packet Block).

Opening (``_open_stream``), decompression (``_start``: gzip once, never gzip of gzip) and the
checks of a file's header live here; the records are read by analyzer/capture/pcap.py and
analyzer/capture/pcapng.py, what they count is analyzer/capture/records.py.

Streaming (DESIGN.md section 7): each file is read in ``CHUNK_BYTES`` reads into one buffer and
records are unpacked with ``struct.Struct.unpack_from`` on it; the only per-packet object is the
``RawPacket`` tuple.  Memory per open file is bounded by ``CHUNK_BYTES + MAX_RECORD_BYTES``
whatever the file length.

A whole file that cannot be read (missing, empty, not a capture, header cut) raises
``CaptureError`` in the constructor.  A problem in the middle of a file ends or skips what it
must, keeps every packet read before, and is counted as an anomaly in that file's
``CaptureStats`` (Zeek-style stable names, see ``ANOMALIES``): never a traceback, never a hang.
"""

from __future__ import annotations

import gzip
import heapq
import sys
import zlib
from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import BinaryIO, Final

from analyzer.capture.pcap import (
    PCAP_FILE_HEADER_BYTES,
    PCAP_MAGICS,
    PcapFlavour,
    pcap_link_type,
    pcap_packets,
)
from analyzer.capture.pcapng import (
    PCAPNG_MAGIC,
    PCAPNG_MAJOR_VERSION,
    SHB_MIN_BYTES,
    pcapng_packets,
    section_layout,
)
from analyzer.capture.records import (
    ANOMALIES,
    BAD_BLOCK,
    BAD_INTERFACE,
    BAD_OPTION,
    BAD_RECORD,
    MAX_RECORD_BYTES,
    SECRETS_TLS_KEY_LOG,
    UNKNOWN_BLOCK,
    UNSUPPORTED_VERSION,
    CaptureStats,
    RawPacket,
    SecretsCallback,
)
from analyzer.capture.sources import (
    BAD_GZIP,
    GZIP_BOMB,
    GZIP_TRAILING,
    READ_ERROR,
    TRUNCATED,
    Closable,
    Counted,
    Readable,
    Replay,
    Source,
    read_up_to,
)
from analyzer.capture.sources import (
    CHUNK_BYTES as CHUNK_BYTES,  # re-exported: the chunk size is part of the reader's contract
)
from analyzer.errors import CaptureError

#: The reader's contract, importable from here as before the split (issue 18).
__all__ = [
    "ANOMALIES",
    "BAD_BLOCK",
    "BAD_GZIP",
    "BAD_INTERFACE",
    "BAD_OPTION",
    "BAD_RECORD",
    "CHUNK_BYTES",
    "GZIP_BOMB",
    "GZIP_TRAILING",
    "MAX_RECORD_BYTES",
    "READ_ERROR",
    "SECRETS_TLS_KEY_LOG",
    "STDIN_PATH",
    "TRUNCATED",
    "UNKNOWN_BLOCK",
    "UNSUPPORTED_VERSION",
    "CaptureSet",
    "CaptureStats",
    "RawPacket",
    "SecretsCallback",
]

STDIN_PATH: Final = "-"


# --- opening and validating a file (the only place CaptureError is raised) ---------------------

GZIP_MAGIC: Final = b"\x1f\x8b"


def _open_stream(path: str, stdin: BinaryIO | None) -> tuple[Readable, list[Closable]]:
    """The stream of ``path`` and the objects to close when done (not stdin: it is not ours)."""
    if path == STDIN_PATH:
        if stdin is not None:
            return stdin, []
        if sys.stdin is None:  # a daemon or "<&-": there is nothing to read
            raise CaptureError(path, "no standard input")
        return sys.stdin.buffer, []
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed by Source.close at end of reading
    except FileNotFoundError as err:
        raise CaptureError(path, "no such file") from err
    except IsADirectoryError as err:
        raise CaptureError(path, "is a directory") from err
    except PermissionError as err:
        raise CaptureError(path, "permission denied") from err
    except OSError as err:
        raise CaptureError(path, f"cannot open ({err.strerror or err})") from err
    return stream, [stream]


def _read_head(path: str, stream: Readable, size: int) -> bytes:
    """The next ``size`` header bytes (fewer at end of data); a failure is a CaptureError."""
    try:
        return read_up_to(stream, size)
    except EOFError as err:
        raise CaptureError(path, "truncated gzip data") from err
    except (zlib.error, gzip.BadGzipFile) as err:
        raise CaptureError(path, f"corrupt gzip data ({err})") from err
    except OSError as err:
        raise CaptureError(path, f"read error ({err.strerror or err})") from err


def _check_magic(path: str, head: bytes) -> None:
    """Raise unless ``head`` (at most 4 bytes) starts a pcap or pcapng file."""
    if not head:
        raise CaptureError(path, "empty file")
    known = (PCAPNG_MAGIC, *PCAP_MAGICS)
    if len(head) == 4 and head in known:
        return
    if len(head) < 4 and any(magic.startswith(head) for magic in known):
        raise CaptureError(path, "truncated file header")
    raise CaptureError(path, f"not a pcap or pcapng file (magic 0x{head.hex()})")


class _CaptureFile:
    """One opened, validated input file, read once by ``packets``."""

    __slots__ = ("_flavour", "_source", "stats")

    def __init__(self, path: str, stdin: BinaryIO | None) -> None:
        stream, closers = _open_stream(path, stdin)
        try:
            self._flavour, self._source = _start(path, stream, closers)
        except CaptureError:
            for opened in closers:
                opened.close()
            raise
        self.stats = CaptureStats(path=path)
        if isinstance(self._flavour, PcapFlavour):
            self.stats.link_types.append(pcap_link_type(self._flavour, self._source.buf))

    def packets(self, on_secrets: SecretsCallback | None) -> Iterator[RawPacket]:
        """The file's packets; the reader closes the file when it ends or is closed."""
        # Returned, not delegated with ``yield from``: no extra generator frame per packet.
        if isinstance(self._flavour, PcapFlavour):
            return pcap_packets(self._source, self._flavour, self.stats)
        return pcapng_packets(self._source, self.stats, on_secrets)

    def close(self) -> None:
        self._source.close()


def _start(
    path: str, stream: Readable, closers: list[Closable]
) -> tuple[PcapFlavour | None, Source]:
    """Steps: 1. magic (through gzip if compressed), 2. the whole file header, 3. the source.

    Returns the pcap flavour (None for pcapng) and a source positioned at the first record (pcap)
    or at the first Section Header Block (pcapng: the block reader parses it again for its state).
    """
    head = _read_head(path, stream, 4)
    compressed = None
    if head[:2] == GZIP_MAGIC:
        # gzip.open streams; wrapping what was read keeps this working on stdin, which can't seek.
        compressed = Counted(Replay(head, stream))
        unzipped = gzip.GzipFile(fileobj=compressed, mode="rb")
        closers.insert(0, unzipped)  # closed before the file under it
        stream = unzipped
        head = _read_head(path, stream, 4)
        if head[:2] == GZIP_MAGIC:
            # Not unwrapped again: each layer multiplies what a bomb can claim (1032:1 each).
            raise CaptureError(path, "gzip inside gzip; decompress the outer layer first")
    _check_magic(path, head)
    if head == PCAPNG_MAGIC:
        header = _pcapng_section_header(path, stream, head)
        return None, Source(stream, header, 0, closers, compressed)
    flavour = PCAP_MAGICS[head]
    header = head + _read_head(path, stream, PCAP_FILE_HEADER_BYTES - 4)
    if len(header) < PCAP_FILE_HEADER_BYTES:
        raise CaptureError(path, "truncated file header")
    return flavour, Source(stream, header, PCAP_FILE_HEADER_BYTES, closers, compressed)


def _pcapng_section_header(path: str, stream: Readable, head: bytes) -> bytes:
    """The first Section Header Block, whole and checked (pcapng section 4.1)."""
    block = head + _read_head(path, stream, SHB_MIN_BYTES - 4)
    if len(block) < SHB_MIN_BYTES:
        raise CaptureError(path, "truncated file header")
    layout = section_layout(block, 0)
    if layout is None:
        raise CaptureError(path, "bad pcapng byte-order magic")
    (length,) = layout.u32.unpack_from(block, 4)
    if not SHB_MIN_BYTES <= length <= MAX_RECORD_BYTES or length % 4:
        raise CaptureError(path, f"bad pcapng section header length {length}")
    block += _read_head(path, stream, length - len(block))
    if len(block) < length:
        raise CaptureError(path, "truncated file header")
    if layout.u32.unpack_from(block, length - 4)[0] != length:
        raise CaptureError(path, "bad pcapng section header (trailing length differs)")
    major, minor = layout.version.unpack_from(block, 12)
    if major != PCAPNG_MAJOR_VERSION:
        raise CaptureError(path, f"unsupported pcapng version {major}.{minor}")
    return block


# --- several files as one -----------------------------------------------------------------------

_BY_TS: Final = itemgetter(0)


class CaptureSet:
    """The packets of one or more capture files, merged by timestamp into one stream.

    Every file is opened and its header checked up front, so that a bad path fails before any
    analysis starts.  The set is read once; ``stats`` holds one ``CaptureStats`` per path, filled
    while reading.
    """

    def __init__(
        self,
        paths: Sequence[str],
        *,
        stdin: BinaryIO | None = None,
        on_secrets: SecretsCallback | None = None,
    ) -> None:
        self._on_secrets = on_secrets
        self._files: list[_CaptureFile] = []
        self._read = False
        paths = list(paths)
        if paths.count(STDIN_PATH) > 1:
            raise CaptureError(STDIN_PATH, "standard input named more than once")
        try:
            for path in paths:
                self._files.append(_CaptureFile(path, stdin))
        except CaptureError:
            self.close()
            raise
        self.stats: list[CaptureStats] = [capture.stats for capture in self._files]

    def __iter__(self) -> Iterator[RawPacket]:
        if self._read:
            raise RuntimeError("a CaptureSet can be read only once")
        self._read = True
        streams = [capture.packets(self._on_secrets) for capture in self._files]
        if len(streams) == 1:
            return streams[0]  # no merge: the single-file path pays nothing per packet
        # heapq.merge is lazy (one pending packet per file) and stable: ties keep file order.
        return heapq.merge(*streams, key=_BY_TS)

    def close(self) -> None:
        """Close every file (reading to the end closes each one already)."""
        for capture in self._files:
            capture.close()

    def __enter__(self) -> CaptureSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
