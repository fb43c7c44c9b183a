"""Issue 13: shards by flow give the same JSON for --jobs 1, 2, 4 and a Dask cluster.

Most checks run the shards in this process (``inline_executor``): the split, the spools and the
merge are the same code a worker pool runs, without paying for processes; a few run a real
process pool and one a local Dask cluster of two worker processes.  Besides "N does not change the
JSON", every capture is also checked against the one-process default path (same connections,
messages and totals; only the order of records may differ), so a bug that every N shares cannot
hide behind that identity.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import CAPTURES, PUBLIC, ROOT, public_captures

from analyzer import shards, spool
from analyzer.capture.inputs import SEPARATE_CAPTURE, expand, group, single, survey
from analyzer.capture.reader import CaptureSet
from analyzer.errors import UsageError
from analyzer.golden import golden_captures, keylog_path
from analyzer.options import AnalyzeOptions, DecodeOptions
from analyzer.pipeline import analyze
from analyzer.report.render import Collector
from analyzer.shards import (
    ShardError,
    ShardSpec,
    analyze_inputs,
    analyze_sharded,
    inline_executor,
    run_shard,
)
from analyzer.synth import Scenario, generate
from analyzer.tcp import flowhash
from analyzer.tcp.flowhash import bucket_of, frame_bucket, keep_bucket
from analyzer.tls.keylog import KeyLog

GOLDEN = golden_captures(CAPTURES)
PUBLIC_CAPTURES = public_captures()
#: Generated scenarios with many connections, loss and TLS: what the shards must split well.
SCENARIOS = {
    "http1-new-conn-60": Scenario(protocol="http1", messages=60, per_connection=1, payload=300),
    "http1-tls13-loss": Scenario(
        protocol="http1", tls="1.3", messages=30, per_connection=3, loss=0.05, reorder=0.05
    ),
    "http2-conc4": Scenario(
        protocol="http2", messages=40, per_connection=10, concurrency=4, payload=2000
    ),
    "amqp-confirm": Scenario(protocol="amqp", amqp_mode="confirm", messages=40, per_connection=5),
}


def _keylog(capture: Path) -> KeyLog:
    """The capture's key log: ``NAME.keys`` beside it, or a public capture's extracted keys."""
    keys = KeyLog()
    stem = keylog_path(capture).name[: -len(".keys")]
    for path in sorted(capture.parent.glob(stem + "*.keys")):
        keys.load(str(path))
    return keys


def _options(capture: Path) -> AnalyzeOptions:
    return AnalyzeOptions(decode=DecodeOptions(keylog=_keylog(capture)))


def _json(run: Any) -> str:
    collector = Collector("json")
    analysis = run(collector.add)
    out = io.StringIO()
    collector.render(analysis, out)
    return out.getvalue()


def sharded_json(paths: list[str], options: AnalyzeOptions, buckets: int) -> str:
    return _json(
        lambda on_record: analyze_sharded(
            single(paths), options, buckets=buckets, on_record=on_record
        )
    )


def default_json(paths: list[str], options: AnalyzeOptions) -> str:
    return _json(lambda on_record: analyze(paths, options, on_record=on_record))


def _canonical(text: str) -> dict[str, Any]:
    """The default path's JSON with records in the canonical order (spool.py)."""
    data: dict[str, Any] = json.loads(text)
    data["connections"].sort(key=lambda r: (r["first_ts"], r["id"], json.dumps(r)))
    rank = {r["id"]: i for i, r in enumerate(data["connections"])}
    data["messages"].sort(key=lambda m: rank[m["connection"]])  # stable: keeps message order
    return data


def _without_budget(text: str) -> str:
    """The JSON text less its ``connection_table`` line (see ``_same_as_default``): every other
    byte must still be equal across N."""
    return re.sub(r'(?m)^  "connection_table": \{[^\n]*\},\n', "", text)


