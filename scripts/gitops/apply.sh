#!/usr/bin/env bash
# The apply step of .github/workflows/apply.yml, runnable anywhere: applies the project,
# writes the run summary to a file (uploaded as an artifact by the workflow), and fails
# when a sync passed its rejected-rows threshold (`alerts` in its manifest) or the apply
# failed. Rows rejected below the threshold stay pending for the next run; that is
# reported as a warning, not a failure.
#
# Environment:
#   ROWCAST          the rowcast binary (default: `rowcast` on PATH)
#   ROWCAST_PROJECT  the project folder (default: .)
#   ROWCAST_SUMMARY  where the run summary is written (default: rowcast-apply.txt)
set -uo pipefail

rowcast="${ROWCAST:-rowcast}"
project="${ROWCAST_PROJECT:-.}"
summary="${ROWCAST_SUMMARY:-rowcast-apply.txt}"

"$rowcast" --project "$project" apply | tee "$summary"
code=${PIPESTATUS[0]}

case "$code" in
    0) exit 0 ;;
    3)
        if grep -q '^threshold passed in' "$summary"; then
            echo "::error::a sync passed its rejected-rows threshold; see $summary"
            exit 1
        fi
        echo "::warning::some rows were rejected or failed and stay pending for the next run"
        exit 0
        ;;
    130)
        echo "::warning::the apply was interrupted; what was acknowledged is committed"
        exit 130
        ;;
    *) exit "$code" ;;
esac
