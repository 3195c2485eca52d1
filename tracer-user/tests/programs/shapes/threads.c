/* shape-threads: the population shapes leakscope's verdict must tell apart, as
 * threads blocked in futex waits (pthread mutex, condvar, rwlock, raw futex) and
 * in other system calls (read, accept, waitpid, epoll_wait, nanosleep).
 *
 *   shape-threads MODE [--PARAM VALUE]... [-v]
 *
 * One binary serves every case of `cargo xtask accuracy`: the mode picks the
 * shape, the parameters its size and rate. Each waiting role blocks in a
 * distinctively named noinline function, so the stack leakscope reports names
 * the site. Leak modes (the population grows without bound):
 *
 *   fast-leak       --rate 20 --max 4000   threads/s stuck in leak_fast_never_signalled
 *                                          (condvar nobody signals), at most --max
 *   busy-pool-slow-leak --workers 1000 --wakes 400 --interval 2
 *                   a pool of --workers threads in busy_pool_wait_for_job, woken
 *                   --wakes times per second in total (one job each, re-park at
 *                   once), plus one new thread every --interval s stuck in
 *                   leak_slow_stuck_on_lock (a mutex held forever)
 *   very-slow-leak  --interval 10          one thread every --interval s (the first
 *                                          at start) in leak_very_slow_futex (raw
 *                                          FUTEX_WAIT on a word nobody changes)
 *   multi-site-leak --rate 1               three sites: leak_multi_condvar (2x rate),
 *                                          leak_multi_mutex (1x), leak_multi_rwlock (0.5x)
 *
 * Steady modes (no leak):
 *
 *   idle-pool       --workers 32 --rate 2  fixed pool in idle_pool_wait_for_job, --rate
 *                                          jobs/s
 *   plateau         --target 200 --grow 10 --rate 2
 *                                          a connection pool filled evenly over the first
 *                                          --grow s up to --target threads, then fixed;
 *                                          idle connections wait in plateau_conn_idle and
 *                                          serve --rate jobs/s
 *   sawtooth        --wave 4 --burst 100   waves: --burst short-lived threads arrive
 *                                          evenly over the first 3/4 of each --wave s and
 *                                          wait in sawtooth_wait_for_flush; a flush at
 *                                          3/4 releases them all (they exit); quiet until
 *                                          the next wave
 *   ramp            --start-rate 10 --end-rate 300 --ramp 25 --min-ms 100 --max-ms 300
 *                                          one thread per request, the rate rising
 *                                          linearly over --ramp s then held; each waits
 *                                          --min-ms..--max-ms for its response in
 *                                          ramp_wait_for_response and exits
 *   sleepers        --workers 200 --min-ms 500 --max-ms 5000
 *                                          threads looping timed condvar waits (futex
 *                                          waits, unlike nanosleep) in sleeper_timed_wait,
 *                                          each with its own period in the range
 *   long-lived      --workers 200          threads blocked from the start, forever, in
 *                                          long_lived_wait_for_shutdown; constant count
 *   conn-server     --keepalive 32 --rate 20 --idle-min-ms 500 --idle-max-ms 3000
 *                   --leak-every 0
 *                                          a thread-per-connection TCP server on loopback
 *                                          (conn_accept in accept4, one thread per
 *                                          connection reading requests in
 *                                          conn_read_request) and its clients in the same
 *                                          process: --keepalive connections sending a
 *                                          request every --idle-min-ms..--idle-max-ms, and
 *                                          --rate short connections/s (one request each).
 *                                          With --leak-every N (a leak mode, then), every
 *                                          Nth short client connects and never sends its
 *                                          request: its server thread waits forever
 *   epoll-loop      --loops 4 --rate 200   event loops, each in event_loop_wait
 *                                          (epoll_wait, no timeout) on its eventfd,
 *                                          woken --rate times/s each
 *   nanosleepers    --workers 100 --min-ms 200 --max-ms 3000
 *                                          periodic jobs sleeping in nanosleep between
 *                                          runs (periodic_nanosleep), each its own period
 *   worker-pool     --workers 16 --jobs 400 --spawn-rate 0 --spawn-life-min 0
 *                   --spawn-life-max 0 --max 100000
 *                                          worker pools as libraries build them, each
 *                                          with its own queue, workers waiting for jobs
 *                                          in pool_take_job: one long-lived pool of
 *                                          --workers serving --jobs jobs/s (busy: each
 *                                          worker waits moments at a time), and
 *                                          --spawn-rate requests/s, each making a pool of
 *                                          one worker for its one job and shutting it down
 *                                          after --spawn-life-min..--spawn-life-max s
 *                                          (the pools alive at start are already
 *                                          --spawn-rate x the mean life: a bounded crowd
 *                                          of idle workers that rotates). With no
 *                                          --spawn-life (a leak mode, then) a request
 *                                          forgets its pool: its worker waits in
 *                                          pool_take_job forever, where the live workers
 *                                          wait, at most --max of them
 *
 * Leak modes in other system calls, --rate threads/s (default 4), at most --max:
 *
 *   read-leak       each thread reads a socketpair whose peer never writes, in
 *                   leak_read_reply_never_sent
 *   accept-leak     each thread accepts on its own loopback listener nobody connects
 *                   to, in leak_accept_no_client
 *   waitpid-leak    each thread forks a child that pauses until this process dies and
 *                   waits for it in leak_waitpid_child_never_exits
 *
 * -v prints, once a second on stderr, how many threads wait in each role.
 * Thread stacks are 64 KiB so thousands of threads stay cheap. Timers use
 * nanosleep: the driving threads are waiters too (in nanosleep), steady ones.
 *
 * Build: cc -O2 -g -fno-omit-frame-pointer -fno-optimize-sibling-calls -pthread
 * (no sibling calls: a tail call would drop the named site's frame).
 * Runs until killed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define THREAD_STACK_BYTES (64 * 1024)

/* ---- parameters ------------------------------------------------------------ */

