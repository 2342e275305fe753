/* virtio-blk requests through the device layer, on a temp image file. */
#include <criterion/criterion.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "iothread.h"
#include "virtio/virtio.h"
#include "virtq_fixture.h"
#include "config.h"
#include "devices/virtio_blk.h"

#define HDR FQ_DATA
#define STATUS (FQ_DATA + 0x100)
#define BUF (FQ_DATA + 0x1000)
#define DISK_SECTORS 64

static struct guest_memory gm;
static struct virtio_dev dev;
static char disk_path[4096];
static uint16_t avail_idx;

static void open_disk_in(const char *dir, bool read_only)
{
    struct virtq q;
    fq_setup(&gm, &q);
    snprintf(disk_path, sizeof(disk_path), "%s/kvmc-blk-XXXXXX", dir);
    int fd = mkstemp(disk_path);
    cr_assert(fd >= 0);
    uint8_t sector[512];
    for (unsigned s = 0; s < DISK_SECTORS; s++) {
        memset(sector, (int)s, sizeof(sector));
        cr_assert_eq(write(fd, sector, sizeof(sector)), 512);
    }
    close(fd);
    const struct virtio_device_ops *ops;
    void *impl;
    cr_assert_eq(virtio_blk_open(disk_path, read_only ? KVMC_DISK_READ_ONLY : 0, "unit-serial", &ops, &impl), KVMC_OK);
    virtio_dev_init(&dev, ops, impl, &gm);
    dev.status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                 VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
    dev.queues[0] = q;
    avail_idx = 0;
}

static void open_disk(bool read_only) { open_disk_in("/tmp", read_only); }
static void setup(void) { open_disk(false); }
static void teardown(void)
{
    virtio_dev_destroy(&dev);
    unlink(disk_path);
    gm_destroy(&gm);
}
TestSuite(virtio_blk, .init = setup, .fini = teardown);

/* header, [data], status as three descriptors; returns the status byte. */
static uint8_t request(uint32_t type, uint64_t sector, uint32_t len, bool data_writable)
{
    struct virtio_blk_outhdr h = {.type = type, .sector = sector};
    gm_write(&gm, HDR, &h, sizeof(h));
    uint8_t status = 0xee;
    gm_write(&gm, STATUS, &status, 1);
    unsigned next = 1;
    fq_desc(&gm, FQ_DESC, 0, HDR, sizeof(h), VRING_DESC_F_NEXT, 1);
    if (len) {
        fq_desc(&gm, FQ_DESC, 1, BUF, len,
                VRING_DESC_F_NEXT | (data_writable ? VRING_DESC_F_WRITE : 0), 2);
        next = 2;
    }
    fq_desc(&gm, FQ_DESC, next, STATUS, 1, VRING_DESC_F_WRITE, 0);
    fq_offer(&gm, &avail_idx, 0);
    dev.ops->process_queue(&dev, 0);
    gm_read(&gm, STATUS, &status, 1);
    return status;
}

Test(virtio_blk, read_sectors)
{
    cr_assert_eq(request(VIRTIO_BLK_T_IN, 5, 1024, true), VIRTIO_BLK_S_OK);
    const uint8_t *data = gm_ptr(&gm, BUF, 1024);
    cr_assert_eq(data[0], 5);
    cr_assert_eq(data[1023], 6);
    cr_assert_eq(fq_used(&gm, 0).len, 1025, "data + status written");
}

Test(virtio_blk, write_then_read_back)
{
    memset(gm_ptr(&gm, BUF, 512), 0xab, 512);
    cr_assert_eq(request(VIRTIO_BLK_T_OUT, 9, 512, false), VIRTIO_BLK_S_OK);
    cr_assert_eq(fq_used(&gm, 0).len, 1, "only the status was written");
    memset(gm_ptr(&gm, BUF, 512), 0, 512);
    cr_assert_eq(request(VIRTIO_BLK_T_IN, 9, 512, true), VIRTIO_BLK_S_OK);
    cr_assert_eq(((uint8_t *)gm_ptr(&gm, BUF, 1))[0], 0xab);
    FILE *f = fopen(disk_path, "rb");
    fseek(f, 9 * 512 + 100, SEEK_SET);
    cr_assert_eq(fgetc(f), 0xab, "the write reached the file");
    fseek(f, 10 * 512, SEEK_SET);
    cr_assert_eq(fgetc(f), 10, "and nothing beyond it");
    fclose(f);
}

