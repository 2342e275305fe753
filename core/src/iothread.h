/* The VM's I/O thread: an epoll loop over eventfds (queue notifications from
 * ioeventfd, and anything else a device waits on). Handlers run on it.
 *
 * Devices whose host side is a changing set of descriptors (sockets of a
 * vsock device, libslirp's sockets, a console client) add a *source*: before
 * each wait the thread asks every source for the descriptors and timeout it
 * wants, polls them together with the epoll descriptor, then hands each
 * source back its results. Everything runs on the one thread, so a device's
 * backend and its queues never race.
 *
 * Blocking host I/O (disk requests) goes to the thread's worker pool
 * (iopool.h) instead, so a slow disk holds up neither this thread nor the
 * other requests. */
#ifndef KVMC_IOTHREAD_H
#define KVMC_IOTHREAD_H

#include <pthread.h>
#include <poll.h>
#include <stdbool.h>

#include "iopool.h"

typedef void (*iothread_fn)(void *opaque);

struct iothread_watch {
    int fd;
    iothread_fn fn;
    void *opaque;
};

#define IOTHREAD_MAX_WATCHES 64
#define IOTHREAD_MAX_SOURCES 8
#define IOTHREAD_MAX_POLLFDS 512

struct iothread_source {
    /* Fills at most max pollfds and returns how many; may lower *timeout_ms
     * (-1: no timeout). */
    unsigned (*prepare)(void *opaque, struct pollfd *fds, unsigned max, int *timeout_ms);
    /* Called after every wait with the same fds and their revents. */
    void (*dispatch)(void *opaque, struct pollfd *fds, unsigned n);
    void *opaque;
};

struct iothread {
    int epoll_fd;
    int stop_fd;
    pthread_t thread;
    bool started;
    bool seccomp; /* confine the thread when it starts */
    const void *owner; /* the VM it serves (thread_role.h) */
    unsigned nwatches;
    struct iothread_watch watches[IOTHREAD_MAX_WATCHES];
    unsigned nsources;
    struct iothread_source sources[IOTHREAD_MAX_SOURCES];
    unsigned seccomp_extras; /* SECCOMP_IO_* the sources need */
    struct iopool pool;      /* workers for blocking I/O, started with the thread */
    /* Suspension (snapshots): the thread waits in suspend_lock/cond. */
    int suspend_fd;
    pthread_mutex_t suspend_lock;
    pthread_cond_t suspend_cond;
    bool suspend_wanted, suspended;
};

int iothread_init(struct iothread *t);
/* Watches an eventfd; fn runs on the I/O thread after its counter is read. */
int iothread_watch(struct iothread *t, int fd, iothread_fn fn, void *opaque);
/* Adds a source (before the thread starts). */
int iothread_add_source(struct iothread *t, const struct iothread_source *s);
int iothread_start(struct iothread *t);
void iothread_destroy(struct iothread *t);
/* Holds the I/O thread between two wakeups, and returns once it is held
 * (at once if it never started): no queue is processed and no device
 * backend runs until iothread_resume. The worker pool keeps running the
 * jobs it has. KVMC_ETIMEDOUT if the thread does not answer in 10 s (it
 * died: its seccomp list refused it). For snapshots and resets. */
int iothread_suspend(struct iothread *t);
void iothread_resume(struct iothread *t);

#endif