static int g_argc;
static char **g_argv;
static bool *g_used;
static bool g_verbose;

/* The value of --NAME, or `def` when absent. Marks the argument consumed. */
static double param(const char *name, double def) {
    for (int i = 2; i + 1 < g_argc; i++) {
        const char *arg = g_argv[i];
        if (arg[0] == '-' && arg[1] == '-' && strcmp(arg + 2, name) == 0) {
            char *end;
            double value = strtod(g_argv[i + 1], &end);
            if (*end != '\0' || end == g_argv[i + 1]) {
                fprintf(stderr, "shape-threads: --%s: not a number: %s\n", name, g_argv[i + 1]);
                exit(2);
            }
            g_used[i] = g_used[i + 1] = true;
            return value;
        }
    }
    return def;
}

/* Fails on any argument no param() call consumed: a typo must not silently
 * leave a case with its default shape. */
static void check_all_args_used(void) {
    for (int i = 2; i < g_argc; i++) {
        if (!g_used[i]) {
            fprintf(stderr, "shape-threads: unknown or misplaced argument: %s\n", g_argv[i]);
            exit(2);
        }
    }
}

/* ---- helpers --------------------------------------------------------------- */

static pthread_attr_t small_attr;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Sleeps without a futex wait (nanosleep): timing threads are steady nanosleep waiters. */
static void sleep_s(double seconds) {
    if (seconds <= 0)
        return;
    struct timespec ts = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static bool spawn(void *(*fn)(void *), void *arg) {
    pthread_t thread;
    int err = pthread_create(&thread, &small_attr, fn, arg);
    if (err != 0) {
        fprintf(stderr, "shape-threads: pthread_create: %s\n", strerror(err));
        return false;
    }
    return true;
}

/* Per-thread random numbers (xorshift), seeded from the thread's address. */
static uint64_t rng_next(uint64_t *state) {
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

static double rng_range(uint64_t *state, double lo, double hi) {
    return lo + (hi - lo) * (double)(rng_next(state) >> 11) / (double)(1ULL << 53);
}

/* A deadline `ms` from now on CLOCK_MONOTONIC, for condvars set to that clock. */
static struct timespec deadline_in_ms(double ms) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long ns = ts.tv_nsec + (long long)(ms * 1e6);
    ts.tv_sec += ns / 1000000000LL;
    ts.tv_nsec = ns % 1000000000LL;
    return ts;
}

static void monotonic_cond_init(pthread_cond_t *cond) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

static volatile unsigned long work_sink;

/* A few microseconds of work, so a woken thread is briefly off the futex. */
static void do_job(unsigned long job) {
    for (unsigned long i = 0; i < 2000; i++)
        work_sink += job ^ i;
}

/* ---- waiter counts for -v ---------------------------------------------------- */

#define MAX_ROLES 4
static const char *role_names[MAX_ROLES];
static atomic_int role_waiting[MAX_ROLES];
static int roles;

static int add_role(const char *name) {
    role_names[roles] = name;
    return roles++;
}

static void *reporter(void *arg) {
    (void)arg;
    double start = now_s();
    for (;;) {
        sleep_s(1.0);
        fprintf(stderr, "t=%.0f", now_s() - start);
        for (int r = 0; r < roles; r++)
            fprintf(stderr, " %s=%d", role_names[r], atomic_load(&role_waiting[r]));
        fprintf(stderr, "\n");
    }
    return NULL;
}

#define WAITING(role, ...)                                                                        \
    do {                                                                                           \
        atomic_fetch_add(&role_waiting[role], 1);                                                  \
        __VA_ARGS__;                                                                               \
        atomic_fetch_sub(&role_waiting[role], 1);                                                  \
    } while (0)

/* Keeps a call from being the last thing in a function (belt and braces with
 * -fno-optimize-sibling-calls): the named frame must stay on the stack. */
#define NO_TAIL_CALL() __asm__ volatile("" ::: "memory")

/* A job queue: a counter of pending jobs under a mutex, workers wait on a condvar. */
struct queue {
    pthread_mutex_t mutex;
    pthread_cond_t not_empty;
    unsigned long pending;
};

#define QUEUE_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0}

static void queue_push(struct queue *q, unsigned jobs) {
    pthread_mutex_lock(&q->mutex);
    for (unsigned i = 0; i < jobs; i++) {
        q->pending++;
        pthread_cond_signal(&q->not_empty);
    }
    pthread_mutex_unlock(&q->mutex);
}

/* Hands `rate` jobs per second to `push(target, jobs)`, forever: in ticks of 10 ms, the
 * fraction carried over, so any rate works. */
static void feed_forever(void (*push)(void *, unsigned), void *target, double rate) {
    const double tick = 0.01;
    double owed = 0, next = now_s();
    for (;;) {
        owed += rate * tick;
        unsigned jobs = (unsigned)owed;
        owed -= jobs;
        if (jobs > 0)
            push(target, jobs);
        next += tick;
        sleep_s(next - now_s());
    }
}

/* ---- fast-leak -------------------------------------------------------------------- */

static pthread_mutex_t never_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never_cond = PTHREAD_COND_INITIALIZER;
static bool never_set = false; /* guarded by never_mutex; nothing sets it */
static int role_leak;

__attribute__((noinline)) void leak_fast_never_signalled(void) {
    pthread_mutex_lock(&never_mutex);
    while (!never_set)
        pthread_cond_wait(&never_cond, &never_mutex);
    pthread_mutex_unlock(&never_mutex);
    NO_TAIL_CALL();
}

static void *fast_leaker(void *arg) {
    (void)arg;
    WAITING(role_leak, leak_fast_never_signalled());
    return NULL;
}

/* Spawns `fn` threads at `rate` per second (evenly, the first at once), at
 * most `max`, forever. */
static void spawn_at_rate(void *(*fn)(void *), double rate, long max) {
    double start = now_s();
    for (long tick = 1, spawned = 0;; tick++) {
        if (spawn(fn, NULL) && ++spawned == max) {
            fprintf(stderr, "shape-threads: reached --max %ld, no more spawns\n", max);
            for (;;)
                sleep_s(3600);
        }
        /* Paced from the start, so the rate does not drift with spawn costs. */
        sleep_s(start + tick / rate - now_s());
    }
}

static void run_fast_leak(void) {
    double rate = param("rate", 20);
    long max = (long)param("max", 4000);
    check_all_args_used();
    role_leak = add_role("leak_fast_never_signalled");
    if (g_verbose)
        spawn(reporter, NULL);
    spawn_at_rate(fast_leaker, rate, max);
}

/* ---- busy-pool-slow-leak ---------------------------------------------------------- */

static struct queue busy_queue = QUEUE_INIT;
static pthread_mutex_t held_forever = PTHREAD_MUTEX_INITIALIZER;
static int role_pool;

__attribute__((noinline)) unsigned long busy_pool_wait_for_job(void) {
    pthread_mutex_lock(&busy_queue.mutex);
    while (busy_queue.pending == 0)
        pthread_cond_wait(&busy_queue.not_empty, &busy_queue.mutex);
    unsigned long job = busy_queue.pending--;
    pthread_mutex_unlock(&busy_queue.mutex);
    return job;
}

static void *busy_worker(void *arg) {
    (void)arg;
    for (;;) {
        unsigned long job;
        WAITING(role_pool, job = busy_pool_wait_for_job());
        do_job(job);
    }
    return NULL;
}

/* The mutex's holder (main) never unlocks it: every caller blocks forever. */
__attribute__((noinline)) void leak_slow_stuck_on_lock(void) {
    pthread_mutex_lock(&held_forever);
    NO_TAIL_CALL();
    pthread_mutex_unlock(&held_forever);
}

static void *slow_leaker(void *arg) {
    (void)arg;
    WAITING(role_leak, leak_slow_stuck_on_lock());
    return NULL;
}

struct leak_pace {
    void *(*fn)(void *);
    double rate;
    /* Seconds before the first spawn. */
    double delay;
};

static void *pace_thread(void *arg) {
    struct leak_pace *pace = arg;
    sleep_s(pace->delay);
    spawn_at_rate(pace->fn, pace->rate, 1000000);
    return NULL;
}

static void push_busy_queue(void *q, unsigned jobs) {
    queue_push(q, jobs);
}

static void run_busy_pool_slow_leak(void) {
    int workers = (int)param("workers", 1000);
    double wakes = param("wakes", 400);
    double interval = param("interval", 2);
    check_all_args_used();
    role_pool = add_role("busy_pool_wait_for_job");
    role_leak = add_role("leak_slow_stuck_on_lock");
    pthread_mutex_lock(&held_forever);
    for (int i = 0; i < workers; i++)
        spawn(busy_worker, NULL);
    static struct leak_pace pace;
    /* The first leak comes one interval after start, not at once. */
    pace = (struct leak_pace){slow_leaker, 1.0 / interval, interval};
    spawn(pace_thread, &pace);
    if (g_verbose)
        spawn(reporter, NULL);
    feed_forever(push_busy_queue, &busy_queue, wakes);
}

/* ---- very-slow-leak ---------------------------------------------------------------- */

static uint32_t futex_word = 0; /* nothing ever changes it or wakes it */

__attribute__((noinline)) void leak_very_slow_futex(void) {
    while (__atomic_load_n(&futex_word, __ATOMIC_ACQUIRE) == 0)
        syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    NO_TAIL_CALL();
}

static void *very_slow_leaker(void *arg) {
    (void)arg;
    WAITING(role_leak, leak_very_slow_futex());
    return NULL;
}

static void run_very_slow_leak(void) {
    double interval = param("interval", 10);
    check_all_args_used();
    role_leak = add_role("leak_very_slow_futex");
    if (g_verbose)
        spawn(reporter, NULL);
    spawn_at_rate(very_slow_leaker, 1.0 / interval, 1000000);
}

/* ---- multi-site-leak ------------------------------------------------------------------ */

static pthread_mutex_t multi_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t multi_rwlock = PTHREAD_RWLOCK_INITIALIZER;
static int role_multi[3];

__attribute__((noinline)) void leak_multi_condvar(void) {
    pthread_mutex_lock(&never_mutex);
    while (!never_set)
        pthread_cond_wait(&never_cond, &never_mutex);
    pthread_mutex_unlock(&never_mutex);
    NO_TAIL_CALL();
}

__attribute__((noinline)) void leak_multi_mutex(void) {
    pthread_mutex_lock(&multi_mutex);
    NO_TAIL_CALL();
    pthread_mutex_unlock(&multi_mutex);
}

/* Readers block: main holds the write lock forever. */
__attribute__((noinline)) void leak_multi_rwlock(void) {
    pthread_rwlock_rdlock(&multi_rwlock);
    NO_TAIL_CALL();
    pthread_rwlock_unlock(&multi_rwlock);
}

static void *multi_condvar_leaker(void *arg) {
    (void)arg;
    WAITING(role_multi[0], leak_multi_condvar());
    return NULL;
}

static void *multi_mutex_leaker(void *arg) {
    (void)arg;
    WAITING(role_multi[1], leak_multi_mutex());
    return NULL;
}

static void *multi_rwlock_leaker(void *arg) {
    (void)arg;
    WAITING(role_multi[2], leak_multi_rwlock());
    return NULL;
}

static void run_multi_site_leak(void) {
    double rate = param("rate", 1);
    check_all_args_used();
    role_multi[0] = add_role("leak_multi_condvar");
    role_multi[1] = add_role("leak_multi_mutex");
    role_multi[2] = add_role("leak_multi_rwlock");
    pthread_mutex_lock(&multi_mutex);
    pthread_rwlock_wrlock(&multi_rwlock);
    static struct leak_pace paces[3];
    paces[0] = (struct leak_pace){multi_condvar_leaker, 2 * rate, 0};
    paces[1] = (struct leak_pace){multi_mutex_leaker, rate, 0};
    paces[2] = (struct leak_pace){multi_rwlock_leaker, rate / 2, 0};
    for (int i = 0; i < 3; i++)
        spawn(pace_thread, &paces[i]);
    if (g_verbose)
        spawn(reporter, NULL);
    for (;;)
        sleep_s(3600);
}

/* ---- idle-pool --------------------------------------------------------------------------- */

static struct queue idle_queue = QUEUE_INIT;

__attribute__((noinline)) unsigned long idle_pool_wait_for_job(void) {
    pthread_mutex_lock(&idle_queue.mutex);
    while (idle_queue.pending == 0)
        pthread_cond_wait(&idle_queue.not_empty, &idle_queue.mutex);
    unsigned long job = idle_queue.pending--;
    pthread_mutex_unlock(&idle_queue.mutex);
    return job;
}

static void *idle_worker(void *arg) {
    (void)arg;
    for (;;) {
        unsigned long job;
        WAITING(role_pool, job = idle_pool_wait_for_job());
        do_job(job);
    }
    return NULL;
}

/* Pushes `rate` jobs per second onto `q` forever (rate 0: never). */
static void feed_jobs(struct queue *q, double rate) {
    if (rate <= 0)
        for (;;)
            sleep_s(3600);
    for (double next = now_s();;) {
        next += 1.0 / rate;
        sleep_s(next - now_s());
        queue_push(q, 1);
    }
}

static void run_idle_pool(void) {
    int workers = (int)param("workers", 32);
    double rate = param("rate", 2);
    check_all_args_used();
    role_pool = add_role("idle_pool_wait_for_job");
    for (int i = 0; i < workers; i++)
        spawn(idle_worker, NULL);
    if (g_verbose)
        spawn(reporter, NULL);
    feed_jobs(&idle_queue, rate);
}

/* ---- plateau ------------------------------------------------------------------------------ */

static struct queue conn_queue = QUEUE_INIT;

__attribute__((noinline)) unsigned long plateau_conn_idle(void) {
    pthread_mutex_lock(&conn_queue.mutex);
    while (conn_queue.pending == 0)
        pthread_cond_wait(&conn_queue.not_empty, &conn_queue.mutex);
    unsigned long job = conn_queue.pending--;
    pthread_mutex_unlock(&conn_queue.mutex);
    return job;
}

static void *conn_worker(void *arg) {
    (void)arg;
    for (;;) {
        unsigned long job;
        WAITING(role_pool, job = plateau_conn_idle());
        do_job(job);
    }
    return NULL;
}

struct feeder {
    struct queue *queue;
    double rate;
};

static void *feeder_thread(void *arg) {
    struct feeder *f = arg;
    feed_jobs(f->queue, f->rate);
    return NULL;
}

static void run_plateau(void) {
    int target = (int)param("target", 200);
    double grow = param("grow", 10);
    double rate = param("rate", 2);
    check_all_args_used();
    role_pool = add_role("plateau_conn_idle");
    if (g_verbose)
        spawn(reporter, NULL);
    static struct feeder feeder;
    feeder = (struct feeder){&conn_queue, rate};
    spawn(feeder_thread, &feeder);
    /* Evenly over `grow` seconds, the first at once. */
    double start = now_s();
    for (int i = 0; i < target; i++) {
        sleep_s(start + grow * i / target - now_s());
        spawn(conn_worker, NULL);
    }
    fprintf(stderr, "shape-threads: plateau reached %d threads after %.1f s\n", target,
            now_s() - start);
    for (;;)
        sleep_s(3600);
}

/* ---- sawtooth ----------------------------------------------------------------------------- */

static pthread_mutex_t wave_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wave_flushed = PTHREAD_COND_INITIALIZER;
static unsigned long wave_generation; /* guarded by wave_mutex */

__attribute__((noinline)) void sawtooth_wait_for_flush(void) {
    pthread_mutex_lock(&wave_mutex);
    unsigned long mine = wave_generation;
    while (wave_generation == mine)
        pthread_cond_wait(&wave_flushed, &wave_mutex);
    pthread_mutex_unlock(&wave_mutex);
    NO_TAIL_CALL();
}

static void *wave_member(void *arg) {
    (void)arg;
    WAITING(role_pool, sawtooth_wait_for_flush());
    return NULL;
}

static void run_sawtooth(void) {
    double wave = param("wave", 4);
    int burst = (int)param("burst", 100);
    check_all_args_used();
    role_pool = add_role("sawtooth_wait_for_flush");
    if (g_verbose)
        spawn(reporter, NULL);
    double rise = wave * 0.75;
    for (double wave_start = now_s();; wave_start += wave) {
        for (int i = 0; i < burst; i++) {
            sleep_s(wave_start + rise * i / burst - now_s());
            spawn(wave_member, NULL);
        }
        sleep_s(wave_start + rise - now_s());
        pthread_mutex_lock(&wave_mutex);
        wave_generation++;
        pthread_cond_broadcast(&wave_flushed);
        pthread_mutex_unlock(&wave_mutex);
        sleep_s(wave_start + wave - now_s());
    }
}

/* ---- ramp ------------------------------------------------------------------------------------ */

static pthread_mutex_t reply_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reply_cond; /* CLOCK_MONOTONIC; never signalled: replies come by time */
static double ramp_min_ms, ramp_max_ms;
static _Atomic uint64_t ramp_seed = 0x9e3779b97f4a7c15ULL;

/* Waits for the backend's reply, which takes `ms`. A timed futex wait. */
__attribute__((noinline)) void ramp_wait_for_response(double ms) {
    struct timespec deadline = deadline_in_ms(ms);
    pthread_mutex_lock(&reply_mutex);
    while (pthread_cond_timedwait(&reply_cond, &reply_mutex, &deadline) != ETIMEDOUT) {
    }
    pthread_mutex_unlock(&reply_mutex);
    NO_TAIL_CALL();
}

static void *request(void *arg) {
    (void)arg;
    uint64_t state = atomic_fetch_add(&ramp_seed, 0x9e3779b97f4a7c15ULL) | 1;
    double ms = rng_range(&state, ramp_min_ms, ramp_max_ms);
    WAITING(role_pool, ramp_wait_for_response(ms));
    return NULL;
}

static void run_ramp(void) {
    double start_rate = param("start-rate", 10);
    double end_rate = param("end-rate", 300);
    double ramp = param("ramp", 25);
    ramp_min_ms = param("min-ms", 100);
    ramp_max_ms = param("max-ms", 300);
    check_all_args_used();
    monotonic_cond_init(&reply_cond);
    role_pool = add_role("ramp_wait_for_response");
    if (g_verbose)
        spawn(reporter, NULL);
    const double tick = 0.01;
    double start = now_s(), next = start, owed = 0;
    bool announced = false;
    for (;;) {
        double t = now_s() - start;
        double rate = t >= ramp ? end_rate : start_rate + (end_rate - start_rate) * t / ramp;
        if (t >= ramp && !announced) {
            fprintf(stderr, "shape-threads: ramp reached %.0f requests/s\n", end_rate);
            announced = true;
        }
        owed += rate * tick;
        while (owed >= 1) {
            spawn(request, NULL);
            owed -= 1;
        }
        next += tick;
        sleep_s(next - now_s());
    }
}

/* ---- sleepers --------------------------------------------------------------------------------- */

static pthread_mutex_t sleep_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sleep_cond; /* CLOCK_MONOTONIC; never signalled */
static double sleep_min_ms, sleep_max_ms;

__attribute__((noinline)) void sleeper_timed_wait(double ms) {
    struct timespec deadline = deadline_in_ms(ms);
    pthread_mutex_lock(&sleep_mutex);
    while (pthread_cond_timedwait(&sleep_cond, &sleep_mutex, &deadline) != ETIMEDOUT) {
    }
    pthread_mutex_unlock(&sleep_mutex);
    NO_TAIL_CALL();
}

static void *sleeper(void *arg) {
    uint64_t state = (uintptr_t)arg * 0x9e3779b97f4a7c15ULL | 1;
    double period = rng_range(&state, sleep_min_ms, sleep_max_ms);
    /* The first wait is a random part of the period, so the sleepers do not
     * wake in step; one call site, so all waits are one site. */
    for (double ms = rng_range(&state, 0, period);; ms = period) {
        WAITING(role_pool, sleeper_timed_wait(ms));
        work_sink++;
    }
    return NULL;
}

static void run_sleepers(void) {
    int workers = (int)param("workers", 200);
    sleep_min_ms = param("min-ms", 500);
    sleep_max_ms = param("max-ms", 5000);
    check_all_args_used();
    monotonic_cond_init(&sleep_cond);
    role_pool = add_role("sleeper_timed_wait");
    for (int i = 0; i < workers; i++)
        spawn(sleeper, (void *)(uintptr_t)(i + 1));
    if (g_verbose)
        spawn(reporter, NULL);
    for (;;)
        sleep_s(3600);
}

/* ---- long-lived ---------------------------------------------------------------------------------- */

static pthread_mutex_t shutdown_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t shutdown_cond = PTHREAD_COND_INITIALIZER;
static bool shutting_down = false; /* guarded by shutdown_mutex; never set */

__attribute__((noinline)) void long_lived_wait_for_shutdown(void) {
    pthread_mutex_lock(&shutdown_mutex);
    while (!shutting_down)
        pthread_cond_wait(&shutdown_cond, &shutdown_mutex);
    pthread_mutex_unlock(&shutdown_mutex);
    NO_TAIL_CALL();
}

static void *long_lived(void *arg) {
    (void)arg;
    WAITING(role_pool, long_lived_wait_for_shutdown());
    return NULL;
}

static void run_long_lived(void) {
    int workers = (int)param("workers", 200);
    check_all_args_used();
    role_pool = add_role("long_lived_wait_for_shutdown");
    for (int i = 0; i < workers; i++)
        spawn(long_lived, NULL);
    if (g_verbose)
        spawn(reporter, NULL);
    for (;;)
        sleep_s(3600);
}

/* ---- syscall waits: shared ----------------------------------------------------------------- */

/* Each leaked connection or listener holds descriptors: allow the hard limit. */
static void raise_fd_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

/* A TCP listener on 127.0.0.1 and an ephemeral port; its address in `addr` if given. */
static int tcp_listener(struct sockaddr_in *addr) {
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof local;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&local, sizeof local) != 0 || listen(fd, 4096) != 0 ||
        getsockname(fd, (struct sockaddr *)&local, &len) != 0) {
        fprintf(stderr, "shape-threads: listener: %s\n", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (addr)
        *addr = local;
    return fd;
}

static int tcp_connect(const struct sockaddr_in *addr) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (const struct sockaddr *)addr, sizeof *addr) == 0)
        return fd;
    fprintf(stderr, "shape-threads: connect: %s\n", strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

/* The common leak driver: --rate threads/s running `fn`, at most --max. */
static void run_rate_leak(void *(*fn)(void *), const char *role, double default_rate) {
    double rate = param("rate", default_rate);
    long max = (long)param("max", 4000);
    check_all_args_used();
    raise_fd_limit();
    role_leak = add_role(role);
    if (g_verbose)
        spawn(reporter, NULL);
    spawn_at_rate(fn, rate, max);
}

/* ---- read-leak -------------------------------------------------------------------------------- */

/* The peer end of the socketpair stays open and silent: read never returns. */
__attribute__((noinline)) void leak_read_reply_never_sent(int fd) {
    char byte;
    while (read(fd, &byte, 1) < 0 && errno == EINTR) {
    }
    NO_TAIL_CALL();
}

static void *read_leaker(void *arg) {
    (void)arg;
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        fprintf(stderr, "shape-threads: socketpair: %s\n", strerror(errno));
        return NULL;
    }
    WAITING(role_leak, leak_read_reply_never_sent(pair[0]));
    return NULL;
}

