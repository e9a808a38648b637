/*
 * task.c - tasks: functions with stacks of their own, which suspend where
 * they would block and resume when the loop says they can go on.
 *
 * A task's whole state while it is suspended is its stack - the frames of
 * every function it is in the middle of, their locals, where each will go
 * on - and the registers a C function must find unchanged (the stack
 * pointer, and the callee-saved ones). To suspend, a task pushes those
 * registers on its stack, saves its stack pointer, and loads the loop's:
 * from then on the CPU runs the loop, as if the task had returned. To
 * resume it, the loop does the same the other way. That is all a switch
 * is: a handful of instructions, no system call (see context_switch()).
 *
 * The loop resumes tasks through its "soon" callbacks: anything that
 * wakes a task (its socket is ready, its timer fired, it was cancelled)
 * queues the task's resume() for the loop's next turn.
 *
 * Each stack is a mapping of its own, with a guard below it that may not
 * be touched (GUARD_SIZE): a task that overflows its stack dies of a
 * segmentation fault at once, where it would otherwise write over
 * whatever lay below. The struct task sits at the top of the same
 * mapping: one allocation per task. Memory is committed only as pages are
 * touched: an idle echo task touches two pages of its 64 KiB stack.
 */
#define _DEFAULT_SOURCE         /* MAP_ANONYMOUS, MAP_NORESERVE */
#include "task.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef TASK_UCONTEXT
#include <ucontext.h>
#endif

/* Valgrind does not know where our stacks are: told, it checks a task's
 * memory as a stack, and does not mistake a switch for one huge call. The
 * header only defines macros that do nothing outside valgrind; without it
 * they do nothing at all. */
#ifdef HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#else
#define VALGRIND_STACK_REGISTER(low, high) 0u
#define VALGRIND_STACK_DEREGISTER(id) ((void)(id))
#endif

/* AddressSanitizer keeps shadow state per stack: it must be told of each
 * switch (a build with -fsanitize=address defines __SANITIZE_ADDRESS__). */
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/common_interface_defs.h>
#define ASAN_START(save, low, size) __sanitizer_start_switch_fiber(save, low, size)
#define ASAN_FINISH(save, low, size) __sanitizer_finish_switch_fiber(save, low, size)
#else
#define ASAN_START(save, low, size) ((void)(save), (void)(low), (void)(size))
#define ASAN_FINISH(save, low, size) ((void)(save), (void)(low), (void)(size))
#endif

/* The guard below each stack: never touched, so it costs address space,
 * not memory. One page would catch a stack that grows into it a little at
 * a time - but a function whose frame is bigger than a page (echo()'s
 * 16 KiB buffer) moves the stack pointer past it in one step, and its
 * first write would land below the guard, in the next task's memory. So
 * the guard is bigger than any frame in the program. (The other cure,
 * gcc's -fstack-clash-protection, makes such a function touch every page
 * of its frame: a 16 KiB buffer the echo never fills would cost 16 KiB of
 * memory per connection instead of 4.) */
#define GUARD_SIZE (64 * 1024)

/* Spare stacks kept for the next tasks at most: a server whose clients
 * come and go maps and unmaps no stack while fewer than this come and go
 * at once. */
#define SPARE_STACKS 64

/* ---- the switch ---------------------------------------------------------- */

#ifdef TASK_UCONTEXT
/* The C library's way (make SWITCH=ucontext): portable, but
 * swapcontext() saves and restores the signal mask too, with a system
 * call (rt_sigprocmask) on every switch. */
struct context {
    ucontext_t uc;
};

static void context_make(struct context *c, char *low, size_t size, void (*entry)(void))
{
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = low;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = NULL;
    makecontext(&c->uc, entry, 0);
}

static void context_switch(struct context *from, struct context *to)
{
    swapcontext(&from->uc, &to->uc);
}

#elif defined(__x86_64__)
/* Ours: a context is a stack pointer. switch_stacks(&from, to) pushes the
 * registers the x86-64 calling convention says a function must preserve
 * (rbp, rbx, r12-r15) on the current stack, saves the stack pointer in
 * FROM, loads TO, pops the same registers off that stack, and returns -
 * to wherever that stack's owner called switch_stacks(). Everything else
 * is the caller's to save, and the compiler has already done so around
 * this call, as around any call. (The x87 and SSE control words are
 * callee-saved too; nothing here changes them, so nothing saves them.)
 * No signal mask, no system call. */
struct context {
    void *sp;
};

void switch_stacks(void **from, void *to);
__asm__(".pushsection .text\n"
        ".globl switch_stacks\n"
        ".hidden switch_stacks\n"
        ".type switch_stacks, @function\n"
        "switch_stacks:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size switch_stacks, .-switch_stacks\n"
        ".popsection\n");

