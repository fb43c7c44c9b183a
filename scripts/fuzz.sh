#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser (atheris, libFuzzer's engine): tests/fuzz_targets.py.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      # default 600 s each, every target
#
# Each target starts from seeds built from the repository's captures plus the corpus it grew on
# earlier runs (kept in .fuzz/corpus/TARGET, outside git).  An input that makes a target fail
# (a traceback that is not wireprobe's own error, a broken byte ledger, fast path != general
# path) is written to tests/fuzz_regressions/TARGET/ and the run goes on (the run starts again
# after a crash); tests/test_fuzz.py replays every file there, so commit each one
# with its fix.  The summary line per target gives executions and crashes for the README.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(capture flows http1 http2 amqp tls keylog)
fi
python=.venv/bin/python
[ -x "$python" ] || python=python3

for target in "${targets[@]}"; do
    corpus=.fuzz/corpus/$target
    crashes=tests/fuzz_regressions/$target
    mkdir -p "$corpus" "$crashes"
    "$python" tests/fuzz_targets.py "$target" --write-seeds "$corpus"
    log=.fuzz/$target.log
    : >"$log"
    before=$(find "$crashes" -type f | wc -l)
    # libFuzzer stops at a crash: run again on the grown corpus until the time is spent.
    # -rss_limit_mb: the analyzer's memory is bounded; an input that takes more is a finding.
    end=$((SECONDS + seconds))
    while ((SECONDS < end)); do
        "$python" tests/fuzz_targets.py "$target" "$corpus" \
            -max_total_time=$((end - SECONDS)) -max_len=16384 -rss_limit_mb=1024 -timeout=20 \
            -print_final_stats=1 -artifact_prefix="$crashes/" >>"$log" 2>&1 && break
    done
    after=$(find "$crashes" -type f | wc -l)
    execs=$(awk '/stat::number_of_executed_units/ {n += $2} END {print n + 0}' "$log")
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1)
    echo "fuzz $target: ${seconds}s, ${execs:-0} executions, ${cov:-cov: ?}, $((after - before)) new crash inputs (log $log)"
done
