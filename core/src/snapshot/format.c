#include "format.h"

#include <stdlib.h>
#include <string.h>

#include "../error.h"

/* CRC-32 (IEEE 802.3, reflected, as zlib computes it), bitwise: state
 * files are kilobytes, and this keeps libkvmc free of another library for
 * fifteen lines. */
uint32_t snapshot_crc32(const uint8_t *data, size_t len)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < len; i++) {
        crc ^= data[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
    }
    return ~crc;
}

static void put_le(uint8_t *p, uint64_t v, unsigned bytes)
{
    for (unsigned i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned bytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* --------------------------------------------------------------- writer */

void snapshot_writer_init(struct snapshot_writer *w)
{
    memset(w, 0, sizeof(*w));
    w->section = SIZE_MAX;
    w->len = SNAPSHOT_HEADER_SIZE; /* the header is written last */
}

void snapshot_writer_free(struct snapshot_writer *w)
{
    free(w->buf);
    memset(w, 0, sizeof(*w));
}

static uint8_t *grow(struct snapshot_writer *w, size_t n)
{
    if (w->err)
        return NULL;
    if (n > SIZE_MAX - w->len) {
        w->err = kvmc_fail(KVMC_ENOMEM, "snapshot state too large");
        return NULL;
    }
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n)
            cap *= 2;
        uint8_t *buf = realloc(w->buf, cap);
        if (!buf) {
            w->err = kvmc_fail(KVMC_ENOMEM, "snapshot state buffer (%zu bytes)", cap);
            return NULL;
        }
        if (!w->buf)
            memset(buf, 0, SNAPSHOT_HEADER_SIZE);
        w->buf = buf;
        w->cap = cap;
    }
    uint8_t *at = w->buf + w->len;
    w->len += n;
    return at;
}

static void end_section(struct snapshot_writer *w)
{
    if (w->section == SIZE_MAX || w->err)
        return;
    size_t len = w->len - w->section - 8;
    if (len > SNAPSHOT_MAX_SECTION)
        w->err = kvmc_fail(KVMC_EINVAL, "snapshot section of %zu bytes (at most %u)", len,
                           SNAPSHOT_MAX_SECTION);
    else
        put_le(w->buf + w->section + 4, len, 4);
    w->section = SIZE_MAX;
}

void snapshot_begin(struct snapshot_writer *w, uint32_t tag)
{
    end_section(w);
    size_t at = w->len;
    uint8_t *p = grow(w, 8);
    if (!p)
        return;
    put_le(p, tag, 4);
    put_le(p + 4, 0, 4);
    w->section = at;
}

void snapshot_put(struct snapshot_writer *w, const void *data, size_t len)
{
    if (w->section == SIZE_MAX && !w->err)
        w->err = kvmc_fail(KVMC_EINVAL, "snapshot data outside a section");
    uint8_t *p = grow(w, len);
    if (p && len)
        memcpy(p, data, len);
}

void snapshot_put_u32(struct snapshot_writer *w, uint32_t v)
{
    uint8_t b[4];
    put_le(b, v, 4);
    snapshot_put(w, b, 4);
}

void snapshot_put_u64(struct snapshot_writer *w, uint64_t v)
{
    uint8_t b[8];
    put_le(b, v, 8);
    snapshot_put(w, b, 8);
}

int snapshot_finish(struct snapshot_writer *w, const char *kvmc_version)
{
    end_section(w);
    if (!w->buf)
        grow(w, 0); /* nothing written: the header alone */
    if (w->err)
        return w->err;
    uint8_t *h = w->buf;
    memset(h, 0, SNAPSHOT_HEADER_SIZE);
    memcpy(h, SNAPSHOT_MAGIC, 8);
    put_le(h + 8, SNAPSHOT_FORMAT_VERSION, 4);
    strncpy((char *)h + 16, kvmc_version ? kvmc_version : "", 16);
    size_t body = w->len - SNAPSHOT_HEADER_SIZE;
    put_le(h + 32, body, 8);
    put_le(h + 40, snapshot_crc32(h + SNAPSHOT_HEADER_SIZE, body), 4);
    return KVMC_OK;
}

/* --------------------------------------------------------------- reader */