def _same_as_default(sharded: str, default: str) -> None:
    want, got = _canonical(default), json.loads(sharded)
    # Summary floats are sums; the default path adds them in finishing order, the shards in the
    # canonical order, so they may differ in the last bits (they are exactly equal across N).
    want_summary, got_summary = want.pop("summary"), got.pop("summary")
    # The connection table's budget report (analyzer/tcp/budget.py) is a property of one table: a
    # shard's peak of open connections and the clock jumps it sees depend on which flows share
    # its table, so it is the one header field that is not the default path's (README, --jobs).
    want.pop("connection_table", None)
    got.pop("connection_table", None)
    assert got == want
    assert got_summary.keys() == want_summary.keys()
    for protocol, figures in want_summary.items():
        for key, value in figures.items():
            _approx_equal(got_summary[protocol][key], value, (protocol, key))


def _approx_equal(got: Any, want: Any, where: tuple[str, ...]) -> None:
    """Equal, floats to pytest.approx's tolerance, at any depth (``amqp.rpc`` nests legs)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for key, value in want.items():
            _approx_equal(got[key], value, (*where, key))
    else:
        assert got == pytest.approx(want), where


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("scenarios")
    files = {}
    for name, scenario in SCENARIOS.items():
        path = out / f"{name}.pcap"
        generated = generate(scenario)
        generated.write(path, out / f"{name}.keys" if scenario.tls != "off" else None)
        files[name] = path
    return files


@pytest.mark.parametrize("capture", GOLDEN + PUBLIC_CAPTURES, ids=lambda p: p.name)
def test_jobs_1_2_4_are_byte_identical_and_equal_one_process(capture: Path) -> None:
    options = _options(capture)
    outputs = [_without_budget(sharded_json([str(capture)], options, n)) for n in (1, 2, 4)]
    assert outputs[1] == outputs[0]
    assert outputs[2] == outputs[0]
    _same_as_default(outputs[0], default_json([str(capture)], options))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_generated_scenarios_split_across_shards_and_merge_exactly(
    name: str, scenarios: dict[str, Path]
) -> None:
    capture = scenarios[name]
    options = _options(capture)
    outputs = [_without_budget(sharded_json([str(capture)], options, n)) for n in (1, 2, 4)]
    assert outputs[1] == outputs[0] and outputs[2] == outputs[0]
    _same_as_default(outputs[0], default_json([str(capture)], options))
    # The split is real: with 4 buckets, connections land in more than one.
    per_bucket = [
        run_shard(
            ShardSpec(
                group=0,
                paths=(str(capture),),
                bucket=b,
                buckets=4,
                options=options,
                spool_dir=str(capture.parent),
            )
        ).connections
        for b in range(4)
    ]
    data = json.loads(outputs[0])
    assert sum(per_bucket) == len(data["connections"])
    if len(data["connections"]) >= 4:
        assert sum(1 for n in per_bucket if n) >= 2, per_bucket


def test_small_runs_merge_like_one_run(
    scenarios: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The external sort: runs of 7 connections merge into the order one run gives."""
    capture = str(scenarios["http1-new-conn-60"])
    whole = sharded_json([capture], AnalyzeOptions(), 2)
    monkeypatch.setattr(spool, "RUN_CONNECTIONS", 7)
    assert sharded_json([capture], AnalyzeOptions(), 2) == whole
    assert sharded_json([capture], AnalyzeOptions(), 3) == whole


def test_process_pool_gives_the_same_bytes(scenarios: dict[str, Path]) -> None:
    for name in ("http1-new-conn-60", "http2-conc4"):
        capture = scenarios[name]
        options = _options(capture)
        want = sharded_json([str(capture)], options, 1)
        for jobs in (2, 4, 0):  # 0: one worker per core
            got = _json(
                lambda on_record, c=capture, o=options, jobs=jobs: analyze_inputs(
                    [str(c)], o, jobs=jobs, on_record=on_record
                )
            )
            assert got == want, (name, jobs)


