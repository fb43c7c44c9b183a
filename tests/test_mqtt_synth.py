"""The MQTT generator scenario: ground truth, the analyzer against it, tshark's mqtt dissector.

``wireprobe generate --protocol mqtt --mqtt-qos 0|1|2`` writes a capture whose every byte's
label is known; the analyzer's JSON must equal that truth field by field, and tshark must see
the control packets the truth says were sent.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from test_synth import _analyzer_vs_truth, fields, gen, messages, summary, written

from analyzer.errors import UsageError
from analyzer.synth import Scenario, generate

CASES: list[dict[str, Any]] = [
    {"protocol": "mqtt", "mqtt_qos": qos, "tls": tls, "messages": 4, "payload": payload}
    for qos in (0, 1, 2)
    for tls in ("off", "1.3")
    for payload in (0, 100, 100_000)
] + [
    {"protocol": "mqtt", "mqtt_qos": 1, "messages": 6, "per_connection": 2, "payload": 300},
    {"protocol": "mqtt", "mqtt_qos": 2, "messages": 10, "payload": 5000, "loss": 0.1, "seed": 3},
    {"protocol": "mqtt", "mqtt_qos": 1, "tls": "1.2", "messages": 3, "payload": 2000},
]


@pytest.mark.parametrize("kwargs", CASES, ids=lambda k: "-".join(map(str, k.values())))
def test_analyzer_equals_the_truth(kwargs: dict[str, Any], tmp_path: Path) -> None:
    diffs = _analyzer_vs_truth(gen(**kwargs), tmp_path)
    assert not diffs, "analyzer disagrees with the ground truth:\n" + "\n".join(diffs[:30])


@pytest.mark.parametrize(("qos", "per_message"), [(0, 0.0), (1, 1.0), (2, 2.0)])
def test_round_trips_follow_design_section_4(qos: int, per_message: float) -> None:
    g = gen(protocol="mqtt", mqtt_qos=qos, messages=5, payload=100)
    assert [m["round_trips"] for m in messages(g)] == [per_message] * 5
    assert summary(g)["mqtt"]["payload_bytes"] == 5 * 100


def test_bad_mqtt_options_are_usage_errors() -> None:
    for bad in (
        {"protocol": "mqtt", "mqtt_qos": 3},
        {"protocol": "amqp", "mqtt_qos": 1},
        {"protocol": "mqtt", "concurrency": 4},
    ):
        with pytest.raises(UsageError):
            generate(Scenario(**bad))


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_tshark_sees_the_packets_the_truth_sent(qos: int, tmp_path: Path) -> None:
    g = gen(protocol="mqtt", mqtt_qos=qos, messages=4, payload=100)
    pcap, keys = written(g, tmp_path)
    rows = fields(pcap, keys, "mqtt.msgtype", display="mqtt")
    # tshark lists every packet of a TCP segment on one row, comma-separated.
    seen = Counter(int(t) for row in rows for t in row[0].split(","))
    acks = {0: {}, 1: {4: 4}, 2: {5: 4, 6: 4, 7: 4}}[qos]
    assert seen == Counter({1: 1, 2: 1, 3: 4, 14: 1, **acks})


def test_cli_generate_mqtt(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from analyzer.cli import app

    out = tmp_path / "q2.pcap"
    args = ["generate", "--protocol", "mqtt", "--mqtt-qos", "2", "--messages", "3", "-o", str(out)]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert out.stat().st_size > 0
    bad = ["generate", "--protocol", "mqtt", "--mqtt-qos", "5", "-o", str(tmp_path / "x")]
    done = CliRunner().invoke(app, bad)
    assert done.exit_code == 2