#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif

/* Dirty page-cache pages of the disk image's first 64 sectors. */
static uint64_t dirty_pages(void)
{
    struct { uint64_t off, len; } range = {0, DISK_SECTORS * 512};
    struct { uint64_t cache, dirty, writeback, evicted, recently_evicted; } cs;
    int fd = open(disk_path, O_RDONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(syscall(__NR_cachestat, fd, &range, &cs, 0), 0, "cachestat (Linux 6.5)");
    close(fd);
    return cs.dirty;
}

static void sync_image(void)
{
    int fd = open(disk_path, O_RDONLY);
    cr_assert(fd >= 0 && fdatasync(fd) == 0);
    close(fd);
    cr_assert_eq(dirty_pages(), 0);
}

/* A driver that did not negotiate VIRTIO_BLK_F_FLUSH may take a completed
 * write as durable (virtio 1.x, 5.2.5.1), and Linux does: the write is on
 * the disk, not only in the host's page cache, when its status says OK. */
Test(virtio_blk, without_flush_negotiated_writes_are_durable_on_completion)
{
    sync_image();
    memset(gm_ptr(&gm, BUF, 512), 0x5a, 512);
    cr_assert_eq(request(VIRTIO_BLK_T_OUT, 7, 512, false), VIRTIO_BLK_S_OK);
    cr_assert_eq(dirty_pages(), 0, "writethrough");
}

/* With FLUSH negotiated the host's page cache is the write cache, and a
 * flush request empties it. */
Test(virtio_blk, with_flush_negotiated_a_flush_makes_writes_durable)
{
    dev.driver_features |= 1ull << VIRTIO_BLK_F_FLUSH;
    sync_image();
    memset(gm_ptr(&gm, BUF, 512), 0x5a, 512);
    cr_assert_eq(request(VIRTIO_BLK_T_OUT, 7, 512, false), VIRTIO_BLK_S_OK);
    cr_assert_geq(dirty_pages(), 1, "writeback: the page waits in the cache");
    cr_assert_eq(request(VIRTIO_BLK_T_FLUSH, 0, 0, false), VIRTIO_BLK_S_OK);
    cr_assert_eq(dirty_pages(), 0, "flushed");
}

Test(virtio_blk, header_split_across_descriptors)
{
    struct virtio_blk_outhdr h = {.type = VIRTIO_BLK_T_OUT, .sector = 3};
    gm_write(&gm, HDR, &h, sizeof(h));
    memset(gm_ptr(&gm, BUF, 512), 0x5c, 512);
    fq_desc(&gm, FQ_DESC, 0, HDR, 10, VRING_DESC_F_NEXT, 1);        /* 10 bytes of header */
    fq_desc(&gm, FQ_DESC, 1, HDR + 10, 6, VRING_DESC_F_NEXT, 2);    /* the other 6 */
    fq_desc(&gm, FQ_DESC, 2, BUF, 512, VRING_DESC_F_NEXT, 3);
    fq_desc(&gm, FQ_DESC, 3, STATUS, 1, VRING_DESC_F_WRITE, 0);
    fq_offer(&gm, &avail_idx, 0);
    dev.ops->process_queue(&dev, 0);
    cr_assert_eq(*(uint8_t *)gm_ptr(&gm, STATUS, 1), VIRTIO_BLK_S_OK);
    FILE *f = fopen(disk_path, "rb");
    fseek(f, 3 * 512, SEEK_SET);
    cr_assert_eq(fgetc(f), 0x5c, "header bytes never reach the disk");
    fclose(f);
}

Test(virtio_blk, out_of_range_and_odd_sizes_are_io_errors)
{
    cr_assert_eq(request(VIRTIO_BLK_T_IN, DISK_SECTORS, 512, true), VIRTIO_BLK_S_IOERR);
    cr_assert_eq(request(VIRTIO_BLK_T_IN, DISK_SECTORS - 1, 1024, true), VIRTIO_BLK_S_IOERR);
    cr_assert_eq(request(VIRTIO_BLK_T_IN, UINT64_MAX, 512, true), VIRTIO_BLK_S_IOERR);
    cr_assert_eq(request(VIRTIO_BLK_T_OUT, 0, 100, false), VIRTIO_BLK_S_IOERR);
    cr_assert_eq(request(0x7777, 0, 0, false), VIRTIO_BLK_S_UNSUPP);
}

Test(virtio_blk, read_only_disk_refuses_writes)
{
    teardown();
    open_disk(true);
    cr_assert(dev.ops->features & (1ull << VIRTIO_BLK_F_RO));
    cr_assert_eq(request(VIRTIO_BLK_T_OUT, 0, 512, false), VIRTIO_BLK_S_IOERR);
    cr_assert_eq(request(VIRTIO_BLK_T_IN, 0, 512, true), VIRTIO_BLK_S_OK);
}

Test(virtio_blk, flush_and_get_id)
{
    cr_assert_eq(request(VIRTIO_BLK_T_FLUSH, 0, 0, false), VIRTIO_BLK_S_OK);
    cr_assert_eq(request(VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES, true), VIRTIO_BLK_S_OK);
    cr_assert_str_eq((const char *)gm_ptr(&gm, BUF, 12), "unit-serial");
}

Test(virtio_blk, image_shrinking_under_the_guest)
{
    cr_assert_eq(truncate(disk_path, 8 * 512), 0);
    cr_assert_eq(request(VIRTIO_BLK_T_IN, 20, 512, true), VIRTIO_BLK_S_IOERR,
                 "short read of a shrunk image is an I/O error, not stale data");
    cr_assert_eq(request(VIRTIO_BLK_T_IN, 2, 512, true), VIRTIO_BLK_S_OK);
}

Test(virtio_blk, write_zeroes_and_discard)
{
    struct virtio_blk_discard_write_zeroes seg = {.sector = 4, .num_sectors = 2};
    gm_write(&gm, BUF, &seg, sizeof(seg));
    cr_assert_eq(request(VIRTIO_BLK_T_WRITE_ZEROES, 0, sizeof(seg), false), VIRTIO_BLK_S_OK);
    FILE *f = fopen(disk_path, "rb");
    fseek(f, 4 * 512, SEEK_SET);
    cr_assert_eq(fgetc(f), 0);
    fseek(f, 6 * 512, SEEK_SET);
    cr_assert_eq(fgetc(f), 6, "the sector after the range is untouched");
    fclose(f);
    seg = (struct virtio_blk_discard_write_zeroes){.sector = DISK_SECTORS - 1, .num_sectors = 9};
    gm_write(&gm, BUF, &seg, sizeof(seg));
    cr_assert_eq(request(VIRTIO_BLK_T_DISCARD, 0, sizeof(seg), false), VIRTIO_BLK_S_IOERR);
}

static uint8_t zero_sectors(uint64_t sector, uint32_t count)
{
    struct virtio_blk_discard_write_zeroes seg = {.sector = sector, .num_sectors = count};
    gm_write(&gm, BUF, &seg, sizeof(seg));
    return request(VIRTIO_BLK_T_WRITE_ZEROES, 0, sizeof(seg), false);
}

/* Sector s of the image holds the byte s (open_disk); zeroed ones hold 0. */
static void expect_image(uint64_t first_zero, uint64_t nzero, const char *fs)
{
    struct stat st;
    cr_assert_eq(stat(disk_path, &st), 0);
    cr_assert_eq(st.st_size, DISK_SECTORS * 512, "on %s the image changed size to %lld", fs,
                 (long long)st.st_size);
    int fd = open(disk_path, O_RDONLY);
    uint8_t sector[512];
    for (unsigned s = 0; s < DISK_SECTORS; s++) {
        cr_assert_eq(pread(fd, sector, 512, s * 512), 512);
        uint8_t want = s >= first_zero && s < first_zero + nzero ? 0 : (uint8_t)s;
        for (unsigned i = 0; i < 512; i++)
            cr_assert_eq(sector[i], want, "on %s, sector %u byte %u is %u, want %u", fs, s, i,
                         sector[i], want);
    }
    close(fd);
}

/* WRITE_ZEROES on a file system without FALLOC_FL_ZERO_RANGE (tmpfs) and
 * on one with it (the build tree's, ext4 on these machines): exactly the
 * sectors asked for, the last one too, and the image keeps its size. */
static void write_zeroes_on(const char *dir)
{
    struct statfs fs;
    cr_assert_eq(statfs(dir, &fs), 0);
    char fsname[32];
    snprintf(fsname, sizeof(fsname), "%s (fs 0x%lx)", dir, (unsigned long)fs.f_type);
    virtio_dev_destroy(&dev);
    unlink(disk_path);
    gm_destroy(&gm);
    open_disk_in(dir, false);
    cr_assert_eq(zero_sectors(16, 1), VIRTIO_BLK_S_OK);
    expect_image(16, 1, fsname);
    cr_assert_eq(zero_sectors(DISK_SECTORS - 1, 1), VIRTIO_BLK_S_OK);
    int fd = open(disk_path, O_RDWR);
    uint8_t last[512];
    memset(last, DISK_SECTORS - 1, sizeof(last));
    cr_assert_eq(pwrite(fd, last, 512, (DISK_SECTORS - 1) * 512), 512); /* put it back */
    close(fd);
    expect_image(16, 1, fsname);
    cr_assert_eq(zero_sectors(3, 10), VIRTIO_BLK_S_OK);
    cr_assert_eq(zero_sectors(13, 3), VIRTIO_BLK_S_OK);
    expect_image(3, 14, fsname);
    cr_assert_eq(zero_sectors(DISK_SECTORS, 1), VIRTIO_BLK_S_IOERR, "past the end");
    expect_image(3, 14, fsname);
}

Test(virtio_blk, write_zeroes_is_exact_on_tmpfs)
{
    struct statfs fs;
    cr_assert_eq(statfs("/dev/shm", &fs), 0);
    cr_assert_eq(fs.f_type, TMPFS_MAGIC, "/dev/shm is not tmpfs here");
    write_zeroes_on("/dev/shm");
}

Test(virtio_blk, write_zeroes_is_exact_on_a_disk_file_system)
{
    struct statfs fs;
    cr_assert_eq(statfs(KVMC_BUILD_DIR, &fs), 0);
    cr_assert_eq(fs.f_type, EXT4_SUPER_MAGIC, "the build tree is not on ext4 here (0x%lx)",
                 (unsigned long)fs.f_type);
    write_zeroes_on(KVMC_BUILD_DIR);
}

Test(virtio_blk, broken_queue_marks_device_needs_reset)
{
    fq_desc(&gm, FQ_DESC, 0, HDR, 16, VRING_DESC_F_NEXT, 0); /* loops on itself */
    fq_offer(&gm, &avail_idx, 0);
    dev.ops->process_queue(&dev, 0);
    cr_assert(dev.status & VIRTIO_CONFIG_S_NEEDS_RESET);
    cr_assert_eq(fq_used_idx(&gm), 0, "nothing completed");
    /* A reset brings it back. */
    virtio_dev_reset_locked(&dev);
    cr_assert_not(dev.status & VIRTIO_CONFIG_S_NEEDS_RESET);
}

Test(virtio_blk, no_status_byte_completes_with_nothing_written)
{
    struct virtio_blk_outhdr h = {.type = VIRTIO_BLK_T_IN};
    gm_write(&gm, HDR, &h, sizeof(h));
    fq_desc(&gm, FQ_DESC, 0, HDR, 16, 0, 0); /* no writable buffer at all */
    fq_offer(&gm, &avail_idx, 0);
    dev.ops->process_queue(&dev, 0);
    cr_assert_eq(fq_used_idx(&gm), 1);
    cr_assert_eq(fq_used(&gm, 0).len, 0);
}

/* Attached to a real I/O thread. The image's pages are dropped from the page
 * cache first, so reads cannot complete with RWF_NOWAIT and go to the
 * worker pool. More requests than request slots are queued at once, so the
 * I/O thread runs out of slots and must be woken by the workers to finish
 * the rest. Every fifth request is a flush, which always goes to a worker
 * (if the page cache kept the pages, the reads may not). */
#define BIG_QUEUE 64
#define BIG_REQUESTS 20 /* 3 descriptors each; more than the device's slots */
#define STATUS_AREA (FQ_DATA + 0x800) /* past the 20 headers */

static void offer_big(uint16_t head, uint16_t *idx)
{
    gm_write(&gm, FQ_AVAIL + 4 + 2 * (*idx % BIG_QUEUE), &head, 2);
    (*idx)++;
    gm_write(&gm, FQ_AVAIL + 2, idx, 2);
}

Test(virtio_blk, attached_requests_run_on_workers_past_the_slot_limit)
{
    dev.queues[0].size = BIG_QUEUE;
    cr_assert(virtq_validate(&dev.queues[0], &gm));
    struct iothread io;
    cr_assert_eq(iothread_init(&io), KVMC_OK);
    cr_assert_eq(dev.ops->attach(&dev, &io), KVMC_OK);
    cr_assert_gt(io.pool.wanted, 1, "a disk asks for several workers");
    cr_assert_eq(iothread_start(&io), KVMC_OK);
    cr_assert_eq(io.pool.started, io.pool.wanted);

    int fd = open(disk_path, O_RDONLY);
    cr_assert(fd >= 0);
    cr_assert_eq(fdatasync(fd), 0);
    cr_assert_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    close(fd);
    uint16_t idx = 0;
    for (unsigned i = 0; i < BIG_REQUESTS; i++) {
        uint64_t hdr = HDR + 16 * i, buf = BUF + 512 * i, status = STATUS_AREA + i;
        struct virtio_blk_outhdr h = {.type = i % 5 == 4 ? VIRTIO_BLK_T_FLUSH : VIRTIO_BLK_T_IN,
                                      .sector = i};
        gm_write(&gm, hdr, &h, sizeof(h));
        gm_write(&gm, status, &(uint8_t){0xee}, 1);
        fq_desc(&gm, FQ_DESC, 3 * i, hdr, sizeof(h), VRING_DESC_F_NEXT, (uint16_t)(3 * i + 1));
        fq_desc(&gm, FQ_DESC, 3 * i + 1, buf, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE,
                (uint16_t)(3 * i + 2));
        fq_desc(&gm, FQ_DESC, 3 * i + 2, status, 1, VRING_DESC_F_WRITE, 0);
        offer_big((uint16_t)(3 * i), &idx);
    }
    dev.ops->process_queue(&dev, 0); /* as the queue notification would */
    for (unsigned waited = 0; fq_used_idx(&gm) < BIG_REQUESTS && waited < 5000; waited++)
        usleep(1000);
    uint16_t used = fq_used_idx(&gm);
    iothread_destroy(&io);
    cr_assert_eq(used, BIG_REQUESTS, "all requests completed (%u)", used);
    for (unsigned i = 0; i < BIG_REQUESTS; i++) {
        cr_assert_eq(*(uint8_t *)gm_ptr(&gm, STATUS_AREA + i, 1), VIRTIO_BLK_S_OK);
        if (i % 5 != 4)
            cr_assert_eq(*(uint8_t *)gm_ptr(&gm, BUF + 512 * i + 511, 1), i, "sector %u's data", i);
    }
}

/* Images are locked like QEMU's: one writer, or any number of readers. */
static int open_again(unsigned flags, struct virtio_dev *d)
{
    memset(d, 0, sizeof(*d));
    return virtio_blk_open(disk_path, flags, NULL, &d->ops, &d->impl);
}

Test(virtio_blk, a_writable_image_is_locked_against_every_other_open)
{
    struct virtio_dev other;
    /* The fixture holds it writable. */
    cr_assert_eq(open_again(0, &other), KVMC_EBUSY);
    cr_assert(strstr(kvmc_last_error(), disk_path), "%s", kvmc_last_error());
    cr_assert(strstr(kvmc_last_error(), "in use"), "%s", kvmc_last_error());
    cr_assert_eq(open_again(KVMC_DISK_READ_ONLY, &other), KVMC_EBUSY);
    cr_assert_eq(open_again(KVMC_DISK_NO_LOCK, &other), KVMC_OK, "%s", kvmc_last_error());
    virtio_dev_destroy(&other);
}

Test(virtio_blk, read_only_images_share_and_exclude_writers)
{
    virtio_dev_destroy(&dev); /* the fixture's writable open goes away */
    struct virtio_dev r1, r2, w;
    cr_assert_eq(open_again(0, &w), KVMC_OK, "free again once closed: %s", kvmc_last_error());
    virtio_dev_destroy(&w);
    cr_assert_eq(open_again(KVMC_DISK_READ_ONLY, &r1), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(open_again(KVMC_DISK_READ_ONLY, &r2), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(open_again(0, &w), KVMC_EBUSY);
    cr_assert(strstr(kvmc_last_error(), "read-only"), "%s", kvmc_last_error());
    virtio_dev_destroy(&r1);
    virtio_dev_destroy(&r2);
    cr_assert_eq(open_again(0, &dev), KVMC_OK, "%s", kvmc_last_error()); /* for teardown */
}
