"""The synthetic traffic generator (issue 5): scenarios, captures, ground truth.

The conversation: a scenario goes in, a pcap and its ground truth come out; the truth must obey
the ledger's conservation law by itself, tshark must read the capture as the truth says (same
connections, requests, streams and AMQP methods, no malformed packet, TLS decrypted with the key
log), and the analyzer's JSON must equal the truth field by field.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import random
import struct
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from analyzer.errors import UsageError
from analyzer.synth import PRESETS, Generated, Scenario, from_options, generate, preset

TSHARK = "/usr/bin/tshark"
#: tshark decodes these ports as AMQP over TLS only when told (5671 has no heuristic).
TSHARK_ALWAYS = ["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"]
BUCKETS = ("setup_bytes", "teardown_bytes", "control_bytes", "undecoded_bytes")
# AMQP (class, method) ids, AMQP 0-9-1 section 1.
BASIC_PUBLISH, BASIC_DELIVER, BASIC_ACK = (60, 40), (60, 60), (60, 80)


@functools.cache
def _generated(**kwargs: Any) -> Generated:
    return generate(Scenario(**kwargs))


def gen(**kwargs: Any) -> Generated:
    """Generate once per distinct scenario (several tests read the same one)."""
    return _generated(**kwargs)


def written(g: Generated, tmp_path: Path) -> tuple[Path, Path | None]:
    pcap = tmp_path / "synth.pcap"
    keys = tmp_path / "synth.keys" if g.keylog else None
    g.write(pcap, keys)
    return pcap, keys


def tshark(pcap: Path, keys: Path | None, *args: str) -> str:
    command = [TSHARK, "-r", str(pcap), *TSHARK_ALWAYS]
    if keys is not None:
        command += ["-o", f"tls.keylog_file:{keys}"]
    done = subprocess.run([*command, *args], capture_output=True, text=True, check=True)
    return done.stdout


def fields(pcap: Path, keys: Path | None, *names: str, display: str = "") -> list[list[str]]:
    """One row per packet: the occurrences of each field (comma-separated in tshark's output)."""
    args = ["-T", "fields", "-E", "separator=\t"]
    if display:
        args += ["-Y", display]
    for name in names:
        args += ["-e", name]
    out = tshark(pcap, keys, *args)
    return [line.split("\t") for line in out.splitlines() if line.strip()]


def amqp_methods(pcap: Path, keys: Path | None) -> Counter[tuple[int, int]]:
    counts: Counter[tuple[int, int]] = Counter()
    for classes, methods in fields(
        pcap, keys, "amqp.method.class", "amqp.method.method", display="amqp"
    ):
        for c, m in zip(classes.split(","), methods.split(","), strict=True):
            if c and m:
                counts[int(c), int(m)] += 1
    return counts


def connections(g: Generated) -> list[dict[str, Any]]:
    return g.truth["connections"]  # type: ignore[return-value]


def messages(g: Generated) -> list[dict[str, Any]]:
    return g.truth["messages"]  # type: ignore[return-value]


def summary(g: Generated) -> dict[str, dict[str, Any]]:
    return g.truth["summary"]  # type: ignore[return-value]


# --- scenarios and their validation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"protocol": "amqp", "concurrency": 4}, "--concurrency"),
        ({"resume": True}, "--resume"),
        ({"mtu": 500}, "--mtu"),
        ({"loss": 0.5}, "--loss"),
        ({"loss": -0.1}, "--loss"),
        ({"reorder": 0.7}, "--reorder"),
        ({"payload": -1}, "--payload"),
        ({"messages": 0}, "--messages"),
        ({"per_connection": 0}, "--per-connection"),
        ({"protocol": "http1", "amqp_mode": "confirm"}, "--amqp-mode"),
        ({"protocol": "amqp", "amqp_mode": "sometimes"}, "--amqp-mode"),
        ({"protocol": "smtp"}, "--protocol"),
        ({"tls": "1.1"}, "--tls"),
        ({"rtt_ms": 0}, "--rtt-ms"),
    ],
)
def test_bad_combinations_are_usage_errors_with_one_line(
    kwargs: dict[str, Any], words: str
) -> None:
    with pytest.raises(UsageError) as caught:
        generate(Scenario(**kwargs))
    message = str(caught.value)
    assert words in message and "\n" not in message


