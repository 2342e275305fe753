#include "chain.h"

#include <string.h>

/* Moves the cursor to the next buffer of the wanted kind, from its current
 * position; false when there is none. Readable buffers end at the first
 * writable one (virtio puts them first). */
static bool settle(struct chain_cursor *c, bool writable)
{
    for (; c->buf < c->chain->count; c->buf++, c->off = 0) {
        const struct virtq_buf *b = &c->chain->bufs[c->buf];
        if (b->writable != writable) {
            if (!writable)
                return false;
            continue;
        }
        if (c->off < b->len)
            return true;
    }
    return false;
}

/* Copies between data and the buffers of one kind; NULL data only moves. */
static size_t copy(struct chain_cursor *c, bool writable, void *data, size_t len)
{
    size_t done = 0;
    while (done < len && settle(c, writable)) {
        const struct virtq_buf *b = &c->chain->bufs[c->buf];
        size_t n = b->len - c->off;
        if (n > len - done)
            n = len - done;
        if (data && writable)
            memcpy(b->host + c->off, (const uint8_t *)data + done, n);
        else if (data)
            memcpy((uint8_t *)data + done, b->host + c->off, n);
        done += n;
        c->off += (uint32_t)n;
    }
    return done;
}

size_t chain_read(struct chain_cursor *c, void *dst, size_t len)
{
    return copy(c, false, dst, len);
}

size_t chain_write(struct chain_cursor *c, const void *src, size_t len)
{
    return copy(c, true, (void *)src, len);
}

size_t chain_skip(struct chain_cursor *c, bool writable, size_t len)
{
    return copy(c, writable, NULL, len);
}

unsigned chain_iov(const struct chain_cursor *c, bool writable, struct iovec *iov,
                   unsigned max, size_t limit, size_t *bytes)
{
    struct chain_cursor at = *c;
    unsigned n = 0;
    size_t total = 0;
    while (n < max && total < limit && settle(&at, writable)) {
        const struct virtq_buf *b = &at.chain->bufs[at.buf];
        size_t len = b->len - at.off;
        if (len > limit - total)
            len = limit - total;
        iov[n++] = (struct iovec){.iov_base = b->host + at.off, .iov_len = len};
        total += len;
        at.off += (uint32_t)len;
    }
    *bytes = total;
    return n;
}
