#!/usr/bin/env bash
# Builds minivault-bench and regenerates docs/BENCHMARKS.md (its generated block) and the PNG
# charts in docs/bench/ from a fresh run. See docs/BENCHMARKS.md for what is measured and how.
#
#   scripts/bench.sh                 full run: 10^4, 10^5, 10^6 keys, every engine incl. RocksDB,
#                                    3 interleaved rounds (~20 min of runs on 2 cores, plus the
#                                    RocksDB C++ build, which took over 20 min on a busy machine)
#   scripts/bench.sh --quick         10^4 and 10^5 keys, no RocksDB, short time caps (~3 minutes);
#                                    writes to target/bench-quick/ unless --out/--doc are given
#   scripts/bench.sh --with-1e7      the full run plus 10^7 keys: one round of MiniVaultDB, fjall,
#                                    RocksDB and the raw baselines on the workloads the aims name
#                                    (fills, reads, readwhilewriting, and the four scans): ~40 min more
#                                    (all of it: hours)
#   scripts/bench.sh --wal-preallocation
#                                    MiniVaultDB with its default WAL preallocation step, 64 KiB
#                                    steps and none, beside the raw log baselines: fillsync and
#                                    fillrandom at 10^5 keys, 5 rounds (~3 min; no peers);
#                                    writes docs/bench/wal-preallocation/
#   scripts/bench.sh --scans         the ordered reads only (readseq, readreverse, seekrandom,
#                                    prefix100) at 10^5 and 10^6 keys, every engine incl. RocksDB
#                                    (the raw baselines say n/a), 3 interleaved rounds; with
#                                    --with-1e7 also 10^7 keys for MiniVaultDB, fjall and RocksDB
#                                    (1 round); writes docs/bench/scans/
#   scripts/bench.sh --ab BASE_BIN   two builds side by side: BASE_BIN (a minivault-bench built
#                                    from an older commit) and this tree's (or AB_MAIN=BIN),
#                                    alternated round by round (AB_ROUNDS, default 8), MiniVaultDB
#                                    and fjall (the anchor), fillrandom, readrandom, fillsync and
#                                    fillbatch at 10^6 keys; writes AB_OUT (default
#                                    docs/bench/refactor/): base.tsv, main.tsv, log.txt, README.md
#   scripts/bench.sh --no-rocksdb    skip RocksDB (no C++ build, no libclang needed)
#   scripts/bench.sh --report-only   rebuild the report and charts from docs/bench/results.tsv
#   scripts/bench.sh ... -- ARGS     pass ARGS on to minivault-bench (see --help), e.g.
#                                    scripts/bench.sh --quick -- --engines minivault,fjall
#
# Environment: CARGO_TARGET_DIR (default target/), BENCH_DIR (scratch space for the databases,
# default target/bench-data; it must be on the disk you want to measure, not tmpfs).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
rocksdb=1
big=0
report_only=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) mode=quick; rocksdb=0 ;;
    --with-1e7) big=1 ;;
    --wal-preallocation) mode=walpre; rocksdb=0 ;;
    --no-rocksdb) rocksdb=0 ;;
    --rocksdb) rocksdb=1 ;;
    --report-only) report_only=1 ;;
    --) shift; extra=("$@"); break ;;
    --scans) mode=scans ;;
    --ab) mode=ab; rocksdb=0; shift; ab_base="${1:?--ab needs the minivault-bench binary of the base build}" ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# libclang itself, not libclang-cpp (which LLVM packages install alone, and bindgen cannot use).
have_libclang() {
  ldconfig -p 2>/dev/null | grep -q 'libclang\(-[0-9.]*\)\?\.so' && return 0
  for f in /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so*; do
    [ -e "$f" ] && return 0
  done
  return 1
}

# Re-rendering the report needs no engine: skip RocksDB's C++ build.
[ "$report_only" = 1 ] && rocksdb=0

features="fjall,redb,sled"
# The preallocation comparison runs MiniVaultDB and the raw baselines only; the A/B comparison
# MiniVaultDB and fjall.
[ "$mode" = walpre ] && features=""
[ "$mode" = ab ] && features="fjall"
if [ "$rocksdb" = 1 ]; then
  # The rocksdb crate generates its bindings with bindgen, which needs libclang.
  if ! have_libclang; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "bench.sh: installing libclang-dev for the RocksDB bindings" >&2
      (apt-get install -y --no-install-recommends libclang-dev >/dev/null 2>&1 ||
        { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends libclang-dev >/dev/null 2>&1; }) || true
    fi
  fi
  if have_libclang; then
    features="$features,rocksdb"
  else
    echo "bench.sh: libclang not found: running without RocksDB (install libclang-dev, or pass --no-rocksdb)" >&2
    rocksdb=0
  fi
fi

target="${CARGO_TARGET_DIR:-target}"
echo "bench.sh: building minivault-bench (features: $features)" >&2
if [ -n "$features" ]; then
  nice -n 10 cargo build --release -p minivault-bench --no-default-features --features "$features" >&2
else
  nice -n 10 cargo build --release -p minivault-bench --no-default-features >&2
