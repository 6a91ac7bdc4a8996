#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the tools the tests use (Python
# packages from PyPI, the Node.js example function's packages from npm), then builds and
# runs every test in the release profile (the one profile the README's commands, the tests
# and CI share, so the bundled DuckDB is compiled once).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/rowcast-target}"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    -r tests/requirements.txt
npm ci --silent --no-audit --no-fund --prefix examples/functions/node

cargo test --release --all-targets
