/*
 * queue.h - a bounded FIFO queue of pointers, safe for many threads:
 * producers put work in, consumers take it out, and nobody spins.
 *
 * It is bounded on purpose. An unbounded queue turns "more work than we
 * can do" into "more memory than we have", slowly and silently; a bounded
 * one says "full" at once, and the producer decides: wait (queue_push) or
 * give up and say so (queue_try_push).
 */
#ifndef QUEUE_H
#define QUEUE_H

#include <stddef.h>

struct queue;

/* A queue holding at most CAPACITY (>= 1) items; NULL if out of memory. */
struct queue *queue_new(size_t capacity);

/* Add ITEM (not NULL) at the tail, waiting while the queue is full.
 * Returns 0, or -1 if the queue is (or gets) closed: ITEM was not added. */
int queue_push(struct queue *q, void *item);

/* Add ITEM at the tail if there is room now. Returns 0, or -1 if the
 * queue is full or closed. Never waits. */
int queue_try_push(struct queue *q, void *item);

/* Take the item at the head, waiting while the queue is empty. Returns
 * NULL once the queue is closed - even if items are left in it: a closed
 * queue is one whose work nobody will do. */
void *queue_pop(struct queue *q);

/* Take the item at the head if there is one and the queue is open or
 * closed alike; NULL if it is empty. Never waits: for emptying a closed
 * queue. */
void *queue_try_pop(struct queue *q);

/* Close the queue: every waiting queue_push() and queue_pop() returns at
 * once, and every later one fails. */
void queue_close(struct queue *q);

/* How many items are in the queue right now. */
size_t queue_length(struct queue *q);

/* Free the queue (its items are the caller's). No thread may be using it. */
void queue_free(struct queue *q);

#endif
