/* Diff snapshots (issue 18): the RAM pages that differ from a full
 * snapshot, the VM's base.
 *
 * After a full snapshot or a restore, guest RAM is the base's memory file
 * mapped copy-on-write (MAP_PRIVATE). A page anyone writes afterwards, the
 * guest, KVM (kvm-clock, steal time) or a device model copying into guest
 * memory, becomes a private copy, which /proc/self/pagemap tells apart
 * from the file's pages. Those private pages are the diff: nothing has to
 * track writes, and a device can never write a page the diff misses. A
 * diff holds every page written since the base was mapped, so each diff
 * stands on its base alone (no chains).
 *
 * In the state file a diff has one more section, BASE (in docs/snapshots.md):
 *   u32 version (1), u32 path length, the base directory's absolute path,
 *   u32 CRC-32 and u64 length of the base's state file (which must still
 *   be those at restore), u64 extent count, then each extent as u64 first
 *   page and u64 page count: sorted, apart, within RAM.
 * Its memory file is RAM-sized and sparse, each extent at its own offset.
 *
 * Threads: the caller keeps the vCPUs and the devices from writing RAM
 * while extents are read. */
#ifndef KVMC_SNAPSHOT_DIFF_H
#define KVMC_SNAPSHOT_DIFF_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"

#define SNAPSHOT_PAGE 4096u
#define SNAP_BASE SNAP_TAG('B', 'A', 'S', 'E')

/* A run of RAM pages: [page, page + pages) in units of SNAPSHOT_PAGE. */
struct snapshot_extent {
    uint64_t page, pages;
};

/* Which full snapshot a VM's RAM is layered on. */
struct snapshot_base {
    char path[PATH_MAX]; /* its directory, absolute */
    uint32_t crc;        /* CRC-32 of its whole state file */
    uint64_t len;        /* and that file's length */
};

/* The extents of [mapping, mapping + size) that are private copies of a
 * MAP_PRIVATE file mapping, in order; *out is malloc'd (NULL when none).
 * KVMC_EIO naming /proc/self/pagemap when it cannot be read. */
int diff_private_extents(const void *mapping, size_t size, struct snapshot_extent **out,
                         size_t *n);

/* Appends page to the extents v[0, *n) (capacity *cap), merging it into
 * the last one when it follows it; pages come in ascending order. */
int diff_add_extent(struct snapshot_extent **v, size_t *n, size_t *cap, uint64_t page);

/* Writes the BASE section. */
void diff_put_base(struct snapshot_writer *w, const struct snapshot_base *base,
                   const struct snapshot_extent *ext, size_t n);
/* Reads a BASE section (the reader is at its start) of a snapshot with
 * ram_size bytes of RAM: the base, and the extents left in place in the
 * file (*raw, *n; read them with diff_extent_at). KVMC_EFORMAT naming what
 * is wrong. */
int diff_parse_base(struct snapshot_reader *r, uint64_t ram_size, struct snapshot_base *base,
                    const uint8_t **raw, uint64_t *n);
struct snapshot_extent diff_extent_at(const uint8_t *raw, uint64_t i);

/* Copies each extent from fd (a diff's memory file) into RAM at mapping. */
int diff_overlay(void *mapping, int fd, const uint8_t *raw, uint64_t n);

#endif
