#include "console.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "error.h"

int console_sink_open_file(struct console_sink *sink, const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return kvmc_fail_errno(KVMC_EIO, errno, "console file %s", path);
    sink->kind = CONSOLE_FILE;
    sink->fd = fd;
    return KVMC_OK;
}

void console_sink_close(struct console_sink *sink)
{
    if (sink->kind == CONSOLE_FILE && sink->fd >= 0)
        close(sink->fd);
    sink->kind = CONSOLE_NONE;
    sink->fd = -1;
}

void console_sink_write(const struct console_sink *sink, const uint8_t *data, size_t len)
{
    switch (sink->kind) {
    case CONSOLE_FD:
    case CONSOLE_FILE:
        while (len) {
            ssize_t n = write(sink->fd, data, len);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return; /* a closed console must not stop the guest */
            data += n;
            len -= (size_t)n;
        }
        break;
    case CONSOLE_CALLBACK:
        sink->fn(sink->opaque, data, len);
        break;
    case CONSOLE_NONE:
        break;
    }
}
