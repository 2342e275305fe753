/* Where a guest console's output goes: nowhere, an fd, a file kvmc opened,
 * or a user callback.
 *
 * A vCPU never blocks on console output. For an fd or a file, the bytes go
 * into a bounded buffer that a writer thread of the console's own drains
 * with blocking writes; if the reader stops reading (a pipe nobody drains,
 * a stopped terminal), the buffer fills and further output is dropped and
 * counted, and the guest keeps running. A console file stops growing at
 * its limit: output past it is dropped, and one line at the end of the
 * file says so. A callback is called on the vCPU thread, as documented in
 * the public header. */
#ifndef KVMC_CONSOLE_H
#define KVMC_CONSOLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bytering.h"
#include "kvmc/kvmc.h"

enum console_kind { CONSOLE_NONE, CONSOLE_FD, CONSOLE_FILE, CONSOLE_CALLBACK };

/* What a config says: kind, and the fd or callback. */
struct console_sink {
    enum console_kind kind;
    int fd;          /* FD (the caller's) and FILE (opened by kvmc) */
    kvmc_console_fn fn;
    void *opaque;
};

#define CONSOLE_BUFFER (64u * 1024)             /* bytes waiting for the writer */
#define CONSOLE_FILE_LIMIT_DEFAULT (64ull << 20) /* a console file stops here */
#define CONSOLE_DRAIN_MS 500                    /* at exit: how long to wait for a reader */
#define CONSOLE_GATHER_US 2000                  /* the writer collects bytes this long */

struct console_out {
    bool initialized;      /* console_out_close on a zeroed one does nothing */
    struct console_sink sink;
    uint64_t file_limit;   /* FILE: bytes at most; 0 = no limit */
    pthread_mutex_t lock;
    pthread_cond_t cond;   /* data queued, data written, thread state */
    struct bytering buf;
    uint64_t written;      /* bytes that reached the fd */
    uint64_t accepted;     /* bytes taken into the buffer */
    uint64_t dropped;      /* bytes dropped: buffer full, limit, broken fd */
    bool broken;           /* a write failed for good (EPIPE, EBADF...) */
    bool limit_reached;
    bool warned;           /* the dropping was reported once */
    bool seccomp;          /* the writer confines itself when it starts */
    bool idle;             /* the writer waits for data: wake it */
    bool started, stopping, exited;
    pthread_t thread;
};

/* Sets c up for sink (a FILE sink is opened from path, truncating it). */
int console_out_init(struct console_out *c, const struct console_sink *sink,
                     const char *path, uint64_t file_limit);
/* Starts the writer thread, if the sink needs one. */
int console_out_start(struct console_out *c, bool seccomp);
/* Never blocks on the reader (see above). */
void console_out_write(struct console_out *c, const uint8_t *data, size_t len);
/* Waits until everything buffered is written, at most timeout_ms while no
 * byte moves; true if it all went out. */
bool console_out_drain(struct console_out *c, int timeout_ms);
/* Stops the writer (interrupting a write blocked on the reader), closes a
 * FILE. What is still buffered then is dropped. */
void console_out_close(struct console_out *c);

#endif