static void run_read_leak(void) { run_rate_leak(read_leaker, "leak_read_reply_never_sent", 4); }

/* ---- accept-leak ------------------------------------------------------------------------------ */

/* Nobody ever connects to this listener. */
__attribute__((noinline)) void leak_accept_no_client(int listener) {
    while (accept(listener, NULL, NULL) < 0 && errno == EINTR) {
    }
    NO_TAIL_CALL();
}

static void *accept_leaker(void *arg) {
    (void)arg;
    int listener = tcp_listener(NULL);
    if (listener >= 0)
        WAITING(role_leak, leak_accept_no_client(listener));
    return NULL;
}

static void run_accept_leak(void) { run_rate_leak(accept_leaker, "leak_accept_no_client", 4); }

/* ---- waitpid-leak ----------------------------------------------------------------------------- */

/* The child pauses until it is killed, which happens only when this process dies. */
__attribute__((noinline)) void leak_waitpid_child_never_exits(pid_t child) {
    while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {
    }
    NO_TAIL_CALL();
}

static void *waitpid_leaker(void *arg) {
    (void)arg;
    pid_t parent = getpid();
    pid_t child = fork();
    if (child == 0) {
        /* Killed with the forking thread, which lives as long as this process. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(0);
        for (;;)
            pause();
    }
    if (child < 0) {
        fprintf(stderr, "shape-threads: fork: %s\n", strerror(errno));
        return NULL;
    }
    WAITING(role_leak, leak_waitpid_child_never_exits(child));
    return NULL;
}

static void run_waitpid_leak(void) {
    run_rate_leak(waitpid_leaker, "leak_waitpid_child_never_exits", 4);
}

/* ---- conn-server ------------------------------------------------------------------------------ */

static struct sockaddr_in server_addr;
static int role_conn, role_client;
static double conn_idle_min_ms, conn_idle_max_ms;

/* One request line in, one reply out: the server's wait for the next request. */
__attribute__((noinline)) ssize_t conn_read_request(int fd, char *buf, size_t len) {
    ssize_t n;
    while ((n = read(fd, buf, len)) < 0 && errno == EINTR) {
    }
    NO_TAIL_CALL();
    return n;
}

static void *conn_handler(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[64];
    for (;;) {
        ssize_t n;
        WAITING(role_conn, n = conn_read_request(fd, buf, sizeof buf));
        if (n <= 0 || write(fd, "ok\n", 3) != 3)
            break;
        do_job((unsigned long)n);
    }
    close(fd);
    return NULL;
}

__attribute__((noinline)) int conn_accept(int listener) {
    int fd;
    while ((fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC)) < 0 && errno == EINTR) {
    }
    NO_TAIL_CALL();
    return fd;
}

/* One thread per connection, the classic server. */
static void *acceptor(void *arg) {
    int listener = (int)(intptr_t)arg;
    for (;;) {
        int fd = conn_accept(listener);
        if (fd >= 0 && !spawn(conn_handler, (void *)(intptr_t)fd))
            close(fd);
    }
    return NULL;
}

/* A request and its reply, as a client. */
__attribute__((noinline)) bool client_round_trip(int fd) {
    char buf[8];
    if (write(fd, "GET\n", 4) != 4)
        return false;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) < 0 && errno == EINTR) {
    }
    NO_TAIL_CALL();
    return n > 0;
}

