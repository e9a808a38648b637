/*
 * queue.c - a bounded FIFO queue: a ring buffer, one mutex, two condition
 * variables.
 *
 * The mutex guards everything in struct queue. A condition variable is a
 * place to sleep until some condition on that state may have changed:
 * "not full" for producers, "not empty" for consumers. The rules that make
 * it correct, each visible below:
 *   - test the condition with the mutex held, and sleep with
 *     pthread_cond_wait(), which lets go of the mutex and sleeps as one
 *     step, so a wake-up cannot slip in between;
 *   - test it again in a loop after waking: another thread may have taken
 *     the item first, and POSIX allows wake-ups with no signal at all;
 *   - signal after every change that can make a condition true.
 */
#include "queue.h"

#include <pthread.h>
#include <stdlib.h>

struct queue {
    pthread_mutex_t lock;
    pthread_cond_t not_full, not_empty;
    void **items;               /* ring buffer of CAPACITY slots */
    size_t capacity, head, count;
    int closed;
};

struct queue *queue_new(size_t capacity)
{
    struct queue *q = calloc(1, sizeof *q);
    if (q == NULL || capacity == 0 || (q->items = calloc(capacity, sizeof *q->items)) == NULL) {
        free(q);
        return NULL;
    }
    q->capacity = capacity;
    /* Each init can fail (for want of memory, on some systems): undo the
     * ones that worked. */
    if (pthread_mutex_init(&q->lock, NULL) != 0)
        goto no_lock;
    if (pthread_cond_init(&q->not_full, NULL) != 0)
        goto no_not_full;
    if (pthread_cond_init(&q->not_empty, NULL) != 0)
        goto no_not_empty;
    return q;
no_not_empty:
    pthread_cond_destroy(&q->not_full);
no_not_full:
    pthread_mutex_destroy(&q->lock);
no_lock:
    free(q->items);
    free(q);
    return NULL;
}

/* With the lock held and room in the queue: add ITEM, wake one consumer. */
static void put(struct queue *q, void *item)
{
    q->items[(q->head + q->count) % q->capacity] = item;
    q->count++;
    pthread_cond_signal(&q->not_empty);
}

/* With the lock held and an item in the queue: take it, wake one producer. */
static void *take(struct queue *q)
{
    void *item = q->items[q->head];
    q->head = (q->head + 1) % q->capacity;
    q->count--;
    pthread_cond_signal(&q->not_full);
    return item;
}

int queue_push(struct queue *q, void *item)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == q->capacity && !q->closed)
        pthread_cond_wait(&q->not_full, &q->lock);
    int ok = !q->closed;
    if (ok)
        put(q, item);
    pthread_mutex_unlock(&q->lock);
    return ok ? 0 : -1;
}

int queue_try_push(struct queue *q, void *item)
{
    pthread_mutex_lock(&q->lock);
    int ok = !q->closed && q->count < q->capacity;
    if (ok)
        put(q, item);
    pthread_mutex_unlock(&q->lock);
    return ok ? 0 : -1;
}

void *queue_pop(struct queue *q)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == 0 && !q->closed)
        pthread_cond_wait(&q->not_empty, &q->lock);
    void *item = q->closed ? NULL : take(q);
    pthread_mutex_unlock(&q->lock);
    return item;
}

void *queue_try_pop(struct queue *q)
{
    pthread_mutex_lock(&q->lock);
    void *item = q->count > 0 ? take(q) : NULL;
    pthread_mutex_unlock(&q->lock);
    return item;
}

/* Broadcast, not signal: every waiter must wake and see "closed". */
void queue_close(struct queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = 1;
#ifdef BROKEN_one_wakeup
    /* The classic mistake, on request: signal wakes one waiter. The other
     * idle workers sleep on, and a stop waits for them for ever. */
    pthread_cond_signal(&q->not_full);
    pthread_cond_signal(&q->not_empty);
#else
    pthread_cond_broadcast(&q->not_full);
    pthread_cond_broadcast(&q->not_empty);
#endif
    pthread_mutex_unlock(&q->lock);
}

size_t queue_length(struct queue *q)
{
    pthread_mutex_lock(&q->lock);
    size_t n = q->count;
    pthread_mutex_unlock(&q->lock);
    return n;
}

void queue_free(struct queue *q)
{
    pthread_cond_destroy(&q->not_full);
    pthread_cond_destroy(&q->not_empty);
    pthread_mutex_destroy(&q->lock);
    free(q->items);
    free(q);
}
