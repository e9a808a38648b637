/*
 * loop_test.c - unit tests, with Check, for chapter 07's event loop, tasks
 * and task I/O (07-async/loop.c, task.c, io.c) on their own, without a
 * server around them: what a server on them relies on and no end-to-end
 * check can pin down.
 *
 *   the loop   timers fire in deadline order (equal deadlines in the
 *              order armed; a thousand random deadlines; timers moved, and
 *              re-armed from their own callback - once a turn, even one
 *              re-armed for now) and never early; a stopped timer never
 *              fires, not
 *              even one stopped by another timer's callback in the turn
 *              both are due; "soon" callbacks run in the order queued, and
 *              those queued while they run wait for the next turn
 *   tasks      task_yield() lets the others run, first come first served;
 *              the budget makes a task that never has to wait yield, once
 *              per budget; a cancel reaches every task, whatever call it
 *              waits in, at once, and wins over a wake-up already queued;
 *              a cancelled task's later calls fail (task.h's promise);
 *              100,000 task lifetimes leave no stack mapped and no memory
 *              held, and tasks_finish() frees the spare stacks; a task that
 *              overflows its stack dies on the guard page (SIGSEGV) instead
 *              of writing below it
 *   task I/O   each call (read, write, accept, connect, recvmsg) suspends
 *              until its socket is ready and resumes with what the peer
 *              did; io_write_all() holds what it could not send in
 *              io->unsent while it waits; io_connect() says why it failed;
 *              each call's timeout ends it with ETIMEDOUT, not before
 *
 * Nothing here waits on a sleep. Tasks start in the order spawned and run
 * until they suspend, so a task spawned after another runs once that one
 * is waiting - that is how a test knows a task is waiting. Every wait that
 * should end has a timeout (LONG_WAIT), so that a broken loop fails a test
 * instead of hanging it. Timeouts are measured as the loop measures them:
 * from loop_now() when the call was made (the loop reads its clock once a
 * turn, in whole ms, and a timeout counts from there).
 *
 * The guard-page test needs a process of its own: with CK_FORK=no (under
 * valgrind, say) it is left out. Under valgrind, whose own mappings and
 * memory show in /proc/self, the lifetimes test bounds mappings more
 * loosely and memory not at all.
 */
#include "loop.h"               /* from 07-async: see ASYNC in the Makefile */
#include "task.h"
#include "io.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

/* ms: long enough that a wait which should end never gets near it. */
#define LONG_WAIT 5000

/* Stacks of a known size, for the guard-page test: whole pages. */
#define STACK TASK_STACK_DEFAULT

/* The loop every test runs on: made and freed by the fixture. (task.c
 * keeps one loop per program in its statics, so one is all there is.) */
static struct loop *loop;

static void setup(void)
{
    loop = loop_new();
    ck_assert_ptr_nonnull(loop);
    tasks_init(loop, STACK);
}

static void teardown(void)
{
    tasks_finish();
    loop_free(loop);
}

/* ---- helpers ------------------------------------------------------------ */

/* The loop's clock, now: CLOCK_MONOTONIC in whole ms. */
static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void socket_pair(int type, int sv[2])
{
    ck_assert_int_eq(socketpair(AF_UNIX, type, 0, sv), 0);
}

static void open_io(struct io *io, int fd)
{
    ck_assert_int_eq(io_open(loop, io, fd), 0);
}

/* Send to FD until it would block: its buffer, and its peer's, are full. */
static void fill(int fd)
{
    static const char junk[4096];
    while (send(fd, junk, sizeof junk, MSG_DONTWAIT) > 0)
        ;
    ck_assert_int_eq(errno, EAGAIN);
}

/* A socket of TYPE on 127.0.0.1, any port; its address in *SA. */
static int loopback_socket(int type, struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, type, 0);
    ck_assert_int_ge(fd, 0);
    *sa = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof *sa;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)sa, len), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)sa, &len), 0);
    return fd;
}

static int tcp_listener(struct sockaddr_in *sa, int backlog)
{
    int fd = loopback_socket(SOCK_STREAM, sa);
    ck_assert_int_eq(listen(fd, backlog), 0);
    return fd;
}

/* A listener whose queue is full (backlog 0, one client in it, never
 * accepted): Linux drops the SYN of the next client, whose connect()
 * then waits. Returns the listener; the queued client in *QUEUED. */
static int full_listener(struct sockaddr_in *sa, int *queued)
{
    int fd = tcp_listener(sa, 0);
    *queued = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(*queued, 0);
    ck_assert_int_eq(connect(*queued, (struct sockaddr *)sa, sizeof *sa), 0);
    return fd;
}

static struct task *spawn(void (*fn)(void *arg), void *arg)
{
    struct task *t = task_spawn(fn, arg);
    ck_assert_ptr_nonnull(t);
    return t;
}

/* Run the tasks spawned: every one returns. */
static void run_tasks(void)
{
    ck_assert_int_eq(tasks_run(), 0);
    ck_assert_uint_eq(tasks_alive(), 0);
}

/* A line of characters, one per event, to compare with the order expected. */
struct trail {
    char s[64];
    size_t n;
};

static void mark(struct trail *tr, char c)
{
    ck_assert_uint_lt(tr->n, sizeof tr->s - 1);
    tr->s[tr->n++] = c;
}