/* A keep-alive client: one connection, a request every --idle-min-ms..--idle-max-ms. */
static void *keepalive_client(void *arg) {
    uint64_t state = (uintptr_t)arg * 0x9e3779b97f4a7c15ULL | 1;
    int fd = tcp_connect(&server_addr);
    while (fd >= 0) {
        sleep_s(rng_range(&state, conn_idle_min_ms, conn_idle_max_ms) / 1000);
        if (!client_round_trip(fd))
            break;
    }
    return NULL;
}

/* Connections whose request is never sent stay open here (the peer "dropped" it). */
static int dropped_fds[100000];
static atomic_int dropped;

/* A short connection: connect, one request, close; or, when `drop`, connect and
 * never send the request, leaving the server's thread in conn_read_request. */
static void *short_client(void *arg) {
    bool drop = arg != NULL;
    int fd = tcp_connect(&server_addr);
    if (fd < 0)
        return NULL;
    if (drop) {
        int slot = atomic_fetch_add(&dropped, 1);
        if (slot < (int)(sizeof dropped_fds / sizeof dropped_fds[0])) {
            dropped_fds[slot] = fd;
            return NULL;
        }
    }
    WAITING(role_client, client_round_trip(fd));
    close(fd);
    return NULL;
}

static void run_conn_server(void) {
    int keepalive = (int)param("keepalive", 32);
    double rate = param("rate", 20);
    double leak_every = param("leak-every", 0);
    conn_idle_min_ms = param("idle-min-ms", 500);
    conn_idle_max_ms = param("idle-max-ms", 3000);
    check_all_args_used();
    raise_fd_limit();
    role_conn = add_role("conn_read_request");
    role_client = add_role("client_round_trip");
    int listener = tcp_listener(&server_addr);
    if (listener < 0)
        exit(1);
    spawn(acceptor, (void *)(intptr_t)listener);
    for (int i = 0; i < keepalive; i++)
        spawn(keepalive_client, (void *)(uintptr_t)(i + 1));
    if (g_verbose)
        spawn(reporter, NULL);
    double start = now_s();
    for (long n = 1;; n++) {
        bool drop = leak_every > 0 && n % (long)leak_every == 0;
        spawn(short_client, drop ? (void *)1 : NULL);
        sleep_s(start + n / rate - now_s());
    }
}

