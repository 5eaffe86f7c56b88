#!/usr/bin/env bash
# The outbox benchmark (bench-outbox/): MiniVaultDB's outbox and forwarder against the same
# outbox on SQLite (WAL mode, synchronous=FULL, through rusqlite), in one interleaved run, and
# the drain of several gateways into one local Mosquitto. Prints the Markdown table that
# docs/BENCHMARKS.md ("The outbox: store and forward") quotes.
#
#   scripts/bench-outbox.sh              3 rounds, 200,000 records, 8 gateways (~10 min here)
#   scripts/bench-outbox.sh -- ARGS      pass ARGS to minivault-bench-outbox (see --help)
#
# Installs Mosquitto when missing (scripts/mosquitto.sh). BENCH_DIR (default
# target/bench-outbox) must be on the disk you want to measure, not a tmpfs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/mosquitto.sh >/dev/null
args=(--rounds 3 --sync-records 2000 --records 200000 --fleet 8 --dir "${BENCH_DIR:-target/bench-outbox}")
if [ "${1:-}" = -- ]; then
  shift
  args=("$@")
fi
cargo run --release -q -p minivault-bench-outbox -- "${args[@]}"
