#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

int image_open(struct image *img, const char *path, uint64_t max_len, const char *what)
{
    *img = image_mem(NULL, 0);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kvmc_fail_errno(KVMC_EIO, errno, "%s %s", what, path);
    struct stat st;
    int err = KVMC_OK;
    if (fstat(fd, &st) < 0)
        err = kvmc_fail_errno(KVMC_EIO, errno, "%s %s", what, path);
    else if (!S_ISREG(st.st_mode))
        err = kvmc_fail(KVMC_EIO, "%s %s: not a regular file", what, path);
    else if (st.st_size == 0)
        err = kvmc_fail(KVMC_EFORMAT, "%s %s: file is empty", what, path);
    else if ((uint64_t)st.st_size > max_len)
        err = kvmc_fail(KVMC_EINVAL, "%s %s: %lld bytes is larger than the %llu MiB allowed",
                        what, path, (long long)st.st_size,
                        (unsigned long long)(max_len >> 20));
    if (err) {
        close(fd);
        return err;
    }
    *img = (struct image){.fd = fd, .len = (uint64_t)st.st_size};
    return KVMC_OK;
}

void image_close(struct image *img)
{
    if (img->fd >= 0)
        close(img->fd);
    *img = image_mem(NULL, 0);
}

int image_read(const struct image *img, uint64_t off, void *dst, size_t len)
{
    if (off > img->len || len > img->len - off)
        return -1;
    if (img->data) {
        memcpy(dst, img->data + off, len);
        return 0;
    }
    uint8_t *p = dst;
    for (size_t done = 0; done < len;) {
        ssize_t n = pread(img->fd, p + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1; /* an error, or the file shrank under us */
        done += (size_t)n;
    }
    return 0;
}
