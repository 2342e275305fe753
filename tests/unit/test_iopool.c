/* The VM's I/O worker pool: jobs run concurrently, so one blocked request
 * does not hold up the next, and stopping drops queued jobs. */
#include <criterion/criterion.h>
#include <errno.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "iopool.h"

struct gate_job {
    struct iopool_job job; /* first */
    sem_t *gate;
    atomic_bool opened;    /* the blocked job saw the gate open */
};

/* Waits (up to 5 s) for the other job to open the gate. */
static void wait_for_gate(struct iopool_job *job)
{
    struct gate_job *g = (struct gate_job *)job;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    int r;
    while ((r = sem_timedwait(g->gate, &until)) < 0 && errno == EINTR) {
    }
    g->opened = r == 0;
}

static void open_gate(struct iopool_job *job)
{
    sem_post(((struct gate_job *)job)->gate);
}

Test(iopool, a_blocked_job_does_not_hold_up_the_next)
{
    struct iopool p;
    iopool_init(&p);
    iopool_want(&p, 2);
    cr_assert_eq(iopool_start(&p, false), 0);
    sem_t gate;
    sem_init(&gate, 0, 0);
    struct gate_job blocked = {.job.fn = wait_for_gate, .gate = &gate};
    struct gate_job opener = {.job.fn = open_gate, .gate = &gate};
    iopool_submit(&p, &blocked.job);
    iopool_submit(&p, &opener.job);
    for (int i = 0; i < 6000 && !blocked.opened; i++)
        usleep(1000);
    iopool_destroy(&p);
    sem_destroy(&gate);
    cr_assert(blocked.opened, "the second job ran while the first waited");
}

static atomic_int ran;
static void count_job(struct iopool_job *job)
{
    (void)job;
    atomic_fetch_add(&ran, 1);
}

Test(iopool, wants_are_capped_and_every_job_runs_once)
{
    struct iopool p;
    iopool_init(&p);
    iopool_want(&p, 1000);
    iopool_want(&p, 1);
    cr_assert_eq(p.wanted, IOPOOL_MAX_WORKERS, "capped, and never lowered");
    cr_assert_eq(iopool_start(&p, false), 0);
    struct iopool_job jobs[200];
    for (unsigned i = 0; i < 200; i++) {
        jobs[i].fn = count_job;
        iopool_submit(&p, &jobs[i]);
    }
    for (int i = 0; i < 5000 && atomic_load(&ran) < 200; i++)
        usleep(1000);
    iopool_destroy(&p);
    cr_assert_eq(atomic_load(&ran), 200);
}

Test(iopool, destroy_without_start_or_init_is_safe)
{
    struct iopool never = {0};
    iopool_destroy(&never);
    struct iopool p;
    iopool_init(&p);
    iopool_destroy(&p);
}
