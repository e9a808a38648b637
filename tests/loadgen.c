/*
 * loadgen - an epoll-driven load generator for TCP echo servers.
 *
 * What it measures: how many round trips per second an echo server keeps
 * up with when CONNS clients talk to it at once, how long each round trip
 * takes (p50, p99, max), and how fairly the server shares itself out (how
 * many clients got no reply at all, and the fewest and most messages any
 * one client got through).  Like the load generator in Stevens' UNP, it
 * also reports its own CPU time, so you can tell whether the server or the
 * load generator was the bottleneck.
 *
 * How: one thread, one epoll loop.  All connections are opened first,
 * outside the timed window, so connection setup is not part of the score.
 * Then every connection plays ping-pong: send one SIZE-byte message, read
 * SIZE bytes back, check every byte, note the time, send the next.  The
 * bytes are a pseudo-random pattern computed from the connection number,
 * the message number and the offset, so a server that mixes up clients or
 * reorders data gets caught, and we never keep copies of what we sent.
 * Round-trip times go into a log-linear histogram (about 1.6% resolution),
 * so memory stays small however long the run is.
 *
 * With -D DEPTH, each connection keeps DEPTH messages in flight instead of
 * one: it sends the next ones before the echo of the first is back (as
 * many as fit in one send() call), and checks every echoed byte in order.
 * A round trip is then timed from the send() that carried a message's first
 * byte to the recv() that brought its last.
 *
 * With -C (short connections) every message gets a connection of its own:
 * connect, send, read the echo, check it, close, connect again for the next
 * one.  The first connections are still opened before the timed window, but
 * every re-connect happens inside it, and the round trip is timed from the
 * start of connect() to the last echoed byte, so the handshake is part of
 * the score: that is the price of a short connection.  We close only once
 * the whole echo is read, so the close sends FIN, not RST, and the server
 * sees a clean end of file.  The side that closes first keeps the TIME_WAIT,
 * here that is us: a few thousand connections per second for a few seconds
 * stays far below the ~28,000 ephemeral ports Linux hands out (32768-60999).
 * Faster than that (loopback manages over ten thousand a second), connect()
 * has to hunt for a port, and the hunt shows in the round trips; where
 * net.ipv4.tcp_tw_reuse lets it take one still in TIME_WAIT (by default on
 * loopback only) it goes on, elsewhere it fails with EADDRNOTAVAIL.  On
 * loopback we then move to another source address (below); elsewhere that
 * connection is counted as an error and retired, like any failed
 * re-connect, and the others soon follow: the run ends early, it never hangs.
 *
 * Source addresses: a connection is known by its four numbers (source
 * address and port, server address and port), so against one server port
 * one source address has only the ~28,000 ephemeral ports to offer.  When
 * the server is on 127.0.0.0/8 - all of it is loopback - and connect()
 * finds no port left, we carry on from 127.0.0.2, then .3, and so on, each
 * good for another ~28,000 (-S COUNT spreads the connections over COUNT
 * addresses from the start).
 *
 * For `make bench` (tests/bench.sh): -W SECONDS warms up - the
 * connections exchange messages for that long first, then the counters
 * start from zero; -P PID reads that process's CPU clock (all its
 * threads) at the start and the end of the timed window, so the report
 * says how busy the server was while we measured; -H holds every
 * connection open after the run until our stdin ends - with -n, idle, each
 * with all its messages back - so the server's memory per idle connection
 * can be read.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    MAX_CONNS = 100000,     /* in practice the descriptor limit decides */
    MAX_SIZE = 1 << 20,
    CHUNK = 64 * 1024,      /* most bytes we generate or check per system call */
    MAX_EVENTS = 256,
    SPARE_FDS = 16,         /* stdio, the epoll instance, and some slack */
    MAX_REPORTS = 10,       /* failed connections we describe one by one */
    HIST_SUB_BITS = 6,      /* 64 sub-buckets per power of two: ~1.6% resolution */
    HIST_SUB = 1 << HIST_SUB_BITS,
    HIST_BUCKETS = (64 - HIST_SUB_BITS + 1) * HIST_SUB,
    MAX_SECONDS = 1000000,
    MAX_DEPTH = 1000,
    MAX_SOURCE = 254,       /* 127.0.0.1 .. 127.0.0.254 */
};

struct options {
    const char *addr;
    long port;
    long conns;
    size_t size;
    double seconds;
    long long messages;     /* round trips per connection; 0 means "until -d" */
    long depth;             /* messages in flight per connection (-D) */
    double connect_timeout;
    double warmup;          /* -W: seconds of messages before the window */
    long server_pid;        /* -P: whose CPU time to read (0: nobody's) */
    long sources;           /* -S: source addresses to spread over (0: as needed) */
    bool short_conns;       /* -C: a new connection for every message */
    bool hold;              /* -H: keep the connections open until stdin ends */
    bool help;
};

struct histogram {
    uint64_t count[HIST_BUCKETS];
    uint64_t samples;
    uint64_t max_ns;
};

