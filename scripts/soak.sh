#!/usr/bin/env bash
# Long soak of MiniVaultDB's crash tests: every test below runs fresh seeds (or kill cycles)
# for SECONDS (default 600) instead of its fixed count, in the release profile, two at a time:
#
#   model_power_cut        random ops + power cuts, 3 sync policies   (3 tests)
#   model_bit_flips        bit flips on the medium                     (fixed seeds, MINIVAULT_SEEDS)
#   error_injection_sweep  EIO / ENOSPC at every storage call          (2 tests)
#   kill9_loop             SIGKILL of the minivault binary             (1 test)
#
#   scripts/soak.sh [SECONDS]
#
# Wall time is about 4 x SECONDS (plus the release build). A failing seed is printed with the command that reproduces it
# (MINIVAULT_SEED=<n> cargo test --test <file> <test>). The full log is kept in target/soak-*.log.
set -euo pipefail

secs="${1:-600}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
mkdir -p target
log="target/soak-$(date +%Y%m%d-%H%M%S).log"
export MINIVAULT_SOAK="$secs"
export MINIVAULT_SEEDS="${MINIVAULT_SEEDS:-5000}"
echo "soak: ${secs} s per test, log in $log"
set +e
cargo test --release \
    --test model_power_cut --test model_bit_flips --test error_injection_sweep --test kill9_loop \
    -- --nocapture --test-threads=2 >"$log" 2>&1
status=$?
set -e
grep -E 'seeds,|runs \(|SIGKILLs|model_bit_flips:|FAILED|panicked|reproduce:|^test result' "$log" || true
exit "$status"