/* ---- timers ------------------------------------------------------------- */

/* A timer that writes down, in its trace, each time it fires, and checks
 * that it never fires early. */
struct probe {
    struct timer timer;
    long long due;              /* as last armed */
    int armed;                  /* by arm(), and not disarmed since */
    int fires;
    struct trace *trace;
    void (*then)(struct probe *p);  /* more to do when it fires, or NULL */
    struct probe *other;        /* what THEN acts on */
};

/* The fires, in order, with the deadline each was for. When N reaches
 * STOP_AT (if not 0), the loop stops. */
#define TRACE_MAX 4096
struct trace {
    size_t n, stop_at;
    struct {
        struct probe *p;
        long long due;
        unsigned long long seq;     /* when it was armed */
    } fired[TRACE_MAX];
};

static void on_fire(struct timer *t)
{
    struct probe *p = container_of(t, struct probe, timer);
    struct trace *tr = p->trace;

    ck_assert_msg(loop_now(loop) >= p->due, "a timer fired %lld ms early",
                  p->due - loop_now(loop));
    ck_assert_uint_lt(tr->n, TRACE_MAX);
    tr->fired[tr->n].p = p;
    tr->fired[tr->n].seq = p->timer.seq;
    tr->fired[tr->n++].due = p->due;
    p->fires++;
    if (p->then != NULL)
        p->then(p);
    if (tr->n == tr->stop_at)
        loop_stop(loop);
}

/* Arm P, or move it, to fire at DUE. */
static void arm(struct probe *p, struct trace *tr, long long due)
{
    p->timer.fire = on_fire;
    p->trace = tr;
    p->due = due;
    p->armed = 1;
    ck_assert_int_eq(timer_start(loop, &p->timer, due), 0);
}

static void disarm(struct probe *p)
{
    timer_stop(loop, &p->timer);
    p->armed = 0;
}

static void stop_loop(struct soon *s)
{
    (void)s;
    loop_stop(loop);
}

/* One turn of the loop: the timers due fire (then the soon callbacks). */
static void one_turn(void)
{
    struct soon stop = {.run = stop_loop};
    loop_soon(loop, &stop);
    ck_assert_int_eq(loop_run(loop), 0);
}

/* The trace is in deadline order (equal deadlines in the order armed), and
 * each of the N probes fired as often as EXPECT(probe) says. */
static void assert_trace(const struct trace *tr, const struct probe *p, size_t n,
                         int (*expect)(const struct probe *p))
{
    for (size_t i = 1; i < tr->n; i++) {
        ck_assert_msg(tr->fired[i - 1].due <= tr->fired[i].due,
                      "fire %zu was due at %lld, after fire %zu, due at %lld",
                      i - 1, tr->fired[i - 1].due, i, tr->fired[i].due);
        ck_assert_msg(tr->fired[i - 1].due < tr->fired[i].due ||
                          tr->fired[i - 1].seq < tr->fired[i].seq,
                      "fires %zu and %zu, both due at %lld, not in the order armed", i - 1, i,
                      tr->fired[i].due);
    }
    size_t fires = 0;
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(p[i].fires == expect(&p[i]), "timer %zu fired %d times, not %d",
                      i, p[i].fires, expect(&p[i]));
        fires += (size_t)p[i].fires;
    }
    ck_assert_uint_eq(tr->n, fires);
}

/* Once if armed, not disarmed since, and due by this turn; else never. */
static int once_if_due(const struct probe *p)
{
    return p->armed && p->due <= loop_now(loop);
}

START_TEST(timers_fire_in_deadline_order)
{
    /* ms after a base in the past: all due on the first turn, some equal. */
    static const int after[] = {5, 3, 9, 3, 0, 7, 3, 9, 1, 3, 0, 9};
    enum { N = sizeof after / sizeof after[0] };
    struct probe p[N + 1] = {0};
    struct trace tr = {0};

    long long base = loop_now(loop) - 100;
    for (size_t i = 0; i < N; i++)
        arm(&p[i], &tr, base + after[i]);
    arm(&p[N], &tr, loop_now(loop) + LONG_WAIT);       /* not due: must wait */
    one_turn();
    assert_trace(&tr, p, N + 1, once_if_due);
    ck_assert_int_eq(p[N].fires, 0);
    disarm(&p[N]);
}
END_TEST

/* A thousand timers at random deadlines, some of them equal, then random
 * moves and stops, as many: every timer still armed fires once, in
 * deadline order, and no stopped one fires. This is what catches a heap
 * whose sift is wrong in one case out of many. _i: the seed. */
START_TEST(random_deadlines)
{
    enum { N = 1000, SPAN = 500 };
    unsigned seed = (unsigned)_i + 1;
    struct probe *p = calloc(N, sizeof *p);
    struct trace tr = {0};

    ck_assert_ptr_nonnull(p);
    long long base = loop_now(loop) - SPAN - 1;
    for (size_t i = 0; i < N; i++)
        arm(&p[i], &tr, base + rand_r(&seed) % SPAN);
    for (size_t k = 0; k < N; k++) {
        struct probe *q = &p[rand_r(&seed) % N];
        if (rand_r(&seed) % 2)
            disarm(q);
        else
            arm(q, &tr, base + rand_r(&seed) % SPAN);
    }
    one_turn();
    assert_trace(&tr, p, N, once_if_due);
    free(p);
}
END_TEST

