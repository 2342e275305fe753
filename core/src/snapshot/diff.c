/* Diff snapshots: which RAM pages are private copies; see diff.h. */
#include "diff.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../error.h"

#define BASE_VERSION 1u

/* /proc/self/pagemap, one u64 per page (Documentation/admin-guide/mm/pagemap.rst). */
#define PM_PRESENT (1ull << 63)
#define PM_SWAP (1ull << 62)
#define PM_FILE (1ull << 61) /* a file page or shared anonymous */
#define PM_CHUNK 4096u       /* entries per read */

/* A page the mapping made private: present and anonymous, or swapped out
 * (only anonymous pages swap). Conservative for anything else odd: a
 * migration or poisoned entry also shows as swapped, and costs one page. */
static bool private_page(uint64_t e)
{
    return (e & PM_SWAP) || ((e & PM_PRESENT) && !(e & PM_FILE));
}

int diff_add_extent(struct snapshot_extent **v, size_t *n, size_t *cap, uint64_t page)
{
    if (*n && (*v)[*n - 1].page + (*v)[*n - 1].pages == page) {
        (*v)[*n - 1].pages++;
        return KVMC_OK;
    }
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        struct snapshot_extent *p = realloc(*v, c * sizeof(*p));
        if (!p)
            return kvmc_fail(KVMC_ENOMEM, "snapshot: the list of RAM pages");
        *v = p;
        *cap = c;
    }
    (*v)[(*n)++] = (struct snapshot_extent){page, 1};
    return KVMC_OK;
}

int diff_private_extents(const void *mapping, size_t size, struct snapshot_extent **out,
                         size_t *n)
{
    *out = NULL;
    *n = 0;
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kvmc_fail_errno(KVMC_EIO, errno, "diff snapshot: /proc/self/pagemap (which "
                               "pages the guest wrote)");
    uint64_t *buf = malloc(PM_CHUNK * sizeof(uint64_t));
    size_t cap = 0, pages = size / SNAPSHOT_PAGE;
    uint64_t first = (uint64_t)(uintptr_t)mapping / SNAPSHOT_PAGE;
    int err = buf ? KVMC_OK : kvmc_fail(KVMC_ENOMEM, "diff snapshot: reading pagemap");
    for (size_t at = 0; !err && at < pages;) {
        size_t want = pages - at < PM_CHUNK ? pages - at : PM_CHUNK;
        ssize_t got = pread(fd, buf, want * sizeof(uint64_t), (off_t)((first + at) * 8));
        if (got <= 0 || got % 8) {
            err = kvmc_fail_errno(KVMC_EIO, got < 0 ? errno : EIO,
                                  "diff snapshot: reading /proc/self/pagemap");
            break;
        }
        size_t entries = (size_t)got / 8;
        for (size_t i = 0; !err && i < entries; i++)
            if (private_page(buf[i]))
                err = diff_add_extent(out, n, &cap, at + i);
        at += entries;
    }
    free(buf);
    close(fd);
    if (err) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return err;
}

void diff_put_base(struct snapshot_writer *w, const struct snapshot_base *base,
                   const struct snapshot_extent *ext, size_t n)
{
    size_t len = strnlen(base->path, sizeof(base->path));
    snapshot_begin(w, SNAP_BASE);
    snapshot_put_u32(w, BASE_VERSION);
    snapshot_put_u32(w, (uint32_t)len);
    snapshot_put(w, base->path, len);
    snapshot_put_u32(w, base->crc);
    snapshot_put_u64(w, base->len);
    snapshot_put_u64(w, n);
    for (size_t i = 0; i < n; i++) {
        snapshot_put_u64(w, ext[i].page);
        snapshot_put_u64(w, ext[i].pages);
    }
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

struct snapshot_extent diff_extent_at(const uint8_t *raw, uint64_t i)
{
    return (struct snapshot_extent){le64(raw + i * 16), le64(raw + i * 16 + 8)};
}

static int bad(const char *what)
{
    return kvmc_fail(KVMC_EFORMAT, "snapshot state: the diff's base: %s", what);
}

int diff_parse_base(struct snapshot_reader *r, uint64_t ram_size, struct snapshot_base *base,
                    const uint8_t **raw, uint64_t *n)
{
    uint32_t version, len;
    if (snapshot_get_u32(r, &version) || snapshot_get_u32(r, &len))
        return KVMC_EFORMAT;
    if (version != BASE_VERSION)
        return bad("unknown version");
    if (len == 0 || len >= sizeof(base->path))
        return bad("path length out of range");
    memset(base->path, 0, sizeof(base->path));
    if (snapshot_get(r, base->path, len))
        return KVMC_EFORMAT;
    if (memchr(base->path, 0, len) || base->path[0] != '/')
        return bad("not an absolute path");
    uint64_t count;
    if (snapshot_get_u32(r, &base->crc) || snapshot_get_u64(r, &base->len) ||
        snapshot_get_u64(r, &count))
        return KVMC_EFORMAT;
    if (count > (r->sec_len - r->sec_at) / 16)
        return bad("more extents than the section holds");
    *raw = r->sec + r->sec_at;
    *n = count;
    uint64_t pages = ram_size / SNAPSHOT_PAGE, end = 0;
    for (uint64_t i = 0; i < count; i++) {
        struct snapshot_extent e = diff_extent_at(*raw, i);
        /* Sorted and apart (a gap between two, or the first at any page). */
        if ((i && e.page <= end) || e.pages == 0 || e.page >= pages ||
            e.pages > pages - e.page)
            return bad("extents out of order, empty, or beyond RAM");
        end = e.page + e.pages;
    }
    r->sec_at += (size_t)count * 16;
    return KVMC_OK;
}

int diff_overlay(void *mapping, int fd, const uint8_t *raw, uint64_t n)
{
    uint8_t *ram = mapping;
    for (uint64_t i = 0; i < n; i++) {
        struct snapshot_extent e = diff_extent_at(raw, i);
        size_t at = (size_t)e.page * SNAPSHOT_PAGE, len = (size_t)e.pages * SNAPSHOT_PAGE;
        for (size_t done = 0; done < len;) {
            ssize_t got = pread(fd, ram + at + done, len - done, (off_t)(at + done));
            if (got <= 0)
                return kvmc_fail_errno(KVMC_EIO, got < 0 ? errno : EIO,
                                       "restore: reading the diff's memory file");
            done += (size_t)got;
        }
    }
    return KVMC_OK;
}