int snapshot_open(struct snapshot_reader *r, const uint8_t *file, size_t len)
{
    memset(r, 0, sizeof(*r));
    if (len < SNAPSHOT_HEADER_SIZE || memcmp(file, SNAPSHOT_MAGIC, 8) != 0)
        return kvmc_fail(KVMC_EFORMAT, "not a kvmc snapshot (no %s header)", SNAPSHOT_MAGIC);
    uint32_t version = (uint32_t)get_le(file + 8, 4);
    memcpy(r->written_by, file + 16, 16);
    r->written_by[16] = 0;
    for (char *c = r->written_by; *c; c++)
        if (*c < 0x20 || *c > 0x7e)
            *c = '?';
    if (version == 0 || version > SNAPSHOT_FORMAT_VERSION)
        return kvmc_fail(version ? KVMC_ENOTSUP : KVMC_EFORMAT,
                         "snapshot format %u (written by kvmc %s); this kvmc reads format %u",
                         version, r->written_by, SNAPSHOT_FORMAT_VERSION);
    if (get_le(file + 12, 4) != 0)
        return kvmc_fail(KVMC_ENOTSUP, "snapshot flags 0x%llx are unknown",
                         (unsigned long long)get_le(file + 12, 4));
    if (get_le(file + 44, 4) != 0)
        return kvmc_fail(KVMC_EFORMAT, "snapshot header: reserved bytes are not zero "
                         "(corrupted)");
    uint64_t body = get_le(file + 32, 8);
    if (body != len - SNAPSHOT_HEADER_SIZE)
        return kvmc_fail(KVMC_EFORMAT, "snapshot state is %zu bytes, its header says %llu "
                         "(truncated or padded)", len - SNAPSHOT_HEADER_SIZE,
                         (unsigned long long)body);
    uint32_t crc = snapshot_crc32(file + SNAPSHOT_HEADER_SIZE, (size_t)body);
    if (crc != (uint32_t)get_le(file + 40, 4))
        return kvmc_fail(KVMC_EFORMAT, "snapshot state checksum 0x%08x, header says 0x%08x "
                         "(corrupted)", crc, (uint32_t)get_le(file + 40, 4));
    r->body = file + SNAPSHOT_HEADER_SIZE;
    r->len = (size_t)body;
    return KVMC_OK;
}

int snapshot_next(struct snapshot_reader *r, uint32_t *tag)
{
    if (r->at == r->len)
        return 0;
    if (r->len - r->at < 8)
        return kvmc_fail(KVMC_EFORMAT, "snapshot state ends inside a section header (at %zu)",
                         r->at);
    uint32_t t = (uint32_t)get_le(r->body + r->at, 4);
    uint64_t n = get_le(r->body + r->at + 4, 4);
    if (n > r->len - r->at - 8)
        return kvmc_fail(KVMC_EFORMAT, "snapshot section 0x%x of %llu bytes runs past the end",
                         t, (unsigned long long)n);
    r->tag = t;
    r->sec = r->body + r->at + 8;
    r->sec_len = (size_t)n;
    r->sec_at = 0;
    r->at += 8 + (size_t)n;
    *tag = t;
    return 1;
}

int snapshot_get(struct snapshot_reader *r, void *out, size_t len)
{
    if (!r->sec || len > r->sec_len - r->sec_at)
        return kvmc_fail(KVMC_EFORMAT, "snapshot section 0x%x is %zu bytes: %zu more at %zu "
                         "is past its end", r->tag, r->sec_len, len, r->sec_at);
    memcpy(out, r->sec + r->sec_at, len);
    r->sec_at += len;
    return KVMC_OK;
}

int snapshot_get_u32(struct snapshot_reader *r, uint32_t *v)
{
    uint8_t b[4];
    int err = snapshot_get(r, b, 4);
    if (!err)
        *v = (uint32_t)get_le(b, 4);
    return err;
}

int snapshot_get_u64(struct snapshot_reader *r, uint64_t *v)
{
    uint8_t b[8];
    int err = snapshot_get(r, b, 8);
    if (!err)
        *v = get_le(b, 8);
    return err;
}

void snapshot_reader_section(struct snapshot_reader *r, uint32_t tag, const uint8_t *data,
                             size_t len)
{
    static const uint8_t empty;
    memset(r, 0, sizeof(*r));
    r->tag = tag;
    r->sec = data ? data : &empty;
    r->sec_len = data ? len : 0;
}

bool snapshot_section_done(const struct snapshot_reader *r)
{
    return r->sec && r->sec_at == r->sec_len;
}