/* THEN for a probe that re-arms itself for now, every time. */
static void rearm_now(struct probe *p)
{
    arm(p, p->trace, loop_now(loop));
}

/* A soon callback that counts its runs. */
struct counted {
    struct soon s;
    int runs;
};

static void count_soon(struct soon *s)
{
    container_of(s, struct counted, s)->runs++;
}

/* A timer that re-arms itself for the present from its own callback is due
 * again at once - but fires once per turn, not for ever in the same one:
 * the soon callbacks and the sockets get their turns in between. */
START_TEST(rearmed_timer_waits_a_turn)
{
    struct probe p = {.then = rearm_now};
    struct trace tr = {0};
    struct counted counter = {.s = {.run = count_soon}};

    arm(&p, &tr, loop_now(loop));
    for (int turn = 1; turn <= 3; turn++) {
        loop_soon(loop, &counter.s);
        one_turn();
        ck_assert_msg(p.fires == turn && counter.runs == turn, "turn %d: the timer fired "
                      "%d times, the soon callback ran %d", turn, p.fires, counter.runs);
    }
    disarm(&p);
}
END_TEST

/* THEN for a probe that re-arms itself, 3 ms on, until it has fired 3 times. */
static void rearm_thrice(struct probe *p)
{
    if (p->fires < 3)
        arm(p, p->trace, loop_now(loop) + 3);
}

static int as_planned(const struct probe *p)
{
    return p->then == rearm_thrice ? 3 : 1;
}

/* Deadlines in the future: the loop sleeps until each is due, never less
 * (on_fire checks), and fires them in order; timers moved earlier and
 * later fire at their new deadline only; a timer re-armed from its own
 * callback fires again, on a later turn. */
START_TEST(timers_wait_for_their_deadlines)
{
    struct probe p[4] = {0};
    struct trace tr = {.stop_at = 6};

    long long start = loop_now(loop);
    arm(&p[0], &tr, start + 10);
    arm(&p[1], &tr, start + 20);
    arm(&p[2], &tr, start + 30);
    arm(&p[3], &tr, start + 5);
    arm(&p[0], &tr, start + 40);        /* moved later: last */
    arm(&p[2], &tr, start + 1);         /* moved earlier: first */
    p[3].then = rearm_thrice;
    ck_assert_int_eq(loop_run(loop), 0);
    assert_trace(&tr, p, 4, as_planned);
    ck_assert_ptr_eq(tr.fired[0].p, &p[2]);
    ck_assert_int_ge(now_ms() - start, 40);
}
END_TEST

static void stop_other(struct probe *p)
{
    disarm(p->other);
}

/* Both due this turn, the first fired stops the second: it does not fire.
 * Nor does one stopped before the turn, due as it is; stopping a timer
 * twice, or one never armed, or one that has fired, is harmless. */
START_TEST(stopped_timer_never_fires)
{
    struct probe p[5] = {0};
    struct trace tr = {0};

    long long base = loop_now(loop) - 10;
    arm(&p[0], &tr, base + 1);
    arm(&p[1], &tr, base + 2);          /* stopped by p[0] */
    arm(&p[2], &tr, base + 3);
    arm(&p[3], &tr, base);              /* stopped now, twice */
    p[0].then = stop_other;
    p[0].other = &p[1];
    disarm(&p[3]);
    disarm(&p[3]);
    disarm(&p[4]);                      /* never armed */
    one_turn();
    assert_trace(&tr, p, 5, once_if_due);
    ck_assert_int_eq(p[1].fires, 0);
    disarm(&p[0]);                      /* fired already */
    one_turn();
    ck_assert_uint_eq(tr.n, 2);
}
END_TEST

/* ---- soon callbacks ----------------------------------------------------- */

struct turns {
    struct soon first, second, third;
    struct timer due;
    struct trail trail;
};

/* 'a': queues SECOND (twice: it runs once) and arms a timer already due. */
static void run_first(struct soon *s)
{
    struct turns *t = container_of(s, struct turns, first);
    mark(&t->trail, 'a');
    loop_soon(loop, &t->second);
    loop_soon(loop, &t->second);
    ck_assert_int_eq(timer_start(loop, &t->due, loop_now(loop)), 0);
}

static void run_second(struct soon *s)
{
    mark(&container_of(s, struct turns, second)->trail, 'b');
    loop_stop(loop);
}

static void run_third(struct soon *s)
{
    mark(&container_of(s, struct turns, third)->trail, 'c');
}

static void fire_due(struct timer *timer)
{
    mark(&container_of(timer, struct turns, due)->trail, 't');
}

/* FIRST and THIRD, queued before the loop runs, run in that order on its
 * first turn. SECOND, queued by FIRST, waits for the next turn: after that
 * turn's timers, so after the timer FIRST armed, due at once. */
START_TEST(soon_queued_while_running_waits_a_turn)
{
    struct turns t = {.first.run = run_first, .second.run = run_second,
                      .third.run = run_third, .due.fire = fire_due};
    loop_soon(loop, &t.first);
    loop_soon(loop, &t.first);          /* queued already: runs once */
    loop_soon(loop, &t.third);
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_str_eq(t.trail.s, "actb");
}
END_TEST

