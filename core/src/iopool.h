/* The VM's I/O worker pool: a few threads that run blocking host I/O (disk
 * reads, writes, flushes) so that one slow request does not hold up the
 * VM's I/O thread, its other queues, or other requests of the same disk.
 *
 * Jobs are intrusive: the submitter owns the memory of each job until its
 * function has run. A job runs on exactly one worker; jobs may complete in
 * any order. The pool starts with the I/O thread (confined by the same
 * seccomp list) and stops before the devices are destroyed; jobs still
 * queued then are dropped, never run. */
#ifndef KVMC_IOPOOL_H
#define KVMC_IOPOOL_H

#include <pthread.h>
#include <stdbool.h>

#define IOPOOL_MAX_WORKERS 8

struct iopool_job {
    void (*fn)(struct iopool_job *job);
    struct iopool_job *next;
};

struct iopool {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct iopool_job *head, *tail;
    bool stopping;
    unsigned wanted;  /* workers asked for by the devices */
    unsigned started; /* workers running */
    bool seccomp;     /* confine each worker when it starts */
    bool initialized;
    pthread_t workers[IOPOOL_MAX_WORKERS];
};

void iopool_init(struct iopool *p);
/* Asks for at least n workers (capped at IOPOOL_MAX_WORKERS); before start. */
void iopool_want(struct iopool *p, unsigned n);
/* Starts the workers asked for; 0 or a kvmc_error. */
int iopool_start(struct iopool *p, bool seccomp);
/* Queues a job; wakes one worker. */
void iopool_submit(struct iopool *p, struct iopool_job *job);
/* Stops and joins the workers; queued jobs are dropped. */
void iopool_destroy(struct iopool *p);

#endif