fi
bin="$target/release/minivault-bench"
data="${BENCH_DIR:-target/bench-data}"
# Named in the report's label. (Not `$([ "$big" = 1 ] && echo ...)` inside the assignments below:
# under `set -e` its false test ended the script without a word whenever --with-1e7 was absent.)
with_1e7=""
[ "$big" = 1 ] && with_1e7=" --with-1e7"

engines="minivault,fjall,redb,sled,rawfile,rawprealloc"
[ "$rocksdb" = 1 ] && engines="minivault,fjall,redb,sled,rocksdb,rawfile,rawprealloc"

if [ "$report_only" = 1 ]; then
  exec "$bin" --report-only --out docs/bench --doc docs/BENCHMARKS.md "${extra[@]}"
fi

if [ "$mode" = ab ]; then
  # Each round runs both builds back to back (which goes first alternates), each with one
  # round of both engines (their order alternates too), on fresh data in the same --dir.
  main_bin="${AB_MAIN:-$bin}"
  rounds="${AB_ROUNDS:-8}"
  out="${AB_OUT:-docs/bench/refactor}"
  tmp="$data/ab-runs"
  mkdir -p "$out"
  rm -rf "$tmp"
  : >"$out/base.tsv"
  : >"$out/main.tsv"
  {
    echo "# scripts/bench.sh --ab $ab_base (AB_MAIN=${AB_MAIN:-this tree}, AB_ROUNDS=$rounds) ${extra[*]}"
    echo "# base: $ab_base ($(stat -c '%y' "$ab_base"))"
    echo "# main: $main_bin ($(stat -c '%y' "$main_bin"))"
    echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, --dir $data"
  } >"$out/log.txt"
  for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) = 1 ]; then order="base main"; engines="minivault,fjall"; else order="main base"; engines="fjall,minivault"; fi
    for build in $order; do
      if [ "$build" = base ]; then b="$ab_base"; else b="$main_bin"; fi
      echo "round $r $build engines=$engines load=$(cut -d' ' -f1-3 /proc/loadavg) start=$(date -u +%H:%M:%S)" | tee -a "$out/log.txt" >&2
      "$b" --engines "$engines" --keys 1000000 --workloads fillrandom,readrandom,fillsync,fillbatch \
        --rounds 1 --sstables 0 --max-secs 8 --sync-ops 50000 --dir "$data/ab" \
        --out "$tmp/$build-$r" --doc "$tmp/$build-$r/report.md" --label "ab $build round $r" "${extra[@]}" \
        2>>"$out/log.txt"
      grep '^ROW' "$tmp/$build-$r/results.tsv" | sed "s/\tround=0\t/\tround=$r\t/" >>"$out/$build.tsv"
    done
  done
  echo "done $(date -u +%H:%M:%S) load=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/log.txt"
  rm -rf "$tmp" "$data/ab"
  exec "$bin" --ab-report "$out" --label "${AB_LABELS:-base,main}"
fi

if [ "$mode" = scans ]; then
  keys=100000,1000000
  large=()
  if [ "$big" = 1 ]; then
    keys="$keys,10000000"
    large=(--large-scale 10000000 --large-rounds 1 --large-engines minivault,fjall,rocksdb)
  fi
  args=("${large[@]}" --keys "$keys" --rounds 3 --workloads readseq,readreverse,seekrandom,prefix100
        --max-secs 5 --sstables 0 --out docs/bench/scans --doc docs/bench/scans/README.md
        --label "scans (scripts/bench.sh --scans$with_1e7)")
elif [ "$mode" = walpre ]; then
  engines="minivault,minivault-walpre64k,minivault-walpre0,rawfile,rawprealloc"
  args=(--keys 100000 --rounds 5 --workloads fillsync,fillrandom --max-secs 5 --sync-ops 20000
        --sstables 0 --out docs/bench/wal-preallocation --doc docs/bench/wal-preallocation/README.md
        --label "WAL preallocation step (scripts/bench.sh --wal-preallocation)")
elif [ "$mode" = quick ]; then
  args=(--keys 10000,100000 --rounds 3 --max-secs 1 --sync-ops 1000 --reopen-keys 20000
        --sstables 32 --sst-keys 2000 --out target/bench-quick --doc target/bench-quick/BENCHMARKS.md
        --label "quick (scripts/bench.sh --quick)")
else
  keys=10000,100000,1000000
  large=()
  if [ "$big" = 1 ]; then
    keys="$keys,10000000"
    large=(--large-scale 10000000 --large-rounds 1 --large-engines minivault,fjall,rocksdb,rawfile,rawprealloc
           --large-workloads fillseq,fillrandom,readrandom,readmissing,readhot,readseq,readreverse,seekrandom,prefix100,fillsync,fillbatch,readwhilewriting)
  fi
  # minivault-bigcache (caches about as large as redb's memory) for issue 12's aim "redb's
  # read rate with redb's memory, in the same run"; at 10^7 it is left out with redb.
  engines="$engines,minivault-bigcache"
  args=("${large[@]}" --keys "$keys" --rounds 3 --max-secs 5 --sync-ops 20000 --reopen-keys 100000
        --sstables 128 --sst-keys 4000 --out docs/bench --doc docs/BENCHMARKS.md
        --label "full (scripts/bench.sh$with_1e7)")
fi

exec "$bin" --engines "$engines" --dir "$data" "${args[@]}" "${extra[@]}"