/* ---- tasks: taking turns ------------------------------------------------ */

struct yielder {
    char name;
    struct trail *trail;
};

static void yield_thrice(void *arg)
{
    struct yielder *y = arg;
    for (int i = 0; i < 3; i++) {
        mark(y->trail, y->name);
        ck_assert_int_eq(task_yield(), 0);
    }
}

START_TEST(yield_takes_turns_in_order)
{
    struct trail trail = {0};
    struct yielder y[4];
    for (int i = 0; i < 4; i++) {
        y[i] = (struct yielder){.name = (char)('0' + i), .trail = &trail};
        spawn(yield_thrice, &y[i]);
    }
    run_tasks();
    ck_assert_str_eq(trail.s, "012301230123");
}
END_TEST

/* A hog reads a socket that always has data, a byte at a time; the other
 * task counts its turns until the hog is done. Spawned second, it runs
 * second: once the hog has spent its budget, and again each time the hog
 * has spent a new one - not more often. */
enum { HOG_READS = 100 };

struct hog {
    struct io io;
    int done;
    int other_turns;
    int reads_before_other;     /* how many the hog made before the other ran */
    int turns_during;           /* the other's, while the hog was reading */
};

static void hog_reads(void *arg)
{
    struct hog *h = arg;
    char c;
    h->reads_before_other = HOG_READS;
    for (int i = 0; i < HOG_READS; i++) {
        if (h->other_turns > 0 && h->reads_before_other == HOG_READS)
            h->reads_before_other = i;
        ck_assert_int_eq(io_read(&h->io, &c, 1, LONG_WAIT), 1);
    }
    h->turns_during = h->other_turns;
    h->done = 1;
}

static void count_turns(void *arg)
{
    struct hog *h = arg;
    while (!h->done) {
        h->other_turns++;
        ck_assert_int_eq(task_yield(), 0);
    }
}

START_TEST(budget_makes_a_hog_yield)
{
    struct hog h = {0};
    int sv[2];
    char bytes[HOG_READS] = {0};

    socket_pair(SOCK_STREAM, sv);
    ck_assert_int_eq(write(sv[1], bytes, sizeof bytes), HOG_READS);
    open_io(&h.io, sv[0]);
    spawn(hog_reads, &h);
    spawn(count_turns, &h);
    run_tasks();
    ck_assert_msg(h.reads_before_other >= 1 && h.reads_before_other <= TASK_BUDGET,
                  "the other task ran after %d reads, not within the budget of %d",
                  h.reads_before_other, TASK_BUDGET);
    ck_assert_msg(h.turns_during <= HOG_READS / TASK_BUDGET + 1,
                  "the hog yielded %d times in %d reads, budget %d", h.turns_during,
                  HOG_READS, TASK_BUDGET);
    io_close(&h.io);
    close(sv[1]);
}
END_TEST

/* ---- task I/O: waiting for the peer ------------------------------------- */

struct exchange {
    struct io a, b;
    struct task *reader;
    char got[16];
    ssize_t n;
};

static void read_hello(void *arg)
{
    struct exchange *x = arg;
    x->n = io_read(&x->a, x->got, sizeof x->got, LONG_WAIT);
}

static void write_hello(void *arg)
{
    struct exchange *x = arg;
    ck_assert_ptr_eq(x->a.reader, x->reader);   /* suspended in io_read() */
    ck_assert_int_eq(io_write_all(&x->b, "hello", 5, LONG_WAIT), 0);
}

START_TEST(read_waits_for_the_peer)
{
    struct exchange x = {0};
    int sv[2];

    socket_pair(SOCK_STREAM, sv);
    open_io(&x.a, sv[0]);
    open_io(&x.b, sv[1]);
    x.reader = spawn(read_hello, &x);
    spawn(write_hello, &x);
    run_tasks();
    ck_assert_int_eq(x.n, 5);
    ck_assert_mem_eq(x.got, "hello", 5);
    ck_assert_ptr_null(x.a.reader);
    io_close(&x.a);
    io_close(&x.b);
}
END_TEST

/* Two tasks pass a counter back and forth: every read waits, every time
 * (the edge-triggered flags must be right a thousand times over). */
enum { ROUNDS = 1000 };

struct rally {
    struct io end[2];
};

static void volley(struct io *io, int serve)
{
    for (unsigned i = 0; i < ROUNDS; i++) {
        unsigned n;
        if (serve)
            ck_assert_int_eq(io_write_all(io, &i, sizeof i, LONG_WAIT), 0);
        ck_assert_int_eq(io_read(io, &n, sizeof n, LONG_WAIT), sizeof n);
        ck_assert_uint_eq(n, i);
        if (!serve)
            ck_assert_int_eq(io_write_all(io, &n, sizeof n, LONG_WAIT), 0);
    }
}

static void serve(void *arg) { volley(&((struct rally *)arg)->end[0], 1); }
static void answer(void *arg) { volley(&((struct rally *)arg)->end[1], 0); }

START_TEST(ping_pong)
{
    struct rally r;
    int sv[2];

    socket_pair(SOCK_STREAM, sv);
    open_io(&r.end[0], sv[0]);
    open_io(&r.end[1], sv[1]);
    spawn(serve, &r);
    spawn(answer, &r);
    run_tasks();
    io_close(&r.end[0]);
    io_close(&r.end[1]);
}
END_TEST

