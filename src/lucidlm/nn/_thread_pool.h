/*
 * A tiny pool of helper threads for _decode_kernel.c: run_parts(fn, ctx, parts) calls
 * fn(ctx, 0 .. parts-1, parts), part 0 on the calling thread and the others on helpers, and
 * returns when all are done. How the work is split must not change the result (it does not in
 * _decode_kernel.c: each part computes whole output values).
 *
 * Why: a one-token step is a few hundred calls of 0.02-5 ms each (SmolLM2-135M: 121 weight
 * matrices). Two cores stream weights ~1.3x faster than one and compute a batch of rows ~1.9x
 * faster (measured), but only if handing work to the other core costs microseconds, not the tens
 * of microseconds of waking a sleeping thread. So a helper that has finished spins for a while
 * (SPIN_NS) watching for the next task before it goes to sleep: during decoding the next call
 * comes within that time and starts at once; between generations the helpers sleep.
 *
 * The rules that keep it simple and safe:
 * - one task at a time: a caller that finds the pool busy (another Python thread is decoding)
 *   runs all parts itself, so results never depend on it;
 * - every started helper takes part in every task (those beyond ``parts`` just acknowledge it),
 *   so a task's fields never change while a helper may still read them;
 * - after fork() the child has no helpers (only the forking thread survives): an atfork handler
 *   forgets them and the next task starts new ones.
 */
#ifndef LUCIDLM_THREAD_POOL_H
#define LUCIDLM_THREAD_POOL_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define MAX_THREADS 64
#define SPIN_NS 300000 /* 0.3 ms: longer than the gap between two calls of one decoding step */

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

typedef void (*part_fn)(void *ctx, int part, int parts);

static struct {
    pthread_mutex_t busy;  /* held by the thread running a task */
    pthread_mutex_t lock;  /* with `wake`: where idle helpers sleep */
    pthread_cond_t wake;
    int started;           /* helpers running: they are parts 1 .. started */
    atomic_ulong task;     /* bumped to publish a task */
    atomic_int pending;    /* helpers that have not finished the current task */
    atomic_int sleeping;   /* helpers waiting on `wake` */
    part_fn fn;            /* the current task */
    void *ctx;
    int parts;
    unsigned long task_at_start[MAX_THREADS]; /* see helper_main */
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void *helper_main(void *arg) {
    int me = (int)(intptr_t)arg; /* this helper's part number: 1, 2, ... */
    /* The task count before the task it was started for: that task may be published before
     * this thread first runs, and must not be missed. */
    unsigned long seen = pool.task_at_start[me];
    for (;;) {
        /* wait for a new task: spin first, then sleep */
        int64_t spin_until = now_ns() + SPIN_NS;
        for (unsigned i = 1; atomic_load(&pool.task) == seen; i++) {
            if (i % 1024 == 0 && now_ns() <= spin_until) {
                sched_yield(); /* a thread waiting for this core (more threads than cores) goes first */
            } else if (i % 1024 == 0) {
                pthread_mutex_lock(&pool.lock);
                atomic_fetch_add(&pool.sleeping, 1);
                while (atomic_load(&pool.task) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
                atomic_fetch_sub(&pool.sleeping, 1);
                pthread_mutex_unlock(&pool.lock);
                break;
            }
            CPU_RELAX();
        }
        seen = atomic_load(&pool.task);
        if (me < pool.parts) pool.fn(pool.ctx, me, pool.parts);
        atomic_fetch_sub(&pool.pending, 1); /* after this the caller may publish the next task */
    }
    return NULL;
}

static void pool_forget_after_fork(void) {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    pool.busy = m, pool.lock = m, pool.wake = c;
    pool.started = 0;
    atomic_store(&pool.pending, 0);
    atomic_store(&pool.sleeping, 0);
}

/* Runs fn(ctx, p, parts) for p = 0 .. parts-1, spread over up to `parts` threads. */
static void run_parts(part_fn fn, void *ctx, int parts) {
    if (parts > MAX_THREADS) parts = MAX_THREADS;
    if (parts <= 1 || pthread_mutex_trylock(&pool.busy) != 0) {
        for (int p = 0; p < (parts < 1 ? 1 : parts); p++) fn(ctx, p, parts < 1 ? 1 : parts);
        return;
    }
    while (pool.started < parts - 1) { /* start the helpers this task needs (they then stay) */
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pool.task_at_start[pool.started + 1] = atomic_load(&pool.task);
        int failed = pthread_create(&t, &attr, helper_main, (void *)(intptr_t)(pool.started + 1));
        pthread_attr_destroy(&attr);
        if (failed) break; /* no more threads: fewer helpers, same results */
        pool.started++;
    }
    if (parts > pool.started + 1) parts = pool.started + 1; /* a helper failed to start: fewer parts */
    pool.fn = fn, pool.ctx = ctx, pool.parts = parts;
    atomic_store(&pool.pending, pool.started);
    atomic_fetch_add(&pool.task, 1); /* publish: helpers read fn/ctx/parts after seeing this */
    if (atomic_load(&pool.sleeping) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    fn(ctx, 0, parts);
    /* wait for the helpers; yield now and then in case they share this core (more threads than
     * cores: then spinning here would only take the core from the helper it waits for) */
    for (unsigned i = 1; atomic_load(&pool.pending) > 0; i++) {
        if (i % 256 == 0) sched_yield();
        else CPU_RELAX();
    }
    pthread_mutex_unlock(&pool.busy);
}

static void pool_init(void) { pthread_atfork(NULL, NULL, pool_forget_after_fork); }

#endif
