#!/usr/bin/env bash
# docs.sh - a lesson quotes code; the code must still say that. Every
# ```c block in a chapter's README.md (split at lines holding only "...")
# must appear, character for character, in that chapter's .c/.h files.
# Quoting by function name plus this check keeps lessons from drifting.
#
# usage: tests/docs.sh        (from the top of the repo)
set -euo pipefail

failed=0 checked=0
for readme in [0-9][0-9]-*/README.md; do
    dir=${readme%/README.md}
    code=$(cat "$dir"/*.c "$dir"/*.h)
    in_block=0 frag="" first=""
    while IFS= read -r line || [ -n "$line" ]; do
        if [ "$in_block" = 0 ]; then
            [ "$line" = '```c' ] && in_block=1 frag="" first=""
            continue
        fi
        if [ "$line" = '```' ] || [[ $line =~ ^[[:space:]]*\.\.\.$ ]]; then
            if [ -n "$frag" ]; then
                checked=$((checked + 1))
                if [[ $code != *"$frag"* ]]; then
                    echo "docs: $readme quotes code that is not in $dir/*.c: $first" >&2
                    failed=$((failed + 1))
                fi
            fi
            frag="" first=""
            [ "$line" = '```' ] && in_block=0
            continue
        fi
        [ -z "$first" ] && first=$line
        frag+=$line$'\n'
    done <"$readme"
done
echo "docs: $((checked - failed)) passed, $failed failed (code quoted by the lessons)"
[ "$failed" = 0 ]
