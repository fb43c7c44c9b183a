"""AMQP RPC calls paired across connections by correlation id (analyzer/accounting/rpc.py).

The properties are read by wireprobe's own parser and checked against pamqp's encoder; the
pairing is checked on message records and end to end on two generated legs of an RPC (the
caller's request publish and the reply's delivery to the caller), whose ground truth is each
leg's own messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pcaptools
import pytest
from conftest import analyze_json, check_conservation
from pamqp import commands, frame, header

from analyzer.accounting import rpc
from analyzer.accounting.rpc import RpcPairs
from analyzer.protocols.amqp.properties import RpcProperties, rpc_properties
from analyzer.synth import generate
from analyzer.synth.scenario import Scenario


def _header_frame(**props: Any) -> bytes:
    return frame.marshal(header.ContentHeader(0, 10, commands.Basic.Properties(**props)), 1)


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({}, ("", "")),
        ({"correlation_id": "c-1", "reply_to": "replies"}, ("c-1", "replies")),
        (
            # every property before them present, the headers table included (skipped by size)
            {
                "content_type": "application/json",
                "content_encoding": "gzip",
                "headers": {"trace": "abc", "n": 7, "nested": {"x": [1, 2]}},
                "delivery_mode": 2,
                "priority": 9,
                "correlation_id": "7f3e",
                "reply_to": "amq.rabbitmq.reply-to",
                "expiration": "60000",
                "message_id": "m-9",
            },
            ("7f3e", "amq.rabbitmq.reply-to"),
        ),
        ({"correlation_id": "only"}, ("only", "")),
        ({"reply_to": "q", "message_id": "m"}, ("", "q")),
        ({"correlation_id": "caf\u00e9"}, ("caf\u00e9", "")),
    ],
)
def test_properties_read_as_pamqp_wrote_them(
    props: dict[str, Any], expected: tuple[str, str]
) -> None:
    raw = _header_frame(**props)
    assert rpc_properties(raw, 7, len(raw) - 1) == RpcProperties(*expected)


def test_malformed_properties_give_none_and_no_exception() -> None:
    raw = _header_frame(content_type="x" * 50, correlation_id="c", reply_to="r")
    payload = raw[7:-1]
    for cut in range(len(payload)):
        got = rpc_properties(payload[:cut], 0, cut)
        assert got in (RpcProperties("", ""), RpcProperties("c", ""), RpcProperties("c", "r"))
    assert rpc_properties(payload[:-1], 0, len(payload) - 1) == RpcProperties("", "")
    other_class = (50).to_bytes(2, "big") + payload[2:]  # queue class: no basic properties
    assert rpc_properties(other_class, 0, len(other_class)) == RpcProperties("", "")


def _message(kind: str, start: float, correlation: str, reply_to: str = "") -> dict[str, Any]:
    detail: dict[str, Any] = {"correlation_id": correlation}
    if reply_to:
        detail["reply_to"] = reply_to
    return {
        "protocol": "amqp",
        "kind": kind,
        "start_ts": start,
        "end_ts": start + 0.001,
        "detail": detail,
    }


def test_a_reply_seen_before_its_call_still_pairs() -> None:
    pairs = RpcPairs()
    pairs.add(_message("deliver", 10.5, "a"))  # the caller's connection finished later
    pairs.add(_message("publish", 10.0, "a", "replies"))
    out = pairs.as_dict()
    assert out is not None
    assert (out["calls"], out["answered"], out["unanswered"]) == (1, 1, 0)
    assert out["latency"]["min"] == pytest.approx(0.5)
    assert out["latency_last_byte"]["max"] == pytest.approx(0.501)


def test_the_requests_own_delivery_is_not_its_reply() -> None:
    pairs = RpcPairs()
    pairs.add(_message("publish", 1.0, "a", "replies"))
    pairs.add(_message("deliver", 1.1, "a", "replies"))  # to the worker: still names reply_to
    pairs.add(_message("deliver", 0.9, "a"))  # before the call: an earlier call's reply
    out = pairs.as_dict()
    assert out is not None
    assert (out["answered"], out["unanswered"], out["replies_without_call"]) == (0, 1, 1)
    assert out["latency"] is None
    pairs.add(_message("deliver", 1.3, "a"))
    assert pairs.as_dict()["answered"] == 1  # type: ignore[index]


def test_no_rpc_traffic_no_block() -> None:
    pairs = RpcPairs()
    pairs.add(
        {
            "protocol": "amqp",
            "kind": "publish",
            "start_ts": 1.0,
            "end_ts": 1.0,
            "detail": {"routing_key": "q"},
        }
    )
    pairs.add({"protocol": "http1", "kind": "exchange", "detail": {"correlation_id": "x"}})
    assert pairs.as_dict() is None


def test_waiting_calls_are_bounded_and_evictions_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rpc, "MAX_WAITING", 5)
    pairs = RpcPairs()
    for i in range(12):
        pairs.add(_message("publish", float(i), f"c{i}", "replies"))
    out = pairs.as_dict()
    assert out is not None
    assert (out["calls"], out["unanswered"], out["evicted"]) == (12, 5, 7)
    pairs.add(_message("deliver", 20.0, "c0"))  # evicted: waits as a reply without call
    pairs.add(_message("deliver", 20.0, "c11"))  # still waiting: pairs
    out = pairs.as_dict()
    assert out is not None and out["answered"] == 1


def test_two_halves_merge_into_the_pairs_of_one_run() -> None:
    calls, replies, whole = RpcPairs(), RpcPairs(), RpcPairs()
    for i in range(4):
        call, reply = _message("publish", i, f"c{i}", "r"), _message("deliver", i + 0.25, f"c{i}")
        calls.add(call)
        replies.add(reply)
        whole.add(call)
        whole.add(reply)
    calls.merge(replies)
    assert calls.as_dict() == whole.as_dict()


@pytest.fixture(scope="module")
def legs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    """The caller's request publishes, and the replies' delivery to the caller shifted in time."""
    folder = tmp_path_factory.mktemp("rpc")
    shift_s = 0.5
    request = Scenario(protocol="amqp", amqp_mode="publish", amqp_properties="request", messages=5)
    reply = Scenario(protocol="amqp", amqp_mode="consume", amqp_properties="reply", messages=5)
    generate(request).write(folder / "request.pcap")
    generate(reply).write(folder / "reply0.pcap")
    capture = pcaptools.read(folder / "reply0.pcap")
    shifted = [
        pcaptools.Record(r.ts_ns + int(shift_s * 1e9), r.data, r.orig_len) for r in capture.records
    ]
    capture.with_records(shifted).write(folder / "reply.pcap")
    return folder / "request.pcap", folder / "reply.pcap", shift_s


def test_calls_pair_with_their_replies_across_connections(legs: tuple[Path, Path, float]) -> None:
    request, reply, _ = legs
    alone = [analyze_json([p])["messages"] for p in (request, reply)]
    truth = sorted(
        (r["start_ts"] - c["start_ts"], r["end_ts"] - c["start_ts"])
        for c, r in zip(*alone, strict=True)
    )
    result = analyze_json([request, reply])
    check_conservation(result)
    out = result["summary"]["amqp"]["rpc"]
    assert (out["calls"], out["answered"], out["unanswered"], out["replies_without_call"]) == (
        5,
        5,
        0,
        0,
    )
    first = [t[0] for t in truth]
    assert out["latency"]["min"] == pytest.approx(min(first), abs=1e-9)
    assert out["latency"]["max"] == pytest.approx(max(first), abs=1e-9)
    assert out["latency"]["mean"] == pytest.approx(sum(first) / 5)
    assert out["latency_last_byte"]["max"] == pytest.approx(max(t[1] for t in truth), abs=1e-9)
    # Each message names its call's correlation id, for the message log and joins.
    ids = {m["detail"]["correlation_id"] for m in result["messages"]}
    assert len(ids) == 5


def test_one_leg_alone_says_what_waits(legs: tuple[Path, Path, float]) -> None:
    request, reply, _ = legs
    out = analyze_json([request])["summary"]["amqp"]["rpc"]
    assert (out["calls"], out["answered"], out["unanswered"]) == (5, 0, 5)
    out = analyze_json([reply])["summary"]["amqp"]["rpc"]
    assert (out["calls"], out["replies_without_call"]) == (0, 5)


def test_shards_pair_the_calls_one_process_pairs(legs: tuple[Path, Path, float]) -> None:
    from analyzer.capture.inputs import single
    from analyzer.options import AnalyzeOptions
    from analyzer.pipeline import analyze
    from analyzer.shards import analyze_sharded

    paths = [str(legs[0]), str(legs[1])]
    want = analyze(paths, AnalyzeOptions()).summary["amqp"]["rpc"]
    assert want["answered"] == 5
    for buckets in (1, 2, 4):
        got = analyze_sharded(single(paths), AnalyzeOptions(), buckets=buckets)
        assert got.summary["amqp"]["rpc"] == want, buckets


#: The four legs of an RPC as the comparison generates them (analyzer/compare/matrix.py).
FOUR_LEGS = (
    "amqp rpc request publish",
    "amqp rpc request deliver",
    "amqp rpc reply publish",
    "amqp rpc reply deliver",
)


@pytest.fixture(scope="module")
def four_legs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Each leg its own capture, leg k moved k seconds later, so that every call's legs start in
    their order (the generator starts every capture at the same instant); one seed, so that the
    legs carry the same correlation ids."""
    from analyzer.compare.matrix import LEG_MODES

    folder = tmp_path_factory.mktemp("rpc4")
    paths = []
    for k, mode in enumerate(FOUR_LEGS):
        protocol, fields = LEG_MODES[mode]
        raw = folder / f"leg{k}-raw.pcap"
        generate(Scenario(protocol=protocol, messages=6, **fields)).write(raw)
        capture = pcaptools.read(raw)
        moved = [
            pcaptools.Record(r.ts_ns + k * 1_000_000_000, r.data, r.orig_len)
            for r in capture.records
        ]
        paths.append(capture.with_records(moved).write(folder / f"leg{k}.pcap"))
    return paths


