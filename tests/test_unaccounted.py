"""What was not counted: bursts of segments removed, counted + inferred equals the truth."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from conftest import analyze_json, check_conservation
from pcaptools import Pcap, read, tcp_payload_length

from analyzer.accounting.unaccounted import MessageTally
from analyzer.synth import Scenario, generate

#: Bursts of consecutive data segments removed, as tcpdump drops them under load.
BURSTS = 4
BURST_SEGMENTS = 6


def _drop_bursts(pcap: Pcap, seed: int) -> tuple[Pcap, int]:
    """Remove ``BURSTS`` runs of ``BURST_SEGMENTS`` data segments (never the first 40 packets:
    the handshakes and setup stay, as in a capture started before the traffic)."""
    rng = random.Random(seed)
    data = [i for i, r in enumerate(pcap.records) if i >= 40 and tcp_payload_length(r.data)]
    dropped: set[int] = set()
    for _ in range(BURSTS):
        first = rng.randrange(len(data) - BURST_SEGMENTS)
        dropped.update(data[first : first + BURST_SEGMENTS])
    kept = [r for i, r in enumerate(pcap.records) if i not in dropped]
    return pcap.with_records(kept), len(dropped)


def _account(result: dict[str, Any], protocol: str) -> dict[str, Any]:
    account: dict[str, Any] = result["summary"][protocol]["not_counted"]
    return account


@pytest.mark.parametrize(
    ("kwargs", "by"),
    [
        (
            {"protocol": "http2", "messages": 120, "concurrency": 4, "payload": 3000},
            "http2.stream_ids",
        ),
        (
            {"protocol": "amqp", "amqp_mode": "consume", "messages": 120, "payload": 2000},
            "amqp.delivery_tags",
        ),
    ],
    ids=["http2", "amqp-consume"],
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_counted_plus_inferred_equals_the_truth(
    kwargs: dict[str, Any], by: str, seed: int, tmp_path: Path
) -> None:
    g = generate(Scenario(**kwargs).validate())
    whole = tmp_path / "whole.pcap"
    g.write(whole)
    cut, removed = _drop_bursts(read(whole), seed)
    path = cut.write(tmp_path / "cut.pcap")
    result = analyze_json([path])
    check_conservation(result)
    protocol = kwargs["protocol"]
    counted = result["summary"][protocol]["messages"]
    account = _account(result, protocol)
    assert removed and sum(c["missing_bytes"] for c in result["connections"]) > 0
    assert counted + account["inferred_lost"] == kwargs["messages"], (counted, account)
    assert account["inferred_lost"] == sum(
        c["not_counted"]["inferred_by"][by] for c in result["connections"]
    )


def test_a_whole_capture_has_nothing_to_account_for(tmp_path: Path) -> None:
    g = generate(Scenario(protocol="http2", messages=20, concurrency=4).validate())
    g.write(tmp_path / "a.pcap")
    account = _account(analyze_json([tmp_path / "a.pcap"]), "http2")
    assert account == {
        "unanswered": 0,
        "no_request": 0,
        "unfinished": 0,
        "inferred_lost": 0,
        "mid_stream_connections": 0,
    }


def test_the_tally_reads_sequences_and_unanswered_requests() -> None:
    tally = MessageTally()
    base = {"protocol": "http2", "kind": "stream", "end_ts": 1.0, "answer_ts": 1.0}
    for stream in (1, 3, 9, 11):  # 5 and 7 lost whole
        tally.add_fields({**base, "detail": {"method": "GET", "stream_id": stream}})
    tally.add_fields({**base, "answer_ts": None, "end_ts": None, "detail": {"method": "GET"}})
    tally.add_fields({**base, "protocol": "http1", "kind": "exchange", "detail": {"status": 200}})
    deliver = {"protocol": "amqp", "kind": "deliver", "end_ts": 1.0, "answer_ts": 1.0}
    for tag in (1, 2, 5):
        tally.add_fields({**deliver, "detail": {"channel": 1, "delivery_tag": tag}})
    tally.add_fields({**deliver, "detail": {"channel": 2, "delivery_tag": 1}})
    got = tally.as_dict(lost_bytes=True, mid_stream=False)
    assert got["inferred_by"] == {"http2.stream_ids": 2, "amqp.delivery_tags": 2}
    assert (got["unanswered"], got["no_request"], got["unfinished"]) == (1, 1, 1)
    assert tally.as_dict(lost_bytes=False, mid_stream=True)["inferred_lost"] == 0
