# sockets-step-by-step: one server design per chapter, each measured
# against the one before.
#
#   01-basics    addresses, ports, getaddrinfo; greeting server and client
#   02-tcp-udp   byte streams vs datagrams; iterative TCP echo + UDP echo
#
#   make              build every chapter and the test tools
#   make test         every check against every stage, then a valgrind pass;
#                     and the code the lessons quote must match the code
#   make bench        the stage comparison (QUICK=1: a 15-second smoke run)
#   make diff CH=02   what chapter 02 changed in the programs of chapter 01
#   make clean
CHAPTERS = 01-basics 02-tcp-udp

# The file pairs `make diff` compares: each chapter's programs against the
# ones they grew from (/dev/null: new in that chapter).
DIFF_02 = 01-basics/net.h:02-tcp-udp/net.h \
          01-basics/net.c:02-tcp-udp/net.c \
          01-basics/server.c:02-tcp-udp/tcp_server.c \
          01-basics/client.c:02-tcp-udp/tcp_client.c \
          /dev/null:02-tcp-udp/udp_server.c \
          /dev/null:02-tcp-udp/udp_client.c

BENCH_SECONDS = $(if $(QUICK),1,3)

all: $(CHAPTERS) tools

$(CHAPTERS):
	$(MAKE) -C $@

# loadgen and stages need only libc; the harness needs Check.
tools:
	$(MAKE) -C tests loadgen stages

test: $(CHAPTERS) tools
	@tests/deps.sh
	tests/docs.sh
	$(MAKE) -C tests test

bench: $(CHAPTERS) tools
	tests/bench.sh $(BENCH_SECONDS)

diff:
	@if [ -z "$(DIFF_$(CH))" ]; then \
	    echo "usage: make diff CH=NN, NN one of: $(patsubst DIFF_%,%,$(filter DIFF_%,$(.VARIABLES)))" >&2; \
	    exit 2; \
	fi
	@for pair in $(DIFF_$(CH)); do diff -u "$${pair%%:*}" "$${pair#*:}" || true; done

clean:
	for d in $(CHAPTERS) tests; do $(MAKE) -C $$d clean; done
	rm -rf build

.PHONY: all tools test bench diff clean $(CHAPTERS)
