#!/usr/bin/env bash
# MiniVaultDB on the devices it is made for, checked on a plain x86-64 Debian machine:
#
#   1. minivault-core (no_std, no alloc) for thumbv6m-none-eabi, thumbv7em-none-eabihf and
#      riscv32imc-unknown-none-elf, each without and with the `defmt` feature;
#   2. the firmware example (examples/firmware: the real engine on in-memory "flash") built for
#      Cortex-M3 and run under qemu-system-arm, plain and with defmt, on the boards in
#      FIRMWARE_BOARDS; it exits 0 only when every check passed;
#   3. the `minivault` binary, its crate's tests and the root examples for aarch64 and armv7
#      Linux, run under qemu-user, plus a REPL session whose output must be exactly "OK\n1\n";
#   4. the C API (capi/: libminivault.a and .so) for aarch64 and armv7 Linux, with the C example
#      (examples/c/telemetry.c) and the C test program (capi/tests/c/test_minivault.c) built by
#      the target's gcc against the static library and run under qemu-user;
#
# then prints a Markdown table of what was built, run and passed, and the firmware's sizes.
#
# Usage: scripts/cross.sh [--skip-setup] [--with-defmt-print] [--only core|firmware|linux|capi]...
#   --skip-setup        do not run scripts/cross-setup.sh (the toolchain is already installed)
#   --with-defmt-print  let cross-setup install defmt-print, to decode the defmt firmware's log
#   --only PART         run only this part (repeatable); the default is all four
# Environment:
#   FIRMWARE_BOARDS  boards to run the firmware on (default "lm3s6965 netduino2")
#   FIRMWARE_XFAIL   boards whose firmware is known to fail (default: none, every board counts).
#                    Their failure is reported but does not fail the script; a PASS there fails
#                    it, so that the entry gets removed.
#   QEMU_TIMEOUT     seconds one QEMU run may take (default 120)
#   LINUX_TEST_SKIP  test names passed to the posix tests as `--skip` under qemu-user (default:
#                    repl::tests::line_of_exactly_max_len_is_accepted, a platform-independent
#                    parser test with a 1 MiB line that takes 75 s in a debug build under qemu-arm;
#                    the host `cargo test` runs it). Set LINUX_TEST_SKIP= to run every test.
# Builds are cached in target/cross/{core,firmware,linux}; logs go to target/cross/logs, the
# table also to target/cross/report.md. Exit status: 0 when every step passed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SETUP=1
SETUP_ARGS=()
PARTS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-setup) SETUP=0 ;;
    --with-defmt-print) SETUP_ARGS+=(--with-defmt-print) ;;
    --only)
      [ $# -ge 2 ] || { echo "cross.sh: --only needs core, firmware, linux or capi" >&2; exit 2; }
      case "$2" in core|firmware|linux|capi) PARTS+=("$2") ;; *) echo "cross.sh: unknown part $2" >&2; exit 2 ;; esac
      shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "cross.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