struct conn {
    int fd;
    unsigned id;
    uint32_t events;        /* what epoll is watching for right now */
    bool connected;         /* false while a connect is under way */
    bool finished;          /* done with its -n messages, or failed */
    uint64_t completed;     /* round trips done: the number of the next message to come back */
    size_t received;        /* bytes of message `completed` back so far */
    uint64_t queued;        /* messages sent whole: the number of the next one to send */
    size_t sent;            /* bytes of message `queued` sent so far */
    uint64_t *stamps;       /* when message m's first byte went out, at [m % depth] */
    uint64_t started_ns;    /* with -C, when the connect for this message started */
    uint64_t done_ns;       /* with -n, when its last message came back (0: not yet) */
    uint64_t base;          /* `completed` when the timed window opened (-W) */
};

struct run {
    const struct options *opt;
    const struct addrinfo *ai;  /* the server, for every connect */
    char peer[96];          /* "ADDR:PORT", for messages */
    int epfd;
    struct conn *conns;
    long active;            /* connections still exchanging messages */
    unsigned char *scratch; /* holds the three CHUNK-byte buffers below */
    unsigned char *out, *in, *expect;
    uint64_t *stamps;       /* conns x depth send times */
    struct histogram latency;
    unsigned source;        /* connect from 127.0.0.SOURCE; 0: the kernel's choice */
    bool warming;           /* in the -W warm-up, counting nothing */
    uint64_t warm_messages; /* round trips done during the warm-up */
    uint64_t messages;
    unsigned errors;
    unsigned refused;       /* connections the server turned away, saying so */
    bool stop;              /* wrong bytes (or a broken epoll): end the run now */
    uint64_t start_ns;      /* when the timed window opened */
    double elapsed_s, cpu_s;
    double server_cpu_s;    /* -P: the server's CPU time in the window (-1: not read) */
};

static void usage(FILE *to)
{
    fputs("usage: loadgen [-a ADDR] [-p PORT] [-c CONNS] [-s SIZE]"
          " [-d SECONDS | -n MESSAGES] [-D DEPTH] [-T CONNECT_TIMEOUT] [-C]\n"
          "               [-W SECONDS] [-P PID] [-S COUNT] [-H]\n"
          "  -a ADDR      server address, numeric IPv4 or IPv6 (default 127.0.0.1)\n"
          "  -p PORT      server port (default 9000)\n"
          "  -c CONNS     connections talking at once, 1..100000 (default 1)\n"
          "  -s SIZE      message size in bytes, 1..1048576 (default 64)\n"
          "  -d SECONDS   length of the timed run, fractions allowed (default 5)\n"
          "  -n MESSAGES  round trips per connection, then stop; the run still\n"
          "               ends after -d seconds (default 10 with -n)\n"
          "  -D DEPTH     messages in flight per connection, 1..1000 (default 1:\n"
          "               ping-pong); every echoed byte is still checked in order\n"
          "  -T SECONDS   how long to wait for all connections to be set up (default 5)\n"
          "  -C           short connections: a new connection for every message, its\n"
          "               handshake timed as part of the round trip\n"
          "  -W SECONDS   warm up: exchange messages this long before the timed\n"
          "               window, counting nothing (default 0)\n"
          "  -P PID       report process PID's CPU time in the window (server_cpu_s)\n"
          "  -S COUNT     spread the connections over source addresses 127.0.0.1 to\n"
          "               127.0.0.COUNT, 1..254 (default: only once ports run short)\n"
          "  -H           hold: after the run keep every connection open, say so,\n"
          "               and wait for the end of standard input\n",
          to);
}

static bool complain(int flag, const char *wanted)
{
    fprintf(stderr, "loadgen: -%c wants %s, not '%s'\n", flag, wanted, optarg);
    return false;
}

static bool integer_arg(int flag, long long lo, long long hi, const char *wanted, long long *out)
{
    char *end;
    errno = 0;
    *out = strtoll(optarg, &end, 10);
    if (errno != 0 || end == optarg || *end != '\0' || *out < lo || *out > hi)
        return complain(flag, wanted);
    return true;
}

static bool seconds_arg(int flag, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(optarg, &end);
    /* Written as !(x > 0) so that "nan" is refused too. */
    if (errno != 0 || end == optarg || *end != '\0' || !(*out > 0) || *out > MAX_SECONDS)
        return complain(flag, "a positive number of seconds");
    return true;
}