def test_dask_cluster_of_two_workers_gives_the_same_bytes(scenarios: dict[str, Path]) -> None:
    from distributed import LocalCluster

    files = [
        scenarios["http1-new-conn-60"],
        scenarios["http1-tls13-loss"],
        CAPTURES / "gen-amqp-tls12-large.pcap",
        PUBLIC / "zeek" / "pipelined-requests.pcap",
    ]
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address=":0",  # no fixed port: others may hold 8787
        worker_dashboard_address=":0",
    ) as cluster:
        for capture in files:
            options = _options(capture)
            want = sharded_json([str(capture)], options, 2)
            got = _json(
                lambda on_record, c=capture, o=options: analyze_inputs(
                    [str(c)], o, cluster=cluster.scheduler_address, jobs=2, on_record=on_record
                )
            )
            assert got == want, capture.name
        # The cluster's own thread count sets the buckets when --jobs is not given.
        capture = files[0]
        got = _json(
            lambda on_record: analyze_inputs(
                [str(capture)],
                AnalyzeOptions(),
                cluster=cluster.scheduler_address,
                on_record=on_record,
            )
        )
        assert got == sharded_json([str(capture)], AnalyzeOptions(), 1)


# -- the flow hash ----------------------------------------------------------------------------


def test_bucket_is_symmetric_and_spreads() -> None:
    a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    for port in range(40000, 40100):
        assert bucket_of(a, port, b, 443, 8) == bucket_of(b, 443, a, port, 8)
    assert len({bucket_of(a, port, b, 443, 8) for port in range(40000, 40100)}) == 8


def test_bucket_is_the_same_in_another_process() -> None:
    """Never Python's salted hash(): another interpreter with another seed agrees."""
    code = (
        "from analyzer.tcp.flowhash import bucket_of;"
        "print([bucket_of(bytes([10,0,0,1]), p, bytes([10,0,0,2]), 80, 7) for p in range(50)])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=ROOT
    )
    here = [bucket_of(bytes([10, 0, 0, 1]), p, bytes([10, 0, 0, 2]), 80, 7) for p in range(50)]
    assert out.stdout.strip() == str(here)


