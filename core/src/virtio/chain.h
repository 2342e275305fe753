/* Walking a popped descriptor chain as a byte stream, so that headers and
 * payloads may be split across buffers any way the driver likes. */
#ifndef KVMC_VIRTIO_CHAIN_H
#define KVMC_VIRTIO_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

#include "virtqueue.h"

struct chain_cursor {
    const struct virtq_chain *chain;
    unsigned buf;
    uint32_t off;
};

/* Copies up to len bytes out of the readable buffers (the driver-written
 * part at the front); returns how many were there. */
size_t chain_read(struct chain_cursor *c, void *dst, size_t len);
/* Copies up to len bytes into the writable buffers; returns how many fit. */
size_t chain_write(struct chain_cursor *c, const void *src, size_t len);
/* Moves past up to len bytes of one kind; returns how many. */
size_t chain_skip(struct chain_cursor *c, bool writable, size_t len);
/* Describes at most `limit` bytes of the remaining buffers of one kind as
 * at most max iovecs; returns the count and the bytes covered in *bytes. */
unsigned chain_iov(const struct chain_cursor *c, bool writable, struct iovec *iov,
                   unsigned max, size_t limit, size_t *bytes);

#endif
