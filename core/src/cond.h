/* A condition variable whose timed waits use CLOCK_MONOTONIC (a wall-clock
 * step must not stretch or cut a timeout). */
#ifndef KVMC_COND_H
#define KVMC_COND_H

#include <pthread.h>
#include <time.h>

static inline void cond_init_monotonic(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

#endif
