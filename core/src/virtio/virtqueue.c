#include "virtqueue.h"

#include <linux/virtio_ring.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

__attribute__((format(printf, 2, 3)))
static int mark_broken(struct virtq *q, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->broken_reason, sizeof(q->broken_reason), fmt, ap);
    va_end(ap);
    q->broken = true;
    return -1;
}

static uint64_t desc_table_size(uint16_t n) { return 16ull * n; }
static uint64_t avail_ring_size(uint16_t n) { return 6 + 2ull * n; }
static uint64_t used_ring_size(uint16_t n) { return 6 + 8ull * n; }

/* Sets the used ring's flags (the device's half of notification control). */
static void set_no_notify(struct virtq *q, const struct guest_memory *gm, bool off)
{
    uint8_t *used = gm_ptr(gm, q->used_gpa, used_ring_size(q->size));
    if (!used)
        return;
    __atomic_store_n((uint16_t *)used, off ? VRING_USED_F_NO_NOTIFY : 0, __ATOMIC_RELAXED);
    q->notify_off = off;
}

bool virtq_validate(struct virtq *q, const struct guest_memory *gm)
{
    if (q->size == 0 || q->size > VIRTQ_MAX_SIZE || (q->size & (q->size - 1))) {
        mark_broken(q, "queue size %u is not a power of two up to %u", q->size,
                    VIRTQ_MAX_SIZE);
        return false;
    }
    if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3) ||
        !gm_is_ram(gm, q->desc_gpa, desc_table_size(q->size)) ||
        !gm_is_ram(gm, q->avail_gpa, avail_ring_size(q->size)) ||
        !gm_is_ram(gm, q->used_gpa, used_ring_size(q->size))) {
        mark_broken(q, "ring addresses misaligned or outside guest RAM (size %u)", q->size);
        return false;
    }
    /* The used ring's flags are ours: a ring reused after a reset may still
     * say NO_NOTIFY from before, and the driver would never notify again. */
    set_no_notify(q, gm, false);
    return true;
}

static uint16_t load_u16_acquire(const void *p)
{
    return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}

/* Reads descriptor i of a table of n entries at table_gpa. */
static bool read_desc(const struct guest_memory *gm, uint64_t table_gpa, unsigned n,
                      unsigned i, struct vring_desc *d)
{
    if (i >= n)
        return false;
    return gm_read(gm, table_gpa + 16ull * i, d, sizeof(*d)) == 0;
}

/* Appends one buffer to the chain, checking it against guest RAM and the
 * rule that device-writable buffers come after the readable ones. */
static int add_buf(struct virtq *q, const struct guest_memory *gm,
                   struct virtq_chain *c, const struct vring_desc *d)
{
    bool writable = d->flags & VRING_DESC_F_WRITE;
    if (c->count == VIRTQ_MAX_CHAIN)
        return mark_broken(q, "chain longer than %u buffers", VIRTQ_MAX_CHAIN);
    if (!writable && c->writable)
        return mark_broken(q, "readable buffer after a writable one in chain %u",
                           c->head);
    uint8_t *host = d->len ? gm_ptr(gm, d->addr, d->len) : NULL;
    if (d->len && !host)
        return mark_broken(q, "buffer of %u bytes in chain %u lies outside guest RAM",
                           d->len, c->head);
    c->bufs[c->count++] = (struct virtq_buf){.host = host, .len = d->len,
                                             .writable = writable};
    if (writable)
        c->writable += d->len;
    else
        c->readable += d->len;
    return 0;
}