def test_presets_are_valid_and_overridable() -> None:
    for name, scenario in PRESETS.items():
        assert scenario.validate() is scenario, name
    assert preset("rest-new-conn", messages=3).messages == 3
    with pytest.raises(UsageError, match="unknown preset"):
        preset("no-such-thing")


# --- determinism ----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["http1", "http2", "amqp"])
def test_cleartext_is_byte_identical_for_the_same_seed(protocol: str) -> None:
    scenario = Scenario(protocol=protocol, messages=5, per_connection=2, payload=3000, seed=7)
    first, again = generate(scenario), generate(scenario)
    assert first.pcap() == again.pcap()
    assert first.truth == again.truth
    other = generate(
        Scenario(protocol=protocol, messages=5, per_connection=2, payload=3000, seed=8)
    )
    assert other.pcap() != first.pcap()


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_tls_has_the_same_sizes_counts_and_times_for_the_same_seed(tls: str) -> None:
    scenario = Scenario(protocol="http2", tls=tls, messages=4, per_connection=2, resume=True)
    first, again = generate(scenario), generate(scenario)
    assert [(ts, len(f)) for ts, f in first.frames] == [(ts, len(f)) for ts, f in again.frames]
    assert first.truth == again.truth
    assert first.pcap() != again.pcap()  # the ssl module draws its own randoms


# --- the capture itself ---------------------------------------------------------------------------


def test_pcap_is_classic_ethernet_with_orig_len_and_mss_sized_segments() -> None:
    g = gen(protocol="http1", messages=2, payload=100_000, mtu=576)
    data = g.pcap()
    magic, _, _, _, _, _, link_type = struct.unpack_from("<IHHiIII", data)
    assert (magic, link_type) == (0xA1B2C3D4, 1)
    offset, lengths = 24, []
    while offset < len(data):
        _, _, incl, orig = struct.unpack_from("<IIII", data, offset)
        assert incl == orig
        lengths.append(orig)
        offset += 16 + incl
    assert len(lengths) == len(g.frames)
    assert max(lengths) == 576 + 14  # full segments fill the MTU exactly
    assert sum(lengths) == sum(c["wire_bytes"] for c in connections(g))


def test_packets_carry_unix_timestamps_spaced_by_the_rtt() -> None:
    g = gen(protocol="http1", messages=1, payload=0, rtt_ms=20.0)
    syn, syn_ack, ack = (ts for ts, _ in g.packets[:3])
    assert syn_ack - syn == pytest.approx(0.010) and ack - syn_ack == pytest.approx(0.010)
    assert syn > 1.7e9


def test_write_puts_truth_and_keylog_next_to_the_pcap(tmp_path: Path) -> None:
    g = gen(protocol="http1", tls="1.3", messages=1, payload=10)
    g.write(tmp_path / "a.pcap", tmp_path / "a.keys", tmp_path / "a.json")
    assert (tmp_path / "a.pcap").read_bytes() == g.pcap()
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in (tmp_path / "a.keys").read_text()
    truth = json.loads((tmp_path / "a.json").read_text())
    assert truth["schema"] == "wireprobe.truth/1"
    assert truth["summary"]["http1"]["messages"] == 1


# --- the truth obeys the ledger and the round-trip rules -----------------------------------------

