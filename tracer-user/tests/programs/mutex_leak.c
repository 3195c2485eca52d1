/* mutex_leak: a thread leak on a pthread mutex.
 *
 * main locks a global mutex once and never unlocks it, then spawns a new thread
 * every 250 ms (up to 2000); each thread blocks forever in leak_on_mutex ->
 * pthread_mutex_lock, i.e. in a FUTEX_WAIT inside glibc. The number of blocked
 * threads grows without bound: the pattern leakscope must call a leak, naming
 * leak_on_mutex as the site.
 *
 * Built by the integration tests with -O0 -g -fno-omit-frame-pointer -pthread:
 * these tests are about detection, not unwinding, so the binary gives any
 * unwinder (frame pointers or DWARF) an easy stack and the noinline function
 * cannot be folded away. nofp_leak.c covers the hard unwinding case.
 *
 * Runs until killed.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MAX_THREADS 2000
#define SPAWN_INTERVAL_MS 250
/* Small stacks: blocked threads only need a few frames, and a 2000-thread cap
 * should not reserve 16 GiB of address space. */
#define THREAD_STACK_BYTES (256 * 1024)

static pthread_mutex_t never_unlocked = PTHREAD_MUTEX_INITIALIZER;

/* The leak site leakscope must name. noinline keeps it a frame of its own. */
__attribute__((noinline)) void leak_on_mutex(void) {
    pthread_mutex_lock(&never_unlocked);
    /* Never reached: main holds the mutex forever. */
    pthread_mutex_unlock(&never_unlocked);
}

static void *leaked_thread(void *arg) {
    (void)arg;
    leak_on_mutex();
    return NULL;
}

int main(void) {
    pthread_mutex_lock(&never_unlocked);

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
            fprintf(stderr, "mutex_leak: pthread_create: %s\n", strerror(err));
            continue;
        }
        spawned++;
    }
}