/* A writer sends more than the socket holds to a reader that has not
 * started: it waits, with the rest on the record in io->unsent, and is
 * done once the reader has taken it all. */
enum { BULK = 1 << 20 };

struct bulk {
    struct io w, r;
    struct task *writer;
    unsigned char *out;
    int write_rc;
};

static void write_bulk(void *arg)
{
    struct bulk *b = arg;
    b->write_rc = io_write_all(&b->w, b->out, BULK, LONG_WAIT);
}

static void read_bulk(void *arg)
{
    struct bulk *b = arg;
    unsigned char buf[8192];    /* on a task's stack: small */
    size_t got = 0;

    ck_assert_ptr_eq(b->w.writer, b->writer);   /* waiting for room */
    ck_assert_uint_gt(b->w.unsent, 0);
    ck_assert_uint_eq(b->w.sent + b->w.unsent, BULK);
    while (got < BULK) {
        ssize_t n = io_read(&b->r, buf, sizeof buf, LONG_WAIT);
        ck_assert_int_gt(n, 0);
        ck_assert_uint_le(got + (size_t)n, BULK);
        ck_assert_mem_eq(buf, b->out + got, (size_t)n);
        got += (size_t)n;
    }
}

START_TEST(write_all_waits_for_room)
{
    struct bulk b = {.out = malloc(BULK)};
    int sv[2];

    ck_assert_ptr_nonnull(b.out);
    for (size_t i = 0; i < BULK; i++)
        b.out[i] = (unsigned char)(i * 7 + i / 251);
    socket_pair(SOCK_STREAM, sv);
    open_io(&b.w, sv[0]);
    open_io(&b.r, sv[1]);
    b.writer = spawn(write_bulk, &b);
    spawn(read_bulk, &b);
    run_tasks();
    ck_assert_int_eq(b.write_rc, 0);
    ck_assert_uint_eq(b.w.sent, BULK);
    ck_assert_uint_eq(b.w.unsent, 0);
    io_close(&b.w);
    io_close(&b.r);
    free(b.out);
}
END_TEST

/* io_accept() waits for a client, io_connect() for the handshake. */
struct meeting {
    struct io listener, client;
    struct sockaddr_in addr;
    struct task *acceptor;
    char got[8];
    ssize_t n;
};

static void accept_one(void *arg)
{
    struct meeting *m = arg;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    struct io conn;

    int fd = io_accept(&m->listener, &ss, &len, LONG_WAIT);
    ck_assert_int_ge(fd, 0);
    ck_assert_uint_eq(len, sizeof(struct sockaddr_in));
    open_io(&conn, fd);
    m->n = io_read(&conn, m->got, sizeof m->got, LONG_WAIT);
    io_close(&conn);
}

static int connect_to_meeting(struct meeting *m)
{
    return io_connect(&m->client, (struct sockaddr *)&m->addr, sizeof m->addr, LONG_WAIT);
}

static void connect_one(void *arg)
{
    struct meeting *m = arg;
    ck_assert_ptr_eq(m->listener.reader, m->acceptor);  /* waiting in io_accept() */
    ck_assert_int_eq(connect_to_meeting(m), 0);
    ck_assert_int_eq(io_write_all(&m->client, "hi", 2, LONG_WAIT), 0);
}

START_TEST(accept_waits_for_connect)
{
    struct meeting m = {0};

    open_io(&m.listener, tcp_listener(&m.addr, 8));
    open_io(&m.client, socket(AF_INET, SOCK_STREAM, 0));
    m.acceptor = spawn(accept_one, &m);
    spawn(connect_one, &m);
    run_tasks();
    ck_assert_int_eq(m.n, 2);
    ck_assert_mem_eq(m.got, "hi", 2);
    io_close(&m.client);
    io_close(&m.listener);
}
END_TEST

static void connect_refused(void *arg)
{
    struct meeting *m = arg;
    ck_assert_int_eq(connect_to_meeting(m), -1);
    ck_assert_int_eq(errno, ECONNREFUSED);
}

/* A port that is bound but not listening answers with a reset: io_connect()
 * says why, from SO_ERROR, once the handshake has failed. */
START_TEST(connect_says_why_not)
{
    struct meeting m = {0};
    int bound = loopback_socket(SOCK_STREAM, &m.addr);

    open_io(&m.client, socket(AF_INET, SOCK_STREAM, 0));
    spawn(connect_refused, &m);
    run_tasks();
    io_close(&m.client);
    close(bound);
}
END_TEST

struct datagram {
    struct io rx;
    int tx;
    struct sockaddr_in rx_addr, tx_addr, from;
    struct task *receiver;
    char got[16];
    ssize_t n;
    socklen_t from_len;
};

static void receive_one(void *arg)
{
    struct datagram *d = arg;
    struct iovec iov = {.iov_base = d->got, .iov_len = sizeof d->got};
    struct msghdr msg = {.msg_name = &d->from, .msg_namelen = sizeof d->from,
                         .msg_iov = &iov, .msg_iovlen = 1};
    d->n = io_recvmsg(&d->rx, &msg, 0, LONG_WAIT);
    d->from_len = msg.msg_namelen;
}

