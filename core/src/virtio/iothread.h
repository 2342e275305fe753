/* The VM's I/O thread: an epoll loop over eventfds (queue notifications from
 * ioeventfd, and anything else a device waits on). Handlers run on it. */
#ifndef KVMC_IOTHREAD_H
#define KVMC_IOTHREAD_H

#include <pthread.h>
#include <stdbool.h>

typedef void (*iothread_fn)(void *opaque);

struct iothread_watch {
    int fd;
    iothread_fn fn;
    void *opaque;
};

#define IOTHREAD_MAX_WATCHES 32

struct iothread {
    int epoll_fd;
    int stop_fd;
    pthread_t thread;
    bool started;
    bool seccomp; /* confine the thread when it starts */
    unsigned nwatches;
    struct iothread_watch watches[IOTHREAD_MAX_WATCHES];
};

int iothread_init(struct iothread *t);
/* Watches an eventfd; fn runs on the I/O thread after its counter is read. */
int iothread_watch(struct iothread *t, int fd, iothread_fn fn, void *opaque);
int iothread_start(struct iothread *t);
void iothread_destroy(struct iothread *t);

#endif