/* ---- epoll-loop ------------------------------------------------------------------------------- */

#define MAX_LOOPS 64
static int loop_eventfds[MAX_LOOPS];

/* An event loop's only wait: epoll_wait without a timeout. */
__attribute__((noinline)) int event_loop_wait(int epfd, struct epoll_event *events, int max) {
    int n;
    while ((n = epoll_wait(epfd, events, max, -1)) < 0 && errno == EINTR) {
    }
    NO_TAIL_CALL();
    return n;
}

static void *event_loop(void *arg) {
    int efd = (int)(intptr_t)arg;
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = efd};
    if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, efd, &ev) != 0) {
        fprintf(stderr, "shape-threads: epoll: %s\n", strerror(errno));
        return NULL;
    }
    for (;;) {
        struct epoll_event events[8];
        int n;
        WAITING(role_pool, n = event_loop_wait(epfd, events, 8));
        for (int i = 0; i < n; i++) {
            uint64_t count;
            if (read(events[i].data.fd, &count, sizeof count) == sizeof count)
                do_job(count);
        }
    }
    return NULL;
}

static void run_epoll_loop(void) {
    int loops = (int)param("loops", 4);
    double rate = param("rate", 200);
    check_all_args_used();
    if (loops < 1 || loops > MAX_LOOPS) {
        fprintf(stderr, "shape-threads: --loops must be 1..%d\n", MAX_LOOPS);
        exit(2);
    }
    role_pool = add_role("event_loop_wait");
    for (int i = 0; i < loops; i++) {
        loop_eventfds[i] = eventfd(0, EFD_CLOEXEC);
        spawn(event_loop, (void *)(intptr_t)loop_eventfds[i]);
    }
    if (g_verbose)
        spawn(reporter, NULL);
    const uint64_t one = 1;
    for (double next = now_s();; next += 1.0 / rate) {
        sleep_s(next - now_s());
        for (int i = 0; i < loops; i++)
            if (write(loop_eventfds[i], &one, sizeof one) != sizeof one)
                fprintf(stderr, "shape-threads: eventfd write: %s\n", strerror(errno));
    }
}