/* A new stack, made to look as if ENTRY's caller had called
 * switch_stacks() on it: six registers to pop (zeros), then the address
 * to "return" to, ENTRY. Above that, a zero in place of ENTRY's own return
 * address (it never returns), placed so that ENTRY starts with the stack
 * aligned as the convention says a function does. */
static void context_make(struct context *c, char *low, size_t size, void (*entry)(void))
{
    uintptr_t top = ((uintptr_t)low + size) & ~(uintptr_t)15;
    void **sp = (void **)top - 8;
    memset(sp, 0, 8 * sizeof *sp);
    sp[6] = (void *)entry;
    c->sp = sp;
}

static void context_switch(struct context *from, struct context *to)
{
    switch_stacks(&from->sp, to->sp);
}

#else
#error "no stack switch for this machine: build with make SWITCH=ucontext"
#endif

/* ---- tasks -------------------------------------------------------------- */

struct task {
    struct context ctx;         /* saved while it is not running */
    struct soon resume;         /* queued: it runs on the loop's next turn */
    struct timer timer;         /* its timeout, or its sleep */
    void (*fn)(void *arg);
    void *arg;
    char *map;                  /* the mapping: guard, stack, this struct */
    unsigned stack_id;          /* valgrind's name for the stack */
    void *asan_fake_stack;
    int suspended;              /* in task_suspend() */
    int wake_error;             /* why it was woken: 0, ETIMEDOUT, ECANCELED */
    int cancelled, done;
    int budget;                 /* calls left before task_spent() yields */
    struct task *prev, *next;   /* every task alive */
};

static struct {
    struct loop *loop;
    size_t map_size;            /* of each task's mapping */
    size_t page;
    struct context main;        /* the loop's context, while a task runs */
    const void *main_low;       /* the loop's stack, for AddressSanitizer */
    size_t main_size;
    void *main_fake_stack;
    struct task *current;
    struct task *first;
    size_t alive;
    struct task *spare;         /* mappings kept for the next tasks */
    size_t spares;
} sched;

void tasks_init(struct loop *l, size_t stack_size)
{
    sched.loop = l;
    sched.page = (size_t)sysconf(_SC_PAGESIZE);
    if (stack_size < TASK_STACK_MIN)
        stack_size = TASK_STACK_MIN;
    /* Guard + stack + the struct task, in whole pages. */
    size_t size = GUARD_SIZE + stack_size + sizeof(struct task);
    sched.map_size = (size + sched.page - 1) / sched.page * sched.page;
}

struct task *task_self(void)
{
    return sched.current;
}

size_t tasks_alive(void)
{
    return sched.alive;
}

/* The usable stack of T's mapping: above the guard, below T. */
static char *stack_low(const struct task *t)
{
    return t->map + GUARD_SIZE;
}

static size_t stack_size(const struct task *t)
{
    return (size_t)((const char *)t - stack_low(t));
}

/* A mapping for a new task: a spare one, or a new one whose lowest
 * GUARD_SIZE bytes are the guard. Returns the struct task at its top, or NULL (errno). */
static struct task *new_mapping(void)
{
    if (sched.spare != NULL) {
        struct task *t = sched.spare;
        sched.spare = t->next;
        sched.spares--;
        return t;
    }
    /* MAP_NORESERVE: count none of it against the memory the kernel has
     * promised; pages become real as the task touches them. */
    char *map = mmap(NULL, sched.map_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED)
        return NULL;
    if (mprotect(map, GUARD_SIZE, PROT_NONE) < 0) {
        int err = errno;
        munmap(map, sched.map_size);
        errno = err;
        return NULL;
    }
    struct task *t = (struct task *)(map + sched.map_size) - 1;
    t->map = map;
    return t;
}

/* A task's mapping back: kept as a spare, or unmapped. */
static void free_mapping(struct task *t)
{
    if (sched.spares < SPARE_STACKS) {
        t->next = sched.spare;
        sched.spare = t;
        sched.spares++;
        return;
    }
    munmap(t->map, sched.map_size);
}

/* Leave the running task for the loop. */
static void switch_to_loop(struct task *t)
{
    ASAN_START(t->done ? NULL : &t->asan_fake_stack, sched.main_low, sched.main_size);
    context_switch(&t->ctx, &sched.main);
    ASAN_FINISH(t->asan_fake_stack, &sched.main_low, &sched.main_size);
}

/* Where every task starts, on its own stack: run its function, then leave
 * for good. The loop frees the stack (not the task itself: it is on it). */
static void task_main(void)
{
    struct task *t = sched.current;

    ASAN_FINISH(NULL, &sched.main_low, &sched.main_size);
    t->fn(t->arg);
    t->done = 1;
    switch_to_loop(t);
    abort();                    /* never resumed */
}

