#include "iopool.h"

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "seccomp.h"
#include "kick.h"

void iopool_init(struct iopool *p)
{
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->initialized = true;
}

void iopool_want(struct iopool *p, unsigned n)
{
    if (n > IOPOOL_MAX_WORKERS)
        n = IOPOOL_MAX_WORKERS;
    if (n > p->wanted)
        p->wanted = n;
}

/* Takes the next job, or NULL once the pool is stopping. */
static struct iopool_job *next_job(struct iopool *p)
{
    pthread_mutex_lock(&p->lock);
    while (!p->stopping && !p->head)
        pthread_cond_wait(&p->wake, &p->lock);
    struct iopool_job *job = p->stopping ? NULL : p->head;
    if (job) {
        p->head = job->next;
        if (!p->head)
            p->tail = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    return job;
}

static void *worker_main(void *arg)
{
    struct iopool *p = arg;
    if (p->seccomp && seccomp_confine_io(0) != KVMC_OK) {
        /* The other workers carry on; the device may just be slower. */
        fprintf(stderr, "kvmc: I/O worker: %s; worker not started\n", kvmc_last_error());
        return NULL;
    }
    for (struct iopool_job *job; (job = next_job(p));)
        job->fn(job);
    return NULL;
}

int iopool_start(struct iopool *p, bool seccomp)
{
    p->seccomp = seccomp;
    while (p->started < p->wanted) {
        int err = kick_thread_create(&p->workers[p->started], NULL, worker_main, p);
        if (err)
            return kvmc_fail_errno(KVMC_EIO, err, "starting an I/O worker");
        pthread_setname_np(p->workers[p->started], "kvmc-io-worker");
        p->started++;
    }
    return KVMC_OK;
}

void iopool_submit(struct iopool *p, struct iopool_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->tail)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
}

void iopool_destroy(struct iopool *p)
{
    if (!p->initialized)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    p->head = p->tail = NULL;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->started; i++)
        pthread_join(p->workers[i], NULL);
    p->started = 0;
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    p->initialized = false;
}
