"""StreamAssembler: sequence numbers to an in-order stream, with holes reported, never filled."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.tcp import reassembly
from analyzer.tcp.reassembly import StreamAssembler


def stream(asm: StreamAssembler, segments: list[tuple[int, bytes]]) -> bytes:
    out = b""
    for start, data in segments:
        for value in asm.segment(start, data, len(data)):
            assert isinstance(value, bytes)
            out += value
    return out


def test_in_order_and_reordered_give_the_same_stream() -> None:
    data = bytes(range(256)) * 4
    parts = [(i, data[i : i + 100]) for i in range(0, len(data), 100)]
    assert stream(StreamAssembler(), parts) == data
    shuffled = parts[1::2] + parts[0::2]
    asm = StreamAssembler()
    assert stream(asm, shuffled) == data
    assert asm.retransmitted_bytes == 0


def test_overlapping_retransmission_delivers_only_new_bytes() -> None:
    asm = StreamAssembler()
    assert stream(asm, [(0, b"abcdef"), (3, b"defghi")]) == b"abcdefghi"
    assert asm.retransmitted_bytes == 3


def test_conflicting_overlap_is_counted() -> None:
    asm = StreamAssembler()
    assert stream(asm, [(4, b"XXXX"), (4, b"efgh"), (0, b"abcd")]) == b"abcdXXXX"
    assert asm.overlap_mismatches == 1


def test_hole_waits_until_the_peer_acknowledges_past_it() -> None:
    asm = StreamAssembler()
    assert asm.segment(0, b"ab", 2) == [b"ab"]
    assert asm.segment(5, b"fg", 2) == []
    assert asm.acked(7) == [], "one ACK past a hole may be a reordered capture"
    assert asm.acked(7) == [3, b"fg"]
    assert asm.gap_bytes == 3 and asm.gaps == 1


def test_ack_captured_before_the_segment_it_acknowledges() -> None:
    asm = StreamAssembler()
    asm.segment(0, b"ab", 2)
    asm.segment(5, b"fg", 2)
    assert asm.acked(7) == []
    assert asm.segment(2, b"cde", 3) == [b"cdefg"[:3], b"fg"]
    assert asm.gap_bytes == 0 and asm.retransmitted_bytes == 0


def test_flush_gives_up_on_every_hole() -> None:
    asm = StreamAssembler()
    asm.segment(10, b"k", 1)
    asm.segment(20, b"u", 1)
    assert asm.flush() == [10, b"k", 9, b"u"]


def test_snaplen_cut_is_a_gap_at_once() -> None:
    asm = StreamAssembler()
    assert asm.segment(0, b"abc", 10) == [b"abc", 7]
    assert asm.next == 10


def test_buffer_bound_forces_the_gap(monkeypatch: object) -> None:
    import pytest

    mp = pytest.MonkeyPatch()
    mp.setattr(reassembly, "MAX_BUFFERED_BYTES", 10)
    try:
        asm = StreamAssembler()
        assert asm.segment(5, b"x" * 8, 8) == []
        pieces = asm.segment(13, b"y" * 8, 8)
        assert pieces[0] == 5
        assert asm.held_bytes <= 10
    finally:
        mp.undo()


def test_sequence_wrap() -> None:
    asm = StreamAssembler()
    asm.syn(2**32 - 3)
    assert asm.offset(2**32 - 2) == 0
    assert asm.offset(5) == 7
    asm.segment(0, b"x" * 100, 100)
    assert asm.offset((2**32 - 2 + 100) % 2**32) == 100


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 300), st.integers(1, 60)), min_size=1, max_size=30),
    st.randoms(use_true_random=False),
)
def test_any_arrival_order_never_invents_or_reorders_bytes(
    cuts: list[tuple[int, int]], rnd: object
) -> None:
    data = bytes((i * 7) % 251 for i in range(400))
    segments = [(s, data[s : s + n]) for s, n in cuts]
    asm = StreamAssembler()
    out = bytearray()
    position = 0
    pieces = []
    for start, chunk in segments:
        pieces += asm.segment(start, chunk, len(chunk))
    pieces += asm.flush()
    for value in pieces:
        if isinstance(value, bytes):
            assert value == data[position : position + len(value)]
            out += value
            position += len(value)
        else:
            position += value
    assert position == asm.next
