#!/usr/bin/env bash
# The bindings' benchmarks (docs/BENCHMARKS.md, section "The C and Python bindings"):
#
#   c       db_bench's fillrandom and readrandom (10^5 keys of 16 B, 100 B values, durability
#           manual) through the C API (capi/bench/bench.c, -O2, static libminivault.a) and
#           through the Rust API (capi/examples/bench_rust.rs), each run its own process,
#           alternating which goes first, ROUNDS rounds; medians and C's rate over Rust's.
#   c-callgrind  the same two programs once each under callgrind, counting instructions only
#           inside the API calls (minivault_put/_get; Db::put/::get): exact, whatever the load.
#   python  the same workloads from Python against sqlite3 (standard library), lmdb and
#           rocksdict (RocksDB), installed with pip into target/python-bench-venv
#           (python/bench/bench.py: interleaved rounds, a process per engine and round).
#
# Usage: scripts/bindings-bench.sh [c] [c-callgrind] [python]   (default: c and python)
# Environment: KEYS (default 100000), ROUNDS (default 5), BENCH_DIR (scratch on the disk
# being measured; default target/bindings-bench).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
KEYS=${KEYS:-100000}
ROUNDS=${ROUNDS:-5}
OUT=${BENCH_DIR:-$ROOT/target/bindings-bench}
PARTS=("$@")
[ ${#PARTS[@]} -gt 0 ] || PARTS=(c python)
mkdir -p "$OUT"

median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

for part in "${PARTS[@]}"; do
  case "$part" in
  c)
    echo "== C API vs Rust API: building (release)"
    cargo build --release -q -p minivault-capi --lib --example bench_rust
    cc -std=c11 -O2 -I capi/include capi/bench/bench.c target/release/libminivault.a -lpthread -ldl -lm \
      -o "$OUT/bench_c"
    : >"$OUT/c.tsv"
    for r in $(seq 1 "$ROUNDS"); do
      order=(c rust)
      [ $((r % 2)) = 0 ] && order=(rust c)
      for side in "${order[@]}"; do
        dir="$OUT/data-$side"
        rm -rf "$dir"
        if [ "$side" = c ]; then out=$("$OUT/bench_c" "$dir" "$KEYS"); else out=$(target/release/examples/bench_rust "$dir" "$KEYS"); fi
        rm -rf "$dir"
        echo "$out" | while read -r w ops; do printf '%s\t%s\t%s\t%s\n' "$r" "$side" "$w" "$ops"; done >>"$OUT/c.tsv"
        echo "   round $r $side: $(echo "$out" | tr '\n' ' ')"
      done
    done
    echo
    echo "$KEYS keys (16 B) and 100 B values, durability manual, $ROUNDS alternating rounds, medians (ops/s)"
    echo
    echo "| workload | Rust API | C API | C's rate over Rust's | rounds (C/Rust each round) |"
    echo "|---|---:|---:|---:|---|"
    for w in fillrandom readrandom; do
      rust=$(awk -v w="$w" '$2 == "rust" && $3 == w {print $4}' "$OUT/c.tsv" | median)
      c=$(awk -v w="$w" '$2 == "c" && $3 == w {print $4}' "$OUT/c.tsv" | median)
      per=$(awk -v w="$w" '$3 == w {v[$1, $2] = $4; n = ($1 > n ? $1 : n)} END {for (i = 1; i <= n; i++) printf "%s%.2f", (i > 1 ? ", " : ""), v[i, "c"] / v[i, "rust"]}' "$OUT/c.tsv")
      awk -v w="$w" -v r="$rust" -v c="$c" -v per="$per" 'BEGIN {printf "| %s | %.0f | %.0f | %.3f× | %s |\n", w, r, c, c / r, per}'
    done
    ;;
  c-callgrind)
    echo "== C API vs Rust API under callgrind ($KEYS puts and gets each)"
    cargo build --release -q -p minivault-capi --lib --example bench_rust
    cc -std=c11 -O2 -I capi/include capi/bench/bench.c target/release/libminivault.a -lpthread -ldl -lm \
      -o "$OUT/bench_c"
    rm -rf "$OUT/cg" && mkdir -p "$OUT/cg"
    valgrind --tool=callgrind --callgrind-out-file="$OUT/cg/c.out" --collect-atstart=no \
      --toggle-collect=minivault_put --toggle-collect=minivault_get "$OUT/bench_c" "$OUT/cg/data-c" "$KEYS" >/dev/null 2>&1
    valgrind --tool=callgrind --callgrind-out-file="$OUT/cg/rust.out" --collect-atstart=no \
      --toggle-collect='minivault::db::Db::put' --toggle-collect='minivault::db::Db::get' \
      target/release/examples/bench_rust "$OUT/cg/data-rust" "$KEYS" >/dev/null 2>&1
    rm -rf "$OUT/cg/data-c" "$OUT/cg/data-rust"
    # The first (largest) inclusive count of FILE:FUNCTION: callgrind_annotate sorts by it.
    inclusive() { callgrind_annotate --inclusive=yes "$1" 2>/dev/null | awk -v f="$2" '!done && index($0, f) {gsub(",", "", $1); print $1; done = 1}'; }
    echo "| call | Rust API (instructions) | C API | overhead |"
    echo "|---|---:|---:|---:|"
    for call in put get; do
      r=$(inclusive "$OUT/cg/rust.out" "posix/src/db.rs:minivault::db::Db::$call")
      c=$(inclusive "$OUT/cg/c.out" "capi/src/db.rs:minivault_$call")
      awk -v call="$call" -v r="$r" -v c="$c" -v n="$KEYS" 'BEGIN {printf "| %s | %.1f M | %.1f M | %+.1f %% (%.0f per call) |\n", call, r / 1e6, c / 1e6, 100 * (c - r) / r, (c - r) / n}'
    done
    ;;
  python)
    VENV="$ROOT/target/python-bench-venv"
    echo "== Python: minivault vs sqlite3, lmdb, rocksdict (venv $VENV)"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check ./python lmdb rocksdict
    "$VENV/bin/python" python/bench/bench.py --keys "$KEYS" --rounds "$ROUNDS" --dir "$OUT/python"
    ;;
  *) echo "bindings-bench.sh: unknown part $part (c or python)" >&2; exit 2 ;;
  esac
done