CONSERVATION_CASES = [
    {"protocol": "http1", "messages": 6, "per_connection": 3, "payload": 100_000, "concurrency": 2},
    {"protocol": "http2", "messages": 9, "payload": 100_000, "concurrency": 4},
    {"protocol": "amqp", "messages": 9, "payload": 300_000, "amqp_mode": "confirm-async"},
    {"protocol": "amqp", "tls": "1.2", "messages": 3, "payload": 100, "amqp_mode": "consume"},
    {"protocol": "http1", "tls": "1.3", "messages": 4, "per_connection": 1, "resume": True},
    {"protocol": "http1", "messages": 30, "payload": 5000, "loss": 0.2, "seed": 5},
]


@pytest.mark.parametrize("kwargs", CONSERVATION_CASES, ids=lambda k: "-".join(map(str, k.values())))
def test_truth_conserves_bytes_per_connection_and_message(kwargs: dict[str, Any]) -> None:
    g = gen(**kwargs)
    by_conn: dict[int, list[dict[str, Any]]] = {}
    for m in messages(g):
        assert sum(m["layers"].values()) == m["marginal_bytes"]
        by_conn.setdefault(m["connection"], []).append(m)
    for index, c in enumerate(connections(g)):
        direct = sum(m["marginal_bytes"] for m in by_conn[index])
        assert direct + sum(c[b] for b in BUCKETS) == c["wire_bytes"]
        assert sum(c["layers"].values()) == c["wire_bytes"]
        assert c["messages"] == len(by_conn[index])
        shared = c["setup_bytes"] + c["teardown_bytes"] + c["control_bytes"]
        for m in by_conn[index]:
            assert m["loaded_bytes"] == pytest.approx(m["marginal_bytes"] + shared / c["messages"])
    frames = sum(len(f) for _, f in g.frames)
    assert frames == sum(c["wire_bytes"] for c in connections(g))


def test_payload_layer_is_exactly_the_bodies() -> None:
    g = gen(protocol="amqp", messages=3, payload=300_000, amqp_mode="publish")
    assert summary(g)["amqp"]["payload_bytes"] == 3 * 300_000
    h = gen(protocol="http1", messages=2, payload=1000)
    assert summary(h)["http1"]["payload_bytes"] == 2 * (1000 + len(b'{"status":"ok"}'))


@pytest.mark.parametrize(
    ("kwargs", "per_message"),
    [
        ({"protocol": "http1", "messages": 4, "payload": 100}, 1.0),
        ({"protocol": "http1", "messages": 8, "payload": 100, "concurrency": 8}, 1 / 8),
        ({"protocol": "http2", "messages": 8, "payload": 100, "concurrency": 8}, 1 / 8),
        ({"protocol": "amqp", "messages": 4, "amqp_mode": "publish"}, 0.0),
        ({"protocol": "amqp", "messages": 4, "amqp_mode": "confirm"}, 1.0),
        ({"protocol": "amqp", "messages": 4, "amqp_mode": "consume"}, 1.0),
    ],
)
def test_round_trips_per_message_follow_design_section_4(
    kwargs: dict[str, Any], per_message: float
) -> None:
    for m in messages(gen(**kwargs)):
        assert m["round_trips"] == pytest.approx(per_message)


def test_async_confirms_cost_less_than_one_round_trip_each() -> None:
    rts = [
        m["round_trips"]
        for m in messages(gen(protocol="amqp", messages=12, amqp_mode="confirm-async"))
    ]
    assert 0 < sum(rts) < 12 * 0.5


@pytest.mark.parametrize(
    ("protocol", "tls", "setup"),
    [
        ("http1", "off", 1),  # TCP only: the request goes with the handshake's last ACK
        ("http2", "off", 1),  # the preface and SETTINGS go with the first request
        ("http1", "1.3", 2),  # + ClientHello / server flight; Finished goes with the request
        ("http1", "1.2", 3),  # + two TLS 1.2 turns
        # + a turn before each of StartOk, TuneOk+Open, Channel.Open, Confirm.Select,
        # Queue.Declare and the first Basic.Publish
        ("amqp", "off", 7),
    ],
)
def test_setup_round_trips(protocol: str, tls: str, setup: int) -> None:
    g = gen(protocol=protocol, tls=tls, messages=1, payload=10)
    assert connections(g)[0]["setup_round_trips"] == setup


