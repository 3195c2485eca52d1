/* nofp_leak: a mutex thread leak in a binary without frame pointers.
 *
 * Same leak as mutex_leak.c, but the integration tests build this file with
 * -O2 -g -fomit-frame-pointer, and the blocking call sits two noinline levels
 * deep: leaked_thread -> request_handler -> acquire_shared_state ->
 * pthread_mutex_lock. With rbp used as a general register, a frame-pointer walk
 * cannot get from glibc's futex wait back to acquire_shared_state and then to
 * request_handler; only DWARF CFI unwinding (through glibc, then through this
 * binary) finds both. The test asserts both frames, in that order.
 *
 * Runs until killed.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MAX_THREADS 2000
#define SPAWN_INTERVAL_MS 250
#define THREAD_STACK_BYTES (256 * 1024)

/* GCC can still clone (constprop/isra) or fold noinline functions at -O2; noclone
 * keeps each a single symbol with its own name. clang has no noclone. */
#if defined(__GNUC__) && !defined(__clang__)
#define LEAK_FRAME __attribute__((noinline, noclone))
#else
#define LEAK_FRAME __attribute__((noinline))
#endif

static pthread_mutex_t shared_state_lock = PTHREAD_MUTEX_INITIALIZER;
/* Written after each call so neither call below is a tail call: a tail call
 * would replace the caller's frame and the stack would legitimately lack it. */
static volatile unsigned long shared_state_users;
static volatile unsigned long requests_handled;

/* Innermost leak-site function: blocks forever because main holds the lock. */
LEAK_FRAME void acquire_shared_state(void) {
    pthread_mutex_lock(&shared_state_lock);
    shared_state_users++;
}

/* Its caller: the test checks this frame too, above acquire_shared_state. */
LEAK_FRAME void request_handler(void) {
    acquire_shared_state();
    requests_handled++;
    pthread_mutex_unlock(&shared_state_lock);
}

static void *leaked_thread(void *arg) {
    (void)arg;
    request_handler();
    return NULL;
}

int main(void) {
    pthread_mutex_lock(&shared_state_lock);

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
            fprintf(stderr, "nofp_leak: pthread_create: %s\n", strerror(err));
            continue;
        }
        spawned++;
    }
}
