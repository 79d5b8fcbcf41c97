/*
 * loop.c - a standalone host loop for the core: poll its fd, dispatch.
 */
#include <errno.h>
#include <poll.h>
#include <time.h>
#include "vmsig/vmsig_core.h"

/* Longest single poll: a stop flag set from another thread or a signal
 * handler is noticed within this. */
#define LOOP_SLICE_MS 100

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int slice_ms(int timeout_ms, int64_t deadline)
{
    int64_t left;

    if (timeout_ms < 0) {
        return LOOP_SLICE_MS;
    }
    left = deadline - mono_ms();
    if (left <= 0) {
        return 0;
    }
    return left < LOOP_SLICE_MS ? (int)left : LOOP_SLICE_MS;
}

int vmsig_loop_run(vmsig_core *core, volatile int *stop, int timeout_ms)
{
    int64_t deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    struct pollfd pfd = { .fd = vmsig_core_fd(core), .events = POLLIN };

    while (!(stop && *stop)) {
        int ms = slice_ms(timeout_ms, deadline);
        int n = poll(&pfd, 1, ms);

        if (n > 0) {
            vmsig_core_dispatch(core);
        } else if (n < 0 && errno != EINTR) {
            break; /* cannot happen with one valid fd; do not spin */
        }
        if (timeout_ms >= 0 && mono_ms() >= deadline) {
            break;
        }
    }
    return 0;
}
