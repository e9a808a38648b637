#!/bin/sh
# deps.sh - make sure what `make test` needs is installed: Check (the unit
# test library, found through pkg-config), valgrind, and ThreadSanitizer's
# run-time library (libtsan, for tests/tsan.sh). On Debian/Ubuntu we
# install what is missing with apt-get, saying so first; elsewhere we say
# what to install and stop.
set -eu

# Can ${CC:-cc} build and link a program with -fsanitize=thread?
has_tsan() {
    dir=$(mktemp -d)
    echo 'int main(void) { return 0; }' >"$dir/t.c"
    ok=0
    "${CC:-cc}" -fsanitize=thread -o "$dir/t" "$dir/t.c" >/dev/null 2>&1 || ok=1
    rm -rf "$dir"
    return $ok
}

missing=""
command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists check; then
    missing="$missing check"
fi
command -v valgrind >/dev/null 2>&1 || missing="$missing valgrind"
has_tsan || missing="$missing libtsan2"
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "make test needs:$missing (install them with your package manager)" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "make test needs:$missing; run as root: apt-get install$missing" >&2
        exit 1
    fi
    sudo="sudo"
fi
echo "make test: installing$missing with ${sudo:+sudo }apt-get"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null
# shellcheck disable=SC2086 # word splitting of the package list is wanted
$sudo apt-get install -y -q $missing >/dev/null
echo "make test: installed$missing"
