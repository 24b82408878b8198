#!/usr/bin/env bash
# Coverage-guided fuzzing on stable Rust: libFuzzer (libfuzzer-sys, no cargo-fuzz) with
# rustc's sanitizer-coverage passes.
#
#   testenv/fuzz.sh TARGET SECONDS    one target (names: testenv/fuzz/src/bin/*.rs)
#   testenv/fuzz.sh all SECONDS       every target in turn, SECONDS each
#   FUZZ_KEEP_GOING=1 testenv/fuzz.sh ...   do not stop at the first crash (libFuzzer's
#                                     -fork=1 -ignore_crashes=1): every crash is saved
#   FUZZ_STACK_KB=N                   the fuzzer's stack (default 128 KiB, see below)
#
# Builds testenv/fuzz in release mode with debug assertions and overflow checks, runs
# TARGET for SECONDS on testenv/fuzz/corpus/<target> (kept, not committed) seeded from
# testenv/fuzz/seeds/<target>, and prints executions, executions per second and findings.
# A finding — a panic, an abort, an input over 1 s (libFuzzer's -timeout) or over 100 ms
# (our own timing, SP_FUZZ_SLOW_MS) — is written to testenv/fuzz/findings/<target>/ and
# makes the script exit non-zero. Copy a finding to testenv/fuzz/regressions/<target>/ to
# have tests/fuzz_regressions.rs replay it. See docs/testing.md, "Fuzzing".
set -euo pipefail
cd "$(dirname "$0")/fuzz"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

targets=(lvm_label mda_header metadata_text ini topology sizes ovsdb_codec ovsdb_datum nft_dump metadata_http)

usage() {
    echo "usage: $0 TARGET|all SECONDS   (targets: ${targets[*]})" >&2
    exit 2
}
[ $# -eq 2 ] || usage
what=$1
seconds=$2
[[ $seconds =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || usage
if [ "$what" = all ]; then
    run=("${targets[@]}")
else
    [[ " ${targets[*]} " == *" $what "* ]] || usage
    run=("$what")
fi

# libFuzzer's runtime is C++, compiled by libfuzzer-sys's build script.
if ! command -v c++ >/dev/null; then
    apt-get update -qq && apt-get install -y -qq g++ >/dev/null
fi

host=$(rustc -vV | sed -n 's/^host: //p')
# Stable rustc flags only (no -Z): sanitizer coverage as cargo-fuzz sets it up. With
# --target the flags reach our code, not the build scripts.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares"
bins=()
for t in "${run[@]}"; do bins+=(--bin "$t"); done
cargo build --release --locked --target "$host" "${bins[@]}"

keep_going=()
if [ "${FUZZ_KEEP_GOING:-0}" = 1 ]; then
    keep_going=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
fi

# A small stack makes unbounded recursion show within libFuzzer's 4 KiB inputs (the
# seeds and regression inputs of every target that bounds its nesting pass with it; at
# 64 KiB toml's own nesting limit no longer fits);
# a stack-overflow finding goes into regressions/ deepened (×100000) so that it also
# overflows the test threads' 2 MiB.
stack_kb=${FUZZ_STACK_KB:-128}

# What each finding is: its panic location (or abort, or slowness), replayed once.
classify() {
    local bin=$1 f=$2 why
    case $(basename "$f") in
    slow-*) echo "slower than 100 ms"; return ;;
    esac
    why=$( (ulimit -s "$stack_kb" && timeout 20 "$bin" "$f") 2>&1 |
        grep -m1 -oE "panicked at [^ ]+|has overflowed its stack|SIGSEGV in the target|ERROR: libFuzzer: [a-z -]+|memory allocation of [0-9]+ bytes failed" ||
        true)
    echo "${why:-no longer fails}"
}

status=0
summary=()
for t in "${run[@]}"; do
    corpus=corpus/$t
    findings=findings/$t
    mkdir -p "$corpus" "$findings"
    before=$(find "$findings" -type f | wc -l)
    log=$(mktemp)
    stamp=$(mktemp) # findings are the files newer than this
    echo "== $t: ${seconds}s, stack ${stack_kb} KiB"
    set +e
    (ulimit -s "$stack_kb" && SP_FUZZ_SLOW_DIR=$findings SP_FUZZ_SLOW_MS=100 \
        exec "target/$host/release/$t" "$corpus" "seeds/$t" \
        -max_total_time="$seconds" -timeout=1 -rss_limit_mb=2048 \
        -artifact_prefix="$findings/" -print_final_stats=1 "${keep_going[@]}") 2>&1 |
        tee "$log" |
        grep -E --line-buffered 'INITED|pulse|SLOW:|ERROR|panicked|overflowed|Done|^#[0-9]+: .*job: [0-9]*0 '
    rc=${PIPESTATUS[0]}
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    if [ ${#keep_going[@]} -gt 0 ]; then
        # Fork mode prints "#RUNS: cov: ... time: Ns job: ..." instead of final stats.
        runs=$(sed -n 's/^#\([0-9]*\): cov:.*/\1/p' "$log" | tail -1)
        [ -n "$runs" ] && speed=$((runs / seconds))
    fi
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    after=$(find "$findings" -type f | wc -l)
    new=$((after - before))
    echo "== $t: ${seconds}s, ${runs:-?} executions, ${speed:-?} exec/s, coverage ${cov:-?}, corpus $(find "$corpus" -type f | wc -l), findings $new (libFuzzer exit $rc)"
    if [ "$rc" -ne 0 ] || [ "$new" -ne 0 ]; then
        status=1
        echo "== $t: findings in testenv/fuzz/$findings/:"
        while IFS= read -r f; do
            printf '%s\t%s\n' "$(classify "target/$host/release/$t" "$f")" "$f"
        done < <(find "$findings" -type f -newer "$stamp") |
            sort | awk -F'\t' '{ n[$1]++; if (!($1 in ex)) ex[$1] = $2 }
                END { for (k in n) printf "   %d× %s, e.g. testenv/fuzz/%s\n", n[k], k, ex[k] }'
    fi
    summary+=("$t ${seconds}s ${runs:-?} execs ${speed:-?}/s findings $new rc $rc")
    rm -f "$log" "$stamp"
done
echo "== summary"
printf '   %s\n' "${summary[@]}"
exit $status