def test_resumption_counts_full_then_resumed_handshakes() -> None:
    g = gen(protocol="http1", tls="1.3", messages=4, per_connection=1, resume=True)
    figures = summary(g)["http1"]
    assert (figures["tls_full_handshakes"], figures["tls_resumed_handshakes"]) == (1, 3)
    without = gen(protocol="http1", tls="1.3", messages=4, per_connection=1)
    assert summary(without)["http1"]["tls_resumed_handshakes"] == 0
    assert summary(without)["http1"]["wire_bytes"] > figures["wire_bytes"]


def test_connection_reuse_lowers_the_loaded_cost_towards_the_marginal_one() -> None:
    loaded = []
    for per in (1, 5, 20):
        s = summary(gen(protocol="http1", tls="1.3", messages=20, per_connection=per))["http1"]
        loaded.append(s["loaded_bytes_per_message"])
        assert s["loaded_bytes_per_message"] > s["marginal_bytes_per_message"]
    assert loaded[0] > loaded[1] > loaded[2]


def test_loss_shows_as_retransmitted_bytes_and_later_answers() -> None:
    lossy = gen(protocol="http1", messages=30, payload=5000, loss=0.2, seed=5)
    clean = gen(protocol="http1", messages=30, payload=5000, seed=5)
    assert connections(lossy)[0]["retransmitted_bytes"] > 0
    assert connections(clean)[0]["retransmitted_bytes"] == 0
    assert lossy.frames[-1][0] > clean.frames[-1][0]  # retransmission timeouts took time


# --- tshark's second opinion ----------------------------------------------------------------------

TSHARK_CASES = [
    {"protocol": "http1", "messages": 3, "payload": 100, "mtu": 576, "concurrency": 3},
    {"protocol": "http1", "messages": 5, "per_connection": 2, "payload": 100_000, "concurrency": 2},
    {"protocol": "http2", "messages": 9, "per_connection": 5, "payload": 100_000, "concurrency": 4},
    {"protocol": "amqp", "messages": 6, "payload": 200_000, "amqp_mode": "confirm-async"},
    {
        "protocol": "amqp",
        "messages": 3,
        "per_connection": 2,
        "payload": 100,
        "amqp_mode": "consume",
    },
    {"protocol": "amqp", "messages": 3, "payload": 0, "amqp_mode": "publish"},
    {"protocol": "http1", "tls": "1.3", "messages": 3, "per_connection": 1, "resume": True},
    {"protocol": "http2", "tls": "1.2", "messages": 4, "per_connection": 2, "payload": 40_000},
    {"protocol": "amqp", "tls": "1.3", "messages": 3, "payload": 100, "amqp_mode": "confirm"},
    {"protocol": "http1", "tls": "1.2", "messages": 3, "payload": 20_000, "concurrency": 3},
]


@pytest.mark.parametrize("kwargs", TSHARK_CASES, ids=lambda k: "-".join(map(str, k.values())))
def test_tshark_reads_what_the_truth_says(kwargs: dict[str, Any], tmp_path: Path) -> None:
    g = gen(**kwargs)
    pcap, keys = written(g, tmp_path)
    flagged = tshark(pcap, keys, "-Y", "_ws.malformed || _ws.expert.severity >= warning")
    assert flagged == "", f"tshark flags packets:\n{flagged[:2000]}"
    conversations = tshark(pcap, keys, "-q", "-z", "conv,tcp")
    assert conversations.count("<->") == len(connections(g))
    protocol, n = kwargs["protocol"], kwargs["messages"]
    if protocol == "http1":
        methods = fields(pcap, keys, "http.request.method", display="http.request")
        assert sum(len(row[0].split(",")) for row in methods) == n
    elif protocol == "http2":
        rows = fields(pcap, keys, "tcp.stream", "http2.streamid", "http2.type", display="http2")
        streams = {
            (row[0], sid)
            for row in rows
            for sid, kind in zip(row[1].split(","), row[2].split(","), strict=True)
            if kind == "1"
        }
        assert len(streams) == n
    else:
        counts = amqp_methods(pcap, keys)
        mode = kwargs["amqp_mode"]
        assert counts[BASIC_DELIVER if mode == "consume" else BASIC_PUBLISH] == n
        expected_acks = {"publish": 0, "confirm": n, "consume": n}
        acks = expected_acks.get(mode, math.ceil(n / 4))
        assert counts[BASIC_ACK] == acks
    if keys is not None:
        hellos = fields(pcap, keys, "tls.handshake.type", display="tls.handshake.type == 1")
        assert len(hellos) == len(connections(g))


