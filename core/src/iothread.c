#include "iothread.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "cond.h"
#include "error.h"
#include "seccomp.h"
#include "thread_role.h"
#include "kick.h"

/* The epoll tag of suspend_fd (watches are tagged with their struct). */
static char suspend_tag;

int iothread_init(struct iothread *t)
{
    memset(t, 0, sizeof(*t));
    t->stop_fd = t->suspend_fd = -1;
    pthread_mutex_init(&t->suspend_lock, NULL);
    cond_init_monotonic(&t->suspend_cond);
    iopool_init(&t->pool);
    t->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (t->epoll_fd < 0)
        return kvmc_fail_errno(KVMC_EIO, errno, "epoll_create1");
    t->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (t->stop_fd < 0)
        return kvmc_fail_errno(KVMC_EIO, errno, "eventfd for the I/O thread");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, t->stop_fd, &ev) < 0)
        return kvmc_fail_errno(KVMC_EIO, errno, "epoll_ctl");
    t->suspend_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (t->suspend_fd < 0)
        return kvmc_fail_errno(KVMC_EIO, errno, "eventfd for the I/O thread");
    ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &suspend_tag};
    if (epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, t->suspend_fd, &ev) < 0)
        return kvmc_fail_errno(KVMC_EIO, errno, "epoll_ctl");
    return KVMC_OK;
}

/* On the I/O thread: held until iothread_resume. */
static void hold(struct iothread *t)
{
    uint64_t count;
    if (read(t->suspend_fd, &count, sizeof(count)) != sizeof(count))
        return;
    pthread_mutex_lock(&t->suspend_lock);
    t->suspended = true;
    pthread_cond_broadcast(&t->suspend_cond);
    while (t->suspend_wanted)
        pthread_cond_wait(&t->suspend_cond, &t->suspend_lock);
    t->suspended = false;
    pthread_mutex_unlock(&t->suspend_lock);
}

int iothread_suspend(struct iothread *t)
{
    if (!t->started)
        return KVMC_OK;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += 10;
    pthread_mutex_lock(&t->suspend_lock);
    t->suspend_wanted = true;
    uint64_t one = 1;
    int err = write(t->suspend_fd, &one, sizeof(one)) == sizeof(one) ? 0 : EIO;
    while (!err && !t->suspended)
        err = pthread_cond_timedwait(&t->suspend_cond, &t->suspend_lock, &deadline);
    if (err)
        t->suspend_wanted = false;
    pthread_mutex_unlock(&t->suspend_lock);
    return err ? kvmc_fail(KVMC_ETIMEDOUT, "the VM's I/O thread did not stop for a "
                           "snapshot within 10 s") : KVMC_OK;
}

void iothread_resume(struct iothread *t)
{
    pthread_mutex_lock(&t->suspend_lock);
    t->suspend_wanted = false;
    pthread_cond_broadcast(&t->suspend_cond);
    pthread_mutex_unlock(&t->suspend_lock);
}

int iothread_watch(struct iothread *t, int fd, iothread_fn fn, void *opaque)
{
    if (t->started || t->nwatches == IOTHREAD_MAX_WATCHES)
        return kvmc_fail(KVMC_EINVAL, "too many I/O event sources (at most %d)",
                         IOTHREAD_MAX_WATCHES);
    struct iothread_watch *w = &t->watches[t->nwatches];
    *w = (struct iothread_watch){.fd = fd, .fn = fn, .opaque = opaque};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = w};
    if (epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return kvmc_fail_errno(KVMC_EIO, errno, "epoll_ctl");
    t->nwatches++;
    return KVMC_OK;
}

int iothread_add_source(struct iothread *t, const struct iothread_source *s)
{
    if (t->started || t->nsources == IOTHREAD_MAX_SOURCES)
        return kvmc_fail(KVMC_EINVAL, "too many I/O backends (at most %d)",
                         IOTHREAD_MAX_SOURCES);
    t->sources[t->nsources++] = *s;
    return KVMC_OK;
}

/* Runs the handlers of ready eventfds; false once a stop was requested. */
static bool dispatch_watches(struct iothread *t, int timeout_ms)
{
    struct epoll_event events[16];
    int n = epoll_wait(t->epoll_fd, events, 16, timeout_ms);
    for (int i = 0; i < n; i++) {
        struct iothread_watch *w = events[i].data.ptr;
        if (!w)
            return false;
        if ((void *)w == (void *)&suspend_tag) {
            hold(t);
            continue;
        }
        uint64_t count;
        if (read(w->fd, &count, sizeof(count)) == sizeof(count))
            w->fn(w->opaque);
    }
    return n >= 0 || errno == EINTR;
}

/* With sources: poll the epoll descriptor together with their descriptors. */
static void poll_loop(struct iothread *t)
{
    struct pollfd fds[IOTHREAD_MAX_POLLFDS];
    unsigned first[IOTHREAD_MAX_SOURCES], count[IOTHREAD_MAX_SOURCES];
    for (;;) {
        fds[0] = (struct pollfd){.fd = t->epoll_fd, .events = POLLIN};
        unsigned n = 1;
        int timeout = -1;
        for (unsigned i = 0; i < t->nsources; i++) {
            const struct iothread_source *s = &t->sources[i];
            first[i] = n;
            count[i] = s->prepare(s->opaque, fds + n, IOTHREAD_MAX_POLLFDS - n, &timeout);
            n += count[i];
        }
        if (poll(fds, n, timeout) < 0 && errno != EINTR)
            return;
        if ((fds[0].revents & POLLIN) && !dispatch_watches(t, 0))
            return;
        for (unsigned i = 0; i < t->nsources; i++)
            t->sources[i].dispatch(t->sources[i].opaque, fds + first[i], count[i]);
    }
}

static void *iothread_main(void *arg)
{
    struct iothread *t = arg;
    thread_role_set(t->owner);
    if (t->seccomp && seccomp_confine_io(t->seccomp_extras) != KVMC_OK) {
        /* Serving devices unconfined is not an option: say so and stop. */
        fprintf(stderr, "kvmc: I/O thread: %s; virtio devices will not respond\n",
                kvmc_last_error());
        return NULL;
    }
    if (t->nsources)
        poll_loop(t);
    else
        while (dispatch_watches(t, -1)) {
        }
    return NULL;
}

int iothread_start(struct iothread *t)
{
    if (t->nwatches == 0 && t->nsources == 0)
        return KVMC_OK; /* nothing to serve */
    int err = iopool_start(&t->pool, t->seccomp);
    if (err)
        return err;
    err = kick_thread_create(&t->thread, NULL, iothread_main, t);
    if (err)
        return kvmc_fail_errno(KVMC_EIO, err, "starting the I/O thread");
    pthread_setname_np(t->thread, "kvmc-io");
    t->started = true;
    return KVMC_OK;
}

void iothread_destroy(struct iothread *t)
{
    if (t->started) {
        uint64_t one = 1;
        if (write(t->stop_fd, &one, sizeof(one)) != sizeof(one)) {
            /* an eventfd write only fails on overflow; cannot happen here */
        }
        pthread_join(t->thread, NULL);
        t->started = false;
    }
    iopool_destroy(&t->pool); /* after the thread: nothing submits any more */
    if (t->stop_fd >= 0)
        close(t->stop_fd);
    if (t->suspend_fd >= 0)
        close(t->suspend_fd);
    if (t->epoll_fd >= 0)
        close(t->epoll_fd);
    t->stop_fd = t->epoll_fd = t->suspend_fd = -1;
    pthread_cond_destroy(&t->suspend_cond);
    pthread_mutex_destroy(&t->suspend_lock);
}