/* The loop's side: run T until it suspends or returns. */
static void resume(struct soon *s)
{
    struct task *t = container_of(s, struct task, resume);

    sched.current = t;
    ASAN_START(&sched.main_fake_stack, stack_low(t), stack_size(t));
    context_switch(&sched.main, &t->ctx);
    ASAN_FINISH(sched.main_fake_stack, NULL, NULL);
    sched.current = NULL;
    if (!t->done)
        return;
    /* It has returned: out of the list, its stack back. */
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        sched.first = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    VALGRIND_STACK_DEREGISTER(t->stack_id);
    free_mapping(t);
    if (--sched.alive == 0)
        loop_stop(sched.loop);
}

/* T's timer fired: its wait is over, with ETIMEDOUT. */
static void wake_timed_out(struct timer *timer)
{
    struct task *t = container_of(timer, struct task, timer);
    if (t->suspended && !t->resume.queued) {
        t->wake_error = ETIMEDOUT;
        loop_soon(sched.loop, &t->resume);
    }
}

struct task *task_spawn(void (*fn)(void *arg), void *arg)
{
    struct task *t = new_mapping();
    if (t == NULL)
        return NULL;
    char *map = t->map;
    memset(t, 0, sizeof *t);
    t->map = map;
    t->fn = fn;
    t->arg = arg;
    t->budget = TASK_BUDGET;
    t->resume.run = resume;
    t->timer.fire = wake_timed_out;
    t->stack_id = VALGRIND_STACK_REGISTER(stack_low(t), (char *)t - 1);
    context_make(&t->ctx, stack_low(t), stack_size(t), task_main);
    t->next = sched.first;
    if (sched.first != NULL)
        sched.first->prev = t;
    sched.first = t;
    sched.alive++;
    loop_soon(sched.loop, &t->resume);
    return t;
}

int tasks_run(void)
{
    if (sched.alive == 0)
        return 0;
    return loop_run(sched.loop);
}

void tasks_finish(void)
{
    while (sched.spare != NULL) {
        struct task *t = sched.spare;
        sched.spare = t->next;
        munmap(t->map, sched.map_size);
    }
    sched.spares = 0;
}

/* ---- suspending and waking ------------------------------------------------ */

int task_suspend(long long timeout)
{
    struct task *t = sched.current;

    if (t->cancelled) {
        errno = ECANCELED;
        return -1;
    }
    if (timeout > 0 && timer_start(sched.loop, &t->timer, loop_now(sched.loop) + timeout) < 0)
        return -1;
    t->suspended = 1;
    t->wake_error = 0;
    switch_to_loop(t);
    t->suspended = 0;
    t->budget = t->cancelled ? 0 : TASK_BUDGET;     /* see task_spent() */
    timer_stop(sched.loop, &t->timer);
    /* Cancelled while a wake-up was queued already: cancelled all the same. */
    if (t->cancelled)
        t->wake_error = ECANCELED;
    if (t->wake_error == 0)
        return 0;
    errno = t->wake_error;
    return -1;
}

void task_wake(struct task *t)
{
    /* Not suspended: nothing to wake. Queued already: woken already
     * (the first reason wins). */
    if (t->suspended && !t->resume.queued) {
        t->wake_error = 0;
        loop_soon(sched.loop, &t->resume);
    }
}

void task_cancel(struct task *t)
{
    if (t->cancelled)
        return;
    t->cancelled = 1;
    t->budget = 0;              /* its next task_spent() looks */
    if (t->suspended && !t->resume.queued) {
        t->wake_error = ECANCELED;
        loop_soon(sched.loop, &t->resume);
    }
}

void tasks_cancel_all(void)
{
    for (struct task *t = sched.first; t != NULL; t = t->next)
        if (t != sched.current)
            task_cancel(t);
}

int task_yield(void)
{
    struct task *t = sched.current;

    if (t->cancelled) {
        errno = ECANCELED;
        return -1;
    }
    /* Queued behind every task ready now, and run after the loop has
     * looked for events again: see loop.c. */
    loop_soon(sched.loop, &t->resume);
    return task_suspend(0);
}

int task_sleep(long long ms)
{
    if (ms <= 0)
        return task_yield();
    /* Until the time is up: a task_wake() meant for some other wait of
     * ours does not cut the sleep short. */
    long long until = loop_now(sched.loop) + ms;
    while (loop_now(sched.loop) < until)
        if (task_suspend(until - loop_now(sched.loop)) < 0 && errno != ETIMEDOUT)
            return -1;
    return 0;
}

/* Called before every I/O call, so kept to a decrement and a test: a
 * cancelled task's budget is 0, so the test sends it the slow way too. */
int task_spent(void)
{
    struct task *t = sched.current;

    if (--t->budget > 0)
        return 0;
    if (t->cancelled) {
        errno = ECANCELED;
        return -1;
    }
    return task_yield();
}
