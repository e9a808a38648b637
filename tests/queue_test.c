/*
 * queue_test.c - unit tests, with Check, for chapter 04's bounded queue
 * (04-threadpool/queue.c) on its own: FIFO order, waiting when full and
 * when empty, every waiter woken by close, and no item lost or taken twice
 * with many producers and consumers at once.
 *
 * "Waits" means "has not returned yet", which no event signals: where a
 * test must show that a thread is still waiting, it looks for 200 ms.
 */
#include "../04-threadpool/queue.h"

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define ITEM(n) ((void *)(uintptr_t)(n))

START_TEST(fifo_order)
{
    struct queue *q = queue_new(3);
    ck_assert_ptr_nonnull(q);
    for (int i = 1; i <= 3; i++)
        ck_assert_int_eq(queue_try_push(q, ITEM(i)), 0);
    ck_assert_int_eq(queue_try_push(q, ITEM(4)), -1);      /* full */
    ck_assert_uint_eq(queue_length(q), 3);
    ck_assert_ptr_eq(queue_pop(q), ITEM(1));
    ck_assert_ptr_eq(queue_pop(q), ITEM(2));
    ck_assert_int_eq(queue_push(q, ITEM(4)), 0);            /* wraps around */
    ck_assert_int_eq(queue_push(q, ITEM(5)), 0);
    for (int i = 3; i <= 5; i++)
        ck_assert_ptr_eq(queue_pop(q), ITEM(i));
    ck_assert_ptr_null(queue_try_pop(q));                   /* empty */
    ck_assert_uint_eq(queue_length(q), 0);
    queue_free(q);
}
END_TEST

/* A thread that pushes or pops once, and says when it has returned. */
struct waiter {
    pthread_t thread;
    struct queue *q;
    void *item;                 /* to push; what pop returned */
    int rc;
    atomic_int done;
};

static void *push_once(void *arg)
{
    struct waiter *w = arg;
    w->rc = queue_push(w->q, w->item);
    atomic_store(&w->done, 1);
    return NULL;
}

static void *pop_once(void *arg)
{
    struct waiter *w = arg;
    w->item = queue_pop(w->q);
    atomic_store(&w->done, 1);
    return NULL;
}

static void start(struct waiter *w, struct queue *q, void *item, void *(*fn)(void *))
{
    w->q = q;
    w->item = item;
    atomic_store(&w->done, 0);
    ck_assert_int_eq(pthread_create(&w->thread, NULL, fn, w), 0);
}

/* W must not return within 200 ms. */
static void assert_waits(struct waiter *w, const char *what)
{
    for (int i = 0; i < 20; i++) {
        ck_assert_msg(!atomic_load(&w->done), "%s returned instead of waiting", what);
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    }
}

START_TEST(push_waits_while_full)
{
    struct queue *q = queue_new(1);
    struct waiter w;
    ck_assert_int_eq(queue_push(q, ITEM(1)), 0);
    start(&w, q, ITEM(2), push_once);
    assert_waits(&w, "queue_push() on a full queue");
    ck_assert_ptr_eq(queue_pop(q), ITEM(1));                /* room: it goes in */
    pthread_join(w.thread, NULL);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_ptr_eq(queue_pop(q), ITEM(2));
    queue_free(q);
}
END_TEST

START_TEST(pop_waits_while_empty)
{
    struct queue *q = queue_new(2);
    struct waiter w;
    start(&w, q, NULL, pop_once);
    assert_waits(&w, "queue_pop() on an empty queue");
    ck_assert_int_eq(queue_push(q, ITEM(7)), 0);
    pthread_join(w.thread, NULL);
    ck_assert_ptr_eq(w.item, ITEM(7));
    queue_free(q);
}
END_TEST

/* Four threads wait in push on a full queue, four in pop on an empty one:
 * close wakes every one (a signal instead of a broadcast would wake one),
 * push fails and pop returns NULL, then and ever after; what was left in
 * the closed queue can still be taken out with try_pop. */
