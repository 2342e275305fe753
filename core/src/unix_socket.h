/* Unix stream sockets for device backends (virtio-console, vsock). */
#ifndef KVMC_UNIX_SOCKET_H
#define KVMC_UNIX_SOCKET_H

#include <stdbool.h>
#include <stdint.h>

/* A non-blocking listening socket at path. A stale socket file there is
 * replaced; any other existing file is an error. Returns the fd or a
 * negative kvmc_error. */
int unix_listen(const char *path, const char *what);
/* A listening socket that owns its path: closing removes the file. */
struct unix_listener {
    int fd;     /* -1 when closed */
    char *path;
    int64_t paused_until_ms; /* CLOCK_MONOTONIC; see unix_listener_pollable */
};
int unix_listener_open(struct unix_listener *l, const char *path, const char *what);
void unix_listener_close(struct unix_listener *l);

/* Whether to poll the listener now. After an accept failed for want of
 * descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) the connection
 * stays queued and the socket readable, so polling it would spin: it is
 * left alone for LISTENER_PAUSE_MS, and *timeout_ms (-1: none) is lowered
 * to the end of that pause. */
#define LISTENER_PAUSE_MS 100
bool unix_listener_pollable(struct unix_listener *l, int *timeout_ms);
/* accept4, non-blocking and close-on-exec: the fd, or -1 with errno. */
int unix_listener_accept(struct unix_listener *l);

/* A non-blocking connected socket, or -errno. */
int unix_connect(const char *path);

#endif