def test_four_legs_add_up_to_the_end_to_end_cost_of_a_call(four_legs: list[Path]) -> None:
    legs = [analyze_json([p])["summary"]["amqp"] for p in four_legs]
    result = analyze_json(four_legs)
    check_conservation(result)
    out = result["summary"]["amqp"]["rpc"]
    assert (out["calls"], out["answered"], out["complete"], out["unanswered"]) == (6, 6, 6, 0)
    for name, leg in zip(
        ("call", "request_delivery", "reply", "reply_delivery"), legs, strict=True
    ):
        got = out["legs"][name]
        assert got["marginal_bytes_per_call"] == pytest.approx(leg["marginal_bytes_per_message"])
        assert got["loaded_bytes_per_call"] == pytest.approx(leg["loaded_bytes_per_message"])
    # What the comparison sums leg by leg is what the wire's correlation ids add up to.
    total = sum(leg["loaded_bytes_per_message"] for leg in legs)
    assert out["end_to_end"]["loaded_bytes_per_call"] == pytest.approx(total)
    assert out["end_to_end"]["marginal_bytes_per_call"] == pytest.approx(
        sum(leg["marginal_bytes_per_message"] for leg in legs)
    )


def test_legs_out_of_time_order_do_not_make_a_call(four_legs: list[Path]) -> None:
    # The worker's reply published before the caller's request: no call it can belong to.
    pairs = RpcPairs()
    pairs.add(_message("publish", 2.0, "x", "r"))
    pairs.add(_message("publish", 1.0, "x"))  # reply leg, earlier than the call
    pairs.add(_message("deliver", 3.0, "x"))
    out = pairs.as_dict()
    assert out is not None
    assert (out["answered"], out["complete"]) == (1, 0)


def test_the_table_shows_the_rpc_calls_latency(four_legs: list[Path]) -> None:
    from typer.testing import CliRunner

    from analyzer.cli import app

    rpc = analyze_json(four_legs)["summary"]["amqp"]["rpc"]
    result = CliRunner().invoke(app, ["analyze", *map(str, four_legs)])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "RPC call" in line)
    assert f"{rpc['latency']['p50'] * 1000:,.3f}" in row