def test_tshark_sees_the_reordering_and_nothing_malformed(tmp_path: Path) -> None:
    g = gen(protocol="http2", tls="1.3", messages=10, payload=5000, reorder=0.2, seed=12)
    pcap, keys = written(g, tmp_path)
    assert fields(pcap, keys, "frame.number", display="tcp.analysis.out_of_order")
    assert tshark(pcap, keys, "-Y", "_ws.malformed") == ""
    assert connections(g)[0]["retransmitted_bytes"] == 0


def test_tshark_sees_the_retransmissions_the_truth_counts(tmp_path: Path) -> None:
    g = gen(protocol="http1", messages=30, payload=5000, loss=0.2, seed=5)
    pcap, keys = written(g, tmp_path)
    rows = fields(pcap, keys, "tcp.len", display="tcp.analysis.retransmission")
    assert rows, "the scenario lost nothing"
    assert sum(int(r[0]) for r in rows) == connections(g)[0]["retransmitted_bytes"]
    malformed = tshark(pcap, keys, "-Y", "_ws.malformed")
    assert malformed == ""


# --- the analyzer equals the truth ----------------------------------------------------------------


def _matrix() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for protocol in ("http1", "http2", "amqp"):
        for tls in ("off", "1.2", "1.3"):
            for per_connection in (1, None):
                for payload in (0, 100, 100_000):
                    cases.append(
                        {
                            "protocol": protocol,
                            "tls": tls,
                            "messages": 3,
                            "per_connection": per_connection,
                            "payload": payload,
                        }
                    )
            if protocol != "amqp":
                cases.append({"protocol": protocol, "tls": tls, "messages": 16, "concurrency": 8})
                cases.append(
                    {
                        "protocol": protocol,
                        "tls": tls,
                        "messages": 2,
                        "per_connection": 1,
                        "resume": tls != "off",
                    }
                )
            else:
                for mode in ("publish", "confirm-async", "consume"):
                    cases.append(
                        {
                            "protocol": protocol,
                            "tls": tls,
                            "messages": 6,
                            "payload": 1000,
                            "amqp_mode": mode,
                        }
                    )
                if tls != "off":
                    cases.append(
                        {
                            "protocol": protocol,
                            "tls": tls,
                            "messages": 2,
                            "per_connection": 1,
                            "resume": True,
                        }
                    )
        for tls in ("off", "1.3"):
            cases.append(
                {
                    "protocol": protocol,
                    "tls": tls,
                    "messages": 10,
                    "payload": 5000,
                    "loss": 0.1,
                    "seed": 11,
                }
            )
    cases.append({"protocol": "http2", "tls": "1.3", "messages": 4, "payload": 100_000, "mtu": 576})
    cases.append({"protocol": "amqp", "tls": "1.2", "messages": 4, "payload": 100_000, "mtu": 9000})
    cases.append({"protocol": "http1", "messages": 4, "payload": 100, "rtt_ms": 0.05})
    return cases


MATRIX = _matrix()


