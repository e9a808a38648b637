# sockets-step-by-step: one server design per chapter, each measured
# against the one before. A chapter is a directory NN-name/ with its own
# Makefile, plus one row in tests/stages.h; nothing here names chapters.
#
#   make              build every chapter and the test tools
#   make test         every check against every stage, then the short-I/O,
#                     valgrind and ThreadSanitizer passes; the lessons' code quotes must
#                     match the code, carried-over files their originals,
#                     and each chapter's BROKEN= mistake must be caught
#   make bench        every stage and the reference servers measured under
#                     the same load (QUICK=1: a smoke run of about 40 s)
#   make diff CH=02   what chapter 02 changed in the code of chapter 01
#   make clean
CHAPTERS = $(sort $(wildcard [0-9][0-9]-*))

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
	$(MAKE) -C tests test
	tests/tsan.sh
	tests/broken.sh

bench: $(CHAPTERS) tools
	@tests/deps.sh bench
	tests/bench.sh $(if $(QUICK),--quick)

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

.PHONY: all tools test bench diff clean $(CHAPTERS)
