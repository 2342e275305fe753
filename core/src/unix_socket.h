/* Unix stream sockets for device backends (virtio-console, vsock). */
#ifndef KVMC_UNIX_SOCKET_H
#define KVMC_UNIX_SOCKET_H

/* A non-blocking listening socket at path. A stale socket file there is
 * replaced; any other existing file is an error. Returns the fd or a
 * negative kvmc_error. */
int unix_listen(const char *path, const char *what);
/* A listening socket that owns its path: closing removes the file. */
struct unix_listener {
    int fd;     /* -1 when closed */
    char *path;
};
int unix_listener_open(struct unix_listener *l, const char *path, const char *what);
void unix_listener_close(struct unix_listener *l);

/* A non-blocking connected socket, or -errno. */
int unix_connect(const char *path);

#endif
