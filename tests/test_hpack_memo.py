"""The header-block memos of the HTTP/2 decoder are exact: the same fields and the same dynamic
table as a plain hpack decoder, block after block, whatever the blocks do to the table."""

from __future__ import annotations

import random

import pytest
from hpack import Decoder, Encoder, HPACKError

from analyzer.protocols.http2.decoder import HPACK_ENTRY_OVERHEAD, MAX_HEADER_LIST_BYTES, _Side
from analyzer.protocols.http2.hpack_memo import scan

# Static-table indices (RFC 7541 appendix A) of the names nginx sends as literals.
_STATUS_200, _CONTENT_LENGTH, _CONTENT_TYPE, _DATE, _ETAG, _SERVER = 8, 28, 31, 33, 34, 54


def _string(text: bytes) -> bytes:
    assert len(text) < 127
    return bytes([len(text)]) + text


def _indexing(name_index: int, value: bytes) -> bytes:
    """Literal with incremental indexing, indexed name (RFC 7541 section 6.2.1)."""
    return bytes([0x40 | name_index]) + _string(value)


def _nginx_like(second: int, length: int) -> bytes:
    """A response block as nginx 1.22 writes it: every field added to the table, none read."""
    return (
        bytes([0x80 | _STATUS_200])
        + _indexing(_SERVER, b"nginx/1.22.1")
        + _indexing(_DATE, b"Wed, 02 Dec 2026 16:%02d:00 GMT" % second)
        + _indexing(_CONTENT_TYPE, b"application/octet-stream")
        + _indexing(_CONTENT_LENGTH, b"%d" % length)
        + _indexing(_ETAG, b'"692f1234-%x"' % length)
    )


def _expected(decoder: Decoder, block: bytes) -> tuple[int, dict[bytes, bytes]]:
    fields = decoder.decode(block, True)
    size = sum(len(n) + len(v) + HPACK_ENTRY_OVERHEAD for n, v in fields)
    return size, {bytes(n): bytes(v) for n, v in fields if n.startswith(b":")}


def _agree(blocks: list[bytes], table_bytes: int = 4096) -> int:
    """Decode ``blocks`` with the memoised side and with plain hpack; both must give the same
    figures and leave the same table after every block.  Returns the static-memo hits."""
    side = _Side(0, 0, 0)
    plain = Decoder(max_header_list_size=MAX_HEADER_LIST_BYTES)
    for decoder in (side.hpack, plain):
        decoder.header_table_size = table_bytes
        decoder.max_allowed_table_size = max(table_bytes, 4096)
    hits = 0
    for block in blocks:
        known = block in side.static
        try:
            want = _expected(plain, block)
        except HPACKError:
            with pytest.raises(HPACKError):
                side.decode_block(block)
            return hits
        got = side.decode_block(block)
        hits += known
        assert (got.size, got.status) == (want[0], _status(want[1]))
        assert list(side.hpack.header_table.dynamic_entries) == list(
            plain.header_table.dynamic_entries
        )
        assert side.hpack.header_table._current_size == plain.header_table._current_size
    return hits


def _status(pseudo: dict[bytes, bytes]) -> int | None:
    status = pseudo.get(b":status")
    return int(status) if status is not None else None


def test_scan_tells_static_blocks_and_which_fields_they_add() -> None:
    assert scan(_nginx_like(1, 512)) == (False, True, True, True, True, True)
    assert scan(bytes([0x80 | 62])) is None  # indexes the dynamic table
    assert scan(bytes([0x40 | 62]) + _string(b"x")) is None  # a dynamic name
    assert scan(bytes([0x3F, 0xE1, 0x1F])) is None  # a table size update
    assert scan(bytes([0x40 | _DATE, 5]) + b"ab") is None  # value cut short
    assert scan(b"\x10" + _string(b"k") + _string(b"v")) == (False,)  # never indexed
    assert scan(b"") == ()


def test_repeated_nginx_blocks_replay_their_entries_through_evictions() -> None:
    blocks = [_nginx_like(second, 512 + (i % 3)) for second in range(5) for i in range(40)]
    # 256 octets hold about two fields: every replayed block evicts, and one field is larger
    # than a 64-octet table, which empties it.
    for table_bytes in (4096, 256, 64, 0):
        hits = _agree(blocks, table_bytes)
        assert hits == len(blocks) - len(set(blocks))


def test_blocks_that_index_the_table_mix_with_static_ones() -> None:
    rng = random.Random(18)
    encoder = Encoder()
    mirror = Decoder()  # what the encoder must know of the entries the static blocks add
    blocks: list[bytes] = []
    for i in range(300):
        if i == 150:
            encoder.header_table_size = 2048  # its next block opens with a size update
        if rng.random() < 0.5:
            block = _nginx_like(i % 4, 512)
            for name, value in mirror.decode(block, True)[1:]:
                encoder.header_table.add(name, value)
            blocks.append(block)
            continue
        headers = [(":method", "GET"), (":path", f"/item/{rng.randrange(6)}")]
        # fields the static blocks added: the encoder indexes them, so a wrong replay would
        # decode these blocks to other fields
        headers += [("server", "nginx/1.22.1"), ("content-length", "512")]
        blocks.append(encoder.encode(headers))
    assert _agree(blocks) > 0


def test_an_invalid_block_is_never_remembered() -> None:
    bad = bytes([0x40 | _DATE, 9]) + b"short"
    assert _agree([_nginx_like(0, 1), bad, _nginx_like(0, 1)]) == 0