START_TEST(close_wakes_every_waiter)
{
    enum { N = 4 };
    struct queue *full = queue_new(1), *empty = queue_new(1);
    struct waiter pushers[N], poppers[N];
    ck_assert_int_eq(queue_push(full, ITEM(1)), 0);
    for (int i = 0; i < N; i++) {
        start(&pushers[i], full, ITEM(100 + i), push_once);
        start(&poppers[i], empty, NULL, pop_once);
    }
    assert_waits(&pushers[N - 1], "queue_push() on a full queue");
    assert_waits(&poppers[N - 1], "queue_pop() on an empty queue");
    queue_close(full);
    queue_close(empty);
    for (int i = 0; i < N; i++) {      /* a hang here: the test times out */
        pthread_join(pushers[i].thread, NULL);
        pthread_join(poppers[i].thread, NULL);
        ck_assert_int_eq(pushers[i].rc, -1);
        ck_assert_ptr_null(poppers[i].item);
    }
    ck_assert_int_eq(queue_push(empty, ITEM(2)), -1);
    ck_assert_int_eq(queue_try_push(empty, ITEM(2)), -1);
    ck_assert_ptr_null(queue_pop(full));                    /* closed: no more work */
    ck_assert_ptr_eq(queue_try_pop(full), ITEM(1));         /* but it can be emptied */
    ck_assert_ptr_null(queue_try_pop(full));
    queue_free(full);
    queue_free(empty);
}
END_TEST

/* Many producers and consumers through a small queue, so both sides wait
 * often: every item comes out exactly once. */
enum { PRODUCERS = 4, CONSUMERS = 4, PER_PRODUCER = 20000, TOTAL = PRODUCERS * PER_PRODUCER };
#define STOP ITEM(TOTAL + 1)

struct worker {
    pthread_t thread;
    struct queue *q;
    int id;
    unsigned char *seen;        /* consumers: how often each item came */
};

static void *produce(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < PER_PRODUCER; i++)
        ck_assert_int_eq(queue_push(w->q, ITEM(w->id * PER_PRODUCER + i + 1)), 0);
    return NULL;
}

static void *consume(void *arg)
{
    struct worker *w = arg;
    for (void *item; (item = queue_pop(w->q)) != STOP;) {
        ck_assert_ptr_nonnull(item);
        uintptr_t n = (uintptr_t)item;
        ck_assert(n >= 1 && n <= TOTAL);
        w->seen[n - 1]++;
    }
    return NULL;
}

START_TEST(no_item_lost_or_duplicated)
{
    struct queue *q = queue_new(8);
    struct worker prod[PRODUCERS], cons[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++) {
        cons[i] = (struct worker){.q = q, .id = i, .seen = calloc(TOTAL, 1)};
        ck_assert_int_eq(pthread_create(&cons[i].thread, NULL, consume, &cons[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        prod[i] = (struct worker){.q = q, .id = i};
        ck_assert_int_eq(pthread_create(&prod[i].thread, NULL, produce, &prod[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(prod[i].thread, NULL);
    /* FIFO: each consumer's STOP comes after every real item. */
    for (int i = 0; i < CONSUMERS; i++)
        ck_assert_int_eq(queue_push(q, STOP), 0);
    for (int i = 0; i < CONSUMERS; i++)
        pthread_join(cons[i].thread, NULL);
    for (int n = 0; n < TOTAL; n++) {
        int times = 0;
        for (int i = 0; i < CONSUMERS; i++)
            times += cons[i].seen[n];
        ck_assert_msg(times == 1, "item %d came out %d times", n + 1, times);
    }
    for (int i = 0; i < CONSUMERS; i++)
        free(cons[i].seen);
    ck_assert_uint_eq(queue_length(q), 0);
    queue_free(q);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("queue");
    TCase *tc = tcase_create("queue");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, fifo_order);
    tcase_add_test(tc, push_waits_while_full);
    tcase_add_test(tc, pop_waits_while_empty);
    tcase_add_test(tc, close_wakes_every_waiter);
    tcase_add_test(tc, no_item_lost_or_duplicated);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
