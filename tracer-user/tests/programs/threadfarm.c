/* threadfarm: one of many small processes for `cargo xtask bench`'s scale section.
 *
 * Usage: threadfarm THREADS [LEAK_MS]
 *
 * Holds THREADS threads waiting on one condition variable that is never signalled
 * (farm_idle_wait: a steady population that never grows). With LEAK_MS, also starts
 * one more thread every LEAK_MS milliseconds that blocks forever on a mutex held by
 * main (farm_leak_lock: the leak). Threads get small stacks, so thousands of these
 * processes fit in memory. Prints "ready" once the steady threads are started, then
 * runs until killed.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define THREAD_STACK_BYTES (64 * 1024)
#define MAX_LEAKS 100000

static pthread_mutex_t idle_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never_signalled = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t held_forever = PTHREAD_MUTEX_INITIALIZER;

__attribute__((noinline)) static void farm_idle_wait(void) {
    pthread_mutex_lock(&idle_mutex);
    for (;;)
        pthread_cond_wait(&never_signalled, &idle_mutex);
}

__attribute__((noinline)) static void farm_leak_lock(void) {
    pthread_mutex_lock(&held_forever);
}

static void *idle_thread(void *arg) {
    (void)arg;
    farm_idle_wait();
    return NULL;
}

static void *leak_thread(void *arg) {
    (void)arg;
    farm_leak_lock();
    return NULL;
}

static int start(void *(*fn)(void *)) {
    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK_BYTES);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int err = pthread_create(&t, &attr, fn, NULL);
    pthread_attr_destroy(&attr);
    return err;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: threadfarm THREADS [LEAK_MS]\n");
        return 2;
    }
    int threads = atoi(argv[1]);
    long leak_ms = argc == 3 ? atol(argv[2]) : 0;
    for (int i = 0; i < threads; i++) {
        if (start(idle_thread) != 0) {
            perror("threadfarm: pthread_create");
            return 1;
        }
    }
    printf("ready\n");
    fflush(stdout);
    pthread_mutex_lock(&held_forever);
    struct timespec pause = {leak_ms / 1000, (leak_ms % 1000) * 1000000L};
    for (int leaks = 0;; leaks++) {
        if (leak_ms <= 0 || leaks >= MAX_LEAKS) {
            pause.tv_sec = 3600;
            pause.tv_nsec = 0;
        } else if (start(leak_thread) != 0) {
            perror("threadfarm: pthread_create");
            return 1;
        }
        nanosleep(&pause, NULL);
    }
}