[ ${#PARTS[@]} -gt 0 ] || PARTS=(core firmware linux capi)
want() { [[ " ${PARTS[*]} " == *" $1 "* ]]; }

FIRMWARE_BOARDS=${FIRMWARE_BOARDS-lm3s6965 netduino2}
FIRMWARE_XFAIL=${FIRMWARE_XFAIL-}
QEMU_TIMEOUT=${QEMU_TIMEOUT:-120}
LINUX_TEST_SKIP=${LINUX_TEST_SKIP-repl::tests::line_of_exactly_max_len_is_accepted}

START=$SECONDS
OUT="$ROOT/target/cross"
LOGS="$OUT/logs"
mkdir -p "$LOGS"

if [ "$SETUP" = 1 ]; then
  echo "== setup (scripts/cross-setup.sh)"
  "$ROOT/scripts/cross-setup.sh" "${SETUP_ARGS[@]}" | sed 's/^/   /'
fi

# Debian's Rust, linked into rustup as `debian` by cross-setup.sh; it has no prebuilt std for
# these targets, so every build below uses -Zbuild-std, which RUSTC_BOOTSTRAP=1 allows.
if command -v rustup >/dev/null; then CARGO=(cargo +debian); else CARGO=(/usr/bin/cargo); fi
export RUSTC_BOOTSTRAP=1
SIZE=size
command -v size >/dev/null || SIZE=llvm-size-22

# ---------------------------------------------------------------------------------------------
# Bookkeeping: every step logs to its own file; a failure prints the log's tail and the script
# goes on, so that the table shows everything; the exit status reports it at the end.
FAILED=()
ROWS=()      # "target|what|built|ran|passed|notes"
FW_ROWS=()   # firmware size rows

# step NAME CMD...: runs CMD with its output in $LOGS/<NAME up to the first space>.log; prints the
# outcome and the time.
step() {
  local name=$1; shift
  local log="$LOGS/${name%% *}.log" t0=$SECONDS rc=0
  printf '   %-58s ' "$name"
  "$@" >"$log" 2>&1 || rc=$?
  if [ "$rc" = 0 ]; then
    printf 'ok    %4ss\n' $((SECONDS - t0))
  else
    printf 'FAIL  %4ss (exit %s; %s)\n' $((SECONDS - t0)) "$rc" "${log#"$ROOT"/}"
    tail -n 25 "$log" | sed 's/^/      | /'
  fi
  return "$rc"
}

row() { ROWS+=("$1|$2|$3|$4|$5|${6:-}"); }
fail() { FAILED+=("$1"); }

# ---------------------------------------------------------------------------------------------
# 1. minivault-core for microcontrollers: no_std, no alloc (only `core` is built for the target).
if want core; then
  echo "== minivault-core for microcontrollers (-Zbuild-std=core)"
  CORE_TARGETS=(thumbv6m-none-eabi thumbv7em-none-eabihf riscv32imc-unknown-none-elf)
  for features in none defmt; do
    args=()
    [ "$features" = defmt ] && args=(--features defmt)
    core_build() { # core_build TARGET...: one cargo run for all of them (their `core`s build in parallel)
      local t targets=()
      for t in "$@"; do targets+=(--target "$t"); done
      env CARGO_TARGET_DIR="$OUT/core" "${CARGO[@]}" build -p minivault-core -Zbuild-std=core "${targets[@]}" "${args[@]}"
    }
    if step "core-$features (${CORE_TARGETS[*]})" core_build "${CORE_TARGETS[@]}"; then
      for target in "${CORE_TARGETS[@]}"; do row "$target" "minivault-core, features: $features" yes "–" "–"; done
    else
      # Attribute the failure: build each target on its own (those that built are cached).
      for target in "${CORE_TARGETS[@]}"; do
        if step "core-$features-$target" core_build "$target"; then
          row "$target" "minivault-core, features: $features" yes "–" "–"
        else
          row "$target" "minivault-core, features: $features" FAILED "–" "–"; fail "core $target $features"
        fi
      done
    fi
  done
fi

# ---------------------------------------------------------------------------------------------
# 2. The firmware on QEMU's Cortex-M3 boards.
machine_of() { case "$1" in lm3s6965) echo lm3s6965evb ;; netduino2) echo netduino2 ;; *) return 1 ;; esac; }
ram_of() { case "$1" in lm3s6965) echo 64 ;; netduino2) echo 128 ;; esac; }
is_xfail() { [[ " $FIRMWARE_XFAIL " == *" $1 "* ]]; }

# run_firmware ELF MACHINE OUTFILE: boots ELF, semihosting stdout to OUTFILE; QEMU's exit code.
run_firmware() {
  timeout "$QEMU_TIMEOUT" qemu-system-arm -cpu cortex-m3 -machine "$2" -nographic \
    -semihosting-config enable=on,target=native -kernel "$1" >"$3"
}

