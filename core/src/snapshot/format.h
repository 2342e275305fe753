/* The snapshot state file's container (issue 18): a header, then tagged
 * sections, each a length and bytes, with a CRC-32 over everything after
 * the header. Devices write their state into a section of their own
 * through snapshot_writer and read it back through snapshot_reader; what a
 * section holds is the device's business, how it is framed is this file's.
 *
 *   offset 0   "KVMCSNAP"            magic
 *          8   u32 format version    SNAPSHOT_FORMAT_VERSION
 *         12   u32 flags             0
 *         16   char[16] kvmc version that wrote it (NUL-padded)
 *         32   u64 body length       bytes after the header
 *         40   u32 CRC-32 of the body (IEEE, as zlib's)
 *         44   u32 reserved          0 (a reader refuses anything else)
 *         48   body: sections { u32 tag, u32 length, bytes[length] }
 * All integers little-endian.
 *
 * A state file is an input like any other: the reader checks magic,
 * version, length and checksum before anything is read, and every read is
 * bounded by its section, so a truncated, corrupt or hostile file gets one
 * KVMC_EFORMAT (KVMC_ENOTSUP for a newer version) naming what is wrong,
 * never a read past its end.
 *
 * Threads: a writer or reader belongs to one thread. */
#ifndef KVMC_SNAPSHOT_FORMAT_H
#define KVMC_SNAPSHOT_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAPSHOT_MAGIC "KVMCSNAP"
#define SNAPSHOT_FORMAT_VERSION 1u
#define SNAPSHOT_HEADER_SIZE 48u
#define SNAPSHOT_MAX_SECTION (64u << 20)

/* Section tags: four ASCII characters, little-endian. */
#define SNAP_TAG(a, b, c, d) ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | \
                              (uint32_t)(d) << 24)

struct snapshot_writer {
    uint8_t *buf;
    size_t len, cap;
    size_t section; /* where the open section's header is, or SIZE_MAX */
    int err;        /* the first failure; later calls do nothing */
};

struct snapshot_reader {
    const uint8_t *body;
    size_t len, at;           /* the body, and where the next section starts */
    const uint8_t *sec;       /* the current section */
    size_t sec_len, sec_at;
    uint32_t tag;
    char written_by[17];      /* the kvmc version in the header */
};

void snapshot_writer_init(struct snapshot_writer *w);
void snapshot_writer_free(struct snapshot_writer *w);
/* Opens a section (closing the one before). */
void snapshot_begin(struct snapshot_writer *w, uint32_t tag);
void snapshot_put(struct snapshot_writer *w, const void *data, size_t len);
void snapshot_put_u32(struct snapshot_writer *w, uint32_t v);
void snapshot_put_u64(struct snapshot_writer *w, uint64_t v);
/* Closes the last section and writes the header: the file is then
 * w->buf[0, w->len). KVMC_ENOMEM or KVMC_EINVAL (a section too large) if
 * any call before failed. */
int snapshot_finish(struct snapshot_writer *w, const char *kvmc_version);

/* Checks the header and the checksum. */
int snapshot_open(struct snapshot_reader *r, const uint8_t *file, size_t len);
/* The next section: 1 (its tag in *tag), 0 at the end, or KVMC_EFORMAT. */
int snapshot_next(struct snapshot_reader *r, uint32_t *tag);
/* Bytes from the current section: KVMC_EFORMAT past its end. */
int snapshot_get(struct snapshot_reader *r, void *out, size_t len);
int snapshot_get_u32(struct snapshot_reader *r, uint32_t *v);
int snapshot_get_u64(struct snapshot_reader *r, uint64_t *v);
/* A reader over one section's bytes (already framed and checked), for a
 * device reading its own section. */
void snapshot_reader_section(struct snapshot_reader *r, uint32_t tag, const uint8_t *data,
                             size_t len);
/* Whether the current section has been read to its end. */
bool snapshot_section_done(const struct snapshot_reader *r);

uint32_t snapshot_crc32(const uint8_t *data, size_t len);

#endif
