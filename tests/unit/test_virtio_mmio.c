/* The virtio-mmio register window of every device, driven through the real
 * transport with no VM (virtio_mmio_create_detached): a driver that
 * scribbles on every register with every access size, or resets the device
 * in the middle of everything, gets a contained failure at worst, and a
 * clean bring-up afterwards still works. */
#include <criterion/criterion.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "iothread.h"
#include "virtio/mmio.h"
#include "mmio_driver.h"
#include "snapshot_fixture.h"
#include "virtq_fixture.h"
#include "config.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_console.h"
#include "devices/virtio_rng.h"
#include "devices/virtio_vsock.h"

static struct guest_memory gm;
static char disk[] = "/tmp/kvmc-mmio-XXXXXX";
static char vsock_dir[] = "/tmp/kvmc-mmio-vsock-XXXXXX";

static void noop_console(void *opaque, const uint8_t *data, size_t len)
{
    (void)opaque, (void)data, (void)len;
}

static struct virtio_mmio *open_device(unsigned which, struct iothread *io)
{
    const struct virtio_device_ops *ops = NULL;
    void *impl = NULL;
    static char vsock_path[96];
    snprintf(vsock_path, sizeof(vsock_path), "%s/v", vsock_dir);
    struct vconsole_config console = {.enabled = true, .fn = noop_console};
    struct vsock_config vsock = {.enabled = true, .cid = 3, .path = vsock_path};
    switch (which) {
    case 0: cr_assert_eq(virtio_blk_open(disk, 0, "s", &ops, &impl), KVMC_OK); break;
    case 1: cr_assert_eq(virtio_rng_device.open(NULL, 0, &ops, &impl), KVMC_OK); break;
    case 2: cr_assert_eq(virtio_console_open(&console, &ops, &impl), KVMC_OK); break;
    default: cr_assert_eq(virtio_vsock_open(&vsock, &ops, &impl), KVMC_OK); break;
    }
    struct virtio_mmio *m;
    cr_assert_eq(virtio_mmio_create_detached(&gm, ops, impl, &m), KVMC_OK);
    cr_assert_eq(iothread_init(io), KVMC_OK);
    if (ops->attach)
        cr_assert_eq(ops->attach(&m->dev, io), KVMC_OK);
    return m;
}

static void setup(void)
{
    gm_init(&gm, FQ_MEM, 0);
    int fd = mkstemp(disk);
    cr_assert(fd >= 0 && ftruncate(fd, 1 << 20) == 0);
    close(fd);
    cr_assert(mkdtemp(vsock_dir));
}

static void teardown(void)
{
    unlink(disk);
    rmdir(vsock_dir);
    gm_destroy(&gm);
}

TestSuite(virtio_mmio, .init = setup, .fini = teardown);

/* What a driver does: reset, negotiate VERSION_1, one queue of 8 at the
 * fixture's rings, DRIVER_OK. Returns the status read back. */
static uint32_t bring_up(struct virtio_mmio *m, unsigned qi)
{
    const struct md_queue q = {qi, FQ_DESC, FQ_AVAIL, FQ_USED};
    return md_bring_up(m, &q, 1);
}

/* Every offset of the window, every access size, values from a fixed
 * pseudo-random sequence, with queue processing in between. Ring memory is
 * random too (but inside guest RAM: the fixture's first 16 MiB). */
static void scribble(struct virtio_mmio *m, uint64_t seed)
{
    uint8_t *ram = gm_ptr(&gm, 0, 1 << 20);
    for (unsigned i = 0; i < (1 << 20); i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        ram[i] = (uint8_t)(seed >> 56);
    }
    static const unsigned sizes[] = {1, 2, 4, 8};
    for (unsigned round = 0; round < 4; round++)
        for (unsigned off = 0; off < VIRTIO_MMIO_SIZE; off++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            unsigned size = sizes[(seed >> 8) & 3];
            uint64_t value = seed >> 16;
            if ((seed >> 40) & 1)
                value &= 0xffff; /* small values hit sizes, indices, selectors */
            virtio_mmio_access(m, off, size, (seed >> 41) & 1, value);
            if ((off & 63) == 0)
                for (unsigned qi = 0; qi < m->dev.ops->num_queues; qi++)
                    m->dev.ops->process_queue(&m->dev, qi);
        }
}

