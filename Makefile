# sockets-step-by-step: one server design per chapter, each measured
# against the one before. A chapter is a directory NN-name/ with its own
# Makefile, plus one row in tests/stages.h; nothing here names chapters.
#
#   make              build every chapter and the test tools
#   make test         every check against every stage, then the short-I/O,
#                     valgrind, AddressSanitizer + UBSan (every chapter
#                     built again in build/asan) and ThreadSanitizer
#                     passes and 10 s of each fuzz target; the lessons'
#                     code quotes must match the code, carried-over files
#                     their originals, the top README's reliability table
#                     this run's report card, and each chapter's BROKEN=
#                     mistake must be caught
#   make fuzz         http_get's parsers (the URL, the response) under
#                     libFuzzer with clang: the corpus in tests/corpus/
#                     replayed, then 60 s of fuzzing each (FUZZ_SECONDS=N)
#   make bench        every stage and the reference servers measured under
#                     the same load (QUICK=1: a smoke run of about 40 s)
#   make diff CH=02   what chapter 02 changed in the code of chapter 01
#   make clean
CHAPTERS = $(sort $(wildcard [0-9][0-9]-*))
FUZZ_SECONDS = 60

all: $(CHAPTERS) tools

$(CHAPTERS):
	$(MAKE) -C $@

# loadgen, stages and rusage need only libc; the harness needs Check.
tools:
	$(MAKE) -C tests loadgen stages rusage

test: $(CHAPTERS) tools
	@tests/deps.sh
	tests/docs.sh
	@for ch in $(CHAPTERS); do $(MAKE) -s -C $$ch carried || exit 1; done
	@echo "carried: every chapter's carried-over files match the chapter before"
	tests/asan.sh
	$(MAKE) -C tests test
	tests/reliability.sh build/reliability.md
	tests/tsan.sh
	tests/fuzz.sh 10
	tests/broken.sh

bench: $(CHAPTERS) tools
	@tests/deps.sh bench
	tests/bench.sh $(if $(QUICK),--quick)

# Needs nothing built: tests/fuzz.sh builds its targets with clang.
fuzz:
	tests/fuzz.sh $(FUZZ_SECONDS)

diff:
	@ch=$$(ls -d $(CH)-* 2>/dev/null | head -n 1); \
	if [ -z "$(CH)" ] || [ -z "$$ch" ]; then \
	    echo "usage: make diff CH=NN, NN one of: $(foreach c,$(CHAPTERS),$(firstword $(subst -, ,$(c))))" >&2; \
	    exit 2; \
	fi; \
	$(MAKE) -s -C "$$ch" diff

clean:
	for d in $(CHAPTERS) tests; do $(MAKE) -C $$d clean; done
	rm -rf build

.PHONY: all tools test bench fuzz diff clean $(CHAPTERS)