static void send_one(void *arg)
{
    struct datagram *d = arg;
    ck_assert_ptr_eq(d->rx.reader, d->receiver);        /* waiting in io_recvmsg() */
    ck_assert_int_eq(sendto(d->tx, "dgram", 5, 0, (struct sockaddr *)&d->rx_addr,
                            sizeof d->rx_addr), 5);
}

START_TEST(recvmsg_waits_for_a_datagram)
{
    struct datagram d = {0};

    open_io(&d.rx, loopback_socket(SOCK_DGRAM, &d.rx_addr));
    d.tx = loopback_socket(SOCK_DGRAM, &d.tx_addr);
    d.receiver = spawn(receive_one, &d);
    spawn(send_one, &d);
    run_tasks();
    ck_assert_int_eq(d.n, 5);
    ck_assert_mem_eq(d.got, "dgram", 5);
    ck_assert_uint_eq(d.from_len, sizeof d.from);
    ck_assert_uint_eq(d.from.sin_port, d.tx_addr.sin_port);
    io_close(&d.rx);
    close(d.tx);
}
END_TEST

/* ---- tasks blocked in every call: timeouts and cancellation ------------- */

/* Every call that waits, each set up so that it has to. */
enum call { READ, WRITE, ACCEPT, RECVMSG, CONNECT, SUSPEND, SLEEP, YIELD, CALLS };
static const char *const call_name[CALLS] = {
    "io_read", "io_write_all", "io_accept", "io_recvmsg", "io_connect",
    "task_suspend", "task_sleep", "task_yield",
};

/* A task blocked in one call, and what came of it. */
struct blocked {
    enum call call;
    long long timeout;
    struct io io;               /* the socket it waits on, if any: fd -1 if none */
    int peer;                   /* the other end, if any: -1 if none */
    const struct sockaddr_in *to;   /* CONNECT: where (a full listener) */
    int entered, returned, cleaned;
    int rc, err;
    long long waited;           /* ms, from loop_now() at the call */
};

/* B's sockets, such that CALL will have to wait. */
static void prepare(struct blocked *b, enum call call, long long timeout,
                    const struct sockaddr_in *full)
{
    struct sockaddr_in sa;
    int sv[2] = {-1, -1};

    *b = (struct blocked){.call = call, .timeout = timeout, .to = full};
    switch (call) {
    case READ:                  /* nothing sent */
    case WRITE:                 /* no room */
        socket_pair(SOCK_STREAM, sv);
        if (call == WRITE)
            fill(sv[0]);
        break;
    case RECVMSG:
        socket_pair(SOCK_DGRAM, sv);
        break;
    case ACCEPT:                /* no client */
        sv[0] = tcp_listener(&sa, 8);
        break;
    case CONNECT:               /* the listener's queue is full */
        sv[0] = socket(AF_INET, SOCK_STREAM, 0);
        ck_assert_int_ge(sv[0], 0);
        break;
    default:
        break;
    }
    b->io.watch.fd = -1;
    if (sv[0] >= 0)
        open_io(&b->io, sv[0]);
    b->peer = sv[1];
}

/* The call, as B says. */
static int call(struct blocked *b)
{
    static const char chunk[65536];
    char buf[64];
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int rc;

    switch (b->call) {
    case READ:      return (int)io_read(&b->io, buf, sizeof buf, b->timeout);
    case WRITE:     return io_write_all(&b->io, chunk, sizeof chunk, b->timeout);
    case ACCEPT:    return io_accept(&b->io, &ss, &len, b->timeout);
    case RECVMSG:   return (int)io_recvmsg(&b->io, &msg, 0, b->timeout);
    case CONNECT:
        return io_connect(&b->io, (const struct sockaddr *)b->to, sizeof *b->to, b->timeout);
    case SUSPEND:   return task_suspend(b->timeout);
    case SLEEP:     return task_sleep(b->timeout);
    case YIELD:
        while ((rc = task_yield()) == 0)
            ;
        return rc;
    default:        return 0;
    }
}

/* Make the call, note what came of it, then clean up as a task must. */
static void blocked_task(void *arg)
{
    struct blocked *b = arg;

    b->entered = 1;
    long long start = loop_now(loop);
    b->rc = call(b);
    b->err = errno;
    b->waited = now_ms() - start;
    b->returned = 1;
    if (b->io.watch.fd >= 0)
        io_close(&b->io);
    if (b->peer >= 0)
        close(b->peer);
    b->cleaned = 1;
}

/* Every call with a timeout, each a different one, all at once: each ends
 * with -1 and ETIMEDOUT (task_sleep(): 0), no sooner than its timeout. */
START_TEST(every_call_times_out)
{
    enum { TIMED = SLEEP + 1 };         /* all but YIELD, which has no timeout */
    struct blocked b[TIMED];
    struct sockaddr_in full;
    int queued, listener = full_listener(&full, &queued);

    for (int c = 0; c < TIMED; c++) {
        prepare(&b[c], (enum call)c, 30 + 10 * c, &full);
        spawn(blocked_task, &b[c]);
    }
    run_tasks();
    for (int c = 0; c < TIMED; c++) {
        const char *name = call_name[c];
        ck_assert_msg(b[c].rc == (c == SLEEP ? 0 : -1) && (c == SLEEP || b[c].err == ETIMEDOUT),
                      "%s returned %d (%s), not a timeout", name, b[c].rc, strerror(b[c].err));
        ck_assert_msg(b[c].waited >= b[c].timeout, "%s timed out after %lld ms, not %lld",
                      name, b[c].waited, b[c].timeout);
        ck_assert_msg(b[c].waited < b[c].timeout + 2000, "%s took %lld ms to time out",
                      name, b[c].waited);
        ck_assert(b[c].cleaned);
    }
    close(queued);
    close(listener);
}
END_TEST

