"""The gRPC length-prefixed message framer: per-message octets against messages built here."""

from __future__ import annotations

import itertools
import random
import struct

import pytest

from analyzer.decoding.events import FRAMING, OPAQUE, PAYLOAD
from analyzer.protocols.grpc.framer import PREFIX_BYTES, Framer, Piece


def message(data: bytes, compressed: int = 0) -> bytes:
    return struct.pack(">BL", compressed, len(data)) + data


def charged(pieces: list[Piece]) -> dict[tuple[int, int], int]:
    """Octets per (message index, layer)."""
    out: dict[tuple[int, int], int] = {}
    for piece in pieces:
        key = (piece.index, piece.layer)
        out[key] = out.get(key, 0) + piece.end - piece.start
    return out


def feed_chunks(framer: Framer, wire: bytes, cuts: list[int]) -> list[Piece]:
    """Feed ``wire`` cut at ``cuts``; pieces shifted back to wire positions."""
    pieces: list[Piece] = []
    bounds = [0, *cuts, len(wire)]
    for lo, hi in itertools.pairwise(bounds):
        for p in framer.feed(wire, lo, hi - lo):
            pieces.append(Piece(p.start + lo, p.end + lo, p.layer, p.index, p.first, p.last))
    return pieces


def truth(datas: list[bytes]) -> dict[tuple[int, int], int]:
    out: dict[tuple[int, int], int] = {}
    for index, data in enumerate(datas):
        out[(index, FRAMING)] = PREFIX_BYTES
        if data:
            out[(index, PAYLOAD)] = len(data)
    return out


DATAS = [b"hello", b"", b"x" * 300, bytes(range(7))]
WIRE = b"".join(message(d, i % 2) for i, d in enumerate(DATAS))


@pytest.mark.parametrize("cut", range(1, len(WIRE)))
def test_every_split_gives_each_message_its_prefix_and_data(cut: int) -> None:
    framer = Framer()
    pieces = feed_chunks(framer, WIRE, [cut])
    assert charged(pieces) == truth(DATAS)
    assert framer.count == len(DATAS) and framer.lengths == [len(d) for d in DATAS]
    assert framer.finish() is None and not framer.open
    # Pieces tile the wire, and each message has exactly one first and one last octet.
    assert [p.start for p in pieces[1:]] == [p.end for p in pieces[:-1]]
    for index in range(len(DATAS)):
        mine = [p for p in pieces if p.index == index]
        assert sum(p.first for p in mine) == 1 and mine[0].first
        assert sum(p.last for p in mine) == 1 and mine[-1].last


def test_random_chunkings_of_many_messages() -> None:
    rng = random.Random(16)
    datas = [rng.randbytes(rng.randrange(0, 40)) for _ in range(50)]
    wire = b"".join(message(d) for d in datas)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(wire)), 30))
        framer = Framer()
        assert charged(feed_chunks(framer, wire, cuts)) == truth(datas)


def test_a_message_cut_off_at_the_stream_end_is_named() -> None:
    framer = Framer()
    wire = message(b"abcdef")[:-2]
    assert charged(framer.feed(wire, 0, len(wire))) == {(0, FRAMING): 5, (0, PAYLOAD): 4}
    assert framer.finish() == "grpc.truncated_message"
    split = Framer()
    split.feed(b"\x00\x00", 0, 2)
    assert split.finish() == "grpc.truncated_message"


def test_a_flag_out_of_range_puts_the_rest_out_of_step() -> None:
    framer = Framer()
    wire = message(b"ok") + b"\x07\x00\x00\x00\x01z" + message(b"never")
    pieces = framer.feed(wire, 0, len(wire))
    assert framer.anomaly == "grpc.bad_prefix"
    got = charged(pieces)
    assert got[(0, FRAMING)] == 5 and got[(0, PAYLOAD)] == 2 and got[(1, FRAMING)] == 5
    assert got[(-1, OPAQUE)] == len(wire) - 12
    assert framer.finish() is None  # already named


def test_a_gap_inside_data_keeps_step_but_not_inside_a_prefix() -> None:
    framer = Framer()
    first, second = message(b"a" * 20), message(b"bc")
    framer.feed(first, 0, 10)
    framer.feed(None, 0, 15)  # the rest of message 0's data was not captured
    pieces = framer.feed(second, 0, len(second))
    assert charged(pieces) == {(1, FRAMING): 5, (1, PAYLOAD): 2} and framer.anomaly is None
    lost = Framer()
    lost.feed(first, 0, 3)
    lost.feed(None, 0, 2)
    assert lost.anomaly == "grpc.prefix_lost"
    assert charged(lost.feed(second, 0, len(second))) == {(-1, OPAQUE): len(second)}


def test_a_huge_announced_length_holds_nothing() -> None:
    framer = Framer()
    head = b"\x00\xff\xff\xff\xff"
    framer.feed(head + b"q" * 100, 0, 105)
    assert framer.lengths == [2**32 - 1] and framer.open
    assert framer.finish() == "grpc.truncated_message"