@pytest.mark.parametrize("max_cached", [flowhash.MAX_CACHED_FLOWS, 3])
def test_the_inlined_filter_agrees_with_frame_bucket(
    max_cached: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keep_bucket's cached common case keeps exactly the frames frame_bucket assigns it,
    on every golden and public capture (all their link types), its cache full or not."""
    monkeypatch.setattr(flowhash, "MAX_CACHED_FLOWS", max_cached)
    for capture in GOLDEN + PUBLIC_CAPTURES:
        packets = list(CaptureSet([str(capture)]))
        want = [frame_bucket(p[1], p[3], p[2], 3) for p in packets]
        for b in range(3):
            kept = list(keep_bucket(packets, b, 3))
            assert kept == [p for p, w in zip(packets, want, strict=True) if w == b], capture


def test_non_tcp_frames_and_fragments_go_to_bucket_0() -> None:
    eth = b"\x00" * 12
    udp = eth + b"\x08\x00" + bytes([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]) + b"\x01" * 8
    arp = eth + b"\x08\x06" + b"\x00" * 28
    # A TCP first fragment (MF set): the analyzer skips it, so one shard must count it.
    frag = eth + b"\x08\x00" + bytes([0x45, 0, 0, 40, 0, 0, 0x20, 0, 64, 6, 0, 0]) + b"\x02" * 8
    frag += b"\x30\x39\x00\x50" + b"\x00" * 16
    for frame in (udp + b"\x00" * 8, arp, frag):
        assert frame_bucket(1, frame, len(frame), 4) == 0


def test_skipped_and_packet_counts_add_up_exactly(scenarios: dict[str, Path]) -> None:
    """Public captures with non-TCP frames: the shards' counts add to one process's."""
    with_skips = [
        p
        for p in PUBLIC_CAPTURES
        if json.loads(default_json([str(p)], AnalyzeOptions()))["skipped_packets"]
    ]
    assert with_skips, "no public capture with non-TCP frames to check"
    for capture in with_skips:
        one = json.loads(default_json([str(capture)], AnalyzeOptions()))
        four = json.loads(sharded_json([str(capture)], AnalyzeOptions(), 4))
        for key in ("packets", "tcp_packets", "skipped_packets", "captures"):
            assert four[key] == one[key], (capture.name, key)


# -- many files as one capture ----------------------------------------------------------------


def _split(capture: Path, into: Path, packets_per_file: int) -> list[Path]:
    into.mkdir()
    subprocess.run(
        [
            "editcap",
            "-F",
            "pcap",
            "-c",
            str(packets_per_file),
            str(capture),
            str(into / "rot.pcap"),
        ],
        check=True,
        capture_output=True,
    )
    return sorted(into.iterdir())


def _without_captures(text: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(text)
    data.pop("captures")
    return data


@pytest.mark.parametrize("name", ["http1-tls13-loss", "http2-conc4"])
def test_rotation_set_as_a_directory_equals_the_whole(
    name: str, scenarios: dict[str, Path], tmp_path: Path
) -> None:
    capture = scenarios[name]
    parts = _split(capture, tmp_path / "rot", 7)
    assert len(parts) > 5
    options = _options(capture)
    whole = json.loads(default_json([str(capture)], options))
    for jobs in (None, 1, 3):
        got = _json(
            lambda on_record, jobs=jobs: analyze_inputs(
                [str(tmp_path / "rot")], options, jobs=jobs, on_record=on_record
            )
        )
        data = json.loads(got)
        captures = data.pop("captures")
        assert [c["path"] for c in captures] == [str(p) for p in parts]  # time order
        assert sum(c["packets"] for c in captures) == whole["captures"][0]["packets"]
        want = _canonical(default_json([str(capture)], options)) if jobs else dict(whole)
        want.pop("captures")
        if jobs:
            want.pop("summary")
            data.pop("summary")
        assert data == want, jobs


def test_a_glob_in_shuffled_names_is_read_in_time_order(
    scenarios: dict[str, Path], tmp_path: Path
) -> None:
    parts = _split(scenarios["http2-conc4"], tmp_path / "rot", 20)
    for i, part in enumerate(reversed(parts)):  # names now sort against time
        part.rename(part.with_name(f"x{i:03}.pcap"))
    pattern = str(tmp_path / "rot" / "x*.pcap")
    groups = group([survey(p) for p in expand([pattern])])
    assert len(groups) == 1
    firsts = [survey(p).first_ts or 0.0 for p in groups[0].paths]
    assert firsts == sorted(firsts)


def test_overlapping_captures_are_kept_apart_and_said_so(
    scenarios: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = scenarios["http1-new-conn-60"]
    other = tmp_path / "other.pcap"
    shutil.copy(one, other)  # the same times: another capture, not a continuation
    warnings: list[str] = []
    for jobs in (None, 2):
        data = json.loads(
            _json(
                lambda on_record, jobs=jobs: analyze_inputs(
                    [str(one), str(other)],
                    AnalyzeOptions(),
                    jobs=jobs,
                    on_record=on_record,
                    on_warning=warnings.append,
                )
            )
        )
        single_run = json.loads(default_json([str(one)], AnalyzeOptions()))
        # Kept apart: each copy's connections are whole, none merged with the other's.
        assert len(data["connections"]) == 2 * len(single_run["connections"])
        names = [[a["name"] for a in c["anomalies"]] for c in data["captures"]]
        assert sum(SEPARATE_CAPTURE in n for n in names) == 1
    assert len(warnings) == 2 and "separate capture" in warnings[0]


def test_a_directory_without_captures_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a capture")
    result = _cli(str(tmp_path), "--jobs", "2")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "no capture files" in result.stderr


# -- failures ---------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "analyze", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_a_failing_shard_stops_the_run_with_one_line(tmp_path: Path) -> None:
    spec = ShardSpec(
        group=0,
        paths=(str(tmp_path / "gone.pcap"),),
        bucket=1,
        buckets=2,
        options=AnalyzeOptions(),
        spool_dir=str(tmp_path),
    )
    with pytest.raises(ShardError, match=r"shard 2/2 of input group 1: .*gone.pcap"):
        run_shard(spec)
    # It survives the trip back from a worker process (pickled) with its message.
    err = pickle.loads(pickle.dumps(ShardError("shard 2/2: x")))
    assert str(err) == "shard 2/2: x"
    with pytest.raises(ShardError, match=r"gone\.pcap"):
        analyze_sharded(single([spec.paths[0]]), buckets=2, executor=inline_executor())


def test_cli_jobs_json_and_bad_input(scenarios: dict[str, Path], tmp_path: Path) -> None:
    capture = str(scenarios["http2-conc4"])
    out = _cli(capture, "--jobs", "2", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert out.stdout == sharded_json([capture], AnalyzeOptions(), 1)
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    for args in (["--jobs", "2"], ["--jobs", "-3"], ["-", "--jobs", "2"]):
        result = _cli(str(bad), *args)
        assert result.returncode == 2, args
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr


def test_cluster_that_cannot_be_reached_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shards, "CLUSTER_CONNECT_TIMEOUT_S", 1.0)
    with pytest.raises(
        UsageError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"
    ):
        analyze_inputs([str(GOLDEN[0])], AnalyzeOptions(), cluster="tcp://127.0.0.1:9")


def test_a_shard_failing_in_a_worker_process_stops_the_run(
    scenarios: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in one worker: one ShardError naming the shard, no result; the pool is stopped."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(shards, "analyze", broken)  # forked workers inherit it
    seen: list[object] = []
    with pytest.raises(ShardError, match=r"shard \d/2 of input group 1 failed: RuntimeError"):
        analyze_inputs(
            [str(scenarios["http2-conc4"])], AnalyzeOptions(), jobs=2, on_record=seen.append
        )
    assert seen == []  # nothing partial reached the report


@pytest.mark.parametrize("jobs", [1, 2])
def test_progress_reports_reading_and_finishing(
    jobs: int, scenarios: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shards, "PROGRESS_EVERY_FRAMES", 10)  # forked workers inherit it
    capture = scenarios["http1-new-conn-60"]
    seen: list[shards.ShardProgress] = []
    analysis = analyze_inputs([str(capture)], AnalyzeOptions(), jobs=jobs, on_progress=seen.append)
    reading = [p for p in seen if p.finished is None]
    finishing = [p for p in seen if p.finished is not None]
    assert len(finishing) == jobs
    if jobs == 1:
        assert len(reading) >= analysis.packets // 10  # every shard reads every frame
    # A pool worker's reports travel on a queue of their own and may be overtaken by its result,
    # after which they say nothing new and are dropped (_Tally.reading): how many arrive is the
    # scheduler's choice, so only their order and bounds are the contract there.
    assert all(p.fraction < 1 for p in seen if p.shards_done < p.shards)
    last = seen[-1]
    assert last.fraction == 1 and last.packets_done == analysis.packets
    assert last.input_bytes == jobs * capture.stat().st_size
    reads = [p.bytes_read for p in seen]
    assert reads == sorted(reads)


def test_a_shard_reports_its_reading_every_so_many_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker's side of the progress line, which the pool case above cannot count: one report
    # per PROGRESS_EVERY_FRAMES frames and a last one at the end, each with the bytes read so far.
    monkeypatch.setattr(shards, "PROGRESS_EVERY_FRAMES", 3)
    spec = shards.ShardSpec(
        group=1, paths=("x.pcap",), bucket=0, buckets=2, options=AnalyzeOptions(), spool_dir=None
    )
    frames = [(0, 0, 0, b"\x00" * 100) for _ in range(7)]
    reports: list[tuple[int, int, int]] = []
    passed = list(shards._reading(iter(frames), spec, reports.append))  # type: ignore[arg-type]
    assert passed == frames
    step = 100 + shards.RECORD_OVERHEAD_BYTES
    assert reports == [(1, 0, 3 * step), (1, 0, 6 * step), (1, 0, 7 * step)]
