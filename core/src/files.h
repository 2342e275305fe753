/* Kernel and initrd images: in memory (kvmc_config_set_kernel_image, the
 * tests, the fuzzer) or in a file. A file is never read whole into a
 * buffer: the loaders read its headers, then each piece straight to its
 * place in guest memory with pread, so booting a kernel costs the host
 * the guest pages it fills and no transient copy (peak RSS). */
#ifndef KVMC_FILES_H
#define KVMC_FILES_H

#include <stddef.h>
#include <stdint.h>

struct image {
    const uint8_t *data; /* NULL for a file */
    int fd;              /* -1 for memory */
    uint64_t len;        /* 0: no image */
};

static inline struct image image_mem(const void *data, size_t len)
{
    return (struct image){.data = data, .fd = -1, .len = data ? len : 0};
}

/* Opens a regular, non-empty file of at most max_len bytes. `what` names
 * it in error messages ("kernel", "initrd"). */
int image_open(struct image *img, const char *path, uint64_t max_len, const char *what);
void image_close(struct image *img);
/* Copies [off, off+len) of the image into dst: 0, or -1 when the image is
 * shorter (a file may shrink while it is read) or a read fails. */
int image_read(const struct image *img, uint64_t off, void *dst, size_t len);

#endif
