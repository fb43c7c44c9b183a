"""Round trips from event order (DESIGN.md section 4) and integer apportionment."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from analyzer.accounting.apportion import apportion
from analyzer.accounting.roundtrips import message_round_trips, setup_round_trips

ORIG, RESP = 0, 1


def test_keep_alive_costs_one_round_trip_each() -> None:
    msgs = [(ORIG, 1 + 4 * i, 3 + 4 * i) for i in range(5)]
    assert message_round_trips(msgs) == [1.0] * 5


def test_eight_streams_sent_together_cost_an_eighth_each() -> None:
    msgs = [(ORIG, i, 20 + i) for i in range(8)] + [(ORIG, 40 + i, 60 + i) for i in range(8)]
    assert message_round_trips(msgs) == [0.125] * 16


def test_fire_and_forget_costs_nothing() -> None:
    assert message_round_trips([(ORIG, i, None) for i in range(10)]) == [0.0] * 10


def test_asynchronous_confirms_all_at_the_end_cost_one_over_n() -> None:
    msgs = [(ORIG, i, 100) for i in range(10)]
    assert message_round_trips(msgs) == [0.1] * 10


def test_sliding_window_of_four() -> None:
    # four in flight; each answer lets one more go: one quarter each after the first window
    msgs = [(ORIG, i, 10 + 2 * i) for i in range(4)]  # answered at 10, 12, 14, 16
    msgs += [(ORIG, 11 + 2 * i, 20 + 2 * i) for i in range(4)]  # sent at 11, 13, 15, 17
    trips = message_round_trips(msgs)
    assert trips == [0.25] * 8


def test_deliveries_are_charged_on_the_broker_side() -> None:
    assert message_round_trips([(RESP, 5, 6), (RESP, 7, None)]) == [1.0, 0.0]


def test_setup_turns() -> None:
    # TLS 1.2: CH | SH..SHD | CKE..Fin | CCS Fin | request
    turns = [(1, ORIG), (2, RESP), (3, ORIG), (4, RESP), (5, ORIG)]
    assert setup_round_trips(True, turns, bound=5) == 3
    assert setup_round_trips(True, turns, bound=None) == 1
    assert setup_round_trips(False, [(1, ORIG)], bound=1) == 0


@given(st.integers(0, 10_000), st.lists(st.integers(0, 5000), min_size=1, max_size=12))
def test_apportion_is_exact_and_fair(total: int, weights: list[int]) -> None:
    parts = apportion(total, weights)
    assert sum(parts) == total
    whole = sum(weights)
    if whole:
        for part, weight in zip(parts, weights, strict=True):
            assert abs(part - total * weight / whole) < 1
