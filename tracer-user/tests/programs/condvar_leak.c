/* condvar_leak: a thread leak on a condition variable nobody signals.
 *
 * main spawns a new thread every 250 ms (up to 2000); each waits in
 * wait_for_signal_never_sent -> pthread_cond_wait, used correctly (its own
 * mutex, a predicate loop), but the predicate never becomes true. The number
 * of blocked threads grows without bound: leakscope must call it a leak and
 * name wait_for_signal_never_sent as the site.
 *
 * Built with -O0 -g -fno-omit-frame-pointer -pthread, for the reason given in
 * mutex_leak.c: detection tests should not depend on the unwinder's hard cases.
 *
 * Runs until killed.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MAX_THREADS 2000
#define SPAWN_INTERVAL_MS 250
#define THREAD_STACK_BYTES (256 * 1024)

static pthread_mutex_t signal_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t signal_cond = PTHREAD_COND_INITIALIZER;
/* Guarded by signal_mutex; nothing ever sets it. */
static bool signal_sent = false;

/* The leak site leakscope must name. noinline keeps it a frame of its own. */
__attribute__((noinline)) void wait_for_signal_never_sent(void) {
    pthread_mutex_lock(&signal_mutex);
    while (!signal_sent)
        pthread_cond_wait(&signal_cond, &signal_mutex);
    pthread_mutex_unlock(&signal_mutex);
}

static void *leaked_thread(void *arg) {
    (void)arg;
    wait_for_signal_never_sent();
    return NULL;
}

int main(void) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK_BYTES);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);

    const struct timespec interval = {0, SPAWN_INTERVAL_MS * 1000L * 1000L};
    for (int spawned = 0;; nanosleep(&interval, NULL)) {
        if (spawned >= MAX_THREADS)
            continue;
        pthread_t thread;
        int err = pthread_create(&thread, &attr, leaked_thread, NULL);
        if (err != 0) {
            fprintf(stderr, "condvar_leak: pthread_create: %s\n", strerror(err));
            continue;
        }
        spawned++;
    }
}
