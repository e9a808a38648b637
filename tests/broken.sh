#!/usr/bin/env bash
# broken.sh - each chapter can put a classic mistake back into its code
# (`make -C NN-name BROKEN=VARIANT`); the harness must then fail the check
# that guards against it. This proves, on every `make test`, that the
# check can fail. A chapter lists its variants with `make -s broken-list`:
# one line per variant, "VARIANT CHECK [STAGE]" (CHECK: a report card
# column; STAGE: the stage row to run it on, if not the one named after
# the chapter's directory).
#
# Each broken build happens in a scratch copy, so the real build is left
# alone.  usage: tests/broken.sh       (from the top of the repo)
set -euo pipefail

. tests/scratch.sh

caught=0 missed=0
for dir in [0-9][0-9]-*/; do
    ch=${dir%/}
    while read -r variant check stage; do
        [ -n "$variant" ] || continue
        scratch_build "$ch" BROKEN="$variant"
        if CK_FORK=yes tests/harness -r "$scratch" -s "${stage:-$ch}" -c "$check" -V >"$scratch/log" 2>&1; then
            echo "broken: $ch BROKEN=$variant passed '$check': that check cannot catch it" >&2
            missed=$((missed + 1))
        else
            echo "broken: $ch BROKEN=$variant caught by '$check':"
            grep -E '^[a-z_]+\.c:[0-9]+:[FE]:' "$scratch/log" | head -n 1 | sed 's/^/    /'
            caught=$((caught + 1))
        fi
        rm -rf "${scratch:?}/$ch"
    done < <(make -s -C "$ch" broken-list)
done
echo "broken: $caught passed, $missed failed (classic mistakes put back in must be caught)"
[ "$missed" = 0 ]