Test(virtio_mmio, scribbling_on_every_register_is_contained)
{
    for (unsigned which = 0; which < 4; which++) {
        struct iothread io;
        struct virtio_mmio *m = open_device(which, &io);
        for (uint64_t seed = 1; seed <= 3; seed++)
            scribble(m, seed * 0x9e3779b97f4a7c15ull + which);
        /* A proper reset and bring-up works afterwards. */
        memset(gm_ptr(&gm, 0, 1 << 20), 0, 1 << 20);
        cr_assert(bring_up(m, 0) & VIRTIO_CONFIG_S_DRIVER_OK, "%s after scribbling",
                  m->dev.ops->name);
        cr_assert_not(md_rd(m, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
        cr_assert_eq(md_rd(m, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
        iothread_destroy(&io);
        virtio_mmio_destroy(m);
    }
}

/* rng after a storm of resets, half-configured queues and notifications:
 * one clean request still gets random bytes. */
Test(virtio_mmio, hammering_reset_then_a_request_works)
{
    struct iothread io;
    struct virtio_mmio *m = open_device(1, &io);
    for (unsigned i = 0; i < 10000; i++) {
        md_wr(m, VIRTIO_MMIO_STATUS, 0);
        if (i % 3 == 0)
            bring_up(m, 0);
        md_wr(m, VIRTIO_MMIO_QUEUE_READY, i & 1);
        md_wr(m, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        m->dev.ops->process_queue(&m->dev, 0);
    }
    cr_assert(bring_up(m, 0) & VIRTIO_CONFIG_S_DRIVER_OK);
    memset(gm_ptr(&gm, FQ_DATA, 64), 0, 64);
    uint16_t avail_idx = 0;
    fq_desc(&gm, FQ_DESC, 0, FQ_DATA, 64, VRING_DESC_F_WRITE, 0);
    fq_offer(&gm, &avail_idx, 0);
    m->dev.ops->process_queue(&m->dev, 0);
    cr_assert_eq(fq_used_idx(&gm), 1);
    cr_assert_eq(fq_used(&gm, 0).len, 64);
    const uint8_t *bytes = gm_ptr(&gm, FQ_DATA, 64);
    unsigned zero = 0;
    for (unsigned i = 0; i < 64; i++)
        zero += bytes[i] == 0;
    cr_assert_lt(zero, 8, "random bytes, not zeros");
    iothread_destroy(&io);
    virtio_mmio_destroy(m);
}

/* Whatever state a driver can put the device in, a snapshot of it restores:
 * here a driver mid-negotiation that wrote feature bits the device does
 * not offer (no FEATURES_OK yet) and a queue size past the maximum on a
 * queue it has not enabled (both checked only later, by the device). */
Test(virtio_mmio, a_driver_mid_negotiation_is_saved_and_restored)
{
    struct iothread io;
    struct virtio_mmio *m = open_device(1, &io);
    md_wr(m, VIRTIO_MMIO_STATUS, 0);
    md_wr(m, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    md_wr(m, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    md_wr(m, VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffff);
    md_wr(m, VIRTIO_MMIO_QUEUE_SEL, 0);
    md_wr(m, VIRTIO_MMIO_QUEUE_NUM, 324);
    struct snapshot_writer w;
    struct snapshot_reader r;
    sf_save(m, &w, &r);
    cr_assert_eq(virtio_mmio_restore(m, &r), KVMC_OK, "%s", kvmc_last_error());
    snapshot_writer_free(&w);
    /* Enabling that queue is still refused, as before the snapshot. */
    md_wr(m, VIRTIO_MMIO_QUEUE_READY, 1);
    cr_assert_eq(md_rd(m, VIRTIO_MMIO_QUEUE_READY), 0);
    iothread_destroy(&io);
    virtio_mmio_destroy(m);
}
