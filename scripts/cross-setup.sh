#!/usr/bin/env bash
# Install the cross-compilation toolchain for MiniVaultDB on Debian bookworm (x86-64), idempotently.
#
#   - Debian's Rust 1.96 (rustc-web, cargo-web) with std source (rust-web-src) and rust-lld, linked
#     into rustup as the toolchain `debian` (`cargo +debian ...`). It has no prebuilt std for other
#     targets, so every cross build uses -Zbuild-std with RUSTC_BOOTSTRAP=1 (see docs/cross-notes.md).
#   - gcc cross linkers + libc for aarch64-unknown-linux-gnu and armv7-unknown-linux-gnueabihf.
#   - qemu-user (run those binaries) and qemu-system-arm (run Cortex-M firmware on lm3s6965evb).
#
# Usage: scripts/cross-setup.sh [--with-defmt-print]
#   --with-defmt-print  also `cargo install defmt-print` (host decoder for defmt logs; ~2 min build)
# Safe to run again: skips apt when every package is installed, and the rustup link when present.
set -euo pipefail

WITH_DEFMT_PRINT=0
for arg in "$@"; do
  case "$arg" in
    --with-defmt-print) WITH_DEFMT_PRINT=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "cross-setup: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

PKGS=(
  rustc-web cargo-web rust-web-src rust-web-llvm lld-22
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross
  gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
  qemu-user qemu-system-arm
)
TOOLCHAIN_NAME=debian
TOOLCHAIN_DIR=/usr   # rustc-web/cargo-web install /usr/bin/rustc and /usr/bin/cargo, std source in /usr/lib/rustlib/src

log() { printf 'cross-setup: %s\n' "$*"; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "cross-setup: run as root (or install sudo)" >&2; exit 1; }
  SUDO=(sudo)
fi
APT_ENV=(env DEBIAN_FRONTEND=noninteractive)

is_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

apt_update() {
  local i
  for i in 1 2 3; do
    if "${SUDO[@]}" "${APT_ENV[@]}" apt-get update -q; then return 0; fi
    log "apt-get update failed (attempt $i/3)"
    [ "$i" -lt 3 ] && sleep 15
  done
  echo "cross-setup: apt-get update failed 3 times" >&2
  return 1
}

missing=()
for p in "${PKGS[@]}"; do is_installed "$p" || missing+=("$p"); done

if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  apt_update
  extra=()
  # This machine kind ships qemu-utils (qemu-img) 10.x from backports, which Breaks the bookworm
  # qemu-system-common 7.2 that qemu-system-arm needs; apt would then REMOVE qemu-utils. Instead move
  # qemu-utils to the same 7.2 build (same source package), so qemu-img stays available.
  if [[ " ${missing[*]} " == *" qemu-system-arm "* ]] && is_installed qemu-utils; then
    qver=$(apt-cache policy qemu-system-arm | awk '/Candidate:/ {print $2}')
    if [ -n "$qver" ] && [ "$qver" != "(none)" ] && \
       [ "$(dpkg-query -W -f='${Version}' qemu-utils)" != "$qver" ]; then
      log "qemu-utils $(dpkg-query -W -f='${Version}' qemu-utils) -> $qver (to match qemu-system-arm)"
      extra=("qemu-utils=$qver")
    fi
  fi
  ok=0
  for i in 1 2; do
    if "${SUDO[@]}" "${APT_ENV[@]}" apt-get install -y -q --no-install-recommends --allow-downgrades \
         "${missing[@]}" "${extra[@]}"; then ok=1; break; fi
    log "apt-get install failed (attempt $i/2); refreshing package lists"
    sleep 15
    apt_update
  done
  [ "$ok" = 1 ] || { echo "cross-setup: apt-get install failed" >&2; exit 1; }
else
  log "all apt packages already installed"
fi

for f in "$TOOLCHAIN_DIR/bin/rustc" "$TOOLCHAIN_DIR/bin/cargo" /usr/bin/rust-lld \
         "$TOOLCHAIN_DIR/lib/rustlib/src/rust/library/core/Cargo.toml"; do
  [ -e "$f" ] || { echo "cross-setup: expected $f after install" >&2; exit 1; }
done

if command -v rustup >/dev/null; then
  linked=$(rustup toolchain list -v 2>/dev/null | awk -v n="$TOOLCHAIN_NAME" '$1 == n {print $NF}')
  if [ "$linked" = "$TOOLCHAIN_DIR" ]; then
    log "rustup toolchain '$TOOLCHAIN_NAME' already linked to $TOOLCHAIN_DIR"
  else
    if [ -n "$linked" ]; then
      log "rustup toolchain '$TOOLCHAIN_NAME' points at $linked; relinking"
      rustup toolchain uninstall "$TOOLCHAIN_NAME"
    fi
    rustup toolchain link "$TOOLCHAIN_NAME" "$TOOLCHAIN_DIR"
    log "linked rustup toolchain '$TOOLCHAIN_NAME' -> $TOOLCHAIN_DIR"
  fi
  CARGO_DEB=(cargo "+$TOOLCHAIN_NAME"); RUSTC_DEB=(rustc "+$TOOLCHAIN_NAME")
else
  log "rustup not found: use $TOOLCHAIN_DIR/bin/cargo directly"
  CARGO_DEB=("$TOOLCHAIN_DIR/bin/cargo"); RUSTC_DEB=("$TOOLCHAIN_DIR/bin/rustc")
fi

if [ "$WITH_DEFMT_PRINT" = 1 ]; then
  if command -v defmt-print >/dev/null; then
    log "defmt-print already installed"
  else
    log "cargo install defmt-print (takes ~2 min)"
    cargo install --locked defmt-print
  fi
fi

echo "--- versions"
"${RUSTC_DEB[@]}" -V
"${CARGO_DEB[@]}" -V
rust-lld -flavor gnu --version
aarch64-linux-gnu-gcc --version | sed -n 1p
arm-linux-gnueabihf-gcc --version | sed -n 1p
qemu-aarch64 --version | sed -n 1p
qemu-arm --version | sed -n 1p
qemu-system-arm --version | sed -n 1p
if command -v defmt-print >/dev/null; then defmt-print -V | sed -n 1p; fi