/* ---- nanosleepers ----------------------------------------------------------------------------- */

/* A periodic job's sleep between runs. */
__attribute__((noinline)) void periodic_nanosleep(double ms) {
    sleep_s(ms / 1000);
    NO_TAIL_CALL();
}

static void *nanosleeper(void *arg) {
    uint64_t state = (uintptr_t)arg * 0x9e3779b97f4a7c15ULL | 1;
    double period = rng_range(&state, sleep_min_ms, sleep_max_ms);
    for (double ms = rng_range(&state, 0, period);; ms = period) {
        WAITING(role_pool, periodic_nanosleep(ms));
        do_job((unsigned long)ms);
    }
    return NULL;
}

static void run_nanosleepers(void) {
    int workers = (int)param("workers", 100);
    sleep_min_ms = param("min-ms", 200);
    sleep_max_ms = param("max-ms", 3000);
    check_all_args_used();
    role_pool = add_role("periodic_nanosleep");
    for (int i = 0; i < workers; i++)
        spawn(nanosleeper, (void *)(uintptr_t)(i + 1));
    if (g_verbose)
        spawn(reporter, NULL);
    for (;;)
        sleep_s(3600);
}

/* ---- worker-pool ------------------------------------------------------------------------------ */

/* A pool: its queue of jobs, its workers, and whether it was shut down. */
struct pool {
    pthread_mutex_t mutex;
    pthread_cond_t changed;
    unsigned long pending;
    bool shut_down;
};

