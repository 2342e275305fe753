#include "console.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cond.h"
#include "error.h"
#include "kick.h"
#include "seccomp.h"

int console_out_init(struct console_out *c, const struct console_sink *sink,
                     const char *path, uint64_t file_limit)
{
    memset(c, 0, sizeof(*c));
    c->initialized = true;
    c->sink = *sink;
    c->file_limit = file_limit;
    pthread_mutex_init(&c->lock, NULL);
    cond_init_monotonic(&c->cond);
    if (sink->kind == CONSOLE_FILE) {
        c->sink.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (c->sink.fd < 0) {
            c->sink.kind = CONSOLE_NONE;
            return kvmc_fail_errno(KVMC_EIO, errno, "console file %s", path);
        }
    }
    if (c->sink.kind == CONSOLE_FD || c->sink.kind == CONSOLE_FILE)
        return bytering_init(&c->buf, CONSOLE_BUFFER);
    return KVMC_OK;
}

static bool has_writer(const struct console_out *c)
{
    return c->sink.kind == CONSOLE_FD || c->sink.kind == CONSOLE_FILE;
}

/* Called with the lock held. */
static void drop(struct console_out *c, size_t n, const char *why)
{
    c->dropped += n;
    if (!c->warned && why) {
        c->warned = true;
        fprintf(stderr, "kvmc: guest console output is being dropped: %s\n", why);
    }
}

static void deadline_us(struct timespec *ts, long us)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += us / 1000000;
    ts->tv_nsec += (us % 1000000) * 1000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void deadline_in(struct timespec *ts, int ms) { deadline_us(ts, ms * 1000L); }

static void *writer_main(void *arg)
{
    struct console_out *c = arg;
    kick_unblock();
    if (c->seccomp && seccomp_confine(SECCOMP_ROLE_CONSOLE) != KVMC_OK)
        fprintf(stderr, "kvmc: console output thread: %s\n", kvmc_last_error());
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->buf.len && !c->stopping) {
            c->idle = true;
            pthread_cond_wait(&c->cond, &c->lock);
            c->idle = false;
        }
        if (c->stopping && (!c->buf.len || c->broken))
            break;
        /* A UART delivers a byte per exit: gather a few milliseconds' worth
         * for one write, instead of a wake-up and a write per byte. */
        if (!c->stopping && c->buf.len < CONSOLE_BUFFER / 2) {
            struct timespec until;
            deadline_us(&until, CONSOLE_GATHER_US);
            pthread_cond_timedwait(&c->cond, &c->lock, &until);
        }
        const uint8_t *p;
        size_t run = bytering_peek(&c->buf, &p);
        pthread_mutex_unlock(&c->lock);
        ssize_t n = write(c->sink.fd, p, run); /* may block on the reader */
        int e = errno;
        pthread_mutex_lock(&c->lock);
        if (n > 0) {
            bytering_drop(&c->buf, (size_t)n);
            c->written += (uint64_t)n;
        } else if (n < 0 && e == EINTR) {
            continue; /* kicked: look at `stopping` again */
        } else if (!(n < 0 && e == EAGAIN)) {
            /* The reader went away or the fd is bad: nothing will go out. */
            c->broken = true;
            drop(c, c->buf.len, "the console's fd failed");
            bytering_drop(&c->buf, c->buf.len);
        }
        pthread_cond_broadcast(&c->cond);
    }
    c->exited = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

int console_out_start(struct console_out *c, bool seccomp)
{
    if (!has_writer(c) || c->started)
        return KVMC_OK;
    kick_install();
    c->seccomp = seccomp;
    /* The writer only moves bytes: a small stack is plenty. */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    int err = kick_thread_create(&c->thread, &attr, writer_main, c);
    pthread_attr_destroy(&attr);
    if (err)
        return kvmc_fail_errno(KVMC_EIO, err, "starting the console output thread");
    pthread_setname_np(c->thread, "kvmc-console");
    c->started = true;
    return KVMC_OK;
}

static const char limit_note[] = "\n[kvmc: console file limit reached; later output dropped]\n";

void console_out_write(struct console_out *c, const uint8_t *data, size_t len)
{
    switch (c->sink.kind) {
    case CONSOLE_NONE:
        return;
    case CONSOLE_CALLBACK:
        c->sink.fn(c->sink.opaque, data, len);
        return;
    case CONSOLE_FD:
    case CONSOLE_FILE:
        break;
    }
    pthread_mutex_lock(&c->lock);
    if (c->broken) {
        drop(c, len, NULL);
    } else if (c->limit_reached) {
        drop(c, len, NULL);
    } else {
        size_t take = len;
        if (c->sink.kind == CONSOLE_FILE && c->file_limit &&
            c->accepted + take > c->file_limit) {
            take = c->file_limit > c->accepted ? (size_t)(c->file_limit - c->accepted) : 0;
            c->limit_reached = true;
        }
        size_t n = bytering_push(&c->buf, data, take);
        c->accepted += n;
        if (n < len && !c->limit_reached)
            drop(c, len - n, "nobody reads the console (its buffer is full)");
        else if (n < len)
            drop(c, len - n, NULL);
        if (c->limit_reached) /* if it fits: a stuck reader gets nothing more anyway */
            bytering_push(&c->buf, limit_note, sizeof(limit_note) - 1);
        /* Wake the writer when it sleeps, or when it gathers and the
         * buffer is half full; not for every byte. */
        if ((n || c->limit_reached) && (c->idle || c->buf.len >= CONSOLE_BUFFER / 2))
            pthread_cond_broadcast(&c->cond);
    }
    pthread_mutex_unlock(&c->lock);
}


bool console_out_drain(struct console_out *c, int timeout_ms)
{
    if (!has_writer(c) || !c->started)
        return true;
    pthread_mutex_lock(&c->lock);
    struct timespec deadline;
    deadline_in(&deadline, timeout_ms);
    uint64_t seen = c->written;
    while (c->buf.len && !c->broken && !c->exited) {
        if (pthread_cond_timedwait(&c->cond, &c->lock, &deadline) == ETIMEDOUT) {
            if (c->written == seen)
                break; /* no byte moved for timeout_ms: the reader is stuck */
            seen = c->written;
            deadline_in(&deadline, timeout_ms);
        }
    }
    bool done = !c->buf.len;
    pthread_mutex_unlock(&c->lock);
    return done;
}

void console_out_close(struct console_out *c)
{
    if (!c->initialized)
        return;
    if (c->started) {
        console_out_drain(c, CONSOLE_DRAIN_MS);
        pthread_mutex_lock(&c->lock);
        c->stopping = true;
        if (c->buf.len)
            drop(c, c->buf.len, NULL);
        bytering_drop(&c->buf, c->buf.len);
        pthread_cond_broadcast(&c->cond);
        /* The writer may sit in write() on a reader that never reads: kick
         * it until it is out (a kick that lands before write() is lost). */
        while (!c->exited) {
            kick_thread(c->thread);
            struct timespec deadline;
            deadline_in(&deadline, 10);
            pthread_cond_timedwait(&c->cond, &c->lock, &deadline);
        }
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->thread, NULL);
        c->started = false;
    }
    if (c->sink.kind == CONSOLE_FILE && c->sink.fd >= 0)
        close(c->sink.fd);
    bytering_free(&c->buf);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    c->sink = (struct console_sink){.kind = CONSOLE_NONE, .fd = -1};
    c->initialized = false;
}