static bool parse_options(int argc, char **argv, struct options *o)
{
    bool ok = true, seconds_given = false;
    long long n = 0;
    int flag;

    *o = (struct options){ .addr = "127.0.0.1", .port = 9000, .conns = 1, .depth = 1,
                           .size = 64, .seconds = 5, .connect_timeout = 5 };
    while (ok && (flag = getopt(argc, argv, "a:p:c:s:d:n:D:T:CW:P:S:Hh")) != -1) {
        switch (flag) {
        case 'a': o->addr = optarg; break;
        case 'p': ok = integer_arg(flag, 1, 65535, "a port from 1 to 65535", &n);
                  o->port = (long)n; break;
        case 'c': ok = integer_arg(flag, 1, MAX_CONNS, "a number from 1 to 100000", &n);
                  o->conns = (long)n; break;
        case 's': ok = integer_arg(flag, 1, MAX_SIZE, "a size from 1 to 1048576", &n);
                  o->size = (size_t)n; break;
        case 'n': ok = integer_arg(flag, 1, LLONG_MAX, "a positive number of messages",
                                   &o->messages); break;
        case 'd': ok = seconds_given = seconds_arg(flag, &o->seconds); break;
        case 'D': ok = integer_arg(flag, 1, MAX_DEPTH, "a depth from 1 to 1000", &n);
                  o->depth = (long)n; break;
        case 'T': ok = seconds_arg(flag, &o->connect_timeout); break;
        case 'C': o->short_conns = true; break;
        case 'W': ok = seconds_arg(flag, &o->warmup); break;
        case 'P': ok = integer_arg(flag, 1, INT_MAX, "a process id", &n);
                  o->server_pid = (long)n; break;
        case 'S': ok = integer_arg(flag, 1, MAX_SOURCE, "a count from 1 to 254", &n);
                  o->sources = (long)n; break;
        case 'H': o->hold = true; break;
        case 'h': o->help = true; break;
        default: return false;  /* getopt has already said what was wrong */
        }
    }
    if (ok && optind < argc) {
        fprintf(stderr, "loadgen: unexpected argument '%s'\n", argv[optind]);
        return false;
    }
    if (o->messages > 0 && !seconds_given)
        o->seconds = 10;
    if (ok && o->short_conns && o->depth > 1) {
        fputs("loadgen: -C sends one message per connection: -D must be 1\n", stderr);
        return false;
    }
    return ok;
}

/* Like perror(), but returns false so callers can write "return failed(...)". */
static bool failed(const char *what)
{
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    return false;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* epoll_wait counts in milliseconds; round up so we never wake early and spin. */
static int ms_until(uint64_t deadline_ns)
{
    uint64_t now = now_ns();
    if (now >= deadline_ns)
        return 0;
    uint64_t ms = (deadline_ns - now + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec)
           + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Process PID's CPU time so far, user + system, all its threads (those
 * gone included), to the nanosecond: the kernel keeps a CPU clock for
 * every process (/proc/PID/stat says the same in 10 ms ticks); -1 if we
 * may not read it. */
static double process_cpu_seconds(long pid)
{
    clockid_t clock;
    struct timespec ts;
    if (clock_getcpuclockid((pid_t)pid, &clock) != 0 || clock_gettime(clock, &ts) != 0)
        return -1;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* splitmix64's finalizer: cheap, and every input bit affects every output bit. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static uint64_t message_seed(unsigned conn_id, uint64_t message_no)
{
    return mix64(((uint64_t)conn_id << 40) ^ message_no);
}

/* Byte i of a message depends only on (seed, i), so any stretch of it can be
 * made on demand: to resend after a short write, or to check an echo. */
static void fill_pattern(unsigned char *buf, size_t len, uint64_t seed, size_t offset)
{
    size_t i = 0;
    while (i < len) {
        size_t pos = offset + i;
        uint64_t word = mix64(seed + pos / 8);
        for (unsigned b = pos % 8; b < 8 && i < len; b++, i++)
            buf[i] = (unsigned char)(word >> (8 * b));
    }
}

/* Values below HIST_SUB get a bucket each; above that, every power of two
 * is split into HIST_SUB equal buckets, so the error is at most 1/HIST_SUB. */
static unsigned hist_bucket(uint64_t ns)
{
    unsigned shift = 0;
    if (ns < HIST_SUB)
        return (unsigned)ns;
    while ((ns >> shift) >= 2 * HIST_SUB)
        shift++;
    return (shift + 1) * HIST_SUB + (unsigned)((ns >> shift) - HIST_SUB);
}

static uint64_t hist_bucket_middle(unsigned bucket)
{
    if (bucket < HIST_SUB)
        return bucket;
    unsigned shift = bucket / HIST_SUB - 1;
    uint64_t low = (uint64_t)(HIST_SUB + bucket % HIST_SUB) << shift;
    return low + ((UINT64_C(1) << shift) >> 1);
}

static void hist_record(struct histogram *h, uint64_t ns)
{
    h->count[hist_bucket(ns)]++;
    h->samples++;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

static uint64_t hist_percentile(const struct histogram *h, double fraction)
{
    uint64_t rank = (uint64_t)ceil(fraction * (double)h->samples), seen = 0;
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        seen += h->count[b];
        if (seen >= rank && seen > 0) {
            uint64_t middle = hist_bucket_middle(b);
            return middle < h->max_ns ? middle : h->max_ns;
        }
    }
    return h->max_ns;
}

static bool ensure_fd_limit(long conns)
{
    rlim_t need = (rlim_t)conns + SPARE_FDS;
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return failed("getrlimit");
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        fprintf(stderr, "loadgen: %ld connections need %llu open files, but the hard limit "
                "is %llu (see ulimit -Hn)\n", conns, (unsigned long long)need,
                (unsigned long long)rl.rlim_max);
        return false;
    }
    /* Like the servers: take the whole hard limit, not just what we need. */
    if (rl.rlim_cur == rl.rlim_max || (rl.rlim_max == RLIM_INFINITY && rl.rlim_cur >= need))
        return true;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? need : rl.rlim_max;
    return setrlimit(RLIMIT_NOFILE, &rl) == 0 || failed("setrlimit");
}

static struct addrinfo *resolve_address(const struct options *o)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
    struct addrinfo *ai;
    char port[24];
    unsigned char bin[sizeof(struct in6_addr)];

    /* inet_pton, unlike getaddrinfo, refuses shorthand such as "1.2.3":
     * a load generator must hit exactly the address it was given. */
    int strict = inet_pton(AF_INET, o->addr, bin) == 1 || inet_pton(AF_INET6, o->addr, bin) == 1;
    snprintf(port, sizeof port, "%ld", o->port);
    int rc = strict ? getaddrinfo(o->addr, port, &hints, &ai) : EAI_NONAME;
    if (rc != 0) {
        fprintf(stderr, "loadgen: -a wants a numeric IPv4 or IPv6 address, not '%s' (%s)\n",
                o->addr, gai_strerror(rc));
        return NULL;
    }
    return ai;
}

