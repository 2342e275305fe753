/* A minimal virtio-mmio driver for unit tests, over the real transport of a
 * detached device (virtio_mmio_access): what a guest's driver writes. */
#ifndef KVMC_TEST_MMIO_DRIVER_H
#define KVMC_TEST_MMIO_DRIVER_H

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>

#include "virtio/mmio.h"
#include "virtq_fixture.h"

struct md_queue {
    unsigned index;
    uint64_t desc, avail, used; /* FQ_SIZE entries each */
};

static inline uint32_t md_rd(struct virtio_mmio *m, unsigned reg)
{
    return (uint32_t)virtio_mmio_access(m, reg, 4, false, 0);
}

static inline void md_wr(struct virtio_mmio *m, unsigned reg, uint32_t v)
{
    virtio_mmio_access(m, reg, 4, true, v);
}

/* Reset, VERSION_1 only, the given queues, DRIVER_OK; returns the status
 * read back. */
static inline uint32_t md_bring_up(struct virtio_mmio *m, const struct md_queue *qs, unsigned n)
{
    const uint32_t ack = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    md_wr(m, VIRTIO_MMIO_STATUS, 0);
    md_wr(m, VIRTIO_MMIO_STATUS, ack);
    md_wr(m, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    md_wr(m, VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VERSION_1 */
    md_wr(m, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    md_wr(m, VIRTIO_MMIO_DRIVER_FEATURES, 0);
    md_wr(m, VIRTIO_MMIO_STATUS, ack | VIRTIO_CONFIG_S_FEATURES_OK);
    for (unsigned i = 0; i < n; i++) {
        md_wr(m, VIRTIO_MMIO_QUEUE_SEL, qs[i].index);
        md_wr(m, VIRTIO_MMIO_QUEUE_NUM, FQ_SIZE);
        md_wr(m, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)qs[i].desc);
        md_wr(m, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)qs[i].avail);
        md_wr(m, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)qs[i].used);
        md_wr(m, VIRTIO_MMIO_QUEUE_READY, 1);
    }
    md_wr(m, VIRTIO_MMIO_STATUS, ack | VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
    return md_rd(m, VIRTIO_MMIO_STATUS);
}

#endif
