/*
 * task.h - tasks on the event loop: functions that run on stacks of their
 * own, and stop (suspend) where they would block, so that the loop can
 * run the others, until what they wait for happens.
 *
 * Inside a task, code reads like a thread's: call, wait, go on. Outside,
 * there is one thread and one loop: a task runs until it suspends, and
 * nothing else runs meanwhile - so tasks share data without locks, and a
 * task that computes for a long time without suspending holds up all the
 * others.
 *
 * One loop per program: the tasks' bookkeeping is in this file's statics.
 */
#ifndef TASK_H
#define TASK_H

#include <stddef.h>

#include "loop.h"

struct task;

/* Stacks: DEFAULT by default, at least MIN, a guard below each one.
 * MIN holds the server's deepest path - echo()'s 16 KiB buffer, a few KiB
 * for the C library's calls (vsnprintf() in log_line()) - and a signal
 * frame on top: a signal that arrives while a task runs is delivered on
 * the task's stack, and the kernel's frame for it takes 3.5 KiB on a CPU
 * with AVX-512, some 12 KiB once a program uses AMX (getauxval(
 * AT_MINSIGSTKSZ) says how much). */
#define TASK_STACK_DEFAULT (64 * 1024)
#define TASK_STACK_MIN (32 * 1024)

/* Use loop L for tasks, with stacks of STACK_SIZE bytes (rounded up to
 * whole pages). Once, before the first task. */
void tasks_init(struct loop *l, size_t stack_size);

/* Run FN(ARG) as a new task: it starts on the loop's next turn. Returns
 * the task, or NULL with errno set (ENOMEM: no memory for a stack). */
struct task *task_spawn(void (*fn)(void *arg), void *arg);

/* Run the loop until every task has returned. Returns 0, or -1 if the
 * loop failed (errno set). */
int tasks_run(void);

/* Free what tasks_run() kept for later tasks (spare stacks). */
void tasks_finish(void);

/* The task running now; NULL outside any task. */
struct task *task_self(void);

/* How many tasks are alive: started and not yet returned. */
size_t tasks_alive(void);

/* Cancel T, which must be alive (a task's memory is reused as soon as it
 * returns): the call it is suspended in, and every one it makes after,
 * fails at once with ECANCELED, so that it cleans up and returns. */
void task_cancel(struct task *t);

/* Cancel every task but the one calling. */
void tasks_cancel_all(void);

/*
 * The calls below suspend the calling task, which must be one (inside a
 * task only). A timeout is in ms, counted from loop_now(); 0: none.
 */

/* Suspend until task_wake() is called for this task, or TIMEOUT passes.
 * Returns 0 when woken; -1 with errno ETIMEDOUT, or ECANCELED. */
int task_suspend(long long timeout);

/* From anywhere (a loop callback, another task): T resumes on the loop's
 * next turn, if it is suspended. */
void task_wake(struct task *t);

/* Let the other tasks run, then go on: 0, or -1 (ECANCELED). */
int task_yield(void);

/* Sleep for MS (counted from loop_now()). Returns 0, or -1 (ECANCELED). */
int task_sleep(long long ms);

/* A task that does not suspend holds up every other. The I/O calls call
 * this first, each time: after TASK_BUDGET calls without a wait it
 * yields, then the task starts a new budget. Returns 0, or -1 (ECANCELED:
 * a cancelled task's calls fail at once, wait or not). */
#define TASK_BUDGET 16
int task_spent(void);

#endif