static void watch(struct run *r, struct conn *c, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = c };
    if (c->events == events)
        return;
    if (epoll_ctl(r->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0) {
        c->events = events;
        return;
    }
    failed("epoll_ctl");
    r->errors++;
    r->stop = true;
}

static bool on_loopback(const struct addrinfo *ai)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)ai->ai_addr;
    return ai->ai_family == AF_INET && ntohl(sin->sin_addr.s_addr) >> 24 == 127;
}

/* With -S, connection i comes from 127.0.0.(1 + i % COUNT); otherwise from
 * 127.0.0.SOURCE once the kernel's own choice has run out of ports. */
static int bind_source(const struct run *r, const struct conn *c)
{
    unsigned k = r->opt->sources > 0 ? 1 + c->id % (unsigned)r->opt->sources : r->source;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000000u | k) };
    int one = 1;
    if (k == 0)
        return 0;
    /* The port is left to connect(), which knows the whole four numbers and
     * can reuse a port that other servers' connections have: bind() would
     * have to pick one free for every destination. */
    if (setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0 ||
        bind(c->fd, (const struct sockaddr *)&sa, sizeof sa) != 0)
        return errno;
    return 0;
}

/* Starts a non-blocking connect and has epoll tell us when it is over.
 * Returns 0 or an errno value, and lets the caller say what it means:
 * before the timed window a failure ends the run, inside it (-C) only this
 * connection.  c->fd is left for the caller to close either way. */
static int start_connect(struct run *r, struct conn *c)
{
    struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
    const struct addrinfo *ai = r->ai;
    int one = 1, err;

    c->connected = false;
    c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return errno;
    /* Small ping-pong messages are the worst case for Nagle's algorithm
     * meeting delayed ACKs: without this we would be timing the kernel's
     * 40 ms delayed-ACK timer instead of the server. */
    if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        return errno;
    if ((err = bind_source(r, c)) != 0)
        return err;
    /* EADDRNOTAVAIL here, at once, means no local port is left. */
    if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS)
        return errno;
    /* Writable means the handshake is over, one way or the other. */
    c->events = EPOLLOUT;
    return epoll_ctl(r->epfd, EPOLL_CTL_ADD, c->fd, &ev) == 0 ? 0 : errno;
}

/* start_connect(), moving on to the next 127.0.0.x whenever this one has
 * no port left. */
static int open_connection(struct run *r, struct conn *c)
{
    for (;;) {
        int err = start_connect(r, c);
        if (err != EADDRNOTAVAIL || r->opt->sources > 0 || !on_loopback(r->ai) ||
            r->source >= MAX_SOURCE)
            return err;
        r->source = r->source == 0 ? 2 : r->source + 1;
        fprintf(stderr, "loadgen: no local port left; connecting from 127.0.0.%u from now on\n",
                r->source);
        close(c->fd);
    }
}

/* Once a connecting socket turns writable, SO_ERROR says how it went. */
static int connect_error(const struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    return err;
}

/* strerror(EADDRNOTAVAIL) says "Cannot assign requested address", which
 * hides the usual cause from anyone who has not met it before. */
static const char *why_failed(int err)
{
    if (err == 0)
        return "closed by the server";
    if (err == EADDRNOTAVAIL)
        return "no local port left to connect from (too many in TIME_WAIT?)";
    return strerror(err);
}