/* Shutdown: the last task spawned finds every other one waiting, in every
 * call there is, and cancels them all. */
enum { EACH = 16, BLOCKED = CALLS * EACH };

struct shutdown {
    struct blocked b[BLOCKED];
    int own_yield;              /* the canceller's own task_yield() after */
};

static void cancel_everyone(void *arg)
{
    struct shutdown *s = arg;
    for (int i = 0; i < BLOCKED; i++)
        ck_assert_msg(s->b[i].entered && !s->b[i].returned, "%s task %d is not waiting",
                      call_name[s->b[i].call], i);
    tasks_cancel_all();
    s->own_yield = task_yield();        /* "every task but the one calling" */
}

START_TEST(cancel_reaches_every_task)
{
    static struct shutdown s;
    struct sockaddr_in full;
    int queued, listener = full_listener(&full, &queued);

    for (int i = 0; i < BLOCKED; i++) {
        prepare(&s.b[i], (enum call)(i % CALLS), LONG_WAIT, &full);
        spawn(blocked_task, &s.b[i]);
    }
    s.own_yield = -1;
    spawn(cancel_everyone, &s);
    run_tasks();
    ck_assert_int_eq(s.own_yield, 0);
    for (int i = 0; i < BLOCKED; i++) {
        struct blocked *b = &s.b[i];
        ck_assert_msg(b->rc == -1 && b->err == ECANCELED,
                      "%s task %d returned %d (%s), not ECANCELED",
                      call_name[b->call], i, b->rc, strerror(b->err));
        ck_assert_msg(b->waited < LONG_WAIT,
                      "%s task %d was cancelled only when its timeout came",
                      call_name[b->call], i);
        ck_assert(b->cleaned);
    }
    close(queued);
    close(listener);
}
END_TEST

/* A task woken and then cancelled, before it could run: cancelled. */
struct woken {
    struct task *sleeper;
    int rc, err;
};

static void suspend_once(void *arg)
{
    struct woken *w = arg;
    w->rc = task_suspend(LONG_WAIT);
    w->err = errno;
}

static void wake_then_cancel(void *arg)
{
    struct woken *w = arg;
    task_wake(w->sleeper);
    task_cancel(w->sleeper);
}

START_TEST(cancel_wins_over_a_queued_wake)
{
    struct woken w = {0};
    w.sleeper = spawn(suspend_once, &w);
    spawn(wake_then_cancel, &w);
    run_tasks();
    ck_assert_int_eq(w.rc, -1);
    ck_assert_int_eq(w.err, ECANCELED);
}
END_TEST

/* task.h: "Cancel T: the call it is suspended in, and every one it makes
 * after, fails at once with ECANCELED". After, the calls are made where
 * none would have to wait: a socket with data to read and room to write. */
struct after_cancel {
    struct io io;
    int first_err;
    const char *failed;         /* the first call that did not fail */
};

/* RC and errno, as a call just left them: note WHAT if it did not fail. */
static void must_fail(struct after_cancel *a, const char *what, long rc)
{
    if (a->failed == NULL && (rc != -1 || errno != ECANCELED))
        a->failed = what;
}

static void calls_after_cancel(void *arg)
{
    struct after_cancel *a = arg;
    char c;

    ck_assert_int_eq(task_suspend(LONG_WAIT), -1);
    a->first_err = errno;
    must_fail(a, "task_yield()", task_yield());
    must_fail(a, "task_sleep()", task_sleep(1));
    must_fail(a, "task_suspend()", task_suspend(1));
    must_fail(a, "io_read() with data there", io_read(&a->io, &c, 1, LONG_WAIT));
    must_fail(a, "io_write_all() with room", io_write_all(&a->io, "x", 1, LONG_WAIT));
}

static void cancel_task(void *arg)
{
    task_cancel(arg);
}

START_TEST(cancelled_task_calls_fail_at_once)
{
    struct after_cancel a = {0};
    int sv[2];

    socket_pair(SOCK_STREAM, sv);
    ck_assert_int_eq(write(sv[1], "data", 4), 4);
    open_io(&a.io, sv[0]);
    spawn(cancel_task, spawn(calls_after_cancel, &a));
    run_tasks();
    ck_assert_int_eq(a.first_err, ECANCELED);
    ck_assert_msg(a.failed == NULL, "in a cancelled task, %s did not fail with ECANCELED",
                  a.failed);
    io_close(&a.io);
    close(sv[1]);
}
END_TEST

/* ---- task lifetimes: nothing left behind -------------------------------- */

/* What the process holds: mappings (lines of /proc/self/maps; each task's
 * stack is two, its guard page and the rest) and resident memory. */
struct footprint {
    long maps;
    long rss_kb;
};

