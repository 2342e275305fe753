#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

int read_whole_file(const char *path, size_t max_len, const char *what,
                    uint8_t **data, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kvmc_fail_errno(KVMC_EIO, errno, "%s %s", what, path);
    struct stat st;
    int err = KVMC_OK;
    uint8_t *buf = NULL;
    if (fstat(fd, &st) < 0) {
        err = kvmc_fail_errno(KVMC_EIO, errno, "%s %s", what, path);
    } else if (!S_ISREG(st.st_mode)) {
        err = kvmc_fail(KVMC_EIO, "%s %s: not a regular file", what, path);
    } else if (st.st_size == 0) {
        err = kvmc_fail(KVMC_EFORMAT, "%s %s: file is empty", what, path);
    } else if ((uint64_t)st.st_size > max_len) {
        err = kvmc_fail(KVMC_EINVAL, "%s %s: %lld bytes is larger than the %zu MiB allowed",
                        what, path, (long long)st.st_size, max_len >> 20);
    } else if (!(buf = malloc((size_t)st.st_size))) {
        err = kvmc_fail(KVMC_ENOMEM, "%s %s: cannot allocate %lld bytes", what, path,
                        (long long)st.st_size);
    }
    size_t done = 0;
    while (!err && done < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            err = kvmc_fail_errno(KVMC_EIO, errno, "%s %s", what, path);
        else if (n == 0)
            err = kvmc_fail(KVMC_EIO, "%s %s: file shrank while being read", what, path);
        else
            done += (size_t)n;
    }
    close(fd);
    if (err) {
        free(buf);
        return err;
    }
    *data = buf;
    *len = done;
    return KVMC_OK;
}
