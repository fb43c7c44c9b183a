"""A shard's records on disk, and the merge of every shard's records in the canonical order.

The canonical order of connections (the one ``--jobs N`` and ``--cluster`` print, whatever N):
by input group (captures kept apart come out one after the other, capture/inputs.py), then by
the connection's first timestamp, then by its id, then by the record's own bytes, so that even two
connections with the same 4-tuple and first microsecond keep one order.  A connection's messages
follow in the order its analysis gave them; the messages section lists them connection by
connection in the same canonical order.

Memory (DESIGN.md section 7): a shard keeps at most ``RUN_CONNECTIONS`` connection records in
memory, sorts them and writes them out as one sorted run; its messages go straight to one file
and a run entry only points at them (offset and count).  Both are marshal records: files that
live for one run and are read by the same Python that wrote them (a Dask cluster runs one
Python version throughout).  The merge reads one line per run at a
time (``heapq.merge``) and each connection's messages from their file as the consumer asks, so
neither a shard nor the parent ever holds more than a run's connections.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import marshal
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

from analyzer.accounting.records import Record

#: Connection records a shard holds before it sorts them and writes a run: about 1.5 KiB each,
#: so some 30 MiB, against hundreds of runs' open files were the runs smaller.
RUN_CONNECTIONS = 20_000
#: Each record in a spool file is its length, then its marshal bytes: marshal.load on a file
#: reads in many small pieces (with it, --jobs 1 --format json took 1.5 times the one-process
#: CPU on a 61,200-packet capture; with two reads and marshal.loads, 1.07 times).
_LENGTH = struct.Struct("<I")
#: The canonical sort key of a connection: group, first_ts, id, then the record's marshal
#: bytes (only two connections of one 4-tuple opened in the same microsecond get that far).
SortKey = tuple[int, float, str, bytes]


@dataclass(frozen=True, slots=True, kw_only=True)
class SpoolFiles:
    """One shard's spool on a file system the merging process can read."""

    #: sorted runs of connection lines, each in canonical order
    runs: tuple[str, ...]
    #: every message record of the shard, one JSON line each, grouped by connection
    messages: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PackedSpool:
    """One shard's spool as compressed bytes, for a worker whose disk the parent cannot read
    (a Dask worker on another machine)."""

    runs: tuple[bytes, ...]
    messages: bytes


def _dumps(value: Record) -> bytes:
    """A record as marshal bytes: exact for every JSON value (floats, key order, tuples) and
    several times cheaper than JSON both ways, which matters at one per message.  A value of a
    type marshal refuses (a subclass such as an IntEnum) goes through JSON first, as the report
    would write it anyway."""
    try:
        return marshal.dumps(value)
    except ValueError:
        return marshal.dumps(json.loads(json.dumps(value)))


class RecordSpool:
    """Receives one shard's finished connections (the pipeline's ``on_record``)."""

    def __init__(self, directory: str, name: str, group: int) -> None:
        self._directory = directory
        self._name = name
        self._group = group
        self._pending: list[tuple[SortKey, int, int]] = []
        self._runs: list[str] = []
        self._messages_path = os.path.join(directory, f"{name}.messages")
        self._messages: IO[bytes] = open(self._messages_path, "wb")  # noqa: SIM115
        self._offset = 0

    def add(self, record: Record, messages: Iterator[Record]) -> None:
        start = self._offset
        count = 0
        write = self._messages.write
        for message in messages:
            data = _dumps(message)
            write(_LENGTH.pack(len(data)))
            write(data)
            self._offset += _LENGTH.size + len(data)
            count += 1
        key = (self._group, float(record["first_ts"]), str(record["id"]), _dumps(record))
        self._pending.append((key, start, count))
        if len(self._pending) >= RUN_CONNECTIONS:
            self._write_run()

    def _write_run(self) -> None:
        self._pending.sort()
        path = os.path.join(self._directory, f"{self._name}.run{len(self._runs)}")
        with open(path, "wb") as out:
            for key, offset, count in self._pending:
                data = marshal.dumps((*key, offset, count))
                out.write(_LENGTH.pack(len(data)))
                out.write(data)
        self._runs.append(path)
        self._pending.clear()

    def close(self) -> SpoolFiles:
        """Write the last run; the spool's files, ready for ``merge``."""
        if self._pending or not self._runs:
            self._write_run()
        self._messages.close()
        return SpoolFiles(runs=tuple(self._runs), messages=self._messages_path)

    def discard(self) -> None:
        """Remove every file written (a failed shard)."""
        self._messages.close()
        for path in (*self._runs, self._messages_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def pack(files: SpoolFiles) -> PackedSpool:
    """Read a spool into compressed bytes and remove its files (the worker's side of a remote
    shard)."""

    def take(path: str) -> bytes:
        with open(path, "rb") as f:
            data = zlib.compress(f.read(), 1)
        os.unlink(path)
        return data

    return PackedSpool(runs=tuple(take(p) for p in files.runs), messages=take(files.messages))


def unpack(packed: PackedSpool, directory: str, name: str) -> SpoolFiles:
    """Write a packed spool back as files under ``directory`` (the parent's side)."""

    def put(data: bytes, suffix: str) -> str:
        path = os.path.join(directory, f"{name}.{suffix}")
        with open(path, "wb") as f:
            f.write(zlib.decompress(data))
        return path

    runs = tuple(put(data, f"run{i}") for i, data in enumerate(packed.runs))
    return SpoolFiles(runs=runs, messages=put(packed.messages, "messages"))


def _run_entries(path: str, spool: int) -> Iterator[tuple[SortKey, int, int, int]]:
    with open(path, "rb") as f:
        while head := f.read(_LENGTH.size):
            (size,) = _LENGTH.unpack(head)
            group, first_ts, conn_id, record, offset, count = marshal.loads(f.read(size))
            yield (group, first_ts, conn_id, record), spool, offset, count


def _messages(f: IO[bytes], offset: int, count: int) -> Iterator[Record]:
    """A connection's messages, read only if the consumer asks for them (the table and CSV
    reports do not)."""
    if not count:
        return
    f.seek(offset)
    read, unpack, loads, size = f.read, _LENGTH.unpack, marshal.loads, _LENGTH.size
    for _ in range(count):
        yield loads(read(unpack(read(size))[0]))


def merge(spools: Sequence[SpoolFiles]) -> Iterator[tuple[Record, Iterator[Record]]]:
    """Every spool's connections in the canonical order, each with its messages (consume them
    before asking for the next connection: they are read from a shared file)."""
    files = [open(s.messages, "rb") for s in spools]  # noqa: SIM115
    try:
        runs = [_run_entries(path, i) for i, s in enumerate(spools) for path in s.runs]
        for key, spool, offset, count in heapq.merge(*runs):
            yield marshal.loads(key[3]), _messages(files[spool], offset, count)
    finally:
        for f in files:
            f.close()
