/* pingpong: futex-heavy throughput workload for `cargo xtask bench`.
 *
 * Two threads hand a turn back and forth through one pthread mutex and one
 * condvar (a turn variable says whose move it is). Every hand-off is a futex
 * wake plus a futex wait, so this measures the worst case for a tracer that
 * hooks futex waits: nearly all the program does is the traced operation.
 *
 * Usage: pingpong SECONDS
 * Prints: round_trips_per_sec <float>
 *
 * Built by the bench with -O2 -pthread: it measures throughput, not stacks.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static pthread_mutex_t turn_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_changed = PTHREAD_COND_INITIALIZER;
/* All guarded by turn_mutex. */
static int turn;          /* 0: ping's move, 1: pong's move */
static bool stop;         /* set by main when the time is up */
static unsigned long round_trips;

/* Each player waits for its turn, then passes the turn to the other.
 * A round trip is ping -> pong -> ping; pong counts it. */
static void *player(void *arg) {
    int me = (int)(long)arg;
    pthread_mutex_lock(&turn_mutex);
    for (;;) {
        while (turn != me && !stop)
            pthread_cond_wait(&turn_changed, &turn_mutex);
        if (stop)
            break;
        if (me == 1)
            round_trips++;
        turn = 1 - me;
        /* Only the other player ever waits on the condvar. */
        pthread_cond_signal(&turn_changed);
    }
    pthread_mutex_unlock(&turn_mutex);
    return NULL;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 2 || atof(argv[1]) <= 0) {
        fprintf(stderr, "usage: %s SECONDS\n", argv[0]);
        return 2;
    }
    double seconds = atof(argv[1]);

    pthread_t ping, pong;
    double started = now_seconds();
    pthread_create(&ping, NULL, player, (void *)0L);
    pthread_create(&pong, NULL, player, (void *)1L);

    struct timespec run_time = {(time_t)seconds,
                                (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&run_time, NULL);

    pthread_mutex_lock(&turn_mutex);
    stop = true;
    unsigned long counted = round_trips;
    double elapsed = now_seconds() - started;
    /* Both players may be waiting at this instant (one is between moves). */
    pthread_cond_broadcast(&turn_changed);
    pthread_mutex_unlock(&turn_mutex);
    pthread_join(ping, NULL);
    pthread_join(pong, NULL);

    printf("round_trips_per_sec %.1f\n", (double)counted / elapsed);
    return 0;
}