# section ELF NAME: the size of one section (0 when absent), from `size -A`.
section() { "$SIZE" -A "$1" | awk -v s="$2" '$1 == s { print $2; f = 1 } END { if (!f) print 0 }'; }

if want firmware; then
  echo "== firmware on qemu-system-arm (examples/firmware; boards: $FIRMWARE_BOARDS)"
  FW="$OUT/firmware"
  mkdir -p "$FW/out"
  HAVE_DEFMT_PRINT=0
  command -v defmt-print >/dev/null && HAVE_DEFMT_PRINT=1
  for board in $FIRMWARE_BOARDS; do
    machine=$(machine_of "$board") || { echo "cross.sh: unknown board $board" >&2; exit 2; }
    for variant in telemetry telemetry-defmt; do
      name="firmware-$variant-$board"
      elf="$FW/out/$variant-$board.elf"
      what="firmware \`$variant\` on $machine ($(ram_of "$board") KiB RAM)"
      if ! step "$name-build" env -C examples/firmware CARGO_TARGET_DIR="$FW" MINIVAULT_BOARD="$board" \
          "${CARGO[@]}" build --release -p "$variant"; then
        row thumbv7m-none-eabi "$what" FAILED "–" "–"; fail "$name build"; continue
      fi
      cp "$FW/thumbv7m-none-eabi/release/$variant" "$elf"
      raw="$LOGS/$name.out"
      rc=0
      label="$name-run (qemu $machine)"
      is_xfail "$board" && label="$name-run (qemu $machine; known to fail)"
      step "$label" run_firmware "$elf" "$machine" "$raw" || rc=$?
      text="$raw"
      if [ "$variant" = telemetry-defmt ]; then
        if [ "$HAVE_DEFMT_PRINT" = 1 ]; then
          text="$LOGS/$name.txt"
          defmt-print -e "$elf" <"$raw" >"$text" 2>&1 || true
        else
          text=""   # binary defmt frames; only the exit code can be checked
        fi
      fi
      verdict=PASS
      if [ "$rc" != 0 ]; then verdict=FAIL
      elif [ -n "$text" ] && [ "$(tail -n 1 "$text")" != PASS ]; then verdict=FAIL; fi
      [ -n "$text" ] && sed 's/^/      > /' "$text" | grep -E 'firmware|stack|FAIL|PASS|wrote' | cut -c1-140 || true
      stack=$( [ -n "$text" ] && sed -n 's/.*stack: high-water \([0-9]*\) B of \([0-9]*\) B.*/\1 of \2/p' "$text" | head -n 1 || true)
      engine=$( [ -n "$text" ] && sed -n 's/.*engine RAM \([0-9]*\) B.*/\1/p' "$text" | head -n 1 || true)
      note=""
      if [ -z "$text" ]; then note="defmt log not decoded (no defmt-print); exit code checked"; fi
      if is_xfail "$board"; then
        if [ "$verdict" = PASS ]; then
          verdict="PASS, but listed in FIRMWARE_XFAIL"; fail "$name passes: remove $board from FIRMWARE_XFAIL"
        else
          verdict="FAIL (known, FIRMWARE_XFAIL)"
          note="$(grep -m1 -o 'FAIL: .*' "${text:-/dev/null}" 2>/dev/null | cut -c7-110 || true)"
        fi
      elif [ "$verdict" = FAIL ]; then
        fail "$name"
      fi
      row thumbv7m-none-eabi "$what" yes "$([ "$rc" = 124 ] && echo "timed out" || echo yes)" "$verdict" "$note"
      vt=$(section "$elf" .vector_table); tx=$(section "$elf" .text); ro=$(section "$elf" .rodata)
      da=$(section "$elf" .data); bs=$(section "$elf" .bss)
      FW_ROWS+=("$variant|$machine ($(ram_of "$board")K)|$vt|$tx|$ro|$((vt + tx + ro + da))|$da|$bs|$((da + bs))|${engine:-?}|${stack:-– (not run)}")
    done
  done