/* A worker's wait for its next job; false once its pool is shut down. */
__attribute__((noinline)) bool pool_take_job(struct pool *p, unsigned long *job) {
    pthread_mutex_lock(&p->mutex);
    while (p->pending == 0 && !p->shut_down)
        pthread_cond_wait(&p->changed, &p->mutex);
    bool got = p->pending > 0;
    if (got)
        *job = p->pending--;
    pthread_mutex_unlock(&p->mutex);
    NO_TAIL_CALL();
    return got;
}

static void *pool_worker(void *arg) {
    struct pool *p = arg;
    for (;;) {
        unsigned long job = 0;
        bool got;
        WAITING(role_pool, got = pool_take_job(p, &job));
        if (!got)
            break;
        do_job(job);
    }
    return NULL;
}

static void pool_push(struct pool *p, unsigned jobs) {
    pthread_mutex_lock(&p->mutex);
    p->pending += jobs;
    for (unsigned i = 0; i < jobs; i++)
        pthread_cond_signal(&p->changed);
    pthread_mutex_unlock(&p->mutex);
}

/* A new pool with `workers` workers. (Never freed: a shut-down pool's worker may still
 * be on its way out, and a few bytes per pool are nothing here.) */
static struct pool *pool_start(int workers) {
    struct pool *p = calloc(1, sizeof *p);
    pthread_mutex_init(&p->mutex, NULL);
    pthread_cond_init(&p->changed, NULL);
    for (int i = 0; i < workers; i++)
        spawn(pool_worker, p);
    return p;
}