def _differences(path: str, want: Any, got: Any) -> list[str]:
    """Where ``got`` differs from ``want`` (keys only ``want`` names; floats approximately)."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{path}: want {want!r}, got {got!r}"]
        return [d for k, v in want.items() for d in _differences(f"{path}.{k}", v, got.get(k))]
    if isinstance(want, float) and isinstance(got, int | float):
        # Timestamps (~1.8e9 s) must agree to the microsecond, other figures to 1e-9 relative.
        rel = 0.0 if path.endswith("_ts") else 1e-9
        close = got == pytest.approx(want, rel=rel, abs=1e-7 if rel == 0 else 1e-9)
        return [] if close else [f"{path}: {want} != {got}"]
    return [] if want == got else [f"{path}: want {want!r}, got {got!r}"]


def _analyzer_vs_truth(g: Generated, tmp_path: Path) -> list[str]:
    from conftest import analyze_json, check_conservation

    from analyzer.tls.keylog import KeyLog

    pcap, _ = written(g, tmp_path)
    keylog = KeyLog()
    if g.keylog:
        keylog.add_text(g.keylog)
    result = analyze_json([pcap], keylog=keylog)
    check_conservation(result)
    diffs: list[str] = []
    got_conns = {c["orig"]: c for c in result["connections"]}
    if len(got_conns) != len(connections(g)):
        diffs.append(f"connections: want {len(connections(g))}, got {len(got_conns)}")
    ids = {}
    for index, want in enumerate(connections(g)):
        got = got_conns.get(want["orig"], {})
        ids[got.get("id")] = index
        diffs += _differences(f"connections[{index}]", want, got)
    got_messages: dict[int, list[dict[str, Any]]] = {}
    for m in sorted(result["messages"], key=lambda m: (m["connection"], m["index"])):
        got_messages.setdefault(ids.get(m["connection"], -1), []).append(m)
    position: Counter[int] = Counter()
    for want in messages(g):
        c = want["connection"]
        got_list = got_messages.get(c, [])
        got_m = got_list[position[c]] if position[c] < len(got_list) else {}
        # ``connection`` is an index in the truth and an id in the analysis: matched above.
        want_m = {k: v for k, v in want.items() if k != "connection"}
        diffs += _differences(f"messages[{c}:{position[c]}]", want_m, got_m)
        position[c] += 1
    diffs += _differences("summary", summary(g), result["summary"])
    diffs += _differences("capture", g.truth["capture"], result["captures"][0])
    return diffs


@pytest.mark.parametrize("kwargs", MATRIX, ids=lambda k: "-".join(map(str, k.values())))
def test_analyzer_equals_the_truth(kwargs: dict[str, Any], tmp_path: Path) -> None:
    diffs = _analyzer_vs_truth(gen(**kwargs), tmp_path)
    assert not diffs, "analyzer disagrees with the ground truth:\n" + "\n".join(diffs[:30])


def test_the_comparison_catches_a_changed_figure(tmp_path: Path) -> None:
    """A test of the test: one figure changed on purpose must show up as a difference."""
    g = gen(protocol="amqp", tls="1.3", messages=6, payload=1000, amqp_mode="confirm-async")
    truth = copy.deepcopy(g.truth)
    truth["connections"][0]["wire_bytes"] += 1  # type: ignore[index]
    truth["messages"][2]["round_trips"] += 0.01  # type: ignore[index]
    truth["summary"]["amqp"]["payload_efficiency"] *= 1.000001  # type: ignore[index]
    changed = Generated(scenario=g.scenario, frames=g.frames, truth=truth, keylog=g.keylog)
    diffs = _analyzer_vs_truth(changed, tmp_path)
    assert [d.split(":")[0] for d in diffs] == [
        "connections[0].wire_bytes",
        "messages[0",  # "messages[0:2].round_trips" split at its first colon
        "summary.amqp.payload_efficiency",
    ]


# --- the network model on its own -----------------------------------------------------------------


def _lay(*steps: tuple[int, bytes], mtu: int = 1500) -> list[Any]:
    """Lay a conversation of ``(direction, bytes)`` flights out and return its segments."""
    from analyzer.decoding.events import CONTROL, FRAMING
    from analyzer.synth.conversation import Chunk, Flight
    from analyzer.synth.tcp import lay_out

    flights = tuple(
        Flight(direction=d, chunks=(Chunk(data=data, owner=CONTROL, layer=FRAMING),))
        for d, data in steps
    )
    laid = lay_out(flights, start_us=0, rtt_us=10_000, mtu=mtu, loss=0.0, rng=random.Random(0))
    return laid.segments


def test_every_second_full_segment_is_acked_at_once() -> None:
    from analyzer.decoding.events import ORIG, RESP

    segments = _lay((ORIG, b"x" * 4 * 1460), (RESP, b"ok"))
    data = [s for s in segments if s.direction == ORIG and s.payload]
    pure_acks = [s for s in segments if s.direction == RESP and not s.payload and s.flags == 0x10]
    assert [s.ack for s in pure_acks] == [1 + 2 * 1460, 1 + 4 * 1460]
    assert [s.ts_us for s in pure_acks] == [data[1].ts_us + 5_000, data[3].ts_us + 5_000]


def test_small_segments_are_acked_when_the_delayed_ack_timer_fires() -> None:
    from analyzer.decoding.events import ORIG, RESP
    from analyzer.synth.tcp import DELAYED_ACK_US

    # 5000 one-byte writes take longer than the 40 ms timer; nothing else acknowledges them.
    segments = _lay(*[(ORIG, b"x")] * 5000)
    data = [s for s in segments if s.direction == ORIG and s.payload]
    first_ack = next(s for s in segments if s.direction == RESP and s.flags == 0x10)
    assert first_ack.ts_us == data[0].ts_us + 5_000 + DELAYED_ACK_US
    arrived = [s for s in data if s.ts_us <= first_ack.ts_us - 5_000]
    assert first_ack.ack == 1 + len(arrived)


def test_a_reply_carries_the_ack_so_no_pure_ack_is_sent() -> None:
    from analyzer.decoding.events import ORIG, RESP

    segments = _lay((ORIG, b"GET"), (RESP, b"200"), (ORIG, b"GET"), (RESP, b"200"))
    data_and_acks = [(s.direction, len(s.payload), s.flags) for s in segments[3:-3]]
    assert data_and_acks == [(ORIG, 3, 0x18), (RESP, 3, 0x18), (ORIG, 3, 0x18), (RESP, 3, 0x18)]


def test_segments_never_exceed_the_mss() -> None:
    segments = _lay((0, b"y" * 10_000), mtu=576)
    assert max(len(s.payload) for s in segments) == 536
    assert sum(len(s.payload) for s in segments) == 10_000


def test_analyzer_equals_the_truth_for_pipelined_requests_across_segments(tmp_path: Path) -> None:
    g = gen(protocol="http1", messages=3, payload=100, mtu=576, concurrency=3)
    diffs = _analyzer_vs_truth(g, tmp_path)
    assert not diffs, "analyzer disagrees with the ground truth:\n" + "\n".join(diffs[:30])


def test_cli_options_override_a_preset_and_are_validated() -> None:
    scenario = from_options("amqp-confirm", messages=7, payload=None, seed=3)
    assert (scenario.protocol, scenario.mode, scenario.messages, scenario.seed) == (
        "amqp",
        "confirm",
        7,
        3,
    )
    assert scenario.payload == PRESETS["amqp-confirm"].payload  # None: not given
    assert from_options(None, protocol="http2").protocol == "http2"
    with pytest.raises(UsageError, match="--concurrency"):
        from_options("amqp-confirm", concurrency=4)
    with pytest.raises(UsageError, match="unknown scenario option"):
        from_options(None, colour="blue")
