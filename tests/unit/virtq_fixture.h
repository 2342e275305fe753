/* A fake guest with one split ring at fixed addresses, for queue tests. */
#ifndef KVMC_TEST_VIRTQ_FIXTURE_H
#define KVMC_TEST_VIRTQ_FIXTURE_H

#include <linux/virtio_ring.h>
#include <string.h>

#include "guest_memory.h"
#include "virtio/virtqueue.h"

#define FQ_SIZE 8
#define FQ_DESC 0x1000ull
#define FQ_AVAIL 0x2000ull
#define FQ_USED 0x3000ull
#define FQ_DATA 0x10000ull
#define FQ_MEM (16ull << 20)

static inline void fq_setup(struct guest_memory *gm, struct virtq *q)
{
    gm_init(gm, FQ_MEM, 0);
    memset(q, 0, sizeof(*q));
    q->size = FQ_SIZE;
    q->desc_gpa = FQ_DESC;
    q->avail_gpa = FQ_AVAIL;
    q->used_gpa = FQ_USED;
    q->ready = virtq_validate(q, gm);
}

static inline void fq_desc(struct guest_memory *gm, uint64_t table, unsigned i, uint64_t addr,
                           uint32_t len, uint16_t flags, uint16_t next)
{
    struct vring_desc d = {.addr = addr, .len = len, .flags = flags, .next = next};
    gm_write(gm, table + 16ull * i, &d, sizeof(d));
}

/* Puts head into the avail ring at `avail` (of FQ_SIZE entries) at the
 * driver's index and publishes it. */
static inline void fq_offer_at(struct guest_memory *gm, uint64_t avail, uint16_t *avail_idx,
                               uint16_t head)
{
    gm_write(gm, avail + 4 + 2 * (*avail_idx % FQ_SIZE), &head, 2);
    (*avail_idx)++;
    gm_write(gm, avail + 2, avail_idx, 2);
}

/* The same for the fixture's own ring. */
static inline void fq_offer(struct guest_memory *gm, uint16_t *avail_idx, uint16_t head)
{
    fq_offer_at(gm, FQ_AVAIL, avail_idx, head);
}

static inline uint16_t fq_used_idx(struct guest_memory *gm)
{
    uint16_t v;
    gm_read(gm, FQ_USED + 2, &v, 2);
    return v;
}

static inline struct vring_used_elem fq_used(struct guest_memory *gm, unsigned slot)
{
    struct vring_used_elem e;
    gm_read(gm, FQ_USED + 4 + 8 * (slot % FQ_SIZE), &e, sizeof(e));
    return e;
}

#endif
