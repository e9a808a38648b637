# scratch.sh - sourced by broken.sh and tsan.sh: a scratch copy of the
# repository where a chapter can be rebuilt another way (a classic mistake
# put back in, a sanitizer) without touching the real build, and the
# harness run against it. Sets $scratch (removed at exit) and defines
# scratch_build.

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/tests"
cp tests/shortio.so tests/faults.so tests/loadgen tests/rusage "$scratch/tests/"

# scratch_build CHAPTER [MAKE ARGUMENT...]: a fresh copy of CHAPTER in the
# scratch tree, built with those make arguments (CFLAGS=..., BROKEN=...).
scratch_build() {
    local ch=$1
    shift
    rm -rf "${scratch:?}/$ch"
    cp -r "$ch" "$scratch/$ch"
    make -s -C "$scratch/$ch" clean >/dev/null
    make -s -C "$scratch/$ch" "$@" >/dev/null
}
