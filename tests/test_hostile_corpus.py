"""The hostile corpus (scripts/make_hostile_corpus.py) through the CLI: never a traceback.

Every case must end in exit 0 with a result whose bytes are conserved (anomalies allowed), or in
exit 2 with exactly one line on stderr; never an exception escaping the command, and within a
CPU-time bound.  The CLI runs in-process (typer's runner: an escaping exception is caught and
shown, and one process start per case would cost more than the cases); two of the heaviest cases
also run as real processes, whose peak memory ``os.wait4`` reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, check_conservation
from typer.testing import CliRunner

from analyzer.cli import app

sys.path.insert(0, str(ROOT / "scripts"))
import make_hostile_corpus as corpus

#: CPU seconds one case may take in-process (the slowest, the gzip bomb, takes about 2 s).
CASE_CPU_S = 20.0
#: Peak RSS of a real ``wireprobe analyze`` process on the flood or the bomb, in MiB: the
#: interpreter and its imports take about 60; the bound leaves room, but not for growth.
CASE_RSS_MIB = 300
#: Cases that are no capture at all: exit 2 with one line.
UNUSABLE = {
    "cut-1.pcap",
    "cut-3.pcap",
    "cut-4.pcap",
    "cut-23.pcap",
    "cut-gzip-header.pcap.gz",
    "gzip-of-gzip.pcap.gz",
}
#: Anomalies some cases must name (the result says what was wrong, not only that it survived).
EXPECTED_ANOMALY = {
    "gzip-bomb.pcap.gz": "capture.gzip_bomb",
    "gzip-trailing-garbage.pcap.gz": "capture.gzip_trailing_garbage",
    "cut-gzip.pcap.gz": "capture.truncated",
    "pcap-record-huge.pcap": "capture.bad_record",
    "pcapng-block-lies.pcapng": "pcapng.bad_block",
    "pcapng-dsb-garbage.pcapng": "pcapng.bad_secrets",
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    corpus.write_corpus(folder)
    return folder


def _run(args: list[str]) -> tuple[int, str, str, BaseException | None, float]:
    start = time.process_time()
    result = CliRunner().invoke(app, args)
    spent = time.process_time() - start
    exception = result.exception if not isinstance(result.exception, SystemExit) else None
    return result.exit_code, result.stdout, result.stderr, exception, spent


@pytest.mark.parametrize("name", sorted(corpus.CASES))
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_hostile_case_is_a_result_or_one_line(hostile: Path, name: str, fmt: str) -> None:
    path = hostile / name
    args = ["analyze", str(path), "-f", fmt, "-k", str(hostile / "garbage.keys")]
    code, out, err, exception, spent = _run(args)
    assert exception is None, repr(exception)
    assert "Traceback" not in err
    assert spent < CASE_CPU_S
    # Warnings and notes (findings on stderr) are not errors: the analysis ran.
    errors = [line for line in err.splitlines() if "warning:" not in line and "note:" not in line]
    if name in UNUSABLE:
        assert code == 2 and len(errors) == 1 and errors[0].startswith("wireprobe: "), err
        return
    assert code == 0 and not errors, err
    if fmt == "json":
        data = json.loads(out)
        check_conservation(data)
        if name in EXPECTED_ANOMALY:
            names = {a["name"] for c in data["captures"] for a in c["anomalies"]}
            assert EXPECTED_ANOMALY[name] in names, names


def test_the_key_log_of_garbage_is_warned_about_once(hostile: Path) -> None:
    args = [
        "analyze",
        str(hostile / "tls-hostile-strings.pcap"),
        "-k",
        str(hostile / "garbage.keys"),
    ]
    code, _, err, exception, _ = _run([*args, "-f", "json"])
    assert (code, exception) == (0, None)
    assert len([line for line in err.splitlines() if "malformed key log lines" in line]) == 1


@pytest.mark.parametrize("name", ["flood-syns.pcap", "gzip-bomb.pcap.gz"])
def test_heavy_cases_stay_within_the_memory_bound(hostile: Path, name: str) -> None:
    cmd = [sys.executable, "-m", "analyzer.cli", "analyze", str(hostile / name), "-f", "json"]
    with open(os.devnull, "wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, env={**os.environ, "PYTHONPATH": str(ROOT)})
        _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert usage.ru_maxrss // 1024 < CASE_RSS_MIB


#: Cases whose strings or file names reach the human-readable formats.
HOSTILE_STRINGS = sorted(n for n in corpus.CASES if "hostile" in n or n.startswith(("name-", "x[")))


@pytest.mark.parametrize("name", HOSTILE_STRINGS)
@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_hostile_strings_reach_the_readable_formats_without_harm(
    hostile: Path, name: str, fmt: str
) -> None:
    code, out, err, exception, _ = _run(["analyze", str(hostile / name), "-f", fmt])
    assert (code, exception, err) == (0, None, "")
    assert out