static struct footprint footprint(void)
{
    struct footprint fp = {0, -1};
    char line[512];

    FILE *f = fopen("/proc/self/maps", "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f) != NULL)
        fp.maps += strchr(line, '\n') != NULL;
    fclose(f);
    f = fopen("/proc/self/status", "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &fp.rss_kb) == 1)
            break;
    fclose(f);
    ck_assert_int_ge(fp.rss_kb, 0);
    return fp;
}

static void brief_life(void *arg)
{
    if ((uintptr_t)arg % 2)
        ck_assert_int_eq(task_sleep(1), 0);
    else
        ck_assert_int_eq(task_yield(), 0);
}

/* 100 waves of 1,000 tasks, each alive at once, sleeping or yielding, then
 * returning. A stack not freed would be two mappings more per task, and
 * its touched pages resident: 100,000 of them. What the spare stacks keep
 * is bounded (well under a wave), and gone after tasks_finish(). */
START_TEST(task_lifetimes_leave_nothing)
{
    enum { WAVES = 100, WAVE = 1000, SLACK_KB = 2048 };
    /* Valgrind's own mappings and memory are the process's too: under it,
     * more slack in mappings (still far fewer than a stack per task), and
     * no bound on memory. */
    long slack_maps = RUNNING_ON_VALGRIND ? 64 : 8;
    struct footprint before = footprint();

    for (int w = 0; w < WAVES; w++) {
        for (uintptr_t i = 0; i < WAVE; i++)
            spawn(brief_life, (void *)i);
        ck_assert_uint_eq(tasks_alive(), WAVE);
        run_tasks();
    }
    struct footprint after = footprint();
    tasks_finish();
    struct footprint finished = footprint();
    /* The spare stacks: a few, two mappings each, not a wave's worth. */
    ck_assert_msg(after.maps <= before.maps + 2 * WAVE / 8,
                  "%ld mappings after the tasks, %ld before", after.maps, before.maps);
    ck_assert_msg(finished.maps <= before.maps + slack_maps,
                  "%ld mappings after tasks_finish(), %ld before", finished.maps, before.maps);
    ck_assert_msg(finished.maps < after.maps, "tasks_finish() unmapped no spare stack");
    ck_assert_msg(RUNNING_ON_VALGRIND || finished.rss_kb <= before.rss_kb + SLACK_KB,
                  "%ld kB resident after the tasks, %ld kB before", finished.rss_kb,
                  before.rss_kb);
}
END_TEST

/* ---- the guard page ----------------------------------------------------- */

/* Write every byte of the stack from here down to LOW, a frame at a time
 * (frames smaller than a page: none is skipped). */
static __attribute__((noinline)) int dig(uintptr_t low)
{
    volatile char frame[256];
    for (size_t i = 0; i < sizeof frame; i++)
        frame[i] = (char)i;
    if ((uintptr_t)frame <= low)
        return frame[0];
    return dig(low) + frame[1];         /* not a tail call: a frame each */
}

/* A task's mapping is, from the bottom: the guard page, its stack, its
 * struct task, in whole pages - STACK + 2 pages for a STACK of whole
 * pages. STACK + 1.5 pages below the task's first frame is in the middle
 * of the guard page, still inside the task's own mapping: without the
 * guard, nothing would fault, and the task would go on, having written
 * where it must not. */
static void overflow(void *arg)
{
    (void)arg;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char here;
    dig((uintptr_t)&here - (STACK + page + page / 2));
}

START_TEST(overflow_hits_the_guard_page)
{
    spawn(overflow, NULL);
    run_tasks();                        /* SIGSEGV before it returns */
}
END_TEST

/* ---- the runner --------------------------------------------------------- */

int main(void)
{
    Suite *s = suite_create("loop");
    TCase *tc = tcase_create("loop");
    tcase_set_timeout(tc, 30);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, timers_fire_in_deadline_order);
    tcase_add_loop_test(tc, random_deadlines, 0, 20);
    tcase_add_test(tc, timers_wait_for_their_deadlines);
    tcase_add_test(tc, rearmed_timer_waits_a_turn);
    tcase_add_test(tc, stopped_timer_never_fires);
    tcase_add_test(tc, soon_queued_while_running_waits_a_turn);
    tcase_add_test(tc, yield_takes_turns_in_order);
    tcase_add_test(tc, budget_makes_a_hog_yield);
    tcase_add_test(tc, read_waits_for_the_peer);
    tcase_add_test(tc, ping_pong);
    tcase_add_test(tc, write_all_waits_for_room);
    tcase_add_test(tc, accept_waits_for_connect);
    tcase_add_test(tc, connect_says_why_not);
    tcase_add_test(tc, recvmsg_waits_for_a_datagram);
    tcase_add_test(tc, every_call_times_out);
    tcase_add_test(tc, cancel_reaches_every_task);
    tcase_add_test(tc, cancel_wins_over_a_queued_wake);
    tcase_add_test(tc, cancelled_task_calls_fail_at_once);
    tcase_add_test(tc, task_lifetimes_leave_nothing);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    /* A test that dies of a signal needs a process of its own. */
    if (srunner_fork_status(sr) == CK_FORK)
        tcase_add_test_raise_signal(tc, overflow_hits_the_guard_page, SIGSEGV);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
