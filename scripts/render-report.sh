#!/usr/bin/env bash
# Renders the HTML report of a run and a screenshot of it in headless Chromium, and fails
# when the page logs anything to the console.
#
#   scripts/render-report.sh RUN_ID [OUT.png] [--project DIR and other rowcast flags...]
#
# The report is written beside the screenshot, as OUT.html.
set -euo pipefail
run_id="${1:?usage: scripts/render-report.sh RUN_ID [OUT.png] [rowcast flags]}"
out="${2:-run-report.png}"
shift $(( $# >= 2 ? 2 : 1 ))
rowcast="${ROWCAST:-${CARGO_TARGET_DIR:-/var/cache/rowcast-target}/release/rowcast}"
page="${out%.png}.html"

"$rowcast" runs show "$run_id" --html "$page" "$@"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
"${ROWCAST_CHROMIUM:-chromium}" --headless --no-sandbox --disable-gpu --hide-scrollbars --enable-logging=stderr \
    --v=0 --window-size=1280,1500 --screenshot="$out" "file://$(realpath "$page")" 2>"$log"
if grep -q ':CONSOLE' "$log"; then
    echo "the report logged to the console:" >&2
    grep ':CONSOLE' "$log" >&2
    exit 1
fi
echo "wrote $page and $out"
