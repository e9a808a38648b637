/*
 * loop.c - the event loop: chapter 06's epoll loop with everything about
 * echo taken out, and two things added that every server on a loop needs.
 *
 * Timers, in a binary heap ordered by deadline: the next one due is always
 * at the top, arming and disarming cost O(log n), and the loop's wait ends
 * when the top one is due. (06 kept its idle deadlines in a list in LRU
 * order, which works only while every deadline is "now + the same
 * timeout"; a heap takes any deadline.)
 *
 * Callbacks to run soon: what the loop does after the events of a turn,
 * before it waits again. task.c resumes its tasks this way: an event only
 * marks a task ready, and the task runs here, once the whole batch of
 * events has been looked at. While any callback is queued the loop does
 * not sleep: epoll_wait() gets a timeout of 0.
 *
 * One turn: wait for events (no longer than until the next timer, not at
 * all if callbacks are queued), call back for each, fire the timers due,
 * then run the callbacks queued so far - those they queue run next turn,
 * after the loop has looked for events again. That is what keeps a task
 * that yields in a loop from starving the sockets.
 */
#include "loop.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

/* Events taken per epoll_wait() at most; more stay ready for the next. */
#define MAX_EVENTS 256

struct loop {
    int epfd;
    int stopping;
    long long now;              /* ms, read once per turn */
    struct timer **heap;        /* heap[0] is due first; t->slot is its index + 1 */
    size_t timers, heap_size;
    unsigned long long armed;   /* timers armed so far: the next one's seq */
    struct soon *soon_first, *soon_last;
};

static long long clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct loop *loop_new(void)
{
    struct loop *l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    if ((l->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        free(l);
        return NULL;
    }
    l->now = clock_ms();
    return l;
}

void loop_free(struct loop *l)
{
    close(l->epfd);
    free(l->heap);
    free(l);
}

long long loop_now(const struct loop *l)
{
    return l->now;
}

/* ---- descriptors ------------------------------------------------------- */

int loop_watch(struct loop *l, struct watch *w, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    return epoll_ctl(l->epfd, EPOLL_CTL_ADD, w->fd, &ev);
}

int loop_unwatch(struct loop *l, struct watch *w)
{
    return epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
}

/* ---- timers: a binary heap --------------------------------------------- */

/* Is A due before B? At the same time, the one armed first is. */
static int before(const struct timer *a, const struct timer *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void put(struct loop *l, size_t i, struct timer *t)
{
    l->heap[i] = t;
    t->slot = i + 1;
}

/* Move the timer at I up while it is due before its parent. */
static void sift_up(struct loop *l, size_t i)
{
    struct timer *t = l->heap[i];
    while (i > 0 && before(t, l->heap[(i - 1) / 2])) {
        put(l, i, l->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    put(l, i, t);
}

/* Move the timer at I down while a child is due before it. */
static void sift_down(struct loop *l, size_t i)
{
    struct timer *t = l->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= l->timers)
            break;
        if (child + 1 < l->timers && before(l->heap[child + 1], l->heap[child]))
            child++;
        if (!before(l->heap[child], t))
            break;
        put(l, i, l->heap[child]);
        i = child;
    }
    put(l, i, t);
}

int timer_start(struct loop *l, struct timer *t, long long when)
{
    if (t->slot != 0) {
        /* Armed already: move it, up or down. */
        t->when = when;
        t->seq = l->armed++;
        sift_up(l, t->slot - 1);
        sift_down(l, t->slot - 1);
        return 0;
    }
    if (l->timers == l->heap_size) {
        size_t size = l->heap_size ? 2 * l->heap_size : 64;
        struct timer **heap = realloc(l->heap, size * sizeof *heap);
        if (heap == NULL)
            return -1;
        l->heap = heap;
        l->heap_size = size;
    }
    t->when = when;
    t->seq = l->armed++;
    put(l, l->timers++, t);
    sift_up(l, l->timers - 1);
    return 0;
}

void timer_stop(struct loop *l, struct timer *t)
{
    if (t->slot == 0)
        return;
    size_t i = t->slot - 1;
    t->slot = 0;
    struct timer *last = l->heap[--l->timers];
    if (last == t)
        return;
    /* The last one fills the hole, then finds its place from there. */
    put(l, i, last);
    sift_up(l, i);
    sift_down(l, last->slot - 1);
}

/* Fire every timer due by now, the earliest first - but only those armed
 * before we began: a timer that re-arms itself for now would otherwise
 * fire again and again, and the loop never get past this turn. */
static void fire_timers(struct loop *l)
{
    unsigned long long armed = l->armed;

    while (l->timers > 0 && l->heap[0]->when <= l->now && l->heap[0]->seq < armed) {
        struct timer *t = l->heap[0];
        timer_stop(l, t);
        t->fire(t);
    }
}

/* ---- callbacks for the next turn --------------------------------------- */

void loop_soon(struct loop *l, struct soon *s)
{
    if (s->queued)
        return;
    s->queued = 1;
    s->next = NULL;
    if (l->soon_last != NULL)
        l->soon_last->next = s;
    else
        l->soon_first = s;
    l->soon_last = s;
}

/* Run the callbacks queued so far, in the order they were queued. */
static void run_soon(struct loop *l)
{
    struct soon *s = l->soon_first;
    l->soon_first = l->soon_last = NULL;
    while (s != NULL) {
        struct soon *next = s->next;
        s->queued = 0;
        s->run(s);
        s = next;
    }
}

/* ---- the loop ---------------------------------------------------------- */

/* How long this turn may sleep in epoll_wait(), in ms: -1 for as long as
 * it takes, 0 when callbacks wait to run. */
static int sleep_ms(const struct loop *l)
{
    if (l->soon_first != NULL)
        return 0;
    if (l->timers == 0)
        return -1;
    long long ms = l->heap[0]->when - clock_ms();
    return ms <= 0 ? 0 : ms > INT_MAX ? INT_MAX : (int)ms;
}

/* One turn. Returns -1 if epoll_wait() failed (errno set). */
static int run_once(struct loop *l)
{
    struct epoll_event events[MAX_EVENTS];

    int n = epoll_wait(l->epfd, events, MAX_EVENTS, sleep_ms(l));
    if (n < 0) {
        if (errno != EINTR)
            return -1;
        n = 0;                  /* a signal: its handler has queued what it must */
    }
    l->now = clock_ms();
    for (int i = 0; i < n; i++) {
        struct watch *w = events[i].data.ptr;
        w->on_event(w, events[i].events);
    }
    fire_timers(l);
    run_soon(l);
    return 0;
}

int loop_run(struct loop *l)
{
    l->stopping = 0;
    while (!l->stopping)
        if (run_once(l) < 0)
            return -1;
    return 0;
}

void loop_stop(struct loop *l)
{
    l->stopping = 1;
}
