#!/usr/bin/env bash
# Runs the benchmarks of BENCHMARKS.md: the plan against a bare DuckDB join, then delivery
# against wrk on the same local no-op endpoint. Installs wrk (Debian package) when it is
# missing. To change sizes or runs, run the cargo lines below by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/rowcast-target}"

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && apt-get install -y -qq wrk
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq wrk
    fi
fi

echo "## Machine"
echo
echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
echo "- memory: $(free -g | awk '/^Mem:/ {print $2}') GiB"
echo "- $(uname -sr), $(rustc --version), $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)"

cargo build --release --examples --bin rowcast

echo
echo "## Plan"
cargo run --release --example bench_plan -- --runs 3 1000000 10000000
cargo run --release --example bench_plan -- --profile 10000000

echo
echo "## Delivery"
cargo run --release --example bench_apply -- --runs 3 --concurrency 32