/* Walks an indirect table: no nesting, bounded, within guest RAM. */
static int walk_indirect(struct virtq *q, const struct guest_memory *gm,
                         struct virtq_chain *c, const struct vring_desc *outer)
{
    if (outer->flags & VRING_DESC_F_NEXT)
        return mark_broken(q, "indirect descriptor with NEXT in chain %u", c->head);
    if (outer->len == 0 || outer->len % 16 || outer->len / 16 > VIRTQ_MAX_INDIRECT)
        return mark_broken(q, "indirect table of %u bytes in chain %u", outer->len, c->head);
    unsigned n = outer->len / 16;
    if (!gm_is_ram(gm, outer->addr, outer->len))
        return mark_broken(q, "indirect table outside guest RAM in chain %u", c->head);
    unsigned i = 0;
    for (unsigned steps = 0;; steps++) {
        struct vring_desc d;
        if (steps == n || !read_desc(gm, outer->addr, n, i, &d))
            return mark_broken(q, "indirect chain %u loops or leaves its table (%u)",
                               c->head, i);
        if (d.flags & VRING_DESC_F_INDIRECT)
            return mark_broken(q, "indirect table inside an indirect table, chain %u",
                               c->head);
        if (add_buf(q, gm, c, &d))
            return -1;
        if (!(d.flags & VRING_DESC_F_NEXT))
            return 0;
        i = d.next;
    }
}

int virtq_pop(struct virtq *q, const struct guest_memory *gm, struct virtq_chain *c)
{
    if (q->broken)
        return -1;
    if (!q->ready)
        return 0;
    const uint8_t *avail = gm_ptr(gm, q->avail_gpa, avail_ring_size(q->size));
    if (!avail)
        return mark_broken(q, "avail ring left guest RAM");
    uint16_t avail_idx = load_u16_acquire(avail + 2);
    uint16_t pending = (uint16_t)(avail_idx - q->last_avail);
    if (pending == 0 && q->notify_off) {
        set_no_notify(q, gm, false);
        /* The flag store must be visible before we look again, or a chain
         * the driver adds now (seeing notifications still off) is lost. */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        avail_idx = load_u16_acquire(avail + 2);
        pending = (uint16_t)(avail_idx - q->last_avail);
    }
    if (pending == 0)
        return 0;
    if (!q->notify_off)
        set_no_notify(q, gm, true);
    if (pending > q->size) /* the driver moved idx by more than the ring holds */
        return mark_broken(q, "avail index jumped by %u on a queue of %u", pending, q->size);

    uint16_t head;
    memcpy(&head, avail + 4 + 2 * (q->last_avail % q->size), 2);
    q->last_avail++;
    memset(c, 0, offsetof(struct virtq_chain, bufs));
    c->head = head;
    if (head >= q->size)
        return mark_broken(q, "head index %u on a queue of %u", head, q->size);

    unsigned i = head;
    for (unsigned steps = 0;; steps++) {
        struct vring_desc d;
        if (steps == q->size || !read_desc(gm, q->desc_gpa, q->size, i, &d))
            return mark_broken(q, "chain %u loops or leaves the table (%u)", head, i);
        if (d.flags & VRING_DESC_F_INDIRECT) {
            if (walk_indirect(q, gm, c, &d))
                return -1;
            return 1; /* an indirect descriptor ends the chain */
        }
        if (add_buf(q, gm, c, &d))
            return -1;
        if (!(d.flags & VRING_DESC_F_NEXT))
            return 1;
        i = d.next;
    }
}

void virtq_push(struct virtq *q, const struct guest_memory *gm, uint16_t head,
                uint32_t written)
{
    uint8_t *used = gm_ptr(gm, q->used_gpa, used_ring_size(q->size));
    if (!used || q->broken)
        return;
    struct vring_used_elem e = {.id = head, .len = written};
    memcpy(used + 4 + 8 * (q->used_idx % q->size), &e, sizeof(e));
    q->used_idx++;
    /* The element must be visible before the index that publishes it. */
    __atomic_store_n((uint16_t *)(used + 2), q->used_idx, __ATOMIC_RELEASE);
}

bool virtq_interrupt_suppressed(const struct virtq *q, const struct guest_memory *gm)
{
    const uint8_t *avail = gm_ptr(gm, q->avail_gpa, 2);
    __atomic_thread_fence(__ATOMIC_SEQ_CST); /* used idx store before flags load */
    return avail && (load_u16_acquire(avail) & VRING_AVAIL_F_NO_INTERRUPT);
}

void virtq_reset(struct virtq *q)
{
    memset(q, 0, sizeof(*q));
}
