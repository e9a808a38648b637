/*
 * loop.h - a small event loop: descriptors on epoll, timers in a heap,
 * callbacks to run soon. It knows nothing about echo, nor about tasks:
 * task.c builds those on top of these three things.
 *
 * Each of them is a struct the caller owns and embeds in its own (a
 * connection's struct holds its watch, a task holds its timer): the loop
 * allocates nothing per descriptor, timer or callback, and calls back with
 * a pointer to the struct it was given.
 */
#ifndef LOOP_H
#define LOOP_H

#include <stddef.h>
#include <stdint.h>

struct loop;

/* From a pointer to MEMBER of a struct TYPE, the struct: how a callback
 * gets from the watch, timer or soon it is given to the struct that
 * holds it. */
#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* A descriptor the loop watches: ON_EVENT(w, EVENTS) when epoll reports it
 * (EVENTS: EPOLLIN, EPOLLOUT, EPOLLRDHUP, EPOLLHUP, EPOLLERR). ON_EVENT
 * runs amid a batch of events that may include one for any other watch:
 * it must not unwatch or free another watch (task.c's only mark a task
 * ready; the task closes its socket later, when it runs). */
struct watch {
    int fd;
    void (*on_event)(struct watch *w, uint32_t events);
};

/* A timer: FIRE(t), once, on the first turn at or after WHEN. Timers due
 * at the same time fire in the order they were armed; a timer armed while
 * timers fire (by one of them) fires on a later turn, never in this one. */
struct timer {
    long long when;             /* loop_now() time, ms */
    unsigned long long seq;     /* when it was armed: ties go to the first */
    size_t slot;                /* its place in the heap, from 1; 0: not armed */
    void (*fire)(struct timer *t);
};

/* A callback for the loop's next turn: RUN(s), once, before it waits. */
struct soon {
    struct soon *next;
    int queued;
    void (*run)(struct soon *s);
};

struct loop *loop_new(void);
void loop_free(struct loop *l);

/* Watch W->fd for EVENTS (EPOLLET for edge-triggered), stop watching it.
 * Return 0, or -1 with errno set. Unwatch before close(). */
int loop_watch(struct loop *l, struct watch *w, uint32_t events);
int loop_unwatch(struct loop *l, struct watch *w);

/* Arm T to fire at WHEN (ms on loop_now()'s clock), or disarm it. Arming
 * an armed timer moves it. Returns 0, or -1 (ENOMEM: the heap could not
 * grow). A disarmed timer never fires, even one due this very turn. */
int timer_start(struct loop *l, struct timer *t, long long when);
void timer_stop(struct loop *l, struct timer *t);

/* Run S on the loop's next turn (once, however often it is queued). */
void loop_soon(struct loop *l, struct soon *s);

/* The time, in ms on the monotonic clock, as of this turn of the loop:
 * read once per turn, after epoll_wait(), as libuv's uv_now() is. A
 * deadline computed from it during a long turn starts a little early. */
long long loop_now(const struct loop *l);

/* Turn until loop_stop(). Returns 0, or -1 if epoll_wait() failed (errno). */
int loop_run(struct loop *l);
void loop_stop(struct loop *l);

#endif
