"""Issue #17: a client that waits for ``100 Continue`` before its body pays one more round trip.

DESIGN.md section 4: an interim answer the sender waits for ends a wait, and that round trip
counts.  Only a body that followed the 100 shows the client waited; a client that sent the body
without waiting pays the one round trip of any exchange.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from builder import Conversation
from conftest import analyze_json

HEAD = b"PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
PLAIN_HEAD = b"PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\n"
BODY = b"data"
INTERIM = b"HTTP/1.1 100 Continue\r\n\r\n"
FINAL = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _analyze(tmp_path: Path, steps: list[tuple[str, bytes]], exchanges: int = 1) -> dict[str, Any]:
    conv = Conversation()
    conv.handshake()
    for _ in range(exchanges):
        for side, data in steps:
            getattr(conv, side)(data)
    conv.close()
    return analyze_json([conv.write(tmp_path / "x.pcap")])


def _round_trips(result: dict[str, Any]) -> tuple[list[float], float, float]:
    (connection,) = result["connections"]
    messages = [m["round_trips"] for m in result["messages"]]
    return messages, connection["setup_round_trips"], connection["round_trips"]


def test_a_body_sent_after_the_100_costs_two_round_trips(tmp_path: Path) -> None:
    steps = [("orig", HEAD), ("resp", INTERIM), ("orig", BODY), ("resp", FINAL)]
    result = _analyze(tmp_path, steps)
    assert _round_trips(result) == ([2.0], 1, 3)
    # The interim response stays part of the one exchange, and no byte moves.
    assert result["messages"][0]["layers"]["payload"] == len(BODY) + 2


@pytest.mark.parametrize(
    "steps",
    [
        # The body went with the head: the client did not wait.
        [("orig", HEAD + BODY), ("resp", INTERIM), ("resp", FINAL)],
        # The body went before the 100 arrived (the client's wait timed out).
        [("orig", HEAD), ("orig", BODY), ("resp", INTERIM), ("resp", FINAL)],
        # No expectation: a 100 the client did not ask for is no wait of its.
        [("orig", PLAIN_HEAD), ("resp", INTERIM), ("orig", BODY), ("resp", FINAL)],
    ],
    ids=["body-with-head", "body-before-100", "no-expect"],
)
def test_a_client_that_did_not_wait_pays_one_round_trip(
    tmp_path: Path, steps: list[tuple[str, bytes]]
) -> None:
    assert _round_trips(_analyze(tmp_path, steps)) == ([1.0], 1, 2)


def test_the_final_response_without_a_body_is_one_round_trip(tmp_path: Path) -> None:
    # The server refused the body (417) after a 100: the body never followed, no second wait.
    refused = b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    steps = [("orig", HEAD), ("resp", INTERIM), ("resp", refused)]
    assert _round_trips(_analyze(tmp_path, steps))[0] == [1.0]


def test_each_waiting_exchange_of_a_keep_alive_connection_costs_two(tmp_path: Path) -> None:
    steps = [("orig", HEAD), ("resp", INTERIM), ("orig", BODY), ("resp", FINAL)]
    assert _round_trips(_analyze(tmp_path, steps, exchanges=3)) == ([2.0] * 3, 1, 7)
