#include "unix_socket.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "error.h"

static int fill_address(struct sockaddr_un *sa, const char *path)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path))
        return -ENAMETOOLONG;
    strcpy(sa->sun_path, path);
    return 0;
}

int unix_listen(const char *path, const char *what)
{
    struct sockaddr_un sa;
    if (fill_address(&sa, path))
        return kvmc_fail(KVMC_EINVAL, "%s socket path '%s' is longer than %zu bytes", what,
                         path, sizeof(sa.sun_path) - 1);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return kvmc_fail(KVMC_EINVAL, "%s socket path '%s' exists and is not a socket",
                             what, path);
        unlink(path); /* left over from an earlier run */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return kvmc_fail_errno(KVMC_EIO, errno, "%s socket", what);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
        int e = errno;
        close(fd);
        return kvmc_fail_errno(KVMC_EIO, e, "%s socket '%s'", what, path);
    }
    return fd;
}

int unix_listener_open(struct unix_listener *l, const char *path, const char *what)
{
    *l = (struct unix_listener){.fd = -1};
    l->path = strdup(path);
    if (!l->path)
        return kvmc_fail(KVMC_ENOMEM, "%s socket path", what);
    int fd = unix_listen(path, what);
    if (fd < 0) {
        free(l->path);
        l->path = NULL;
        return fd;
    }
    l->fd = fd;
    return KVMC_OK;
}

void unix_listener_close(struct unix_listener *l)
{
    if (l->fd >= 0) {
        close(l->fd);
        unlink(l->path);
    }
    free(l->path);
    *l = (struct unix_listener){.fd = -1};
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool unix_listener_pollable(struct unix_listener *l, int *timeout_ms)
{
    if (l->fd < 0)
        return false;
    int64_t left = l->paused_until_ms - now_ms();
    if (left <= 0)
        return true;
    if (*timeout_ms < 0 || *timeout_ms > left)
        *timeout_ms = (int)left;
    return false;
}

int unix_listener_accept(struct unix_listener *l)
{
    int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM))
        l->paused_until_ms = now_ms() + LISTENER_PAUSE_MS;
    return fd;
}

int unix_connect(const char *path)
{
    struct sockaddr_un sa;
    if (fill_address(&sa, path))
        return -ENAMETOOLONG;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}
