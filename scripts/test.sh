#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the tools the tests use (Python
# packages from PyPI, the Node.js example function's packages from npm, Chromium from
# Debian when missing), then builds and runs every test in the release profile (the one
# profile the README's commands, the tests and CI share, so DuckDB is compiled once).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/rowcast-target}"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    -r tests/requirements.txt
npm ci --silent --no-audit --no-fund --prefix examples/functions/node
# Headless Chromium renders the HTML run report in tests/report.rs: the Debian package,
# installed when no Chromium or Chrome is on the PATH (with sudo when not root).
if ! command -v chromium >/dev/null && ! command -v google-chrome >/dev/null; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi

cargo test --release --all-targets