fi

# ---------------------------------------------------------------------------------------------
# 3. ARM Linux gateways: std builds, run under qemu-user (no binfmt_misc needed).
if want linux; then
  echo "== ARM Linux under qemu-user (-Zbuild-std=std,panic_abort)"
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu" \
    CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
    CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER="qemu-arm -L /usr/arm-linux-gnueabihf"
  LX="$OUT/linux"
  for target in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
    case "$target" in
      aarch64-*) qemu=(qemu-aarch64 -L /usr/aarch64-linux-gnu) ;;
      armv7-*) qemu=(qemu-arm -L /usr/arm-linux-gnueabihf) ;;
    esac
    cargo_x=(env CARGO_TARGET_DIR="$LX" "${CARGO[@]}")
    bin="$LX/$target/debug"
    if ! step "linux-$target-build" "${cargo_x[@]}" build --target "$target" -Zbuild-std=std,panic_abort \
        -p minivault -p minivault-suite --bins --examples; then
      row "$target" "\`minivault\` binary + root examples" FAILED "–" "–"; fail "$target build"; continue
    fi
    row "$target" "\`minivault\` binary + root examples" yes "–" "–"

    skip=()
    for t in $LINUX_TEST_SKIP; do skip+=(--skip "$t"); done
    if step "linux-$target-test-minivault" "${cargo_x[@]}" test --target "$target" -Zbuild-std=std,panic_abort \
        -p minivault -- "${skip[@]}"; then
      n=$(grep -o 'test result: ok\. [0-9]* passed' "$LOGS/linux-$target-test-minivault.log" | awk '{s += $4} END {print s + 0}')
      row "$target" "\`cargo test -p minivault\` (posix crate) under ${qemu[0]}" yes yes "PASS ($n tests)" \
        "${LINUX_TEST_SKIP:+skipped: $LINUX_TEST_SKIP}"
    else
      row "$target" "\`cargo test -p minivault\` (posix crate) under ${qemu[0]}" yes "?" FAILED; fail "$target tests"
    fi

    repl_dir=$(mktemp -d)
    repl_session() {
      local got
      got=$(printf 'put a 1\nget a\n' | "${qemu[@]}" "$bin/minivault" "$repl_dir/db"; printf x)
      printf 'output: %q\n' "${got%x}"
      [ "${got%x}" = $'OK\n1\n' ]
    }
    if step "linux-$target-repl" repl_session; then
      row "$target" "REPL: \`put a 1\`, \`get a\` prints exactly \`OK\\n1\\n\`" "–" yes PASS
    else
      row "$target" "REPL: \`put a 1\`, \`get a\` prints exactly \`OK\\n1\\n\`" "–" yes FAILED; fail "$target REPL"
    fi
    for example in telemetry_buffer core_in_memory; do
      args=()
      [ "$example" = telemetry_buffer ] && args=("$repl_dir/telemetry")
      if step "linux-$target-example-$example" "${qemu[@]}" "$bin/examples/$example" "${args[@]}"; then
        row "$target" "example \`$example\`" "–" yes PASS "$(head -n 1 "$LOGS/linux-$target-example-$example.log" | cut -c1-90)"
      else
        row "$target" "example \`$example\`" "–" yes FAILED; fail "$target example $example"
      fi
    done
    rm -rf "$repl_dir"
  done
fi

