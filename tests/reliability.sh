#!/bin/sh
# reliability.sh - the reliability table in the top README is the one the
# harness made from its report card in the last full run of `make test`
# (harness -m FILE writes it), never one typed by hand. This checks that
# README.md holds exactly that table, between its two marker lines; with
# --update it puts the new table there instead.
#
# usage: tests/reliability.sh [--update] TABLE   (from the top of the repo)
set -eu
update=0
if [ "${1:-}" = --update ]; then
    update=1
    shift
fi
if [ $# -ne 1 ] || [ ! -f "$1" ]; then
    echo "usage: tests/reliability.sh [--update] TABLE (harness -m TABLE writes it)" >&2
    exit 2
fi
table=$1
begin='<!-- reliability table: made by make test from the report card; do not edit -->'
end='<!-- end of the reliability table -->'
if [ "$(grep -cxF -e "$begin" -e "$end" README.md)" != 2 ]; then
    echo "reliability: README.md needs the two marker lines:" >&2
    printf '  %s\n  %s\n' "$begin" "$end" >&2
    exit 1
fi

# README.md with TABLE in place of what is between the markers.
new=$(mktemp)
trap 'rm -f "$new"' EXIT
awk -v begin="$begin" -v end="$end" -v table="$table" '
    $0 == begin { print; while ((getline line < table) > 0) print line; skip = 1; next }
    $0 == end   { skip = 0 }
    !skip
' README.md >"$new"

if cmp -s README.md "$new"; then
    echo "reliability: the table in README.md is the one this run made"
elif [ "$update" = 1 ]; then
    cp "$new" README.md
    echo "reliability: README.md has the table this run made"
else
    echo "reliability: the table in README.md is not what this run found:" >&2
    diff -u README.md "$new" | sed -n '3,$p' | grep '^[-+]' >&2 || true
    echo "reliability: if this run is the truth, tests/reliability.sh --update $table" >&2
    exit 1
fi