static void pool_shut_down(struct pool *p) {
    pthread_mutex_lock(&p->mutex);
    p->shut_down = true;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->mutex);
}

/* The requests' pools still alive and when each is to be shut down. */
#define MAX_LIVE_POOLS 65536
static struct {
    pthread_mutex_t mutex;
    struct pool *pools[MAX_LIVE_POOLS];
    double deadline[MAX_LIVE_POOLS];
    int count;
} live_pools = {.mutex = PTHREAD_MUTEX_INITIALIZER};

static void *pool_reaper(void *arg) {
    (void)arg;
    for (;;) {
        sleep_s(0.1);
        double now = now_s();
        pthread_mutex_lock(&live_pools.mutex);
        for (int i = 0; i < live_pools.count;) {
            if (live_pools.deadline[i] > now) {
                i++;
                continue;
            }
            pool_shut_down(live_pools.pools[i]);
            live_pools.count--;
            live_pools.pools[i] = live_pools.pools[live_pools.count];
            live_pools.deadline[i] = live_pools.deadline[live_pools.count];
        }
        pthread_mutex_unlock(&live_pools.mutex);
    }
    return NULL;
}

/* A request's pool of one worker for its one job, shut down after `life_s` (0: never,
 * the owner forgot). */
static void request_pool(double life_s) {
    struct pool *p = pool_start(1);
    pool_push(p, 1);
    if (life_s <= 0)
        return;
    pthread_mutex_lock(&live_pools.mutex);
    if (live_pools.count < MAX_LIVE_POOLS) {
        live_pools.pools[live_pools.count] = p;
        live_pools.deadline[live_pools.count] = now_s() + life_s;
        live_pools.count++;
    }
    pthread_mutex_unlock(&live_pools.mutex);
}

static struct pool live_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false};
static double pool_jobs_per_s;

static void push_pool(void *p, unsigned jobs) {
    pool_push(p, jobs);
}

/* Feeds the long-lived pool. */
static void *pool_feeder(void *arg) {
    (void)arg;
    feed_forever(push_pool, &live_pool, pool_jobs_per_s);
    return NULL;
}

static void run_worker_pool(void) {
    int workers = (int)param("workers", 16);
    pool_jobs_per_s = param("jobs", 400);
    double rate = param("spawn-rate", 0);
    double life_min = param("spawn-life-min", 0);
    double life_max = param("spawn-life-max", 0);
    long max = (long)param("max", 100000);
    check_all_args_used();
    if (life_max < life_min) {
        fprintf(stderr, "shape-threads: --spawn-life-max is below --spawn-life-min\n");
        exit(2);
    }
    role_pool = add_role("pool_take_job");
    for (int i = 0; i < workers; i++)
        spawn(pool_worker, &live_pool);
    spawn(pool_feeder, NULL);
    uint64_t state = 0x9e3779b97f4a7c15ULL;
    bool rotating = life_max > 0;
    if (rotating) {
        spawn(pool_reaper, NULL);
        /* Steady from the start: as many pools as the rate keeps alive, each with a
         * part of its life already gone. */
        long crowd = (long)(rate * (life_min + life_max) / 2);
        for (long i = 0; i < crowd; i++)
            request_pool(rng_range(&state, 0, rng_range(&state, life_min, life_max)));
    }
    if (g_verbose)
        spawn(reporter, NULL);
    if (rate <= 0) {
        for (;;)
            sleep_s(3600);
    }
    double start = now_s();
    for (long n = 1; rotating || n <= max; n++) {
        request_pool(rotating ? rng_range(&state, life_min, life_max) : 0);
        sleep_s(start + n / rate - now_s());
    }
    fprintf(stderr, "shape-threads: reached --max %ld, no more requests\n", max);
    for (;;)
        sleep_s(3600);
}

/* ---- main ------------------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    void (*run)(void);
} modes[] = {
    {"fast-leak", run_fast_leak},
    {"busy-pool-slow-leak", run_busy_pool_slow_leak},
    {"very-slow-leak", run_very_slow_leak},
    {"multi-site-leak", run_multi_site_leak},
    {"idle-pool", run_idle_pool},
    {"plateau", run_plateau},
    {"sawtooth", run_sawtooth},
    {"ramp", run_ramp},
    {"sleepers", run_sleepers},
    {"long-lived", run_long_lived},
    {"read-leak", run_read_leak},
    {"accept-leak", run_accept_leak},
    {"waitpid-leak", run_waitpid_leak},
    {"conn-server", run_conn_server},
    {"epoll-loop", run_epoll_loop},
    {"nanosleepers", run_nanosleepers},
    {"worker-pool", run_worker_pool},
};

int main(int argc, char **argv) {
    g_argc = argc;
    g_argv = argv;
    g_used = calloc(argc + 1, sizeof *g_used);
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0) {
            g_verbose = true;
            g_used[i] = true;
        }
    }
    /* Output goes to pipes or logs: flush each line. */
    setvbuf(stderr, NULL, _IOLBF, 0);
    pthread_attr_init(&small_attr);
    pthread_attr_setstacksize(&small_attr, THREAD_STACK_BYTES);
    pthread_attr_setdetachstate(&small_attr, PTHREAD_CREATE_DETACHED);
    if (argc >= 2) {
        for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
            if (strcmp(argv[1], modes[i].name) == 0) {
                modes[i].run();
                return 0;
            }
        }
    }
    fprintf(stderr, "usage: shape-threads MODE [--PARAM VALUE]... [-v]\nmodes:");
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        fprintf(stderr, " %s", modes[i].name);
    fprintf(stderr, "\n(parameters and defaults: see the comment at the top of threads.c)\n");
    return 2;
}
