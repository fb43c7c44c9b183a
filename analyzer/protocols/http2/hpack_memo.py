"""Which header blocks decode the same whatever the HPACK dynamic table holds (RFC 7541).

A header block's fields depend on the dynamic table only through the fields that index it (an
indexed field or a literal whose name is an index above the static table's 61 entries) and
through dynamic table size updates.  A block with neither is *static*: it decodes to the same
fields in any table state, and its only effect on the table is to add, in order, the fields it
sends "with incremental indexing" (section 6.2.1).  Servers that never reference their own
table (nginx sends every response field that way: ``date``, ``content-type``, ``etag``...)
send only static blocks, so one decode per distinct block, then a replay of the entries it
adds, is the exact work of decoding it again.

``scan`` reads a block's representation prefixes without decoding any string (no Huffman), so
it costs a few operations per field; it runs once per distinct block.

hpack logs about eight ``logging.debug`` calls per decoded block and one per evicted entry;
``quiet_hpack_debug`` turns those calls into a no-op, since an observer decoding millions of
blocks cannot afford them (a logger's disabled debug still costs two calls each).
"""

from __future__ import annotations

import logging
from typing import Final

from hpack.table import HeaderTable, table_entry_size

#: RFC 7541 appendix A: the static table's entries are indices 1 to 61.
STATIC_TABLE_ENTRIES: Final = 61

#: Representation prefixes (RFC 7541 section 6): the first octet's high bits.
_INDEXED: Final = 0x80
_INCREMENTAL: Final = 0x40
_SIZE_UPDATE: Final = 0x20

_Buffer = bytes | bytearray | memoryview


def _integer(block: _Buffer, at: int, prefix_bits: int) -> tuple[int, int]:
    """RFC 7541 section 5.1 integer at ``at`` with an N-bit prefix: (value, next offset).
    Raises IndexError on a block cut short."""
    mask = (1 << prefix_bits) - 1
    value = block[at] & mask
    at += 1
    if value < mask:
        return value, at
    shift = 0
    while True:
        octet = block[at]
        at += 1
        value += (octet & 0x7F) << shift
        shift += 7
        if not octet & 0x80:
            return value, at


def _skip_string(block: _Buffer, at: int) -> int:
    """Offset after the RFC 7541 section 5.2 string literal at ``at``; raises IndexError when
    the block ends inside it."""
    length, at = _integer(block, at, 7)
    end = at + length
    if end > len(block):
        raise IndexError(end)
    return end


def scan(block: _Buffer) -> tuple[bool, ...] | None:
    """For a static block, one flag per field in order: True when the field is added to the
    dynamic table.  None when the block is not static (it references the dynamic table or
    updates its size) or is malformed (the real decoder then says how)."""
    adds: list[bool] = []
    at = 0
    end = len(block)
    try:
        while at < end:
            first = block[at]
            if first & _INDEXED:
                index, at = _integer(block, at, 7)
                if index > STATIC_TABLE_ENTRIES:
                    return None
                adds.append(False)
                continue
            if first & _INCREMENTAL:
                name_index, at = _integer(block, at, 6)
                adds.append(True)
            elif first & _SIZE_UPDATE:
                return None
            else:  # without indexing, or never indexed (section 6.2.2, 6.2.3)
                name_index, at = _integer(block, at, 4)
                adds.append(False)
            if name_index > STATIC_TABLE_ENTRIES:
                return None
            if name_index == 0:
                at = _skip_string(block, at)
            at = _skip_string(block, at)
    except IndexError:
        return None
    return tuple(adds)


#: A remembered table entry: name, value and its RFC 7541 section 4.1 size.
Entry = tuple[bytes, bytes, int]


def entries(fields: list[tuple[bytes, bytes]], adds: tuple[bool, ...]) -> tuple[Entry, ...]:
    """The entries a static block added, in order, from its decoded fields and ``scan``."""
    return tuple(
        (name, value, table_entry_size(name, value))
        for (name, value), add in zip(fields, adds, strict=True)
        if add
    )


def replay(table: HeaderTable, added: tuple[Entry, ...]) -> None:
    """``table.add`` of each entry in order (RFC 7541 section 4.4: an entry larger than the
    table empties it; otherwise the oldest entries are evicted until it fits), done on hpack's
    own deque and size counter without its two calls and debug log per entry."""
    dynamic = table.dynamic_entries
    maxsize = table._maxsize
    size = table._current_size
    for name, value, entry_size in added:
        if entry_size > maxsize:
            dynamic.clear()
            size = 0
            continue
        dynamic.appendleft((name, value))
        size += entry_size
        while size > maxsize:
            old_name, old_value = dynamic.pop()
            size -= table_entry_size(old_name, old_value)
    table._current_size = size


def _no_debug(*_args: object, **_kwargs: object) -> None:
    """Stands in for ``Logger.debug`` on hpack's loggers."""


#: hpack's modules that log on the per-block path.
HPACK_LOGGERS: Final = ("hpack.hpack", "hpack.table")


def quiet_hpack_debug() -> None:
    """Make hpack's debug logging free: its messages say what a decode did, field by field,
    which no user of wireprobe reads; warnings and errors are left as they are."""
    for name in HPACK_LOGGERS:
        logger = logging.getLogger(name)
        # An instance attribute shadows the method: the call no longer enters logging at all.
        logger.debug = _no_debug  # type: ignore[method-assign]
