#!/usr/bin/env bash
# Runs every cargo-fuzz target of MiniVaultDB for SECONDS each (default 60) on the nightly
# toolchain, installing cargo-fuzz first if it is missing, and prints executions per target.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Inputs that crash a target are copied to fuzz/regressions/<target>/, where
# tests/hostile_input.rs replays them in the normal `cargo test` (commit them with the fix).
# The corpus grows in fuzz/corpus/<target>/ (not committed). Exits 1 if any target crashed.
set -euo pipefail

secs="${1:-60}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: the nightly toolchain is required (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(record_decode wal_replay sstable_lookup repl_parse ops scan_merge)
fi

cargo +nightly fuzz build 2>&1 | tail -1
mkdir -p logs
status=0
printf '%-16s %14s %10s %s\n' target executions seconds result
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t" "regressions/$t"
    # -malloc_limit_mb: any single allocation over 512 MiB is a crash (no unbounded allocation).
    # -max_len: inputs up to 8 KiB (WALs and tables of a few dozen records).
    if cargo +nightly fuzz run "$t" "corpus/$t" -- \
        -max_total_time="$secs" -malloc_limit_mb=512 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1 >"logs/$t.log" 2>&1; then
        result=ok
    else
        result=CRASH
        status=1
        for f in artifacts/"$t"/*; do
            [ -f "$f" ] && cp "$f" "regressions/$t/"
        done
    fi
    runs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "logs/$t.log" | grep -Eo '[0-9]+$' | tail -1)"
    printf '%-16s %14s %10s %s\n' "$t" "${runs:-?}" "$secs" "$result"
    if [ "$result" = CRASH ]; then
        grep -E 'panicked|ERROR|SUMMARY' "logs/$t.log" | head -5 | sed 's/^/    /'
    fi
done
exit "$status"
