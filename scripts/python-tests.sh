#!/usr/bin/env bash
# The Python package's tests, as a user would run them: makes a virtual environment with the
# machine's python3 (target/python-venv, or $MINIVAULT_VENV), installs ./python into it with pip
# (which builds the extension with maturin from PyPI and cargo), installs pytest, and runs
# python/tests. Also runs the example python/examples/feature_cache.py.
#
# Usage: scripts/python-tests.sh [PYTEST_ARGS...]
# Needs: python3 with the venv module (Debian: python3-venv), pip reaching PyPI, Rust.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

VENV=${MINIVAULT_VENV:-$ROOT/target/python-venv}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  echo "== $PYTHON -m venv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
echo "== pip install ./python pytest (builds the extension: maturin + cargo, release)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check ./python "pytest>=7"

echo "== pytest python/tests"
"$VENV/bin/python" -m pytest -q python/tests "$@"

echo "== python/examples/feature_cache.py"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$VENV/bin/python" python/examples/feature_cache.py "$scratch/features"
