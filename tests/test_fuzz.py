"""The fuzzing harness in CI: a short fixed budget per target, and every finding replayed.

tests/fuzz_targets.py holds one target per parser (capture reader, flow table and reassembly,
HTTP/1.1, HTTP/2, AMQP, TLS, key log).  Here each runs (1) on its seeds, (2) on a fixed number
of deterministic mutations of them in-process, and (3) for a fixed number of atheris
executions with a fixed seed in a child process, so coverage guidance is exercised too; and
every input kept under tests/fuzz_regressions/ (the crashes ``scripts/fuzz.sh`` found, fixed
since) is replayed.  ``scripts/fuzz.sh`` runs the same targets for minutes each.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import fuzz_targets
import pytest

#: Mutated inputs per target in-process: well under a second each on this machine.
MUTATIONS = 250
#: atheris executions per target in the child process (about 3 s of CPU with start-up).
ATHERIS_RUNS = 400
#: The flow target analyses each input twice (fast and general path): far fewer runs.
ATHERIS_RUNS_FLOWS = 60

REGRESSIONS = sorted(
    p
    for p in fuzz_targets.REGRESSIONS.rglob("*")
    if p.is_file() and p.parent.name in fuzz_targets.TARGETS
)


def test_every_target_has_seeds() -> None:
    for name in fuzz_targets.TARGETS:
        assert fuzz_targets.seeds(name), name


@pytest.mark.parametrize("name", list(fuzz_targets.TARGETS))
def test_target_survives_its_seeds_and_mutations(name: str) -> None:
    target = fuzz_targets.TARGETS[name]
    seeds = fuzz_targets.seeds(name)
    for seed in seeds:
        target(seed)
    for data in fuzz_targets.mutations(seeds, MUTATIONS, random.Random(name)):
        target(data)


@pytest.mark.parametrize("name", list(fuzz_targets.TARGETS))
def test_target_survives_a_short_coverage_guided_run(name: str, tmp_path: Path) -> None:
    runs = ATHERIS_RUNS_FLOWS if name == "flows" else ATHERIS_RUNS
    corpus = tmp_path / "corpus"
    script = str(Path(fuzz_targets.__file__))
    subprocess.run([sys.executable, script, name, "--write-seeds", str(corpus)], check=True)
    result = subprocess.run(
        [
            sys.executable,
            script,
            name,
            str(corpus),
            f"-runs={runs}",
            "-seed=1",
            "-max_len=8192",
            "-rss_limit_mb=1024",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    crashes = [
        p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "oom-", "timeout-"))
    ]
    assert result.returncode == 0 and not crashes, (crashes, result.stderr[-3000:])
    assert f"Done {runs} runs" in result.stderr


def test_every_fuzz_finding_stays_fixed() -> None:
    """Each file under tests/fuzz_regressions/TARGET/ once made TARGET fail; none may now."""
    assert fuzz_targets.REGRESSIONS.is_dir()
    fuzz_targets._imports()
    for path in REGRESSIONS:
        fuzz_targets.TARGETS[path.parent.name](path.read_bytes())


def test_the_structured_inputs_reach_the_decoders() -> None:
    """The flow target's shaped packets make connections with decoded messages, so fuzzing it
    reaches past the packet parser (a harness that only hit errors would prove little)."""
    fuzz_targets._imports()
    pcap = fuzz_targets.pcap_of(fuzz_targets.seeds("flows")[0][1:])
    analysis = fuzz_targets._analysis(pcap, fast=True)
    assert analysis["connections"]
    raw = fuzz_targets.seeds("flows")[1]
    assert raw[0] & 1
