/* idle_pool: a steady worker pool, the false positive leakscope must not report.
 *
 * 16 workers wait on a condvar-guarded job queue in pool_worker_wait. main
 * pushes one job every 50 ms and signals one worker, which wakes, does a few
 * microseconds of work and waits again. Almost all workers are blocked in a
 * futex wait at any moment, but their number never grows: the verdict must be
 * "ok" (or the process absent from the report).
 *
 * Built with -O0 -g -fno-omit-frame-pointer -pthread, like the leak programs,
 * so the only difference the verdict can see is growth, not stack quality.
 *
 * Runs until killed.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define WORKERS 16
#define JOB_INTERVAL_MS 50
#define QUEUE_CAPACITY 64
#define THREAD_STACK_BYTES (256 * 1024)

static pthread_mutex_t queue_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_not_empty = PTHREAD_COND_INITIALIZER;
/* Ring buffer of job ids, guarded by queue_mutex. */
static unsigned long queue[QUEUE_CAPACITY];
static unsigned queue_head, queue_len;
static volatile unsigned long work_sink;

/* Blocks until a job is queued, then takes it. noinline so the steady site
 * has a named frame, like the leak programs' sites. */
__attribute__((noinline)) unsigned long pool_worker_wait(void) {
    pthread_mutex_lock(&queue_mutex);
    while (queue_len == 0)
        pthread_cond_wait(&queue_not_empty, &queue_mutex);
    unsigned long job = queue[queue_head];
    queue_head = (queue_head + 1) % QUEUE_CAPACITY;
    queue_len--;
    pthread_mutex_unlock(&queue_mutex);
    return job;
}

/* A few microseconds of CPU work, so a woken worker is briefly off the futex. */
static void do_job(unsigned long job) {
    for (unsigned long i = 0; i < 2000; i++)
        work_sink += job ^ i;
}

static void *worker(void *arg) {
    (void)arg;
    for (;;)
        do_job(pool_worker_wait());
    return NULL;
}

int main(void) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK_BYTES);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (int i = 0; i < WORKERS; i++) {
        pthread_t thread;
        int err = pthread_create(&thread, &attr, worker, NULL);
        if (err != 0) {
            fprintf(stderr, "idle_pool: pthread_create: %s\n", strerror(err));
            return 1;
        }
    }

    const struct timespec interval = {0, JOB_INTERVAL_MS * 1000L * 1000L};
    for (unsigned long job = 1;; job++) {
        nanosleep(&interval, NULL);
        pthread_mutex_lock(&queue_mutex);
        /* Workers drain far faster than 20 jobs/s; a full queue would mean a
         * stuck pool, and dropping the job keeps the program steady anyway. */
        if (queue_len < QUEUE_CAPACITY) {
            queue[(queue_head + queue_len) % QUEUE_CAPACITY] = job;
            queue_len++;
        }
        pthread_cond_signal(&queue_not_empty);
        pthread_mutex_unlock(&queue_mutex);
    }
}