/* Closing right away (rather than at the end) lets a one-client-at-a-time
 * server move on to the next client, as it would when a real client leaves.
 * With -H a connection that did its work stays open, unwatched, for the
 * server's memory to be read; a broken one is closed all the same. */
static void retire_connection(struct run *r, struct conn *c, bool broken)
{
    if (c->fd >= 0 && !broken && r->opt->hold)
        epoll_ctl(r->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    else if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->finished = true;
    r->active--;
}

/* When a server falls over, thousands of connections fail at once; the
 * first few lines say what happened, the error count says how many. */
static void fail_connection(struct run *r, struct conn *c, int err)
{
    if (r->errors < MAX_REPORTS)
        fprintf(stderr, "loadgen: connection %u of %ld: %s after %llu messages\n",
                c->id + 1, r->opt->conns, why_failed(err), (unsigned long long)c->completed);
    else if (r->errors == MAX_REPORTS)
        fputs("loadgen: more connections failed; counting them without saying so\n", stderr);
    r->errors++;
    retire_connection(r, c, true);
}

/* The number of the first message this connection may not start yet:
 * DEPTH past the oldest one not back, and never past its -n quota. */
static uint64_t send_limit(const struct run *r, const struct conn *c)
{
    uint64_t limit = c->completed + (uint64_t)r->opt->depth;
    uint64_t quota = c->base + (uint64_t)r->opt->messages;
    if (r->opt->messages > 0 && !r->warming && limit > quota)
        limit = quota;
    return limit;
}

/* Send what the connection may send now: the rest of the message under
 * way, then whole messages after it, as many as one CHUNK holds, each
 * send() call. */
static void send_message(struct run *r, struct conn *c)
{
    size_t size = r->opt->size;
    uint64_t depth = (uint64_t)r->opt->depth;

    while (c->queued < send_limit(r, c)) {
        uint64_t limit = send_limit(r, c), m = c->queued, now = now_ns();
        size_t len = 0, off = c->sent;
        while (m < limit && len < CHUNK) {
            size_t take = size - off < CHUNK - len ? size - off : CHUNK - len;
            /* -C: the clock started at connect(). A stamp for a message
             * that does not get out is set again when it does. */
            if (off == 0 && !r->opt->short_conns)
                c->stamps[m % depth] = now;
            fill_pattern(r->out + len, take, message_seed(c->id, m), off);
            len += take;
            off += take;
            if (off == size) {
                m++;
                off = 0;
            }
        }
        ssize_t n = send(c->fd, r->out, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0) {
            fail_connection(r, c, errno);
            return;
        }
        for (size_t left = (size_t)n; left > 0;) {
            size_t take = size - c->sent < left ? size - c->sent : left;
            c->sent += take;
            left -= take;
            if (c->sent == size) {
                c->queued++;
                c->sent = 0;
            }
        }
        if ((size_t)n < len)
            break;          /* socket buffer full: skip the send that would say EAGAIN */
    }
    /* Keep reading while we write: with big messages the server echoes as it
     * goes, and if we stopped reading it would block, and then so would we. */
    watch(r, c, c->queued < send_limit(r, c) ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

/* -C: the whole echo has been read, so close() sends FIN, not RST, and the
 * server sees a clean end of file.  The next message starts its clock here,
 * and is sent once finish_connect() hears that the handshake is over. */
static void reconnect(struct run *r, struct conn *c)
{
    close(c->fd);
    c->started_ns = now_ns();
    c->stamps[c->completed % (uint64_t)r->opt->depth] = c->started_ns;
    int err = open_connection(r, c);
    if (err != 0)
        fail_connection(r, c, err);
}

static void finish_connect(struct run *r, struct conn *c)
{
    int err = connect_error(c);
    if (err != 0) {
        fail_connection(r, c, err);
        return;
    }
    c->connected = true;
    send_message(r, c);     /* its clock has run since connect() (reconnect()) */
}

static void finish_message(struct run *r, struct conn *c)
{
    uint64_t now = now_ns();
    hist_record(&r->latency, now - c->stamps[c->completed % (uint64_t)r->opt->depth]);
    c->completed++;
    c->received = 0;
    r->messages++;
    if (r->opt->messages > 0 && !r->warming &&
        c->completed - c->base >= (uint64_t)r->opt->messages) {
        c->done_ns = now;
        retire_connection(r, c, false);
    } else if (r->opt->short_conns)
        reconnect(r, c);
    else
        send_message(r, c);     /* room for one more in flight */
}

/* LEN bytes at IN are the next of message `completed`, from `received`. */
static bool echo_is_correct(struct run *r, struct conn *c, const unsigned char *in, size_t len)
{
    size_t i = 0;
    fill_pattern(r->expect, len, message_seed(c->id, c->completed), c->received);
    if (memcmp(in, r->expect, len) == 0)
        return true;
    while (in[i] == r->expect[i])
        i++;
    fprintf(stderr, "loadgen: wrong data on connection %u of %ld, message %llu, byte offset "
            "%zu: sent 0x%02x, got back 0x%02x\n", c->id + 1, r->opt->conns,
            (unsigned long long)c->completed + 1, c->received + i, r->expect[i], in[i]);
    r->errors++;
    r->stop = true;
    return false;
}

/* A server at its limit tells a newcomer "server busy\n" and closes: a
 * refusal, counted apart - not wrong data - and that connection retired
 * (with -C too: it does not try again). Only the first bytes of a socket's
 * first reply can be one, and only if they are not the echo. */
static bool is_refusal(struct run *r, const struct conn *c, size_t len)
{
    static const char busy[] = "server busy\n";
    bool first_reply = c->completed == 0 || r->opt->short_conns;
    if (!first_reply || c->received > 0 || len > sizeof busy - 1 ||
        memcmp(r->in, busy, len) != 0)
        return false;
    fill_pattern(r->expect, len, message_seed(c->id, c->completed), 0);
    return memcmp(r->in, r->expect, len) != 0;
}

/* Read what has come back - the end of one message, several messages,
 * the start of the next - and check it, message by message, in order. */
static void receive_echo(struct run *r, struct conn *c)
{
    size_t size = r->opt->size;
    for (;;) {
        ssize_t n = recv(c->fd, r->in, CHUNK, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            fail_connection(r, c, n == 0 ? 0 : errno);
            return;
        }
        if (is_refusal(r, c, (size_t)n)) {
            r->refused++;
            retire_connection(r, c, true);
            return;
        }
        for (size_t pos = 0; pos < (size_t)n;) {
            size_t take = size - c->received < (size_t)n - pos ? size - c->received
                                                                : (size_t)n - pos;
            if (!echo_is_correct(r, c, r->in + pos, take))
                return;
            c->received += take;
            pos += take;
            if (c->received < size)
                continue;
            finish_message(r, c);
            /* Retired, failed, or (-C) connecting again: nothing more to read here. */
            if (c->finished || !c->connected || r->stop)
                return;
        }
        if ((size_t)n < CHUNK)
            return;         /* drained for now; level-triggered epoll will call again */
    }
}

static void handle_event(struct run *r, struct conn *c, uint32_t events)
{
    if (c->finished)
        return;
    if (!c->connected) {
        finish_connect(r, c);   /* -C: a re-connect is over, one way or the other */
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        receive_echo(r, c);     /* recv reports the hangup or the error for us */
    /* With -C, receive_echo may have left c connecting again: not yet. */
    if ((events & EPOLLOUT) && c->connected && !c->finished && !r->stop)
        send_message(r, c);
}

static bool connect_failed(const struct run *r, int err)
{
    fprintf(stderr, "loadgen: connect %s: %s\n", r->peer, why_failed(err));
    return false;
}

/* A listen backlog lets connects succeed before the server calls accept(),
 * so "set up" here says nothing about whether the server will ever serve
 * us.  That is what the fairness numbers are for. */
static bool connect_all(struct run *r)
{
    struct epoll_event events[MAX_EVENTS];
    uint64_t deadline = now_ns() + (uint64_t)(r->opt->connect_timeout * 1e9);
    long pending = r->opt->conns;

    for (long i = 0; i < r->opt->conns; i++) {
        int err = open_connection(r, &r->conns[i]);
        if (err != 0)
            return connect_failed(r, err);
    }
    while (pending > 0) {
        int timeout_ms = ms_until(deadline);
        if (timeout_ms == 0) {
            fprintf(stderr, "loadgen: connect %s: only %ld of %ld connections set up "
                    "within %.1f s (-T)\n", r->peer, r->opt->conns - pending,
                    r->opt->conns, r->opt->connect_timeout);
            return false;
        }
        int n = epoll_wait(r->epfd, events, MAX_EVENTS, timeout_ms);
        if (n < 0 && errno != EINTR)
            return failed("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            int err = connect_error(c);
            if (err == 0 && c->connected)
                err = ECONNRESET;   /* we watch nothing on these, so only a hangup wakes us */
            if (err != 0)
                return connect_failed(r, err);
            c->connected = true;
            watch(r, c, 0);
            pending--;
        }
    }
    return !r->stop;
}

/* The end of the warm-up (or the start, without -W): count from zero.
 * Messages still in flight count when they come back. */
static void open_window(struct run *r, double *cpu_start, double *server_start)
{
    r->warming = false;
    r->warm_messages = r->messages;
    r->messages = 0;
    memset(&r->latency, 0, sizeof r->latency);
    for (long i = 0; i < r->opt->conns; i++)
        r->conns[i].base = r->conns[i].completed;
    r->start_ns = now_ns();
    *cpu_start = cpu_seconds();
    *server_start = r->opt->server_pid ? process_cpu_seconds(r->opt->server_pid) : -1;
}

static void run_window(struct run *r)
{
    struct epoll_event events[MAX_EVENTS];
    double cpu_start = 0, server_start = -1;
    uint64_t deadline = now_ns() + (uint64_t)((r->opt->warmup > 0 ? r->opt->warmup
                                                                  : r->opt->seconds) * 1e9);

    r->warming = r->opt->warmup > 0;
    if (!r->warming)
        open_window(r, &cpu_start, &server_start);
    for (long i = 0; i < r->opt->conns && !r->stop; i++) {
        r->conns[i].stamps[0] = now_ns();   /* -C: the first message's clock */
        send_message(r, &r->conns[i]);
    }
    while (!r->stop && r->active > 0) {
        int timeout_ms = ms_until(deadline);
        if (timeout_ms == 0 && r->warming) {
            open_window(r, &cpu_start, &server_start);
            deadline = r->start_ns + (uint64_t)(r->opt->seconds * 1e9);
            continue;
        }
        if (timeout_ms == 0)
            break;
        int n = epoll_wait(r->epfd, events, MAX_EVENTS, timeout_ms);
        if (n < 0 && errno != EINTR) {
            failed("epoll_wait");
            r->errors++;
            break;
        }
        for (int i = 0; i < n && !r->stop; i++)
            handle_event(r, events[i].data.ptr, events[i].events);
    }
    if (r->warming)     /* everyone failed during the warm-up */
        open_window(r, &cpu_start, &server_start);
    r->elapsed_s = (double)(now_ns() - r->start_ns) / 1e9;
    r->cpu_s = cpu_seconds() - cpu_start;
    double server_end = r->opt->server_pid ? process_cpu_seconds(r->opt->server_pid) : -1;
    r->server_cpu_s = server_start >= 0 && server_end >= 0 ? server_end - server_start : -1;
}

static void print_results(const struct run *r)
{
    const struct options *o = r->opt;
    const struct histogram *h = &r->latency;
    double elapsed = r->elapsed_s > 0 ? r->elapsed_s : 1e-9;
    double msgs_per_s = (double)r->messages / elapsed;
    double mib_per_s = msgs_per_s * (double)o->size / (1024.0 * 1024.0);
    double p50 = h->samples ? (double)hist_percentile(h, 0.50) / 1e3 : -1;
    double p99 = h->samples ? (double)hist_percentile(h, 0.99) / 1e3 : -1;
    double max = h->samples ? (double)h->max_ns / 1e3 : -1;
    unsigned long long fewest = ULLONG_MAX, most = 0;
    long starved = 0, finished = 0;
    uint64_t first_done = UINT64_MAX, last_done = 0;

    for (long i = 0; i < o->conns; i++) {
        const struct conn *c = &r->conns[i];
        unsigned long long done = c->completed - c->base;
        starved += done == 0;
        fewest = done < fewest ? done : fewest;
        most = done > most ? done : most;
        if (c->done_ns) {
            finished++;
            first_done = c->done_ns < first_done ? c->done_ns : first_done;
            last_done = c->done_ns > last_done ? c->done_ns : last_done;
        }
    }
    /* -n (quota): when the first and the last connection had all their
     * messages back, in ms from the start; -1 if none did. */
    double first_ms = finished ? (double)(first_done - r->start_ns) / 1e6 : -1;
    double last_ms = finished ? (double)(last_done - r->start_ns) / 1e6 : -1;
    /* Still at it when -d ran out: not those refused, nor those that failed. */
    long unfinished = o->messages > 0 ? r->active : 0;
    printf("loadgen: %ld connection%s, %zu-byte messages, %ld in flight each, %.2f s%s\n",
           o->conns, o->conns == 1 ? "" : "s", o->size, o->depth, r->elapsed_s,
           o->short_conns ? " (a new connection per message)" : "");
    printf("  messages:   %llu (%.0f msg/s, %.2f MiB/s each way)\n",
           (unsigned long long)r->messages, msgs_per_s, mib_per_s);
    if (h->samples)
        printf("  round trip: p50 %.0f us, p99 %.0f us, max %.0f us\n", p50, p99, max);
    else
        printf("  round trip: n/a (no message came back)\n");
    printf("  fairness:   %ld of %ld connections starved (no reply); "
           "per connection min %llu, max %llu\n", starved, o->conns, fewest, most);
    if (r->refused)
        printf("  refused:    %u connection%s told \"server busy\" (with -C, counted per "
               "connection made)\n", r->refused, r->refused == 1 ? " was" : "s were");
    if (o->messages > 0) {
        printf("  quota:      %ld of %ld connections had all %lld messages back", finished,
               o->conns, o->messages);
        if (finished)
            printf("; the first after %.1f ms, the last after %.1f ms", first_ms, last_ms);
        if (unfinished)
            printf("; %ld still waiting when -d %.3g s ran out", unfinished, o->seconds);
        putchar('\n');
    }
    printf("  loadgen cpu: %.2f s user+sys (%.0f%% of the window)\n",
           r->cpu_s, 100 * r->cpu_s / elapsed);
    if (r->server_cpu_s >= 0)
        printf("  server cpu: %.2f s user+sys (%.0f%% of the window, all its threads)\n",
               r->server_cpu_s, 100 * r->server_cpu_s / elapsed);
    if (o->warmup > 0)
        printf("  warm-up:    %llu messages in %.3g s before the window\n",
               (unsigned long long)r->warm_messages, o->warmup);
    if (r->errors)
        printf("  errors:     %u (details on stderr)\n", r->errors);
    printf("RESULT conns=%ld size=%zu seconds=%.3f msgs=%llu msgs_per_s=%.0f mib_per_s=%.2f "
           "p50_us=%.0f p99_us=%.0f max_us=%.0f starved=%ld min_per_conn=%llu "
           "max_per_conn=%llu errors=%u cpu_s=%.2f short=%d refused=%u depth=%ld "
           "unfinished=%ld first_done_ms=%.1f last_done_ms=%.1f warm_msgs=%llu "
           "server_cpu_s=%.6f\n",
           o->conns, o->size, r->elapsed_s, (unsigned long long)r->messages, msgs_per_s,
           mib_per_s, p50, p99, max, starved, fewest, most, r->errors, r->cpu_s,
           o->short_conns, r->refused, o->depth, unfinished, first_ms, last_ms,
           (unsigned long long)r->warm_messages, r->server_cpu_s);
}

/* -H: the connections stay open (with -n idle, every message back) until
 * our standard input ends, so that whoever started us can measure the
 * server holding them. */
static void hold_connections(const struct run *r)
{
    long open = 0;
    char buf[256];
    for (long i = 0; i < r->opt->conns; i++)
        open += r->conns[i].fd >= 0;
    printf("holding %ld connections open until standard input ends\n", open);
    fflush(stdout);
    while (read(STDIN_FILENO, buf, sizeof buf) > 0 || errno == EINTR)
        errno = 0;
}

/* Leaves *r safe to hand to free_run() even when it fails. */
static bool init_run(struct run *r, const struct options *o, const struct addrinfo *ai)
{
    *r = (struct run){ .opt = o, .ai = ai, .epfd = -1, .active = o->conns };
    snprintf(r->peer, sizeof r->peer, strchr(o->addr, ':') ? "[%s]:%ld" : "%s:%ld",
             o->addr, o->port);
    r->conns = calloc((size_t)o->conns, sizeof *r->conns);
    for (long i = 0; r->conns && i < o->conns; i++) {
        r->conns[i].fd = -1;
        r->conns[i].id = (unsigned)i;
    }
    r->scratch = malloc(3 * CHUNK);
    r->stamps = calloc((size_t)o->conns * (size_t)o->depth, sizeof *r->stamps);
    for (long i = 0; r->conns && r->stamps && i < o->conns; i++)
        r->conns[i].stamps = r->stamps + (size_t)i * (size_t)o->depth;
    if (!r->conns || !r->scratch || !r->stamps) {
        fputs("loadgen: out of memory\n", stderr);
        return false;
    }
    r->out = r->scratch;
    r->in = r->scratch + CHUNK;
    r->expect = r->scratch + 2 * CHUNK;
    r->epfd = epoll_create1(EPOLL_CLOEXEC);
    return r->epfd >= 0 || failed("epoll_create1");
}

/* When the clock runs out, messages are still in flight, so closing with
 * unread data sends RST instead of FIN: servers see ECONNRESET, and should
 * treat it as an ordinary goodbye. */
static void free_run(struct run *r)
{
    for (long i = 0; r->conns && i < r->opt->conns; i++)
        if (r->conns[i].fd >= 0)
            close(r->conns[i].fd);
    if (r->epfd >= 0)
        close(r->epfd);
    free(r->conns);
    free(r->scratch);
    free(r->stamps);
}

int main(int argc, char **argv)
{
    struct options opt;
    struct run run;
    int status = 1;

    if (!parse_options(argc, argv, &opt)) {
        usage(stderr);
        return 2;
    }
    if (opt.help) {
        usage(stdout);
        return 0;
    }
    struct addrinfo *ai = resolve_address(&opt);
    if (!ai) {
        usage(stderr);
        return 2;
    }
    if (opt.sources > 0 && !on_loopback(ai)) {
        fputs("loadgen: -S needs a server on 127.0.0.0/8\n", stderr);
        freeaddrinfo(ai);
        return 2;
    }
    if (opt.server_pid && process_cpu_seconds(opt.server_pid) < 0) {
        fprintf(stderr, "loadgen: -P %ld: cannot read that process's CPU clock\n",
                opt.server_pid);
        freeaddrinfo(ai);
        return 2;
    }
    /* A server that hangs up on us is something to report, not a reason to die. */
    signal(SIGPIPE, SIG_IGN);

    if (init_run(&run, &opt, ai) && ensure_fd_limit(opt.conns) && connect_all(&run)) {
        run_window(&run);
        print_results(&run);
        status = run.errors ? 1 : 0;
        if (opt.hold)
            hold_connections(&run);
    }
    free_run(&run);
    freeaddrinfo(ai);
    return status;
}