# ---------------------------------------------------------------------------------------------
# 4. The C API on ARM Linux: the static library cross-built by cargo, the C programs by the
#    target's gcc, run under qemu-user.
if want capi; then
  echo "== the C API on ARM Linux under qemu-user (capi/, examples/c/telemetry.c)"
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
  LX="$OUT/linux"
  for target in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
    case "$target" in
      aarch64-*) qemu=(qemu-aarch64 -L /usr/aarch64-linux-gnu); xcc=aarch64-linux-gnu-gcc ;;
      armv7-*) qemu=(qemu-arm -L /usr/arm-linux-gnueabihf); xcc=arm-linux-gnueabihf-gcc ;;
    esac
    lib="$LX/$target/debug"
    if ! step "capi-$target-build" env CARGO_TARGET_DIR="$LX" "${CARGO[@]}" build --target "$target" \
        -Zbuild-std=std,panic_abort -p minivault-capi; then
      row "$target" "C API: \`libminivault.a\` + \`.so\`" FAILED "–" "–"; fail "$target capi build"; continue
    fi
    # Rust's std in a static library needs these from the C library (as on the host).
    c_build() { "$xcc" -std=c11 -Wall -Wextra -Werror -O2 -pthread -I capi/include "$1" "$lib/libminivault.a" \
      -lpthread -ldl -lm -o "$2"; }
    if step "capi-$target-build-c" c_build examples/c/telemetry.c "$lib/telemetry-c" &&
       step "capi-$target-build-c-test" c_build capi/tests/c/test_minivault.c "$lib/test_minivault"; then
      row "$target" "C API: \`libminivault.a\`, C example and test program (\`$xcc\`)" yes "–" "–"
    else
      row "$target" "C API: \`libminivault.a\`, C example and test program (\`$xcc\`)" FAILED "–" "–"
      fail "$target capi C build"; continue
    fi
    c_dir=$(mktemp -d)
    if step "capi-$target-telemetry" "${qemu[@]}" "$lib/telemetry-c" "$c_dir/telemetry" &&
       [ "$(tail -n 1 "$LOGS/capi-$target-telemetry.log")" = "reopened: every reading checked, the expired alarm is gone" ]; then
      row "$target" "C example \`examples/c/telemetry.c\` under ${qemu[0]}" "–" yes PASS \
        "$(sed -n 3p "$LOGS/capi-$target-telemetry.log" | cut -c1-90)"
    else
      row "$target" "C example \`examples/c/telemetry.c\` under ${qemu[0]}" "–" yes FAILED; fail "$target C example"
    fi
    mkdir -p "$c_dir/scratch"
    if step "capi-$target-c-test" "${qemu[@]}" "$lib/test_minivault" "$c_dir/scratch"; then
      row "$target" "C test program under ${qemu[0]}" "–" yes PASS "$(tail -n 1 "$LOGS/capi-$target-c-test.log")"
    else
      row "$target" "C test program under ${qemu[0]}" "–" yes FAILED; fail "$target C test program"
    fi
    rm -rf "$c_dir"
  done
fi

# ---------------------------------------------------------------------------------------------
ELAPSED=$((SECONDS - START))
{
  echo "| target | what | built | ran | passed | notes |"
  echo "|---|---|---|---|---|---|"
  for r in "${ROWS[@]}"; do IFS='|' read -r a b c d e f <<<"$r"; echo "| $a | $b | $c | $d | $e | $f |"; done
  if [ ${#FW_ROWS[@]} -gt 0 ]; then
    echo
    echo "Firmware sizes (bytes, \`size -A\`, release, opt-level s, LTO). Flash = .vector_table + .text + .rodata + .data;"
    echo "static RAM = .data + .bss, which holds the engine's RAM budget (2 MemTables + the in-RAM storage)."
    echo
    echo "| binary | board | .vector_table | .text | .rodata | flash | .data | .bss | static RAM | engine RAM budget | stack high-water |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for r in "${FW_ROWS[@]}"; do echo "| ${r//|/ | } |"; done
  fi
  echo
  echo "scripts/cross.sh: ${PARTS[*]} in ${ELAPSED}s ($(date -u +%Y-%m-%d), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
} | tee "$OUT/report.md"

if [ ${#FAILED[@]} -gt 0 ]; then
  echo
  echo "cross.sh: FAILED:"
  printf '  - %s\n' "${FAILED[@]}"
  exit 1
fi
echo "cross.sh: all passed"
