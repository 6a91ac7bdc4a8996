#!/usr/bin/env bash
# The plan step of .github/workflows/plan.yml, runnable anywhere: validates the manifests,
# plans, and writes the body of the pull-request comment (markdown, opened by a hidden
# marker by which the workflow finds its earlier comment and updates it instead of adding
# another). Exits 1 when the manifests are invalid or a sync cannot be planned, else 0.
#
# Environment:
#   ROWCAST            the rowcast binary (default: `rowcast` on PATH)
#   ROWCAST_PROJECT    the project folder (default: .)
#   ROWCAST_COMMENT    where the comment body is written (default: rowcast-plan.md)
#   ROWCAST_SHOW_ROWS  example rows per sync and change (default: 0, since rows may carry
#                      personal data and pull-request comments are widely read)
set -uo pipefail

rowcast="${ROWCAST:-rowcast}"
project="${ROWCAST_PROJECT:-.}"
comment="${ROWCAST_COMMENT:-rowcast-plan.md}"
show_rows="${ROWCAST_SHOW_ROWS:-0}"
marker='<!-- rowcast-plan -->'

write() { printf '%s\n' "$@" >> "$comment"; }
fenced() { write '' '```' "$1" '```'; }

printf '%s\n' "$marker" > "$comment"

if ! validation=$("$rowcast" --project "$project" validate 2>&1); then
    write '### rowcast plan' '' '**The manifests are invalid; nothing was planned.**'
    fenced "$validation"
    printf '%s\n' "$validation" >&2
    exit 1
fi

errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
plan=$("$rowcast" --project "$project" plan --format markdown --show-rows "$show_rows" \
    --detailed-exitcode 2>"$errors")
code=$?
cat "$errors" >&2
case "$code" in
    0 | 2)
        write "$plan"
        [ "$code" -eq 0 ] && write '' '_Nothing to apply._'
        echo "the plan is in $comment"
        exit 0
        ;;
    *)
        write '### rowcast plan' '' '**The plan failed; fix it before merging.**'
        [ -n "$plan" ] && write '' "$plan"
        fenced "$(cat "$errors")"
        exit 1
        ;;
esac
